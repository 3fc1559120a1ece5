"""Shared machinery of the patch layer: the handle that records and reverts what
was patched, and the in-LLM pruner (placement ``in_llm@K``).

How an ``in_llm@K`` method runs inside an unmodified Hugging Face model, with
hooks on the *instance* only (no class or module-global is touched):

1. A pre-hook on the multimodal model (``model.model``) reads ``input_ids`` and
   marks the image tokens; a pre-hook on the language model reads the 2-D
   ``attention_mask`` (padding).
2. At prefill, layer ``K-1``'s ``q_proj``/``k_proj`` outputs are captured by
   forward hooks and RoPE is applied to them with the layer's own
   ``position_embeddings`` (read by a pre-hook on its ``self_attn``): the layer
   runs once, attention is not recomputed and nothing is cached twice.
3. A pre-hook on layer ``K`` scores and selects, then gathers the hidden states,
   the rotary ``(cos, sin)`` and ``position_ids`` of the kept tokens (so they keep
   their original positions, M-RoPE triples included) and builds the attention
   mask of the shorter sequence. Samples of a batch keep different numbers of
   tokens; each is left-padded (masked) to the longest so text stays
   right-aligned, the layout ``generate`` relies on.
4. Layers ``> K`` get the same substitutions by pre-hooks. Their KV cache holds
   only the kept tokens; layers ``< K`` cache everything, so the cache's length
   (``get_seq_length()``, layer 0) and with it every position ``generate`` and
   the model compute stay those of the unpruned sequence.
5. At decode, layer ``K``'s pre-hook builds the mask for layers ``>= K`` from the
   kept-token padding recorded at prefill plus the new tokens' columns, sized
   against layer ``K``'s cache (``create_causal_mask(..., layer_idx=K)``); the
   model's own mask, sized for layer 0, still serves layers ``< K``.

Limits: ``DynamicCache`` (or no cache) only; left padding; image tokens are
found in ``input_ids`` (a call with ``inputs_embeds`` only runs unpruned); a
continuation of a non-empty cache is decoded, not pruned (its new image tokens
are kept); without a cache every forward is a prefill that scores again from
its own last token (as the original FastV does). Prefill logits cover the kept
tokens only (``[B, L', V]``); the last position is always the prompt's last
token, and it is never pruned; ``PatchHandle.to_prompt_positions`` maps them
back to ``[B, L, V]``. Chunked prefill is refused (see ``vlmkern.apply``).
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass

import torch

from vlmkern.ops import gather_kept

try:
    from transformers.cache_utils import DynamicCache
    from transformers.masking_utils import create_causal_mask
except ImportError as e:  # pragma: no cover - transformers is a dependency
    raise ImportError(f"vlmkern.patch needs transformers >= 5.0: {e}") from e


class PatchHandle:
    """What :func:`vlmkern.apply` did to one model, and how to undo it.

    Every hook it registered and every attribute it set on a module instance is
    recorded; :meth:`revert` removes the hooks and restores each attribute (or its
    absence), so the model is exactly as before. Reverting twice is harmless.
    """

    def __init__(self, model: torch.nn.Module, description: str):
        self.model = model
        self.description = description
        self.patched: list[str] = []  # human-readable, one line per change
        self.pruner = None  # the InLLMPruner, for inspection (last_keep_mask)
        self.dedup = None  # the pre_vit PixelDedup placement (last_source, last_encoded)
        self._hooks = []
        self._attrs = []  # (module, name, had_instance_attr, old_value)
        self._swapped = []  # (parent module, child name, original child) from quant=
        self._active = True

    @property
    def active(self) -> bool:
        return self._active

    def add_hook(self, hook_handle, where: str) -> None:
        self._hooks.append(hook_handle)
        self.patched.append(where)

    def set_attr(self, module, name: str, value, where: str | None = None) -> None:
        had = name in module.__dict__
        self._attrs.append((module, name, had, module.__dict__.get(name)))
        setattr(module, name, value)
        if where:
            self.patched.append(where)

    def swapped_module(self, parent, name: str, original, where: str) -> None:
        """Record that ``parent.<name>`` was replaced; revert puts ``original`` back."""
        self._swapped.append((parent, name, original))
        self.patched.append(where)

    def note(self, module: torch.nn.Module, text: str) -> None:
        """Make ``print(model)`` show ``text`` on ``module`` (via ``extra_repr``)."""
        original = module.extra_repr

        def extra_repr():
            base = original()
            return f"{base}\n{text}" if base else text

        self.set_attr(module, "extra_repr", extra_repr)

    def revert(self) -> None:
        """Remove every hook and restore every attribute; a no-op the second time."""
        if not self._active:
            return
        for h in reversed(self._hooks):
            h.remove()
        for module, name, had, old in reversed(self._attrs):
            if had:
                setattr(module, name, old)
            else:
                delattr(module, name)
        for parent, name, original in reversed(self._swapped):
            setattr(parent, name, original)
        self._hooks.clear()
        self._attrs.clear()
        self._swapped.clear()
        if self.pruner is not None:
            self.pruner.release()
        self._active = False

    def to_prompt_positions(self, x: torch.Tensor, fill: float = float("nan")) -> torch.Tensor:
        """Map the output of the last pruning prefill back to the prompt's positions.

        A pruned prefill returns logits (and hidden states) for the kept tokens
        only: ``[B, L', ...]`` with ``L' <= L``, kept tokens in their original
        order, each sample right-aligned (shorter samples start with alignment
        slots). This puts them back: ``[B, L, ...]``, position ``p`` of sample
        ``b`` holding the value computed for prompt token ``p``, and ``fill`` at
        the pruned positions (left padding included: a prefill that prunes
        anything drops it as well). The last position is never pruned, so
        ``x[:, -1]`` is always the next-token distribution.

        Args:
            x: ``[B, L', ...]`` from the last forward or ``generate`` prefill
                that pruned (for example ``model(**inputs).logits``).
            fill: value at pruned positions.
        """
        pruner = self.pruner
        if pruner is None or pruner.last_positions is None:
            raise RuntimeError("to_prompt_positions: no pruning prefill has run with this patch")
        pos, valid = pruner.last_positions, pruner.last_slot_valid
        if x.shape[:2] != pos.shape:
            raise ValueError(f"x: expected [B, L', ...] = {list(pos.shape)} (the last pruned prefill), "
                             f"got {list(x.shape)}")
        B, L = pruner.last_keep_mask.shape
        out = x.new_full((B, L) + tuple(x.shape[2:]), fill)
        b, j = valid.nonzero(as_tuple=True)
        out[b, pos[b, j].to(x.device)] = x[b, j]
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.revert()

    def __repr__(self) -> str:
        state = "active" if self._active else "reverted"
        lines = [f"PatchHandle({self.description}, {state})"]
        if self._active:
            lines += [f"  {p}" for p in self.patched]
        return "\n".join(lines)


@dataclass(frozen=True)
class VideoLayout:
    """Where a family's video tokens are and what shape they have.

    ``key``: the multimodal forward's argument that describes the videos
    (``video_grid_thw``, ``pixel_values_videos``); ``encode_arg``: its position
    among ``get_video_features``'s positional arguments (``generate`` may encode
    the videos before the prefill and call the model without ``key``);
    ``shapes(value)``: per video, in order, ``(T, N, tail)``: ``T`` frames of
    ``N`` tokens each (raster order) and then ``tail`` placeholder tokens that
    are not frame tokens (LLaVA-OneVision's trailing ``image_newline``), which
    the video methods always keep. ``frame_runs``: each frame is a placeholder
    run of its own (Qwen3-VL puts a timestamp and vision start/end tokens
    between frames; ``tail`` is then 0); otherwise a video is one run.
    """
    key: str
    encode_arg: int
    shapes: object
    frame_runs: bool = False


@dataclass
class Parts:
    """What a family adapter hands the pruner.

    ``mm_model``: the module whose forward receives ``input_ids``;
    ``lm``: the decoder stack (``.layers``, ``.config``, ``layers[i].self_attn``
    with ``q_proj``, ``k_proj``, ``head_dim``, ``scaling``);
    ``image_token_id``: the image placeholder id;
    ``rotary``: the family's ``apply_rotary_pos_emb(q, k, cos, sin)``;
    ``video_token_id``: the video placeholder id (None: no video support);
    ``video_layout``: how each video's placeholder run is laid out (a
    :class:`VideoLayout`; None: no video support);
    ``video_grid_key``: the forward argument with each video's patch grid
    ``[num_videos, 3]`` (t, h, w) where the vision tower encodes temporal patch
    groups independently (Qwen-VL: what ``pixel_dedup`` needs; None: the
    family has no such grid); ``spatial_merge``: patches per token side;
    ``mrope``: positions are M-RoPE ``(t, h, w)`` triples (not renumberable).
    """
    mm_model: torch.nn.Module
    lm: torch.nn.Module
    image_token_id: int
    rotary: object
    video_token_id: int | None = None
    video_layout: VideoLayout | None = None
    video_grid_key: str | None = None
    spatial_merge: int = 1
    mrope: bool = False


@dataclass
class _Kept:
    """What a prefill left in a cache's layers >= K: the padding mask of the kept
    layout ``[B, L']`` (alignment slots and original pads false) and the length
    ``L`` of the unpruned prompt."""
    prefix_mask: torch.Tensor
    prompt_len: int
    shift: torch.Tensor | None = None  # renumbered positions: [B, 1] tokens each sample lost


class _CallState:
    """Per-forward scratch space, cleared at the end of each call."""

    def __init__(self):
        self.image_mask = None
        self.reset_text()

    def reset_text(self):
        self.attn2d = None
        self.mask_is_2d = True
        self.capture = False
        self.cos_sin = None
        self.q = None
        self.k = None
        self.overrides = None


class InLLMPruner:
    """Prunes image tokens from the hidden states entering decoder layer ``K``.

    Args:
        method: scores and selects (e.g. :class:`vlmkern.methods.FastV`); needs
            ``layer``, ``score_layer``, ``score(q_last, k, image_mask, scale=...,
            key_padding_mask=...)`` and ``select(scores, image_mask)``.
        mm_model: the module that receives ``input_ids`` (``model.model``).
        lm: the decoder stack (``.layers``, ``.config``).
        image_token_id: the placeholder id of the tokens to prune in
            ``input_ids``, or a tuple of ids (image and video tokens).
        rotary: the family's ``apply_rotary_pos_emb(q, k, cos, sin)``.
    """

    def __init__(self, method, mm_model, lm, image_token_id, rotary):
        self.method = method
        self.mm_model = mm_model
        self.lm = lm
        ids = image_token_id if isinstance(image_token_id, (tuple, list)) else (image_token_id,)
        self.token_ids = torch.tensor([int(i) for i in ids], dtype=torch.long)
        self.rotary = rotary
        self.K = method.layer
        self.state = _CallState()
        self.kept = weakref.WeakKeyDictionary()  # cache -> _Kept
        # of the last pruning prefill: scores [B, L] (NaN off images), kept tokens bool [B, L],
        # and where each of its L' output positions came from: prompt index [B, L'] and
        # whether the slot holds a token (false at the left alignment slots)
        self.last_scores = self.last_keep_mask = None
        self.last_positions = self.last_slot_valid = None
        # positions="renumber": the kept tokens are numbered 0, 1, ... (1-D
        # positions, placement pre_llm only; see vlmkern.apply)
        self.renumber = False

    # -- installation ---------------------------------------------------------
    def install(self, handle: PatchHandle) -> None:
        K, layers = self.K, self.lm.layers
        attn = layers[K - 1].self_attn
        reg = self._call_hooks("reads the tokens to prune from input_ids") + [
            (attn.register_forward_pre_hook(self._attn_pre, with_kwargs=True),
             f"layers[{K - 1}].self_attn: forward pre-hook reads position_embeddings"),
            (attn.q_proj.register_forward_hook(self._q_hook),
             f"layers[{K - 1}].self_attn.q_proj: forward hook captures the last query row"),
            (attn.k_proj.register_forward_hook(self._k_hook),
             f"layers[{K - 1}].self_attn.k_proj: forward hook captures the keys"),
        ]
        for i in range(K, len(layers)):
            hook = self._prune_pre if i == K else self._follow_pre
            what = "prunes image tokens" if i == K else "uses the pruned mask and positions"
            reg.append((layers[i].register_forward_pre_hook(hook, with_kwargs=True),
                        f"layers[{i}]: forward pre-hook {what}"))
        for h, where in reg:
            handle.add_hook(h, where)
        handle.note(attn, f"[vlmkern] {self.method!r}: scores image tokens from this layer's "
                          "last query row and keys (after RoPE)")
        handle.note(layers[K], f"[vlmkern] {self.method!r}: prunes image tokens entering this "
                               "layer; layers >= this one cache only the kept tokens")
        handle.pruner = self
        self._install_deepstack(handle)

    def _install_deepstack(self, handle: PatchHandle) -> None:
        """Qwen3-VL adds "deepstack" visual features to the hidden states at the
        visual positions after its first decoder layers (``lm._deepstack_process(
        hidden_states, visual_pos_masks, visual_embeds)``, one row per visual
        token of the unpruned prompt). Once a prefill is pruned, the wrapper
        maps the mask to the compacted layout and keeps the rows of the kept
        tokens (both in row-major order, which compaction preserves)."""
        process = getattr(self.lm, "_deepstack_process", None)
        if process is None:
            return

        @functools.wraps(process)
        def deepstack_process(hidden_states, visual_pos_masks, visual_embeds):
            keep, order = self.last_keep_mask, self.last_positions
            if visual_pos_masks.shape[1] != hidden_states.shape[1] and keep is not None \
                    and order is not None and order.shape == hidden_states.shape[:2]:
                vis = visual_pos_masks.to(keep.device)
                visual_embeds = visual_embeds[keep[vis].to(visual_embeds.device)]
                visual_pos_masks = vis.gather(1, order) & self.last_slot_valid
            return process(hidden_states, visual_pos_masks, visual_embeds)

        handle.set_attr(self.lm, "_deepstack_process", deepstack_process,
                        f"{_name(self.lm)}._deepstack_process: adds the kept tokens' deepstack features")

    def _call_hooks(self, what_mm_pre: str) -> list:
        """The hooks every placement needs on the multimodal model and the decoder
        stack (per-call state: the tokens, the 2-D mask), as (handle, description)."""
        return [
            (self.mm_model.register_forward_pre_hook(self._mm_pre, with_kwargs=True),
             f"{_name(self.mm_model)}: forward pre-hook {what_mm_pre}"),
            (self.mm_model.register_forward_hook(self._mm_post, always_call=True),
             f"{_name(self.mm_model)}: forward hook clears per-call state"),
            (self.lm.register_forward_pre_hook(self._lm_pre, with_kwargs=True),
             f"{_name(self.lm)}: forward pre-hook reads the 2-D attention_mask"),
            (self.lm.register_forward_hook(self._lm_post, always_call=True),
             f"{_name(self.lm)}: forward hook clears per-call state"),
        ]

    def release(self) -> None:
        self.state = _CallState()
        self.kept = weakref.WeakKeyDictionary()
        self.last_scores = self.last_keep_mask = None
        self.last_positions = self.last_slot_valid = None

    # -- hooks ----------------------------------------------------------------
    def _mm_pre(self, module, args, kwargs):
        if module.training:
            raise RuntimeError(
                f"vlmkern: the {self.method.name} patch is for inference only; call model.eval() "
                "(and run under torch.no_grad()), or revert the patch before training")
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.state.image_mask = None if ids is None else torch.isin(ids, self.token_ids.to(ids.device))

    def _mm_post(self, module, args, output):
        self.state = _CallState()

    def _lm_pre(self, module, args, kwargs):
        self.state.reset_text()
        mask = kwargs.get("attention_mask")
        self.state.mask_is_2d = mask is None or (isinstance(mask, torch.Tensor) and mask.dim() == 2)
        self.state.attn2d = mask if self.state.mask_is_2d else None

    def _lm_post(self, module, args, output):
        self.state.reset_text()  # keeps image_mask: the multimodal forward may not be over

    def _attn_pre(self, module, args, kwargs):
        st = self.state
        hs = kwargs.get("hidden_states", args[0] if args else None)
        cache = kwargs.get("past_key_values")
        st.capture = self._is_prunable_prefill(hs, cache, self.K - 1, st.image_mask[:, :-1]
                                               if st.image_mask is not None else None)
        if st.capture:
            st.cos_sin = kwargs["position_embeddings"]

    def _is_prunable_prefill(self, hs, cache, layer: int, prunable) -> bool:
        """Whether the forward reaching ``layers[layer]`` with ``hs`` is a prefill
        with tokens to prune (``prunable``: bool ``[B, L]`` or None). A cache
        that ``layer`` already holds tokens of is a decode; a reused, emptied
        cache forgets its old prefill. Refuses 4-D masks (compiled caches)."""
        st = self.state
        if st.image_mask is None or hs is None or st.image_mask.shape != hs.shape[:2]:
            return False
        if cache is not None:
            _check_cache(cache)
            if cache.get_seq_length(layer) > 0:
                return False  # continuing a cache: decode, nothing to prune
            self.kept.pop(cache, None)
        if not prunable.any():
            return False
        if not st.mask_is_2d:
            raise NotImplementedError(
                "vlmkern: pruning needs the 2-D attention_mask (batch, seq); got a prepared "
                "4-D mask or mask dict (compiled or static caches are not supported)")
        return True

    def _q_hook(self, module, args, out):
        if self.state.capture:
            # A copy: a view of the last row would keep the whole [B, L, H*d]
            # projection alive through the rest of the layer (its MLP is where
            # the prefill's memory peaks).
            self.state.q = out[:, -1:].clone()

    def _k_hook(self, module, args, out):
        if self.state.capture:
            self.state.k = out

    def _prune_pre(self, module, args, kwargs):
        st = self.state
        hs = args[0] if args else kwargs["hidden_states"]
        cache = kwargs.get("past_key_values")
        if self._prefill_ready(hs, kwargs, cache):
            hs, kwargs = self._prune(hs, kwargs, cache)
        elif cache is not None and cache in self.kept and cache.get_seq_length(self.K) > 0:
            kwargs = self._decode(hs, kwargs, cache)
        else:
            return None
        st.q = st.k = st.cos_sin = None
        if args:
            args = (hs,) + tuple(args[1:])
        else:
            kwargs["hidden_states"] = hs
        return args, kwargs

    def _follow_pre(self, module, args, kwargs):
        if self.state.overrides is None:
            return None
        kwargs = dict(kwargs)
        kwargs.update(self.state.overrides)
        return args, kwargs

    # -- prefill and decode ---------------------------------------------------
    def _prefill_ready(self, hs, kwargs, cache) -> bool:
        """Whether this call of layer K's pre-hook is a prefill to prune (layer
        K-1's projections were captured for it)."""
        return self.state.capture and self.state.k is not None

    def _keep_mask(self, hs, kwargs, pad) -> torch.Tensor:
        """bool ``[B, L]``: the tokens entering layer K that survive (scores and
        selects from layer K-1's captured query row and keys)."""
        st, K = self.state, self.K
        attn = self.lm.layers[K - 1].self_attn
        image_mask = st.image_mask.to(hs.device).clone()
        image_mask[:, -1] = False  # the scoring query itself is never dropped
        if pad is not None and not bool(pad[:, -1].all()):
            raise ValueError(
                f"vlmkern: {self.method.name} scores from the last prompt token and needs left "
                "padding (tokenizer.padding_side = 'left'); got right-padded input")
        q_last, k = self._rotated_qk(attn, st.q, st.k, st.cos_sin)
        scores = self.method.score(q_last, k, image_mask, scale=float(attn.scaling),
                                   key_padding_mask=pad)
        self.last_scores = scores
        return ~image_mask | self.method.select(scores, image_mask)

    def _replace_kept(self, hs: torch.Tensor) -> torch.Tensor:
        """The hidden states to compact after ``_keep_mask``: ``hs`` itself here;
        a placement whose method merges returns a copy with the kept tokens'
        new values."""
        return hs

    def _prune(self, hs, kwargs, cache):
        st, K = self.state, self.K
        B, L, _ = hs.shape
        pad = st.attn2d
        if pad is not None:
            pad = pad.to(hs.device).bool()
        keep_mask = self._keep_mask(hs, kwargs, pad)
        hs = self._replace_kept(hs)
        # Left padding goes too once anything is pruned (otherwise a short sample's
        # padding would hold the batch at its unpruned length).
        if pad is not None and not bool(keep_mask.all()):
            keep_mask = keep_mask & pad
        self.last_keep_mask = keep_mask

        # Kept positions right-aligned: a stable sort puts dropped ones first, in order.
        L_new = int(keep_mask.sum(dim=1).max())
        order = torch.sort(keep_mask.to(torch.int8), dim=1, stable=True).indices[:, L - L_new:]
        valid = keep_mask.gather(1, order)  # false at the alignment slots
        new_pad = valid if pad is None else valid & pad.gather(1, order)
        self.last_positions, self.last_slot_valid = order, valid

        hs = gather_kept(hs, order)
        pos = kwargs.get("position_ids")
        shift = None
        if self.renumber and L_new < L:
            # Each sample's kept tokens numbered 0, 1, ... (as generate numbers a
            # left-padded prompt; RoPE only sees differences, so a plain padded
            # forward, which counts the padding, gives the same logits). The last
            # prompt token is always kept: later tokens move down by what its
            # position lost.
            if pos is None:
                raise NotImplementedError(f"vlmkern: {self.method.name}: renumbered positions need the "
                                          "decoder layers to receive position_ids")
            pos = pos.expand(B, L)
            new_pos = (new_pad.long().cumsum(1) - 1).masked_fill(~new_pad, 1)
            overrides = {"position_embeddings": self.lm.rotary_emb(hs, new_pos), "position_ids": new_pos}
            shift = pos[:, -1:] - new_pos[:, -1:]
        else:
            cos, sin = kwargs["position_embeddings"]
            overrides = {"position_embeddings": (gather_kept(cos, order), gather_kept(sin, order))}
            if pos is not None:
                overrides["position_ids"] = gather_kept(pos, order)
        overrides["attention_mask"] = create_causal_mask(
            config=self.lm.config, inputs_embeds=hs, attention_mask=new_pad,
            past_key_values=cache, position_ids=None, layer_idx=K)
        if cache is not None:
            self.kept[cache] = _Kept(prefix_mask=new_pad, prompt_len=L, shift=shift)
        st.overrides = overrides
        kwargs = dict(kwargs)
        kwargs.update(overrides)
        return hs, kwargs

    def _decode(self, hs, kwargs, cache):
        st, rec = self.state, self.kept[cache]
        q_len = hs.shape[1]
        n_new = cache.get_seq_length(self.K) + q_len - rec.prefix_mask.shape[1]
        prefix = rec.prefix_mask.to(hs.device)
        if st.attn2d is not None:
            tail = st.attn2d[:, rec.prompt_len:].to(device=hs.device, dtype=torch.bool)
            if tail.shape[1] != n_new or tail.shape[0] != prefix.shape[0]:
                raise RuntimeError(
                    f"vlmkern: attention_mask covers {st.attn2d.shape[1]} tokens but the cache holds a "
                    f"pruned prompt of {rec.prompt_len} tokens plus {n_new} new ones; pass the mask of "
                    "the whole sequence (as generate does)")
        else:
            tail = torch.ones((prefix.shape[0], n_new), dtype=torch.bool, device=hs.device)
        mask = create_causal_mask(
            config=self.lm.config, inputs_embeds=hs, attention_mask=torch.cat([prefix, tail], dim=1),
            past_key_values=cache, position_ids=None, layer_idx=self.K)
        st.overrides = {"attention_mask": mask}
        if rec.shift is not None:  # renumbered prompt: later tokens move down by what it lost
            pos = kwargs.get("position_ids")
            if pos is None:
                raise NotImplementedError(f"vlmkern: {self.method.name}: renumbered positions need the "
                                          "decoder layers to receive position_ids")
            pos = pos - rec.shift.to(pos.device)
            st.overrides["position_ids"] = pos
            st.overrides["position_embeddings"] = self.lm.rotary_emb(hs, pos)
        kwargs = dict(kwargs)
        kwargs.update(st.overrides)
        return kwargs

    def _rotated_qk(self, attn, q_raw, k_raw, cos_sin):
        """Layer K-1's last query row ``[B, Hq, 1, D]`` and keys ``[B, Hkv, L, D]``
        after RoPE, from the captured projections."""
        B, L, _ = k_raw.shape
        D = attn.head_dim
        q = q_raw.view(B, 1, -1, D)
        k = k_raw.view(B, L, -1, D)
        if getattr(attn, "q_norm", None) is not None:  # Qwen3: RMSNorm per head before RoPE
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        cos, sin = cos_sin
        q, _ = self.rotary(q, q, cos[:, -1:], sin[:, -1:])
        _, k = self.rotary(k, k, cos, sin)
        return q, k


def _check_cache(cache) -> None:
    if not isinstance(cache, DynamicCache) or getattr(cache, "is_compileable", False) \
            or any(getattr(cache, "is_sliding", []) or []):
        raise NotImplementedError(
            f"vlmkern: in-LLM pruning needs a DynamicCache without sliding layers (layers >= K hold "
            f"fewer tokens than layers < K); got {type(cache).__name__}")


def _name(module: torch.nn.Module) -> str:
    return type(module).__name__
