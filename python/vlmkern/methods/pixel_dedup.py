"""Pixel-level temporal deduplication before the vision encoder (vlmkern's own
placement ``pre_vit``; no published method skips the encoder for repeated
frames).

- **placement** ``pre_vit``: around the model's ``get_video_features``. Temporal
  patch groups (Qwen-VL: two input frames each) that repeat the last kept group
  of their video are not encoded; their encoder output is a copy of that
  group's. The language model receives as many video tokens as without the
  patch, at the same positions, so the grid, the M-RoPE positions and any text
  stay as they are.
- **score**: the mean absolute difference of a group's normalised pixel values
  (the processor's output) to the anchor, the last kept group of the same video
  (:func:`vlmkern.ops.pixel_dedup`).
- **select**: a group with difference ``<= tol`` is a repeat; group 0 is always
  encoded. ``tol = 0`` (the default) skips exact repeats only, and then the
  logits equal the unpatched model's up to the floating-point effect of running
  the encoder on fewer groups at once. The number of encoded groups depends on
  the data (a threshold rule).

``drop=True``: the repeats' tokens are also dropped before the first decoder
layer (a ``pre_llm`` step, :class:`RepeatDrop`), keeping every other token at
its original position (M-RoPE triples; Qwen3-VL's timestamp text stays, so the
prompt and the positions remain consistent). How many tokens remain then
depends on the data. To combine deduplication with a video method, keep
``drop=False`` and compose (``vlmkern.apply(model, [PixelDedup(tol),
EVS(rate)])``): the repeats' features are identical to the anchor's, so EVS
ranks them last.
"""

from __future__ import annotations

import math
import numbers

import torch


class PixelDedup:
    """Skip the vision encoder for temporal patch groups that repeat.

    Args:
        tol: largest mean absolute difference (normalised pixel units, i.e.
            after the processor's mean/std normalisation) at which a group
            counts as a repeat of its anchor; ``>= 0``. Default 0: exact
            repeats only.
    """

    name = "pixel_dedup"
    placement = "pre_vit"
    modality = "video"

    def __init__(self, tol: float = 0.0, drop: bool = False):
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (math.isfinite(tol) and tol >= 0):
            raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
        if not isinstance(drop, bool):
            raise ValueError(f"drop must be True or False, got {drop!r}")
        self.tol = float(tol)
        self.drop = drop

    def __repr__(self) -> str:
        return f"PixelDedup(tol={self.tol:g}{', drop=True' if self.drop else ''})"


class RepeatDrop:
    """The ``pre_llm`` half of ``PixelDedup(drop=True)``: per video, drop the
    frames whose tokens are bit-for-bit those of the last kept frame (which is
    what the deduplicated encoder gives a repeated group: a copy of its
    anchor's output). Frame 0 is always kept; the other tokens keep their
    positions. Installed by ``vlmkern.apply``, not constructed by users."""

    name = "pixel_dedup"
    placement = "pre_llm"
    layer = 0
    modality = "video"

    def __init__(self, dedup: PixelDedup):
        self.dedup = dedup

    def __repr__(self) -> str:
        return f"RepeatDrop({self.dedup!r})"

    def select(self, features: torch.Tensor) -> torch.Tensor:
        """``features [V, T, N, D]`` -> bool ``[V, T * N]``: false on the
        tokens of repeated frames."""
        V, T, N, _ = features.shape
        keep = torch.ones((V, T), dtype=torch.bool, device=features.device)
        anchor = features[:, 0]
        for t in range(1, T):
            repeat = (features[:, t] == anchor).flatten(1).all(1)
            keep[:, t] = ~repeat
            anchor = torch.where(repeat.view(V, 1, 1), anchor, features[:, t])
        return keep.repeat_interleave(N, dim=1)
