from __future__ import annotations

import torch

from vlmkern import _build  # noqa: F401  (loads the extension)

_op = torch.ops.vlmkern.topk_indices


def topk_indices(scores: torch.Tensor, keep: int | torch.Tensor, k_max: int | None = None) -> torch.Tensor:
    """Indices of the ``keep`` largest scores of each row, in ascending order.

    Args:
        scores: ``[B, N]`` float32, bfloat16 or float16.
        keep: an int (every row keeps that many) or an int64 ``Tensor[B]``
            (per-row budgets, ``0 <= keep[b] <= N``).
        k_max: width of the result; default ``keep`` (int) or ``max(keep)``
            (tensor; computing it reads ``keep`` on the host). Pass it to avoid
            the read, e.g. under ``torch.compile``.

    Returns:
        int64 ``[B, k_max]``: row ``b`` holds its ``keep[b]`` kept indices in
        ascending order, then ``-1`` padding. Ranking: larger score first, NaN
        after every number (even -inf), -0.0 equal to +0.0, ties toward the
        lower index. Deterministic on every backend and thread count.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores: expected a 2-d tensor [B, N], got shape {tuple(scores.shape)}")
    B, N = scores.shape
    if isinstance(keep, torch.Tensor):
        if keep.dim() != 1 or keep.shape[0] != B:
            raise ValueError(f"keep: expected a tensor of shape [B]=[{B}], got {tuple(keep.shape)}")
        keep_t = keep.to(device=scores.device, dtype=torch.int64)
        if k_max is None:
            lo, hi = (int(v) for v in torch.aminmax(keep_t)) if B else (0, 0)
            if lo < 0 or hi > N:
                raise ValueError(f"keep: expected values in [0, N={N}], got min {lo}, max {hi}")
            k_max = hi
    else:
        keep = int(keep)
        if not 0 <= keep <= N:
            raise ValueError(f"keep: expected 0 <= keep <= N={N}, got {keep}")
        keep_t = torch.full((B,), keep, dtype=torch.int64, device=scores.device)
        if k_max is None:
            k_max = keep
    return _op(scores, keep_t, k_max)


@torch.library.register_fake("vlmkern::topk_indices")
def _topk_indices_fake(scores, keep, k_max):
    torch._check(scores.dim() == 2, lambda: "scores: expected [B, N]")
    return scores.new_empty((scores.shape[0], k_max), dtype=torch.int64)


def gather_kept(x: torch.Tensor, indices: torch.Tensor, offset: int | torch.Tensor = 0) -> torch.Tensor:
    """Rows of ``x`` at ``offset + indices`` (the kept tokens of a span).

    ``x``: ``[B, L, ...]``; ``indices``: ``[B, k]`` int64 from
    :func:`topk_indices` (no ``-1`` padding allowed here); ``offset``: int or
    ``[B]``. Returns ``[B, k, ...]``. This is ``torch.gather`` along dim 1;
    measured against a fused kernel it was already at memory bandwidth (see
    bench/bench_topk.py), so no custom kernel is used.
    """
    if isinstance(offset, torch.Tensor):
        idx = indices + offset.view(-1, 1)
    else:
        idx = indices + offset
    view = idx.view(idx.shape + (1,) * (x.dim() - 2)).expand(idx.shape + x.shape[2:])
    return torch.gather(x, 1, view)
