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


def _ranked(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` best of a 1-d score vector, ascending: larger first, NaN last,
    ties toward the lower index (two stable sorts)."""
    nan = torch.isnan(scores)
    order = torch.argsort(torch.where(nan, torch.zeros_like(scores), scores), descending=True, stable=True)
    order = order[torch.argsort(nan[order].to(torch.int8), stable=True)]
    return order[:k].sort().values


def temporal_select(x: torch.Tensor, ref=None, mode: str = "global", keep: int = 0, H: int = 1,
                    W: int | None = None, eps: float = 1e-8, sim: torch.Tensor | None = None):
    """Eager reference of :func:`vlmkern.ops.temporal_select`: the similarities
    of :func:`frame_similarity` above (float64 sums, rounded to float32; or
    ``sim`` [B, T, N] if given), the score ``-cos`` (``+inf`` for frames without
    a reference in global mode), a stable sort per video (global) or per frame
    (per_frame), the kept indices sorted back, then indexing for the triples and
    the rows. Returns ``(indices, thw, kept features)``."""
    B, T, N, D = x.shape
    W = N if W is None else W
    refs = list(range(-1, T - 1)) if ref is None else [int(r) for r in (ref.tolist() if isinstance(ref, torch.Tensor) else ref)]
    ref_t = torch.tensor(refs, dtype=torch.int64)
    if sim is None:
        sim = frame_similarity(x, ref_t, eps) if T else x.new_empty((B, 0, N), dtype=torch.float32)
    score = (-sim.float()).cpu()
    rows = []
    for b in range(B):
        if mode == "global":
            s = score[b].clone()
            s[ref_t < 0] = float("inf")
            rows.append(_ranked(s.reshape(-1), keep))
        else:
            parts = []
            for t in range(T):
                if refs[t] < 0:
                    parts.append(torch.arange(N) + t * N)
                else:
                    parts.append(_ranked(score[b, t], keep) + t * N)
            rows.append(torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64))
    K = keep if mode == "global" else sum(N if r < 0 else keep for r in refs)
    idx = torch.stack(rows) if B else torch.zeros((0, K), dtype=torch.int64)
    idx = idx.reshape(B, K)
    t, n = idx // max(N, 1), idx % max(N, 1)
    thw = torch.stack([t, n // max(W, 1), n % max(W, 1)], dim=-1)
    xc = x.detach().cpu()
    feat = xc[torch.arange(B).view(B, 1), t, n] if B and K else xc.new_empty((B, K, D))
    return idx.to(x.device), thw.to(x.device), feat.to(x.device)
