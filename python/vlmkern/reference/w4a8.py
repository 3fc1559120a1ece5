"""Eager W4A8 references: round-to-nearest weight quantization, the activation
quantizer, the exact integer GEMM and the fake-quant (fp32) linear.

Format: ``vlmkern.ops.w4a8``'s docstring and ``docs/w4a8.md``.
"""

from __future__ import annotations

import torch

OFFSET = 8


CLIP_GRID = tuple(1.0 - 0.025 * i for i in range(14))  # 1.0 down to 0.675


def quantize_weight(w: torch.Tensor, group_size: int, clip_search: bool = True
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Round-to-nearest symmetric int4 per group of k.

    Args:
        w: ``[N, K]`` float, ``K % group_size == 0``, K even.
        clip_search: per group, try scales ``c * 2 * absmax / 15`` for ``c`` in
            ``CLIP_GRID`` (1.0 down to 0.675) and keep the one with the smallest
            squared rounding error (about +0.8 dB SQNR on Gaussian weights at
            group 128: 19.1 -> 19.9 dB). False: ``c = 1`` only.

    Returns:
        ``(nibbles, scales)``: uint8 ``[N, K/2]`` (``q + 8``, low nibble = even
        k) and float32 ``[N, K/group_size]``. With ``c = 1`` the group's absmax
        maps to 7.5 steps, so the grid ``[-8, 7] * scale`` uses all 16 levels
        (clipping only the top half step of the positive side). An all-zero
        group gets scale 1.
    """
    N, K = w.shape
    if K % group_size or K % 2:
        raise ValueError(f"w: K={K} must be even and divisible by group_size={group_size}")
    wg = w.detach().float().reshape(N, K // group_size, group_size)
    amax = wg.abs().amax(dim=-1, keepdim=True)
    if not torch.isfinite(amax).all():
        raise ValueError("w: contains NaN or inf")
    base = torch.where(amax > 0, amax * (2.0 / 15.0), torch.ones_like(amax))
    best_s = base.clone()
    grid = CLIP_GRID if clip_search else (1.0,)
    # Rows in chunks of ~1 MB so the search's passes run from cache; in-place
    # ops on one scratch buffer. Same arithmetic as the plain formula.
    rows = max(1, (1 << 18) // K)
    scratch = torch.empty(min(rows, N), K // group_size, group_size)
    for r0 in range(0, N, rows):
        wc, bc = wg[r0:r0 + rows], base[r0:r0 + rows]
        t = scratch[: wc.shape[0]]
        best_err = None
        for c in grid:
            sc = bc * c
            torch.div(wc, sc, out=t)
            t.round_().clamp_(-8, 7).mul_(sc).sub_(wc).square_()
            err = t.sum(-1, keepdim=True)
            if best_err is None:
                best_err, best_c = err, sc
            else:
                better = err < best_err
                best_c = torch.where(better, sc, best_c)
                best_err = torch.where(better, err, best_err)
        best_s[r0:r0 + rows] = best_c
    q = torch.round(wg / best_s).clamp(-8, 7).to(torch.int32) + OFFSET
    q = q.reshape(N, K).to(torch.uint8)
    nibbles = q[:, 0::2] | (q[:, 1::2] << 4)
    return nibbles.contiguous(), best_s.squeeze(-1).contiguous()


def unpack_nibbles(nibbles: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, K/2]`` -> int32 ``[N, K]`` nibble values 0..15."""
    lo = (nibbles & 0xF).to(torch.int32)
    hi = (nibbles >> 4).to(torch.int32)
    return torch.stack([lo, hi], dim=-1).reshape(nibbles.shape[0], -1)


def dequantize_weight(nibbles: torch.Tensor, scales: torch.Tensor, group_size: int) -> torch.Tensor:
    """float32 ``[N, K]`` = (nibble - 8) * scale."""
    q = (unpack_nibbles(nibbles) - OFFSET).float()
    N, K = q.shape
    return (q.view(N, K // group_size, group_size) * scales.float().unsqueeze(-1)).view(N, K)


def quantize_per_token_int8(x: torch.Tensor, group_size: int):
    """Reference for ``vlmkern.ops.quantize_per_token_int8`` (bit-exact)."""
    K = x.shape[-1]
    xf = x.float()
    amax = xf.abs().amax(dim=-1, keepdim=True) if K else xf.new_zeros((*x.shape[:-1], 1))
    finite = torch.isfinite(xf).all(dim=-1, keepdim=True)
    pos = finite & (amax > 0)
    c127 = torch.full_like(amax, 127.0)
    safe = torch.where(pos, amax, torch.ones_like(amax))
    # true divisions, as the kernels do (`127.0 / t` would be reciprocal(t) * 127 in torch)
    inv = torch.where(pos, torch.div(c127, safe).clamp_max(torch.finfo(torch.float32).max),
                      torch.zeros_like(amax))
    codes = torch.round(torch.where(finite, xf, torch.zeros_like(xf)) * inv).clamp(-127, 127)
    scales = torch.where(pos, torch.div(amax, c127), torch.ones_like(amax))
    scales = torch.where(finite, scales, torch.full_like(scales, float("nan"))).squeeze(-1)
    codes = codes.to(torch.int8)
    rowsums = codes.to(torch.int32).view(*x.shape[:-1], K // group_size, group_size).sum(-1, dtype=torch.int32)
    return codes, scales, rowsums


def w4a8_group_partials(codes: torch.Tensor, rowsums: torch.Tensor, nibbles: torch.Tensor,
                        group_size: int) -> torch.Tensor:
    """Exact int64 ``[M, N, K/G]``: sum_{k in g} codes * nib - 8 * rowsum[m, g]."""
    M, K = codes.shape
    G = K // group_size
    nib = unpack_nibbles(nibbles).to(torch.int64).view(-1, G, group_size)  # [N, G, gs]
    xc = codes.to(torch.int64).view(M, G, group_size)
    dots = torch.einsum("mgk,ngk->mng", xc, nib)
    return dots - OFFSET * rowsums.to(torch.int64).view(M, 1, G)


def w4a8_gemm(codes, x_scales, x_rowsums, nibbles, w_scales, group_size: int, bias=None,
              out_dtype=torch.float32) -> torch.Tensor:
    """Reference for ``vlmkern.ops.w4a8_gemm`` on the *logical* weight.

    Same order as the CPU kernels: per group ``acc = fma(float(int_g), sw, acc)``
    (emulated in float64: the product of two floats is exact there, but the
    sum is rounded twice, so it can differ from a true FMA by one ulp: compare
    with a tolerance, not bit for bit), then ``acc * sx + bias`` in float32.
    """
    part = w4a8_group_partials(codes, x_rowsums, nibbles, group_size)
    # float(int_g) rounds like the kernels' int32 -> float conversion
    part_f = part.to(torch.int32).to(torch.float32).double()
    sw = w_scales.float().double()  # [N, G]
    acc = torch.zeros(part.shape[:2], dtype=torch.float32)
    for g in range(part.shape[2]):
        acc = (part_f[:, :, g] * sw[:, g] + acc.double()).float()
    out = acc * x_scales.float().view(-1, 1)
    if bias is not None:
        out = out + bias.float()
    return out.to(out_dtype)


def w4a8_linear_fake(x, nibbles, w_scales, group_size: int, bias=None) -> torch.Tensor:
    """Fake-quant reference: the same int4 weights and int8 activation codes,
    dequantized and multiplied in float32. ``[..., N]`` in ``x.dtype``."""
    codes, sx, _ = quantize_per_token_int8(x, group_size)
    xq = codes.float() * sx.unsqueeze(-1)
    y = xq @ dequantize_weight(nibbles, w_scales, group_size).t()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)
