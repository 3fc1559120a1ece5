"""Huge shapes (`make stress`, not `make test`): attention_mass over 131072 keys
(a long video), topk_indices over 10^6 scores, w4a8_gemm at K = N = 16384 and
M = 4096, each checked against its reference (on sampled outputs where the
reference would be too slow), so an int32 index overflow or a tiling bug at
scale shows. The CUDA kernels' launch limits at such sizes are tested by the
emulator's planning cases (tests/cudasim)."""

from __future__ import annotations

import pytest
import torch

from vlmkern import ops
from vlmkern.reference import attention_mass as ref_attention_mass
from vlmkern.reference import w4a8 as ref_w4a8

pytestmark = pytest.mark.stress


def test_attention_mass_131072_keys():
    g = torch.Generator().manual_seed(0)
    Lk = 131072
    q = torch.randn(1, 28, 1, 128, generator=g).bfloat16()
    k = torch.randn(1, 4, Lk, 128, generator=g).bfloat16()
    mask = torch.rand(1, Lk, generator=g) > 0.1
    out = ops.attention_mass(q, k, 1000, Lk - 7, key_padding_mask=mask)
    want = ref_attention_mass(q, k, 1000, Lk - 7, key_padding_mask=mask)
    torch.testing.assert_close(out, want, rtol=0, atol=2e-5 * want.abs().max().item())
    assert abs(ops.attention_mass(q, k).sum().item() - 1.0) < 1e-3


def test_topk_over_a_million_scores():
    g = torch.Generator().manual_seed(1)
    N = 1_000_003
    s = torch.randn(2, N, generator=g)
    keep = torch.tensor([123_457, N - 5])
    got = ops.topk_indices(s, keep)
    for b in range(2):
        kb = int(keep[b])
        want = torch.topk(s[b], kb).indices.sort().values  # distinct random scores: no ties
        assert torch.equal(got[b, :kb], want)
        assert (got[b, kb:] == -1).all()


def test_w4a8_gemm_16384_square_4096_rows():
    g = torch.Generator().manual_seed(2)
    M, N, K, G = 4096, 16384, 16384, 128
    nib = torch.randint(0, 256, (N, K // 2), dtype=torch.uint8, generator=g)
    ws = torch.rand(N, K // G, generator=g) * 0.01 + 1e-3
    x = torch.randn(M, K, generator=g)
    c, xs, rs = ops.quantize_per_token_int8(x, G)
    y = ops.w4a8_gemm(c, xs, rs, ops.w4a8_pack(nib, ws, G), ws, G)
    rows = torch.tensor([0, 1, 2047, 4095])
    cols = torch.randint(0, N, (64,), generator=g).unique()
    cols = torch.cat([cols, torch.tensor([0, N - 1])]).unique()
    want = ref_w4a8.w4a8_gemm(c[rows], xs[rows], rs[rows], nib[cols], ws[cols], G)
    torch.testing.assert_close(y[rows][:, cols], want, rtol=2e-6, atol=1e-5)
