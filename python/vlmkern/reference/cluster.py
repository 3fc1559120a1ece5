"""Eager reference of the clustering op (DPC-kNN)."""

from __future__ import annotations

import torch


def dpc_knn(x: torch.Tensor, k: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager reference of :func:`vlmkern.ops.dpc_knn`, in float64 on the host:
    the full pairwise distance matrix by differences (not the Gram identity the
    kernels use), sorts for the densities, a dense "denser than" mask for the
    deltas, a stable sort for the centres. Same tie rules as the op."""
    xd = x.detach().double().cpu()
    B, n, D = xd.shape
    centres_all, assign_all = [], []
    for b in range(B):
        diff = xd[b, :, None, :] - xd[b, None, :, :]
        d2 = (diff * diff).sum(-1) / D  # [n, n]
        mean = d2.sort(dim=1).values[:, :k].mean(1)
        idx = torch.arange(n)
        denser = (mean[None, :] < mean[:, None]) | ((mean[None, :] == mean[:, None]) & (idx[None, :] < idx[:, None]))
        far = d2.max()
        delta2 = torch.where(denser, d2, torch.full_like(d2, float("inf"))).min(1).values
        delta2 = torch.where(torch.isinf(delta2), far, delta2)
        rho = torch.exp(-mean)
        score = torch.where(rho == 0, torch.zeros_like(rho), rho * delta2.sqrt())  # 0 * inf is 0
        order = sorted(range(n), key=lambda i: (-score[i].item(), i))
        centres = torch.tensor(sorted(order[:m]), dtype=torch.int64)
        dc = d2[:, centres]  # [n, m]; argmin keeps the first (lower position) minimum
        assign = dc.argmin(1)
        assign[centres] = torch.arange(m)
        centres_all.append(centres)
        assign_all.append(assign)
    dev = x.device
    return (torch.stack(centres_all).to(dev) if B else torch.empty(0, m, dtype=torch.int64, device=dev),
            torch.stack(assign_all).to(dev) if B else torch.empty(0, n, dtype=torch.int64, device=dev))


def dpc_knn_torch(x: torch.Tensor, k: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What the released DPC-kNN codes write in eager PyTorch (``torch.cdist``
    on float32, top-k for the neighbours, a dense mask for the deltas, top-k
    for the centres, ``argmin`` for the assignment), without their random
    tie-breaking noise: the benchmarks' baseline. Returns centres in score
    order and each point's centre as a position in that order."""
    B, n, D = x.shape
    xf = x.float()
    dist = torch.cdist(xf, xf) / D ** 0.5
    near = torch.topk(dist, k=k, dim=-1, largest=False).values
    density = (-(near ** 2).mean(-1)).exp()
    mask = (density[:, None, :] > density[:, :, None]).to(xf.dtype)
    far = dist.flatten(1).max(-1).values[:, None, None]
    delta = (dist * mask + far * (1 - mask)).min(-1).values
    centres = torch.topk(delta * density, k=m, dim=-1).indices
    to_centres = torch.gather(dist, 1, centres[:, :, None].expand(-1, -1, n))
    assign = to_centres.argmin(1)
    assign.scatter_(1, centres, torch.arange(m, device=x.device).expand(B, -1))
    return centres, assign
