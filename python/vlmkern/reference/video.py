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
