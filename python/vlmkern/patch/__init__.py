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
from vlmkern.patch import llava, llava_video, qwen2_5_vl, qwen2_vl, qwen3_vl
from vlmkern.patch.core import InLLMPruner, PatchHandle
from vlmkern.patch.pre_llm import PreLLMPruner
from vlmkern.patch.pre_vit import PreViTDedup

_ADAPTERS = {llava.MODEL_TYPE: llava, qwen2_vl.MODEL_TYPE: qwen2_vl, qwen2_5_vl.MODEL_TYPE: qwen2_5_vl,
             qwen3_vl.MODEL_TYPE: qwen3_vl, **{t: llava_video for t in llava_video.MODEL_TYPES}}

SUPPORTED_FAMILIES = tuple(_ADAPTERS)
# families whose adapter finds videos
VIDEO_FAMILIES = (qwen2_vl.MODEL_TYPE, qwen2_5_vl.MODEL_TYPE, qwen3_vl.MODEL_TYPE) + llava_video.MODEL_TYPES

_ATTN_IMPLEMENTATIONS = ("eager", "sdpa")


def apply(model, method="fastv", *, positions: str | None = None, quant: str | None = None,
          group_size: int | None = 128, quant_targets="language", calibration=None,
          progress: bool = False, **options) -> PatchHandle:
    """Patch ``model`` in place with a token-reduction ``method``; returns the handle.

    Args:
        model: a supported model (``SUPPORTED_FAMILIES`` lists the
            ``config.model_type`` values), in eval mode.
        method: a name from ``vlmkern.methods.METHODS`` (``"fastv"``, ``"evs"``,
            ``"pixel_dedup"``) configured by ``options``, a method object
            (``vlmkern.methods.EVS(rate=0.75)``), or a list of method objects
            that compose: at most one ``pre_vit`` method (``PixelDedup``) and one
            method acting in the language model, e.g. ``[PixelDedup(tol=0.0),
            EVS(rate=0.75)]``.
        **options: the method's settings. ``"fastv"`` (images, and video frames
            on the ``VIDEO_FAMILIES``): ``layer=3`` (``K``: the hidden states
            entering decoder layer ``K`` are pruned, scored from layer ``K - 1``;
            ``1 <= K <= num_hidden_layers - 1``) and ``keep_ratio=0.25`` (of each
            sample's visual tokens, ``max(1, round(N * keep_ratio))`` kept). ``"evs"``
            (videos; the ``VIDEO_FAMILIES``: Qwen2-VL, Qwen2.5-VL, Qwen3-VL,
            LLaVA-OneVision, LLaVA-NeXT-Video):
            ``rate=0.75``, the fraction of each video's tokens pruned before the
            first decoder layer (see ``vlmkern.methods.EVS``). ``"pixel_dedup"``
            (videos; Qwen2-VL, Qwen2.5-VL, Qwen3-VL): ``tol=0.0``, the vision encoder skips
            temporal patch groups repeating the last kept one within ``tol``
            (mean absolute difference of normalised pixels) and reuses its
            output; ``drop=True`` also drops the repeats' tokens before the
            first decoder layer (see ``vlmkern.methods.PixelDedup``). ``"dycoke"`` (videos;
            the video families): ``rho=0.7``, stage 1 of DyCoke, and with
            ``kv_layer=3`` (``kv_keep=0.3``, ``kv_threshold=0.9``) stage 2,
            decode-time pruning of the video entries of layers ``>= kv_layer``
            (see ``vlmkern.methods.DyCoke``). ``"vidcom2"`` (videos; the
            video families): ``keep_ratio=0.25``, the fraction of each video's
            tokens kept before the first decoder layer, budgeted per frame by
            its distinctiveness (see ``vlmkern.methods.VidCom2``). ``"fastvid"``
            (videos; the video families): ``retain_ratio=0.1`` (of each frame's
            tokens, ``max(1, int(N * retain_ratio))`` kept), ``c=8``, ``tau=0.9``,
            ``d=0.4``, ``p=4``, ``k=4``, ``alpha=0.6``: segments from the frames'
            mean tokens, salient tokens kept, context tokens merged into
            density-peak anchors, so some kept tokens get new values (see
            ``vlmkern.methods.FastVID``).
        positions: ``"keep"`` or ``"renumber"``, how the kept tokens are
            numbered when a video method prunes before the first decoder layer.
            ``"keep"``: each kept token keeps its original position (gaps where
            tokens were dropped), the only choice on M-RoPE families (Qwen-VL)
            and for FastV. ``"renumber"``: the kept prompt is numbered ``0, 1,
            ...`` as if it had been assembled short, and generated tokens
            continue from its length; the default on the LLaVA video families
            (LLaVA-OneVision, LLaVA-NeXT-Video), as the methods' released code
            for those models did. None: the default.
        quant: ``"w4a8"`` also replaces the language model's linear layers by
            ``vlmkern.nn.W4A8Linear`` (see ``vlmkern.quantize`` for
            ``group_size``, ``quant_targets``, ``calibration``, ``progress``).
            ``revert()`` then restores the float layers too, so the handle keeps
            them alive; for the memory saving, call ``vlmkern.quantize`` yourself
            (before or after ``apply``) instead.

    Outputs change shape: a pruning prefill (a forward or the first step of
    ``generate``) returns logits for the kept tokens only, ``[B, L', V]`` with
    ``L' <= L`` (each sample's kept tokens in their original order,
    right-aligned), so ``logits[:, -1]`` is still the next-token distribution;
    ``handle.to_prompt_positions(logits)`` maps them back to ``[B, L, V]``
    (NaN at pruned positions), and ``handle.pruner.last_keep_mask`` (``[B, L]``
    bool) says which prompt tokens were kept (left padding counts as pruned
    when anything is: the compacted batch drops it too). Generated sequences, positions
    and the attention mask keep the unpruned numbering. Chunked prefill
    (``prefill_chunk_size``) raises ``NotImplementedError``.

    Raises:
        ValueError: unsupported family, unknown method or option, an option out
            of range (``layer``, ``keep_ratio``, ``rate``, ``retain_ratio``, ...), a video method on a
            family without video support, ``pixel_dedup`` outside the Qwen-VL
            families.
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
    previous = model.__dict__.get("_vlmkern_patch")
    if previous is not None and previous.active:
        raise RuntimeError("vlmkern.apply: this model is already patched; call revert() on its "
                           f"handle first ({previous.description})")
    parts = adapter.parts(model)
    vit, m = _methods(method, options, parts)
    for x in (vit, m):
        if x is not None and x.placement in ("pre_llm", "pre_vit") and parts.video_layout is None:
            raise ValueError(f"vlmkern.apply: {x.name} acts on videos and {model_type} has no video "
                             f"support in vlmkern; families with video: {', '.join(VIDEO_FAMILIES)}")
    if vit is not None and parts.video_grid_key is None:
        raise ValueError(
            f"vlmkern.apply: {vit.name} skips repeated temporal patch groups inside the vision encoder "
            f"and is wired for the Qwen-VL families only (Qwen2-VL, Qwen2.5-VL, Qwen3-VL); {model_type} "
            "encodes its frames another way and is not supported yet")
    if vit is not None and vit.drop:
        if m is not None:
            raise ValueError(f"method: {vit!r} drops the repeats itself and does not compose with {m!r}; "
                             "use PixelDedup(tol) without drop=True there (the method then ranks the "
                             "repeats' identical tokens last)")
        from vlmkern.methods.pixel_dedup import RepeatDrop

        m = RepeatDrop(vit)
    renumber = _renumber(positions, m, parts, model_type)
    impl = getattr(parts.lm.config, "_attn_implementation", None)
    if impl not in _ATTN_IMPLEMENTATIONS:
        raise NotImplementedError(
            f"vlmkern.apply: attn_implementation must be one of {_ATTN_IMPLEMENTATIONS}, got {impl!r}")

    if quant is not None:
        from vlmkern.quant import QUANT_SCHEMES, quantize
        from vlmkern.quant.model import parent_and_child

        if quant not in QUANT_SCHEMES:
            raise ValueError(f"quant must be None or one of {QUANT_SCHEMES}, got {quant!r}")
    what = " + ".join(repr(x) for x in (vit, m) if x is not None)
    handle = PatchHandle(model, f"{what}{' + ' + quant if quant else ''} on {model_type}")
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
        if vit is not None:
            PreViTDedup(vit, parts.mm_model, parts.spatial_merge).install(handle)
        if m is not None:
            if m.placement == "pre_llm":
                pruner = PreLLMPruner(m, parts.mm_model, parts.lm, parts.video_token_id, parts.rotary,
                                      layout=parts.video_layout)
                pruner.renumber = renumber
                pruner.install(handle)
                if getattr(m, "kv_layer", None) is not None:  # DyCoke stage 2
                    from vlmkern.patch.kv_prune import KVStagePruner

                    KVStagePruner(pruner, m.kv_layer, m.kv_keep, m.kv_threshold).install(handle)
            else:
                # in-LLM methods prune every visual token: images, and video frames
                ids = tuple(i for i in (parts.image_token_id, parts.video_token_id) if i is not None)
                InLLMPruner(m, parts.mm_model, parts.lm, ids, parts.rotary).install(handle)
            _refuse_chunked_prefill(model, handle, m)
    except BaseException:
        handle.revert()  # leave the model as it was
        raise
    handle.note(model, f"[vlmkern] patched with {what}; PatchHandle.revert() undoes it")
    handle.set_attr(model, "_vlmkern_patch", handle)
    return handle


def _renumber(positions, m, parts, model_type: str) -> bool:
    """Whether the pruned prompt is renumbered (see ``apply``'s ``positions``)."""
    if positions not in (None, "keep", "renumber"):
        raise ValueError(f"positions must be 'keep', 'renumber' or None, got {positions!r}")
    pre_llm = m is not None and m.placement == "pre_llm"
    if positions == "renumber":
        if parts.mrope:
            raise ValueError(f"positions='renumber': {model_type} numbers tokens with M-RoPE (t, h, w) "
                             "triples, which are kept; use positions='keep' (the default there)")
        if not pre_llm:
            raise ValueError("positions='renumber' applies to video methods that prune before the first "
                             f"decoder layer (evs, dycoke, vidcom2, fastvid), got {m!r}")
    if positions is None:
        return pre_llm and not parts.mrope
    return positions == "renumber"


def _methods(method, options: dict, parts):
    """``(pre_vit method or None, language-model method or None)`` that ``apply``
    places: from ``method`` (a name built with ``options``, an object, or a list
    of objects), FastV's ``layer`` also checked against the model's depth."""
    if isinstance(method, (list, tuple)):
        if options:
            raise ValueError(f"vlmkern.apply: pass options to the method objects, not to apply "
                             f"(got {sorted(options)} with a list of methods)")
        if not method or any(isinstance(x, str) for x in method):
            raise ValueError(f"method: a list must hold method objects (e.g. [PixelDedup(tol=0), "
                             f"EVS(rate=0.75)]), got {method!r}")
        found = [_one_method(x, {}, parts) for x in method]
    else:
        found = [_one_method(method, options, parts)]
    vit = [x for x in found if x.placement == "pre_vit"]
    llm = [x for x in found if x.placement != "pre_vit"]
    if len(vit) > 1 or len(llm) > 1:
        raise ValueError(f"method: at most one pre_vit method and one language-model method compose, "
                         f"got {found!r}")
    return (vit[0] if vit else None), (llm[0] if llm else None)


def _one_method(method, options: dict, parts):
    if not isinstance(method, str):
        if options:
            raise ValueError(f"vlmkern.apply: pass options to the method object, not to apply "
                             f"(got {sorted(options)} with {method!r})")
        if not any(isinstance(method, cls) for cls in METHODS.values()):
            raise ValueError(f"method must be a name in {sorted(METHODS)} or one of their objects, "
                             f"got {method!r}")
        m = method
    else:
        if method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
        if method == "fastv":
            options = {"layer": 3, "keep_ratio": 0.25, **options}
            check_keep_ratio(options["keep_ratio"])
            layer = options["layer"]
            if isinstance(layer, bool) or not isinstance(layer, int):
                raise ValueError(f"layer must be an int, got {layer!r}")
            if layer == 0:
                raise ValueError(
                    f"layer must be in [1, {len(parts.lm.layers) - 1}], got 0: the input of layer K is "
                    "scored from layer K - 1's attention, and layer 0 has no layer before it")
        m = get_method(method, **options)
    n_layers = len(parts.lm.layers)
    if m.placement == "in_llm":
        if not 1 <= m.layer <= n_layers - 1:
            raise ValueError(f"layer must be in [1, {n_layers - 1}] (the model has {n_layers} decoder "
                             f"layers), got {m.layer}")
    kv = getattr(m, "kv_layer", None)
    if kv is not None and not 1 <= kv <= n_layers - 1:
        raise ValueError(f"kv_layer must be in [1, {n_layers - 1}] (the model has {n_layers} decoder "
                         f"layers), got {kv}")
    return m


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


__all__ = ["apply", "PatchHandle", "SUPPORTED_FAMILIES", "VIDEO_FAMILIES"]
