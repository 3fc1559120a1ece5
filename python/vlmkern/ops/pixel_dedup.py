from __future__ import annotations

import math
import numbers

import torch

from vlmkern import _build  # noqa: F401  (loads the extension)
from vlmkern.ops import _checks

_op = torch.ops.vlmkern.pixel_dedup


def pixel_dedup(pixel_values: torch.Tensor, grid: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
    """Which temporal patch groups of videos repeat an earlier one, before the
    vision encoder.

    Args:
        pixel_values: ``[P, F]`` float32/bfloat16/float16: the processor's patch
            rows of every video in turn (Qwen-VL ``pixel_values_videos``: video
            ``v`` has ``t * h * w`` rows, its temporal groups contiguous slabs of
            ``h * w`` rows; ``F`` values per patch, already normalised).
        grid: int64 ``[V, 3]``: each video's patch grid ``(t, h, w)``
            (``video_grid_thw``).
        tol: a group matches when the mean absolute difference of its values to
            the *anchor* (the last kept group of its video, group 0 first) is
            ``<= tol``; 0 matches exact repeats only.

    Returns:
        int64 ``[sum t]``: for each group (videos in order), the global index of
        the group whose encoder output it can reuse: itself where kept, else its
        anchor (always an earlier kept group of the same video). Kept groups are
        ``source == arange``. A NaN value never matches. The fp64 sums are added
        in a fixed order (the result does not depend on the thread count); the
        CUDA kernel adds in another order, so the two can differ only for a
        group whose mean lies within fp64 rounding of ``tol``.
    """
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol: expected a finite float >= 0, got {tol!r}")
    if not isinstance(grid, torch.Tensor):
        raise TypeError(f"grid: expected an int64 tensor [V, 3], got {type(grid).__name__}")
    _checks.integer_tensor("grid", grid)
    _checks.same_device("pixel_dedup", pixel_values=pixel_values, grid=grid)
    return _op(pixel_values, grid.to(torch.int64), float(tol))


@torch.library.register_fake("vlmkern::pixel_dedup")
def _pixel_dedup_fake(pixel_values, grid, tol):
    _checks.same_device("pixel_dedup", pixel_values=pixel_values, grid=grid)
    n = torch.library.get_ctx().new_dynamic_size()
    return pixel_values.new_empty((n,), dtype=torch.int64)
