"""The patch layer: ``vlmkern.apply(model, ...)``.

    patch = vlmkern.apply(model, method="fastv", layer=3, keep_ratio=0.25)
    out = model.generate(**inputs)   # prefill prunes; decoding uses the shorter cache
    patch.revert()                   # the model is exactly as before

``apply`` routes by ``model.config.model_type`` to a family adapter, patches the
instance (hooks and instance attributes, never classes), and returns a
:class:`PatchHandle` recording every change. See :mod:`vlmkern.patch.core`.
"""

from __future__ import annotations

from vlmkern.methods import METHODS, get_method
from vlmkern.methods.fastv import check_keep_ratio
from vlmkern.patch import llava, qwen2_5_vl
from vlmkern.patch.core import InLLMPruner, PatchHandle

_ADAPTERS = {llava.MODEL_TYPE: llava, qwen2_5_vl.MODEL_TYPE: qwen2_5_vl}

SUPPORTED_FAMILIES = tuple(_ADAPTERS)

_ATTN_IMPLEMENTATIONS = ("eager", "sdpa")


def apply(model, method: str = "fastv", *, layer: int = 3, keep_ratio: float = 0.25,
          quant: str | None = None, group_size: int | None = 128, quant_targets="language",
          calibration=None, progress: bool = False, **kw) -> PatchHandle:
    """Patch ``model`` in place with a token-reduction ``method``; returns the handle.

    Args:
        model: a supported model (``SUPPORTED_FAMILIES`` lists the
            ``config.model_type`` values), in eval mode.
        method: a name from ``vlmkern.methods.METHODS`` (``"fastv"``).
        layer: ``K``: the hidden states entering decoder layer ``K`` (0-based) are
            pruned, scored from layer ``K - 1``; ``1 <= K <= num_hidden_layers - 1``.
        keep_ratio: fraction of each sample's image tokens kept, in ``(0, 1]``:
            ``max(1, round(N * keep_ratio))`` of its ``N``.
        quant: ``"w4a8"`` also replaces the language model's linear layers by
            ``vlmkern.nn.W4A8Linear`` (see ``vlmkern.quantize`` for
            ``group_size``, ``quant_targets``, ``calibration``, ``progress``).
            ``revert()`` then restores the float layers too, so the handle keeps
            them alive; for the memory saving, call ``vlmkern.quantize`` yourself
            (before or after ``apply``) instead.
        **kw: further method options.

    Outputs change shape: a pruning prefill (a forward or the first step of
    ``generate``) returns logits for the kept tokens only, ``[B, L', V]`` with
    ``L' <= L`` (each sample's kept tokens in their original order,
    right-aligned), so ``logits[:, -1]`` is still the next-token distribution;
    ``handle.to_prompt_positions(logits)`` maps them back to ``[B, L, V]``
    (NaN at pruned positions), and ``handle.pruner.last_keep_mask`` (``[B, L]``
    bool) says which prompt tokens were kept. Generated sequences, positions
    and the attention mask keep the unpruned numbering. Chunked prefill
    (``prefill_chunk_size``) raises ``NotImplementedError``.

    Raises:
        ValueError: unsupported family, unknown method, ``layer`` or ``keep_ratio``
            out of range.
        NotImplementedError: an attention implementation other than eager/sdpa.
        RuntimeError: the model is already patched (revert that patch first).
    """
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    adapter = _ADAPTERS.get(model_type)
    if adapter is None:
        raise ValueError(
            f"vlmkern.apply: unsupported model {type(model).__name__} (model_type={model_type!r}); "
            f"supported families: {', '.join(SUPPORTED_FAMILIES)}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    previous = model.__dict__.get("_vlmkern_patch")
    if previous is not None and previous.active:
        raise RuntimeError("vlmkern.apply: this model is already patched; call revert() on its "
                           f"handle first ({previous.description})")
    check_keep_ratio(keep_ratio)
    parts = adapter.parts(model)
    n_layers = len(parts.lm.layers)
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise ValueError(f"layer must be an int, got {layer!r}")
    if layer == 0:
        raise ValueError("layer must be in [1, %d], got 0: the input of layer K is scored from layer "
                         "K - 1's attention, and layer 0 has no layer before it" % (n_layers - 1))
    if not 1 <= layer <= n_layers - 1:
        raise ValueError(f"layer must be in [1, {n_layers - 1}] (the model has {n_layers} decoder "
                         f"layers), got {layer}")
    impl = getattr(parts.lm.config, "_attn_implementation", None)
    if impl not in _ATTN_IMPLEMENTATIONS:
        raise NotImplementedError(
            f"vlmkern.apply: attn_implementation must be one of {_ATTN_IMPLEMENTATIONS}, got {impl!r}")
    m = get_method(method, layer=layer, keep_ratio=keep_ratio, **kw)

    if quant is not None:
        from vlmkern.quant import QUANT_SCHEMES, quantize
        from vlmkern.quant.model import parent_and_child

        if quant not in QUANT_SCHEMES:
            raise ValueError(f"quant must be None or one of {QUANT_SCHEMES}, got {quant!r}")
    handle = PatchHandle(model, f"{m!r}{' + ' + quant if quant else ''} on {model_type}")
    try:
        if quant is not None:
            replaced = []
            try:
                quantize(model, quant, group_size=group_size, targets=quant_targets,
                         calibration=calibration, progress=progress, _replaced=replaced)
            finally:  # record what was swapped even if quantize failed part-way
                for name, original in replaced:
                    handle.swapped_module(*parent_and_child(model, name), original,
                                          f"{name}: W4A8Linear")
        InLLMPruner(m, parts.mm_model, parts.lm, parts.image_token_id, parts.rotary).install(handle)
        _refuse_chunked_prefill(model, handle, m)
    except BaseException:
        handle.revert()  # leave the model as it was
        raise
    handle.note(model, f"[vlmkern] patched with {m!r}; PatchHandle.revert() undoes it")
    handle.set_attr(model, "_vlmkern_patch", handle)
    return handle


def _refuse_chunked_prefill(model, handle: PatchHandle, method) -> None:
    """Chunked prefill (``generate(..., prefill_chunk_size=n)``) feeds the prompt
    through the model in pieces: the pruner would score the first piece from its
    own last token and prune it alone, and later pieces would reach layers >= K
    after the earlier ones were cached unpruned there. Scoring once the whole
    prompt is cached would need layers >= K to run again on every piece, so it
    is refused, before any work, with an error that says what to do."""
    generate = model.generate

    def guarded_generate(*args, **kwargs):
        config = kwargs.get("generation_config") or getattr(model, "generation_config", None)
        chunk = kwargs.get("prefill_chunk_size", getattr(config, "prefill_chunk_size", None))
        if chunk is not None:
            raise NotImplementedError(
                f"vlmkern: {method.name} prunes the whole prompt at once and does not support "
                f"chunked prefill (prefill_chunk_size={chunk}); pass prefill_chunk_size=None, or "
                "revert the patch to prefill in chunks")
        return generate(*args, **kwargs)

    guarded_generate.__doc__ = generate.__doc__
    handle.set_attr(model, "generate", guarded_generate,
                    "generate: refuses chunked prefill (prefill_chunk_size)")


__all__ = ["apply", "PatchHandle", "SUPPORTED_FAMILIES"]
