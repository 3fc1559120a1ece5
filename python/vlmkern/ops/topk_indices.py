from __future__ import annotations

import torch

from vlmkern import _build  # noqa: F401  (loads the extension)
from vlmkern.ops import _checks

_op = torch.ops.vlmkern.topk_indices


def topk_indices(scores: torch.Tensor, keep: int | torch.Tensor, k_max: int | None = None) -> torch.Tensor:
    """Indices of the ``keep`` largest scores of each row, in ascending order.

    Args:
        scores: ``[B, N]`` float32, bfloat16 or float16.
        keep: an int (every row keeps that many) or an integer ``Tensor[B]``
            (per-row budgets, ``0 <= keep[b] <= N``); a bool or a float is
            refused.
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
    if k_max is not None:
        k_max = _checks.integer("k_max", k_max)
    if isinstance(keep, torch.Tensor):
        _checks.integer_tensor("keep", keep)
        _checks.same_device("topk_indices", scores=scores, keep=keep)
        if keep.dim() != 1 or keep.shape[0] != B:
            raise ValueError(f"keep: expected a tensor of shape [B]=[{B}], got {tuple(keep.shape)}")
        keep_t = keep.to(device=scores.device, dtype=torch.int64)
        if k_max is None:
            lo, hi = (int(v) for v in torch.aminmax(keep_t)) if B else (0, 0)
            if lo < 0 or hi > N:
                raise ValueError(f"keep: expected values in [0, N={N}], got min {lo}, max {hi}")
            k_max = hi
    else:
        keep = _checks.integer("keep", keep)
        if not 0 <= keep <= N:
            raise ValueError(f"keep: expected 0 <= keep <= N={N}, got {keep}")
        keep_t = torch.full((B,), keep, dtype=torch.int64, device=scores.device)
        if k_max is None:
            k_max = keep
    return _op(scores, keep_t, k_max)


@torch.library.register_fake("vlmkern::topk_indices")
def _topk_indices_fake(scores, keep, k_max):
    _checks.same_device("topk_indices", scores=scores, keep=keep)
    torch._check(scores.dim() == 2, lambda: "scores: expected [B, N]")
    return scores.new_empty((scores.shape[0], k_max), dtype=torch.int64)


def gather_kept(x: torch.Tensor, indices: torch.Tensor, offset: int | torch.Tensor = 0) -> torch.Tensor:
    """Rows of ``x`` at ``offset + indices``, per sample (compaction of kept tokens).

    Args:
        x: ``[B, L, ...]`` or ``[1, L, ...]`` (shared by every sample, e.g. rotary
            tables).
        indices: ``[B, k]`` int64 positions (no ``-1`` padding here).
        offset: int or ``[B]`` added to every index of the sample.

    Returns:
        ``[B, k, ...]``. One ``index_select`` over the flattened ``[B * L, ...]``
        rows: 14-22x faster than ``torch.gather`` with an expanded index at
        LLaVA/Qwen shapes. A fused row-copy kernel (memcpy per row, threaded) was
        measured slower than ``index_select`` at those shapes (0.3-0.6x: call and
        thread start-up dominate a 1-6 MB copy), so none is shipped
        (bench/bench_topk.py).
    """
    if indices.dim() != 2:
        raise ValueError(f"indices: expected [B, k], got shape {tuple(indices.shape)}")
    _checks.integer_tensor("indices", indices)
    if x.dim() < 2:
        raise ValueError(f"x: expected [B, L, ...], got shape {tuple(x.shape)}")
    B, k = indices.shape
    if isinstance(offset, torch.Tensor):
        _checks.integer_tensor("offset", offset)
        idx = indices + offset.view(-1, 1)
    else:
        idx = indices + _checks.integer("offset", offset)
    rest, L = x.shape[2:], x.shape[1]
    # Out-of-range positions would read another sample's rows of the flattened
    # batch: refuse them (one min/max reduction; a device sync on CUDA).
    if idx.numel():
        if torch.compiler.is_compiling():  # traced: an assertion op instead of a host read
            torch._assert_async(((idx >= 0) & (idx < L)).all(),
                                "gather_kept: indices: offset + indices out of range [0, L)")
        else:
            lo, hi = (int(v) for v in torch.aminmax(idx))  # one pass, one read back
            if lo < 0 or hi >= L:
                raise IndexError(f"indices: offset + indices out of range [0, L={L}): got values in "
                                 f"[{lo}, {hi}]")
    if x.shape[0] == 1:
        return x[0].index_select(0, idx.reshape(-1)).view(B, k, *rest)
    if x.shape[0] != B:
        raise ValueError(f"x: expected batch 1 or {B}, got shape {tuple(x.shape)}")
    base = torch.arange(B, device=idx.device).view(B, 1) * L
    return x.reshape(B * L, *rest).index_select(0, (idx + base).reshape(-1)).view(B, k, *rest)
