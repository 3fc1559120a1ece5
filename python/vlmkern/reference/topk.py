from __future__ import annotations

import torch


def topk_indices(scores: torch.Tensor, keep) -> torch.Tensor:
    """Eager reference of :func:`vlmkern.ops.topk_indices`: a stable sort per
    row (NaN replaced by a value below -inf via the ranking), take the first
    ``keep[b]``, sort them ascending, pad with -1."""
    B, N = scores.shape
    if not isinstance(keep, torch.Tensor):
        keep = torch.full((B,), int(keep), dtype=torch.int64)
    keep = keep.cpu()
    k_max = int(keep.max()) if B else 0
    out = torch.full((B, k_max), -1, dtype=torch.int64)
    s = scores.detach().double().cpu()
    for b in range(B):
        row = s[b]
        # rank key: NaN lowest; -0.0 == +0.0 (python float compare); lower index first
        order = sorted(range(N), key=lambda i: (0 if row[i] != row[i] else 1,
                                                 float(row[i]) if row[i] == row[i] else 0.0, -i),
                       reverse=True)
        kept = sorted(order[: int(keep[b])])
        out[b, : len(kept)] = torch.tensor(kept, dtype=torch.int64)
    return out.to(scores.device)
