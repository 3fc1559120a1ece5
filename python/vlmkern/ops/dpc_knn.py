from __future__ import annotations

import torch

from vlmkern import _build  # noqa: F401  (loads the extension)
from vlmkern.ops import _checks

_op = torch.ops.vlmkern.dpc_knn


def dpc_knn(x: torch.Tensor, k: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Density-peak clustering with k-nearest-neighbour densities (DPC-kNN), batched.

    The clustering FastVID, PruneVid, HoliTom and SparseVLM use to pick
    representative tokens. Per batch item, with ``d(i, j) = |x_i - x_j| /
    sqrt(D)`` (the released codes' scaling):

    - density ``rho_i = exp(-mean of d(i, j)^2 over i's k nearest points)``,
      the point itself (at distance 0) counted among them, as the released
      codes' top-k over the full distance row does;
    - ``delta_i`` = distance to the nearest denser point; the densest point
      gets the largest distance between any two points;
    - the ``m`` points with the largest ``rho * delta`` are the centres (a
      density that underflows to 0 scores 0, even against an infinite
      delta);
    - every point joins its nearest centre (a centre joins itself).

    Deterministic, with no random tie-breaking noise (the released codes add
    some): equal densities rank the lower index as denser, equal scores rank
    the lower index first, and a point equally near two centres joins the one
    with the lower index.

    Args:
        x: ``[B, n, D]`` float32, bfloat16 or float16, finite; only the last
            dimension needs to be contiguous.
        k: neighbours per density, ``1 <= k <= min(n, 64)``.
        m: centres per batch item, ``1 <= m <= n``.

    Returns:
        ``(centres, assign)``: int64 ``[B, m]``, the centres' indices in
        ascending order, and int64 ``[B, n]``, each point's centre as a
        position in ``centres`` (``0 <= assign < m``). A cluster's mean token
        is ``index_add`` of the points over ``assign`` divided by the counts.

    The Gram matrix ``X X^T`` (fp32 accumulation) is the only ``O(n^2 D)``
    work; the distances come from it in float64, ``(|x_i|^2 + |x_j|^2 - 2
    <x_i, x_j>) / D`` clamped at 0, so identical points are at distance exactly
    0. Every Gram entry is one fp32 FMA chain in a fixed channel order on every
    backend and ISA, so the CPU paths and CUDA give the same clusters; the one
    exception is two scores within a rounding error of ``exp`` of each other
    (CUDA's ``exp`` may differ from the host's in the last bit). Features
    whose squares overflow float32 are at infinite distance from every point,
    themselves included: their density is 0, they score 0, and they join the
    first centre (the fp64 reference has no such overflow). Scratch: ``n * n``
    floats for the Gram matrix, on the CPU also ``2 n D`` floats (the rows in
    fp32 and the packed column panels).
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"x: expected a 3-d tensor [B, n, D], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    k = _checks.integer("k", k)
    m = _checks.integer("m", m)
    n = x.shape[1]
    if not 1 <= k <= min(n, 64):
        raise ValueError(f"k: expected 1 <= k <= min(n={n}, 64), got {k}")
    if not 1 <= m <= n:
        raise ValueError(f"m: expected 1 <= m <= n={n}, got {m}")
    return _op(x, k, m)


@torch.library.register_fake("vlmkern::dpc_knn")
def _dpc_knn_fake(x, k, m):
    torch._check(x.dim() == 3, lambda: "x: expected [B, n, D]")
    B, n = x.shape[0], x.shape[1]
    return (x.new_empty((B, m), dtype=torch.int64), x.new_empty((B, n), dtype=torch.int64))
