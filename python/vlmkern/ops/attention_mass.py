from __future__ import annotations

import math

import torch

from vlmkern import _build  # noqa: F401  (loads the extension)

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
        scale: softmax scale, default ``1/sqrt(D)``.
        key_padding_mask: optional ``[B, Lk]``, true/1 where the key is real
            (the convention of a transformers ``attention_mask``).
        query_weights: optional ``[B, Lq]`` (or ``[Lq]``) weights of the queries.

    Returns:
        float32 ``[B, key_end - key_start]``: per batch row, the softmax
        probability of each key in the span, the softmax taken over all valid
        keys of each (head, query) row, averaged over the ``Hq`` heads and over
        the queries (``sum_i w_i p_i / sum_i w_i`` with weights). A query row
        with no valid key contributes zero. Equal to what eager attention's
        probabilities give (``vlmkern.reference.attention_mass``), computed
        without materializing the ``Lq x Lk`` score matrix: extra memory is
        ``O(B * Hq * Lq * Lk / chunk)`` for the split-softmax statistics.

    Dtypes: float32, bfloat16, float16 (accumulation in float32). Devices: CPU
    (AVX-512/AVX512-BF16 or plain C++, chosen at run time) and CUDA.
    """
    Lk = k.shape[2]
    if key_end is None:
        key_end = Lk
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    if key_padding_mask is not None and key_padding_mask.dtype != torch.bool:
        key_padding_mask = key_padding_mask != 0
    if query_weights is not None:
        if query_weights.dim() == 1:
            query_weights = query_weights.unsqueeze(0).expand(q.shape[0], -1)
        query_weights = query_weights.to(torch.float32)
    return _op(q, k, int(key_start), int(key_end), bool(causal), float(scale),
               key_padding_mask, query_weights)


@torch.library.register_fake("vlmkern::attention_mass")
def _attention_mass_fake(q, k, key_start, key_end, causal, scale, key_padding_mask=None,
                         query_weights=None):
    torch._check(q.dim() == 4 and k.dim() == 4, lambda: "q, k: expected 4-d tensors")
    torch._check(0 <= key_start <= key_end <= k.shape[2],
                 lambda: "key_start/key_end: expected 0 <= key_start <= key_end <= Lk")
    return q.new_empty((q.shape[0], key_end - key_start), dtype=torch.float32)
