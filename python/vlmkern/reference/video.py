"""Eager references of the temporal (video) ops."""

from __future__ import annotations

import torch


def frame_similarity(x: torch.Tensor, ref: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Eager reference of :func:`vlmkern.ops.frame_similarity`, in float64:
    gathers the reference frames (a full copy of ``x``), then the definition
    ``<x, r> / max(|x| |r|, eps)``; NaN where ``ref == -1``."""
    B, T, N, D = x.shape
    if ref is None:
        ref = torch.arange(-1, T - 1, dtype=torch.int64)
    ref = ref.to(device=x.device, dtype=torch.int64)
    xd = x.double()
    r = xd[:, ref.clamp(min=0)]
    dot = (xd * r).sum(-1)
    den = ((xd * xd).sum(-1) * (r * r).sum(-1)).sqrt().clamp(min=eps)
    out = (dot / den).float()
    return out.masked_fill((ref < 0).view(1, T, 1), float("nan"))


def frame_similarity_torch(x: torch.Tensor) -> torch.Tensor:
    """What eager PyTorch code writes for the previous-frame similarity (vLLM's
    EVS, LightCompress' video methods): ``F.cosine_similarity`` of ``x[:, 1:]``
    and ``x[:, :-1]`` in the input dtype. The benchmarks' baseline; ``[B, T-1, N]``."""
    return torch.nn.functional.cosine_similarity(x[:, 1:], x[:, :-1], dim=-1)


def pixel_dedup(pixel_values: torch.Tensor, grid: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
    """Eager reference of :func:`vlmkern.ops.pixel_dedup`: per video, a Python
    walk over its temporal groups in float64 (mean of ``|group - anchor|``)."""
    x = pixel_values.detach().double().cpu()
    out, row, g0 = [], 0, 0
    for t, h, w in grid.tolist():
        slabs = x[row:row + t * h * w].reshape(t, -1)
        anchor = 0
        for i in range(t):
            if i == 0:
                out.append(g0)
                continue
            mad = (slabs[i] - slabs[anchor]).abs().mean().item() if slabs.shape[1] else 0.0
            if mad <= tol:  # NaN compares false: kept
                out.append(g0 + anchor)
            else:
                out.append(g0 + i)
                anchor = i
        row += t * h * w
        g0 += t
    return torch.tensor(out, dtype=torch.int64, device=pixel_values.device)
