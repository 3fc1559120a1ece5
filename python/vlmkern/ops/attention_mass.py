from __future__ import annotations

import math

import torch

from vlmkern import _build  # noqa: F401  (loads the extension)
from vlmkern.ops import _checks

_op = torch.ops.vlmkern.attention_mass


def attention_mass(
    q: torch.Tensor,
    k: torch.Tensor,
    key_start: int = 0,
    key_end: int | None = None,
    *,
    causal: bool = True,
    scale: float | None = None,
    key_padding_mask: torch.Tensor | None = None,
    query_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax attention mass that a few queries put on a span of keys.

    Args:
        q: ``[B, Hq, Lq, D]`` query rows (after RoPE). They stand at the *last*
            ``Lq`` positions of a sequence of ``Lk`` positions: query ``i`` sits
            at position ``Lk - Lq + i``.
        k: ``[B, Hkv, Lk, D]`` keys (after RoPE), same dtype and device as
            ``q``; ``Hq`` must be a multiple of ``Hkv`` (grouped-query
            attention: query head ``h`` reads KV head ``h // (Hq // Hkv)``).
        key_start, key_end: the span of keys to report, ``0 <= key_start <=
            key_end <= Lk``; ``key_end=None`` means ``Lk``.
        causal: query ``i`` sees keys ``j <= Lk - Lq + i`` only.
        scale: softmax scale, finite and > 0; default ``1/sqrt(D)``.
        key_padding_mask: optional ``[B, Lk]``, bool or integer, true/1 where
            the key is real (the convention of a transformers ``attention_mask``).
        query_weights: optional ``[B, Lq]`` (or ``[Lq]``) weights of the
            queries, finite and >= 0 (checked; on CUDA that reads them back).

    Returns:
        float32 ``[B, key_end - key_start]``: per batch row, the softmax
        probability of each key in the span, the softmax taken over all valid
        keys of each (head, query) row, averaged over the ``Hq`` heads and over
        the queries (``sum_i w_i p_i / sum_i w_i`` with weights). A query row
        with no valid key contributes zero. Equal to what eager attention's
        probabilities give (``vlmkern.reference.attention_mass``), computed
        without materializing the ``Lq x Lk`` score matrix: extra memory is
        ``O(B * Hq * Lq * Lk / chunk)`` for the split-softmax statistics.
        NaN or Inf in ``q`` or ``k`` make the affected batch row's output NaN,
        as eager attention's probabilities would be.

    Dtypes: float32, bfloat16, float16 (accumulation in float32). Devices: CPU
    (AVX-512/AVX512-BF16 or plain C++, chosen at run time) and CUDA.
    """
    _checks.same_device("attention_mass", q=q, k=k, key_padding_mask=key_padding_mask,
                        query_weights=query_weights)
    for name, t, shape in (("q", q, "[B, Hq, Lq, D]"), ("k", k, "[B, Hkv, Lk, D]")):
        if t.dim() != 4:
            raise ValueError(f"{name}: expected a 4-d tensor of shape {shape}, got shape {tuple(t.shape)}")
    if q.shape[-1] == 0:
        raise ValueError(f"q: expected a head dim >= 1, got shape {tuple(q.shape)}")
    Lk = k.shape[2]
    key_start = _checks.integer("key_start", key_start)
    key_end = Lk if key_end is None else _checks.integer("key_end", key_end)
    if not isinstance(causal, bool):
        raise TypeError(f"causal: expected a bool, got {causal!r}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else _checks.positive_float("scale", scale)
    if key_padding_mask is not None and key_padding_mask.dtype != torch.bool:
        if key_padding_mask.is_floating_point() or key_padding_mask.is_complex():
            raise TypeError(f"key_padding_mask: expected bool or integer (1 = real key), got "
                            f"{key_padding_mask.dtype}")
        key_padding_mask = key_padding_mask != 0
    if query_weights is not None:
        if query_weights.dim() == 1:
            query_weights = query_weights.unsqueeze(0).expand(q.shape[0], -1)
        query_weights = query_weights.to(torch.float32)
    return _op(q, k, key_start, key_end, causal, scale, key_padding_mask, query_weights)


@torch.library.register_fake("vlmkern::attention_mass")
def _attention_mass_fake(q, k, key_start, key_end, causal, scale, key_padding_mask=None,
                         query_weights=None):
    _checks.same_device("attention_mass", q=q, k=k, key_padding_mask=key_padding_mask,
                        query_weights=query_weights)
    torch._check(q.dim() == 4 and k.dim() == 4, lambda: "q, k: expected 4-d tensors")
    torch._check(0 <= key_start <= key_end <= k.shape[2],
                 lambda: "key_start/key_end: expected 0 <= key_start <= key_end <= Lk")
    return q.new_empty((q.shape[0], key_end - key_start), dtype=torch.float32)
