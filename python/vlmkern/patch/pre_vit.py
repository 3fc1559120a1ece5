"""Placement ``pre_vit``: :class:`vlmkern.methods.PixelDedup` around the
model's ``get_video_features``.

The wrapper finds the repeated temporal groups (:func:`vlmkern.ops.pixel_dedup`),
runs the original ``get_video_features`` on the kept groups only (each video's
grid with ``t`` reduced to its kept count: Qwen-VL vision towers attend within
a temporal group, so a group's output does not depend on the other groups),
and expands the merged output back to every group, a repeat receiving a copy of
its anchor's tokens. ``pooler_output`` (what the model merges into the
sequence) has the unpatched shape, and so do Qwen3-VL's ``deepstack_features``
(expanded the same way); ``last_hidden_state`` (the tower's
pre-merger states, in its internal window order) is set to None rather than
returned for the kept groups only.
"""

from __future__ import annotations

import functools

import torch

from vlmkern.ops import pixel_dedup
from vlmkern.patch.core import PatchHandle, _name


class PreViTDedup:
    """Installs :class:`vlmkern.methods.PixelDedup` on ``mm_model``.

    Args:
        method: a ``PixelDedup``.
        mm_model: the module with ``get_video_features(pixel_values_videos,
            video_grid_thw, **kwargs)``.
        spatial_merge: patches merged per token side.
    """

    def __init__(self, method, mm_model, spatial_merge: int):
        self.method = method
        self.mm_model = mm_model
        self.spatial_merge = int(spatial_merge)
        # of the last call: source group of every group [G], and groups encoded / total
        self.last_source = None
        self.last_encoded = self.last_groups = 0

    def install(self, handle: PatchHandle) -> None:
        encode = self.mm_model.get_video_features

        @functools.wraps(encode)
        def get_video_features(pixel_values_videos, video_grid_thw=None, **kwargs):
            return self._encode(encode, pixel_values_videos, video_grid_thw, **kwargs)

        handle.set_attr(self.mm_model, "get_video_features", get_video_features,
                        f"{_name(self.mm_model)}.get_video_features: {self.method!r} skips repeated "
                        "temporal groups")
        handle.dedup = self

    def _encode(self, encode, pixels, grid, **kwargs):
        if grid is None:
            raise ValueError(f"vlmkern: {self.method.name} needs video_grid_thw with pixel_values_videos")
        source = pixel_dedup(pixels, grid, self.method.tol)
        G = source.numel()
        kept = source == torch.arange(G, device=source.device)
        self.last_source, self.last_groups = source, G
        n_kept = int(kept.sum())
        self.last_encoded = n_kept
        if n_kept == G:
            return encode(pixels, grid, **kwargs)
        t, h, w = grid[:, 0], grid[:, 1], grid[:, 2]
        video_of_group = torch.repeat_interleave(torch.arange(grid.shape[0], device=grid.device), t)
        rows = (h * w)[video_of_group]  # patch rows per group
        pixels_kept = pixels[torch.repeat_interleave(kept.to(pixels.device), rows.to(pixels.device))]
        grid_kept = grid.clone()
        grid_kept[:, 0] = torch.zeros_like(t).index_add_(0, video_of_group, kept.to(t.dtype))
        out = encode(pixels_kept, grid_kept, **kwargs)
        merged = torch.cat(out.pooler_output) if isinstance(out.pooler_output, (tuple, list)) \
            else out.pooler_output
        # Expand: every group takes the tokens of its source (a kept group).
        m2 = self.spatial_merge ** 2
        tokens = rows // m2  # tokens per group
        kept_tokens = tokens[kept]
        kept_start = torch.cumsum(kept_tokens, 0) - kept_tokens  # first token of each kept group
        rank = torch.cumsum(kept.to(torch.int64), 0) - 1  # kept group -> its rank among kept ones
        start = kept_start[rank[source]]  # [G] first token of each group's source
        group_of_token = torch.repeat_interleave(torch.arange(G, device=grid.device), tokens)
        offset_in_group = torch.arange(int(tokens.sum()), device=grid.device) - \
            torch.repeat_interleave(torch.cumsum(tokens, 0) - tokens, tokens)
        index = start[group_of_token] + offset_in_group
        sizes = (t * h * w // m2).tolist()
        out.pooler_output = torch.split(merged[index.to(merged.device)], sizes)
        deep = getattr(out, "deepstack_features", None)
        if deep is not None:  # Qwen3-VL: one per-token feature list per deepstack level, expanded alike
            out.deepstack_features = [
                torch.split(f[index.to(f.device)], sizes)
                for f in (torch.cat(x) if isinstance(x, (tuple, list)) else x for x in deep)]
        out.last_hidden_state = None
        return out
