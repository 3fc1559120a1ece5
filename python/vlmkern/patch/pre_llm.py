"""Placement ``pre_llm`` for video methods (EVS, DyCoke, VidCom2, FastVID):
prunes the projected video tokens entering decoder layer 0 (and, for a method
that merges, gives the kept ones new values).

It is the in-LLM pruner of :mod:`vlmkern.patch.core` with ``K = 0`` and a
different scorer: instead of layer ``K - 1``'s attention, each video's own
features (the hidden states at its placeholder tokens, which are the vision
encoder's merged output) are cut into frames and handed to the method. The
compaction is shared: kept tokens keep their original positions (M-RoPE
triples included), samples are left-padded to the longest kept length, and
every decoder layer caches only the kept tokens.

Because layer 0 now caches the shorter sequence too, ``get_seq_length()`` of
the cache is the *kept* length. ``generate`` does not rely on it (it tracks
positions and the attention mask itself), and a hand-driven decode step that
passes neither ``attention_mask`` nor ``position_ids`` gets an all-ones mask of
the unpruned length from the pre-hook, so the model's positions stay those of
the unpruned prompt.
"""

from __future__ import annotations

import functools

import torch

from vlmkern.patch.core import InLLMPruner, PatchHandle, _name


class PreLLMPruner(InLLMPruner):
    """Prunes video tokens from the input of decoder layer 0 at prefill.

    Args:
        method: needs ``layer == 0`` and ``select(features [V, T, N, D]) -> bool
            [V, T * N]`` (e.g. :class:`vlmkern.methods.EVS`); a method that
            merges has ``reduce(features) -> (keep bool [V, T * N], merged [V,
            K, D] or None)`` instead, ``merged`` holding the ``K`` kept tokens'
            new values in their order (every video keeps ``K``), which are
            written at the kept positions before the compaction
            (:class:`vlmkern.methods.FastVID`).
        mm_model, lm, rotary: as for :class:`InLLMPruner`.
        video_token_id: the video placeholder id in ``input_ids``.
        layout: the family's :class:`vlmkern.patch.core.VideoLayout` (which
            forward argument describes the videos, and each video's frames x
            tokens per frame + trailing non-frame tokens).
    """

    def __init__(self, method, mm_model, lm, video_token_id: int, rotary, *, layout):
        super().__init__(method, mm_model, lm, video_token_id, rotary)
        self.layout = layout
        self._grid = None  # the layout argument of this forward
        self._encoded_grid = None  # the layout argument of the last get_video_features call
        self._writes = []  # a merging method's (sample, positions, rows) of this prefill

    def install(self, handle: PatchHandle) -> None:
        layers = self.lm.layers
        reg = self._call_hooks("reads video tokens and grids") + [
            (layers[0].register_forward_pre_hook(self._prune_pre, with_kwargs=True),
             "layers[0]: forward pre-hook prunes video tokens"),
        ]
        for i in range(1, len(layers)):
            reg.append((layers[i].register_forward_pre_hook(self._follow_pre, with_kwargs=True),
                        f"layers[{i}]: forward pre-hook uses the pruned mask and positions"))
        for h, where in reg:
            handle.add_hook(h, where)
        # generate() may encode the videos before prefill (get_video_features) and
        # then call the model with the encoder outputs and without the videos'
        # description: record it where the videos are encoded.
        encode = self.mm_model.get_video_features
        key, pos = self.layout.key, self.layout.encode_arg

        @functools.wraps(encode)
        def get_video_features(*args, **kwargs):
            self._encoded_grid = kwargs.get(key, args[pos] if len(args) > pos else None)
            return encode(*args, **kwargs)

        handle.set_attr(self.mm_model, "get_video_features", get_video_features,
                        f"{_name(self.mm_model)}.get_video_features: records each video's {key}")
        handle.note(layers[0], f"[vlmkern] {self.method!r}: prunes video tokens entering this layer; "
                               "every layer caches only the kept tokens")
        handle.pruner = self
        self._install_deepstack(handle)

    # -- hooks ----------------------------------------------------------------
    def _mm_pre(self, module, args, kwargs):
        super()._mm_pre(module, args, kwargs)
        self._grid = kwargs.get(self.layout.key)
        cache = kwargs.get("past_key_values")
        if (cache is not None and cache in self.kept and kwargs.get("attention_mask") is None
                and kwargs.get("position_ids") is None and cache.get_seq_length(0) > 0):
            # Without a mask or positions the model numbers a decode step from the
            # cache length, which is the kept length here: pass the positions of the
            # unpruned sequence instead (the model's own rule for this case, with
            # the unpruned past length; M-RoPE models add their rope_deltas).
            ids = kwargs.get("input_ids", args[0] if args else None)
            x = ids if ids is not None else kwargs.get("inputs_embeds")
            mrope = hasattr(module, "rope_deltas")
            deltas = getattr(module, "rope_deltas", None)
            if x is None or (mrope and deltas is None):
                raise NotImplementedError(
                    f"vlmkern: {self.method.name}: a decode step on a pruned cache needs "
                    "position_ids (or the attention_mask) of the unpruned sequence")
            B, q = x.shape[:2]
            rec = self.kept[cache]
            past = rec.prompt_len + cache.get_seq_length(0) - rec.prefix_mask.shape[1]
            pos = torch.arange(past, past + q, device=x.device).view(1, q).expand(B, q)
            if mrope:
                pos = pos.view(1, B, q).expand(3, B, q) + deltas.to(x.device).repeat_interleave(
                    B // deltas.shape[0], dim=0).view(1, B, 1)
            kwargs = dict(kwargs)
            kwargs["position_ids"] = pos
            return args, kwargs
        return None

    def _mm_post(self, module, args, output):
        super()._mm_post(module, args, output)
        self._grid = None

    def _prefill_ready(self, hs, kwargs, cache) -> bool:
        return self._is_prunable_prefill(hs, cache, 0, self.state.image_mask)

    def _keep_mask(self, hs, kwargs, pad) -> torch.Tensor:
        video = self.state.image_mask.to(hs.device)
        keep = ~video
        self.last_scores = None
        self._writes = []
        reduce = getattr(self.method, "reduce", None)
        for (T, N), spans in self._video_spans(video).items():
            feats = torch.stack([hs[b, idx].reshape(T, N, -1) for b, idx, _ in spans])
            if reduce is not None:  # a merging method: [V, T * N] and the kept rows [V, K, D] (or None)
                kept, merged = reduce(feats)
            else:
                kept, merged = self.method.select(feats), None  # [V, T * N]
            for v, ((b, idx, tail), k) in enumerate(zip(spans, kept)):
                keep[b, idx] = k
                keep[b, tail] = True  # not frame tokens
                if merged is not None:
                    self._writes.append((b, idx[k], merged[v]))
        return keep

    def _replace_kept(self, hs: torch.Tensor) -> torch.Tensor:
        """A merging method's new values at its kept positions, in a copy (the
        hidden states entering layer 0 may be the caller's ``inputs_embeds``)."""
        writes, self._writes = self._writes, []
        if not writes:
            return hs
        hs = hs.clone()
        for b, pos, rows in writes:
            hs[b, pos] = rows.to(device=hs.device, dtype=hs.dtype)
        return hs

    def _video_spans(self, video: torch.Tensor) -> dict:
        """``{(T, N): [(sample, frame_idx, tail_idx), ...]}``: where each video's
        ``T * N`` frame tokens (frame-major, raster order within a frame) and
        its trailing non-frame tokens are in the sequence, from the placeholder
        runs in ``input_ids`` matched in order (sample-major) with the videos
        the layout argument describes; grouped by shape so that same-shape
        videos are scored in one call."""
        key, per_frame = self.layout.key, self.layout.frame_runs
        grid = self._grid if self._grid is not None else self._encoded_grid
        self._encoded_grid = None  # consumed by this prefill
        if grid is None:
            raise ValueError(f"vlmkern: {self.method.name}: the prompt has video tokens but no "
                             f"{key} was passed")
        shapes = self.layout.shapes(grid)
        v = video.to(torch.int8)
        edges = torch.diff(v, dim=1, prepend=torch.zeros_like(v[:, :1]),
                           append=torch.zeros_like(v[:, :1]))
        starts = (edges == 1).nonzero().tolist()  # sample-major, ascending
        ends = (edges == -1).nonzero().tolist()
        runs = [(b, s, e) for (b, s), (_, e) in zip(starts, ends)]
        want = sum(T if per_frame else 1 for T, _, _ in shapes)
        if len(runs) != want:
            what = f"{want} frames of {len(shapes)} videos" if per_frame else f"{len(shapes)} videos"
            raise ValueError(f"vlmkern: {self.method.name}: input_ids hold {len(runs)} runs of video "
                             f"tokens but {key} describes {what}")
        out: dict = {}
        i = 0
        for T, N, tail in shapes:
            group = runs[i:i + (T if per_frame else 1)]
            i += len(group)
            b = group[0][0]
            length = N if per_frame else T * N + tail
            for rb, s, e in group:
                if rb != b:
                    raise ValueError(f"vlmkern: {self.method.name}: the frames of one video are split "
                                     f"between samples {b} and {rb}")
                if e - s != length:
                    extra = f" + {tail}" if tail else ""
                    shape = f"frame of {N} tokens" if per_frame else f"video of {T} frames x {N} tokens"
                    raise ValueError(
                        f"vlmkern: {self.method.name}: a {shape} has {e - s} placeholder tokens in "
                        f"sample {b}, expected {length - tail}{extra}")
            idx = torch.cat([torch.arange(s, e, device=video.device) for _, s, e in group])
            out.setdefault((T, N), []).append((b, idx[:T * N], idx[T * N:]))
        return out
