"""W4A8 ops: int4 weights x int8 activations.

Format (shared by every backend, what ``vlmkern.save_quantized`` writes; see
``docs/w4a8.md`` and ``csrc/math/w4a8.h``):

* weight: symmetric int4 per group of ``group_size`` consecutive k, value
  ``q in [-8, 7]`` stored as the nibble ``q + 8``, uint8 ``[N, K/2]``, low
  nibble = even k;
* weight scales: ``[N, K/group_size]`` float32, finite and > 0;
* activations: per-row symmetric int8, ``scale = absmax / 127`` (1 for a zero
  row; NaN for a row holding NaN or inf, so its outputs are NaN), codes
  ``round_half_even(x * (127 / absmax))``;
* ``y[m, n] = sx[m] * sum_g sw[n, g] * (sum_{k in g} xq[m, k] * nib[n, k]
  - 8 * rowsum[m, g]) + bias[n]``, exact int32 inside a group, fp32 across
  groups in ascending order.

``w4a8_pack`` turns the logical weight into the layout of the device it is on
(never saved): CPU ``[ceil(N/16), K/8, 64]`` uint8, CUDA ``[N, K/8, 4]`` uint8
(16-byte loads along k). Pack on the device you will run on.
"""

from __future__ import annotations

import torch

from vlmkern import _build  # noqa: F401  (loads the extension)
from vlmkern.ops import _checks

_ops = torch.ops.vlmkern


def quantize_per_token_int8(x: torch.Tensor, group_size: int):
    """Per-row symmetric int8 quantization of activations.

    Args:
        x: ``[..., K]`` float32, bfloat16 or float16 (last dim contiguous is
            fastest; anything else is copied once). ``K % group_size == 0``.
        group_size: k per group of the row sums (the weight's group size).

    Returns:
        ``(codes, scales, rowsums)``: int8 ``[..., K]``, float32 ``[...]``,
        int32 ``[..., K/group_size]`` (sum of the codes of each group, which
        the GEMM needs for the ``-8`` nibble offset).
    """
    return _ops.quantize_per_token_int8(x, _checks.integer("group_size", group_size))


def w4a8_pack(weight: torch.Tensor, scales: torch.Tensor, group_size: int) -> torch.Tensor:
    """Reorder logical nibbles ``[N, K/2]`` uint8 into this device's kernel layout.

    ``scales`` (``[N, K/group_size]``) is validated here (finite, > 0): a bad
    scale is an error at load, not garbage at run time. Any N (the packing
    pads it); ``K % group_size == 0`` (``W4A8Linear`` pads K).
    """
    return _ops.w4a8_pack(weight, scales, _checks.integer("group_size", group_size))


def w4a8_gemm(codes, x_scales, x_rowsums, packed, w_scales, group_size: int, bias=None,
              out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[M, N]`` = dequantized (codes ``[M, K]`` int8) @ (packed weight)^T + bias.

    Args:
        codes, x_scales, x_rowsums: from :func:`quantize_per_token_int8`
            (2-d ``[M, K]``, ``[M]``, ``[M, K/group_size]``). ``x_rowsums``
            is taken as given by every path (the ``-8`` nibble offset is
            corrected with it): pass the quantizer's. A NaN ``x_scales`` entry
            makes that row's outputs NaN.
        packed: from :func:`w4a8_pack` on the same device.
        w_scales: float32 ``[N, K/group_size]``.
        bias: ``[N]`` any float dtype, or None.
        out_dtype: float32 (default), bfloat16 or float16.
    """
    return _ops.w4a8_gemm(codes, x_scales, x_rowsums, packed, w_scales,
                          _checks.integer("group_size", group_size), bias, out_dtype)


def w4a8_linear(x: torch.Tensor, packed: torch.Tensor, w_scales: torch.Tensor, group_size: int,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """Quantize ``x`` ``[..., K]`` per row and multiply: ``[..., N]`` in ``x.dtype``."""
    return _ops.w4a8_linear(x, packed, w_scales, _checks.integer("group_size", group_size), bias)


def packed_shape(N: int, K: int, device: torch.device | str) -> tuple[int, ...]:
    """Shape of ``w4a8_pack``'s result for an ``[N, K]`` weight on ``device``."""
    if torch.device(device).type == "cuda":
        return (N, K // 8, 4)
    return ((N + 15) // 16, K // 8, 64)


@torch.library.register_fake("vlmkern::quantize_per_token_int8")
def _quantize_fake(x, group_size):
    torch._check(x.dim() >= 1, lambda: "x: expected [..., K]")
    K = x.shape[-1]
    torch._check(K % group_size == 0, lambda: "x: K must be divisible by group_size")
    lead = x.shape[:-1]
    return (x.new_empty((*lead, K), dtype=torch.int8), x.new_empty(lead, dtype=torch.float32),
            x.new_empty((*lead, K // group_size), dtype=torch.int32))


@torch.library.register_fake("vlmkern::w4a8_pack")
def _pack_fake(weight, scales, group_size):
    _checks.same_device("w4a8_pack", weight=weight, scales=scales)
    N, K = weight.shape[0], weight.shape[1] * 2
    return weight.new_empty(packed_shape(N, K, weight.device), dtype=torch.uint8)


@torch.library.register_fake("vlmkern::w4a8_gemm")
def _gemm_fake(codes, x_scales, x_rowsums, packed, w_scales, group_size, bias=None, out_dtype=None):
    _checks.same_device("w4a8_gemm", codes=codes, x_scales=x_scales, x_rowsums=x_rowsums, packed=packed,
                        w_scales=w_scales, bias=bias)
    return codes.new_empty((codes.shape[0], w_scales.shape[0]), dtype=out_dtype or torch.float32)


@torch.library.register_fake("vlmkern::w4a8_linear")
def _linear_fake(x, packed, w_scales, group_size, bias=None):
    _checks.same_device("w4a8_linear", x=x, packed=packed, w_scales=w_scales, bias=bias)
    return x.new_empty((*x.shape[:-1], w_scales.shape[0]))
