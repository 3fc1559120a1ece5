from __future__ import annotations

import math
import numbers

import torch

from vlmkern import _build  # noqa: F401  (loads the extension)
from vlmkern.ops import _checks

_op = torch.ops.vlmkern.frame_similarity


def previous_frame_ref(T: int, device=None) -> torch.Tensor:
    """int64 ``[T]``: ``ref[t] = t - 1``, and ``-1`` (no reference) for frame 0."""
    return torch.arange(-1, T - 1, dtype=torch.int64, device=device)


def frame_similarity(x: torch.Tensor, ref: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Cosine similarity of every token to the same position in a reference frame.

    Args:
        x: ``[B, T, N, D]`` float32, bfloat16 or float16: ``B`` videos of ``T``
            frames, ``N`` tokens per frame (any fixed order, e.g. raster),
            ``D`` channels. Only the last dimension needs to be contiguous.
        ref: int64 ``[T]``, the reference frame of each frame: an index in
            ``[0, T)`` other than the frame itself, or ``-1`` for none. Default:
            the previous frame (``ref[t] = t - 1``; frame 0 has none). A window
            anchor per frame (DyCoke) is ``ref[t] = anchor(t)``, with ``-1`` at
            the anchors themselves.
        eps: the denominator's floor.

    Returns:
        float32 ``[B, T, N]``: ``<x[b,t,n], x[b,ref[t],n]> / max(|x[b,t,n]| *
        |x[b,ref[t],n]|, eps)``, NaN where ``ref[t] == -1``. The sums are fp32
        (one pass over ``D``); the final division is done in fp64, so two
        identical rows give exactly 1.0 on every backend. NaN in a row gives
        NaN. One read of the features: each task walks the frames of a tile of
        token positions in order, so the reference rows come from cache.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x: expected a 4-d tensor [B, T, N, D], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps: expected a finite float > 0, got {eps!r}")
    if ref is None:
        ref = previous_frame_ref(x.shape[1], x.device)
    else:
        if not isinstance(ref, torch.Tensor):
            raise TypeError(f"ref: expected an int64 tensor [T], got {type(ref).__name__}")
        _checks.integer_tensor("ref", ref)
        _checks.same_device("frame_similarity", x=x, ref=ref)
        ref = ref.to(torch.int64)
    return _op(x, ref, float(eps))


@torch.library.register_fake("vlmkern::frame_similarity")
def _frame_similarity_fake(x, ref, eps):
    _checks.same_device("frame_similarity", x=x, ref=ref)
    torch._check(x.dim() == 4, lambda: "x: expected [B, T, N, D]")
    return x.new_empty(x.shape[:3], dtype=torch.float32)
