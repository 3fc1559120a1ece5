from __future__ import annotations

import math
import numbers

import torch

from vlmkern import _build  # noqa: F401  (loads the extension)
from vlmkern.ops import _checks

_op = torch.ops.vlmkern.temporal_select

MODES = ("global", "per_frame")


def _ref_list(ref, T: int, x: torch.Tensor) -> list[int]:
    if ref is None:
        return list(range(-1, T - 1))
    if isinstance(ref, torch.Tensor):
        _checks.integer_tensor("ref", ref)
        _checks.same_device("temporal_select", x=x, ref=ref)
        if ref.dim() != 1:
            raise ValueError(f"ref: expected an int64 tensor of shape [T]=[{T}], got shape {tuple(ref.shape)}")
        return [int(v) for v in ref.tolist()]  # one read back (a device sync for a CUDA ref)
    if isinstance(ref, (str, bytes)) or not hasattr(ref, "__iter__"):
        raise TypeError(f"ref: expected an int64 tensor [T], a sequence of ints or None, got "
                        f"{type(ref).__name__}")
    return [_checks.integer(f"ref[{i}]", v) for i, v in enumerate(ref)]


def temporal_select(x: torch.Tensor, ref, mode: str, keep: int, H: int, W: int, *, eps: float = 1e-8,
                    features: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Select each video's kept tokens by temporal redundancy, in one call: the
    per-token similarity to a reference frame, the selection, the tokens' grid
    positions and the compacted features.

    Fused design: the op takes the features, not precomputed similarities. It
    computes ``cos(x[b,t,n], x[b,ref[t],n])`` with fp32 sums in one pass over the
    features (the same per-ISA loops and ``math/cosine.h`` as
    :func:`frame_similarity`, so the cosines are bit-identical to its output on
    the same machine), ranks the tokens, and gathers the kept rows.

    Args:
        x: ``[B, T, N, D]`` float32, bfloat16 or float16: ``B`` videos of ``T``
            frames of ``N = H * W`` tokens (raster order) with ``D`` channels.
            Only the last dimension needs to be contiguous.
        ref: the reference frame of each frame, ``ref[t]`` in ``[-1, t)``
            (``-1``: none): an integer tensor ``[T]`` (read on the host), a
            sequence of ints, or ``None`` for the previous frame (``ref[t] =
            t - 1``, frame 0 without one).
        mode: ``"global"`` (EVS): one ranking per video over its ``T * N``
            tokens by ``-cos`` (least similar first), frames without a
            reference forced (score ``+inf``: kept first, so kept whole when
            ``keep >= N`` for frame 0 alone); ``keep`` in ``[0, T * N]``.
            ``"per_frame"`` (DyCoke stage 1): in each frame with a reference
            the ``keep`` tokens least similar to it, frames without one kept
            whole; ``keep`` in ``[0, N]``.
            In both, ties go toward the lower (flat) index, NaN similarities
            rank last, ``-0.0 == +0.0`` (``vlmkern.ops.topk_indices``' order).
        keep: the budget (see ``mode``).
        H, W: the frame grid, ``H * W == N``; only the triples depend on it.
        eps: the cosine's denominator floor (as :func:`frame_similarity`).
        features: ``False`` skips the compaction (the third result is then an
            empty ``[0]`` tensor of ``x``'s dtype).

    Returns:
        ``(indices, thw, kept)``: int64 ``[B, K]`` kept flat indices ``t * N +
        n`` per video in ascending (original) order; int64 ``[B, K, 3]`` their
        ``(t, h, w)`` with ``n = h * W + w``; ``[B, K, D]`` the rows of ``x`` at
        those tokens, in ``x``'s dtype (bit copies). ``K`` depends on the
        shapes and ``ref`` only: ``keep`` (global) or ``sum_t (N if ref[t] < 0
        else keep)`` (per frame), so the fake kernel gives exact shapes.

    NaN or inf in a token's row (or its reference's) makes its cosine NaN, so it
    ranks last (kept only when the budget exceeds the finite ones); a frame
    without a reference is kept regardless of its values.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x: expected a 4-d tensor [B, T, N, D], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode: expected 'global' or 'per_frame', got {mode!r}")
    keep = _checks.integer("keep", keep)
    H = _checks.integer("H", H)
    W = _checks.integer("W", W)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps: expected a finite float > 0, got {eps!r}")
    if not isinstance(features, bool):
        raise TypeError(f"features: expected a bool, got {features!r}")
    refs = _ref_list(ref, x.shape[1], x)
    return _op(x, refs, mode, keep, H, W, float(eps), features)


def kept_count(mode: str, ref: list[int], N: int, keep: int) -> int:
    """``K`` of :func:`temporal_select` from the shapes and ``ref``."""
    return keep if mode == "global" else sum(N if r < 0 else keep for r in ref)


@torch.library.register_fake("vlmkern::temporal_select")
def _temporal_select_fake(x, ref, mode, keep, H, W, eps, features=True):
    torch._check(x.dim() == 4, lambda: "x: expected [B, T, N, D]")
    B, T, N, D = x.shape
    torch._check(len(ref) == T, lambda: "ref: expected T entries")
    K = kept_count(mode, list(ref), N, keep)
    idx = x.new_empty((B, K), dtype=torch.int64)
    thw = x.new_empty((B, K, 3), dtype=torch.int64)
    feat = x.new_empty((B, K, D)) if features else x.new_empty((0,))
    return idx, thw, feat
