from __future__ import annotations

import math

import torch


def attention_mass(q, k, key_start=0, key_end=None, *, causal=True, scale=None,
                   key_padding_mask=None, query_weights=None):
    """Eager reference of :func:`vlmkern.ops.attention_mass`.

    Materializes the full ``[B, Hq, Lq, Lk]`` probability matrix in float64 (the
    way eager attention does), then takes the span and the means.
    """
    B, Hq, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    if key_end is None:
        key_end = Lk
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    qf = q.double()
    kf = k.double().repeat_interleave(Hq // Hkv, dim=1)
    s = torch.matmul(qf, kf.transpose(-1, -2)) * scale  # [B, Hq, Lq, Lk]
    valid = torch.ones(B, 1, Lq, Lk, dtype=torch.bool, device=q.device)
    if causal:
        pos_q = torch.arange(Lk - Lq, Lk, device=q.device).view(Lq, 1)
        pos_k = torch.arange(Lk, device=q.device).view(1, Lk)
        valid = valid & (pos_k <= pos_q)
    if key_padding_mask is not None:
        valid = valid & key_padding_mask.bool().view(B, 1, 1, Lk)
    s = s.masked_fill(~valid, float("-inf"))
    # rows with no valid key -> 0; NaN from NaN or Inf inputs stays NaN
    p = torch.where(valid.any(dim=-1, keepdim=True), torch.softmax(s, dim=-1), 0.0)
    p = p.mean(dim=1)  # [B, Lq, Lk] head mean
    if query_weights is None:
        w = torch.ones(B, Lq, dtype=torch.float64, device=q.device)
    else:
        w = query_weights.double()
        if w.dim() == 1:
            w = w.unsqueeze(0).expand(B, -1)
    wsum = w.sum(dim=1, keepdim=True)
    out = (w.unsqueeze(-1) * p).sum(dim=1) / torch.where(wsum == 0, torch.ones_like(wsum), wsum)
    out = torch.where(wsum == 0, torch.zeros_like(out), out)
    return out[:, key_start:key_end].float()


def attention_mass_eager_layer(q, k, key_start, key_end, *, scale=None):
    """Baseline (a): what FastV implementations do today. Full eager attention
    probabilities ``[B, H, L, L]`` of the layer (causal), then the last row.
    q: ``[B, Hq, L, D]`` for all L positions; k: ``[B, Hkv, L, D]``."""
    B, Hq, L, D = q.shape
    Hkv = k.shape[1]
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    kr = k.repeat_interleave(Hq // Hkv, dim=1)
    s = torch.matmul(q, kr.transpose(-1, -2)) * scale
    mask = torch.ones(L, L, dtype=torch.bool, device=q.device).triu(1)
    s = s.masked_fill(mask, float("-inf"))
    p = torch.softmax(s.float(), dim=-1)
    return p[:, :, -1, key_start:key_end].mean(dim=1)


def attention_mass_grouped(q, k, key_start, key_end, *, scale=None):
    """Baseline (b): the best eager formulation of the same numbers for the
    last query row(s): a grouped matmul that does not copy K per query head.
    q: ``[B, Hq, Lq, D]`` (the query rows only), k: ``[B, Hkv, Lk, D]``; no
    causal mask is needed when Lq == 1 (the last row sees every key)."""
    B, Hq, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    qg = q.reshape(B, Hkv, (Hq // Hkv) * Lq, D)
    s = torch.matmul(qg, k.transpose(-1, -2))  # [B, Hkv, rep*Lq, Lk], K not copied
    p = torch.softmax(s.float() * scale, dim=-1)
    return p[..., key_start:key_end].mean(dim=2).mean(dim=1)
