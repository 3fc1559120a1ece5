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

Not done: dropping repeated groups from the sequence (it would shrink the grid,
the M-RoPE positions and, for Qwen3-VL, the timestamp text); compose with a
video method (``vlmkern.apply(model, [PixelDedup(tol), EVS(rate)])``) to drop
the repeats' tokens instead: their features are identical to the anchor's, so
EVS ranks them last.
"""

from __future__ import annotations

import math
import numbers


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

    def __init__(self, tol: float = 0.0):
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (math.isfinite(tol) and tol >= 0):
            raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
        self.tol = float(tol)

    def __repr__(self) -> str:
        return f"PixelDedup(tol={self.tol:g})"
