"""CUDA kernels against the CPU kernels (the CPU ones are tested against the
eager references elsewhere). They run where a CUDA device exists; on these
project machines, which have none, the same kernels run under the CUDA
emulator instead (tests/test_cudasim.py).

An extension that fails to import is an error here as everywhere, and on a
machine with a GPU an extension built without its CUDA kernels fails (unless
it was built with VLMKERN_CUDA=OFF on purpose)."""

from __future__ import annotations

import os

import pytest
import torch

import vlmkern  # noqa: F401  (registers torch.ops.vlmkern.*; a broken build fails here)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(autouse=True)
def _cuda_kernels_built():
    if not vlmkern._C.with_cuda:
        if os.environ.get("VLMKERN_CUDA", "AUTO").upper() == "OFF":
            pytest.skip("vlmkern was built with VLMKERN_CUDA=OFF")
        pytest.fail("a CUDA device is present but vlmkern was built without its CUDA kernels: "
                    "rebuild with VLMKERN_CUDA=ON (pip install --no-build-isolation .) to see why")


DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _attention_mass(q, k, key_start, key_end, causal, scale, mask=None, weights=None):
    return torch.ops.vlmkern.attention_mass(q, k, key_start, key_end, causal, scale, mask, weights)


def _compare_attention_mass(B, Hq, Hkv, Lq, Lk, D, dtype, causal, span, masked, weighted, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Hq, Lq, D, generator=g).to(dtype)
    k = torch.randn(B, Hkv, Lk, D, generator=g).to(dtype)
    mask = weights = None
    if masked:
        mask = torch.rand(B, Lk, generator=g) > 0.3
        mask[0, :] = True
        if B > 1:
            mask[-1, :] = False  # a batch row with no valid key at all
    if weighted:
        weights = torch.rand(B, Lq, generator=g)
    key_start, key_end = span
    scale = D**-0.5
    ref = _attention_mass(q, k, key_start, key_end, causal, scale, mask, weights)
    dev = torch.device("cuda")
    out = _attention_mass(
        q.to(dev), k.to(dev), key_start, key_end, causal, scale,
        None if mask is None else mask.to(dev),
        None if weights is None else weights.to(dev),
    )
    assert out.device.type == "cuda" and out.dtype == torch.float32
    assert out.shape == ref.shape == (B, key_end - key_start)
    _assert_mass_close(out.cpu(), ref)


def _assert_mass_close(out, ref):
    """Per key within 1e-5 relative, plus 2e-5 of the largest mass. Why: the
    CUDA kernels score in fp32 in the CPU kernel's head-dim order and sum in
    another order; under the emulator (tests/test_cudasim.py) they differ from
    the CPU's plain C++ path by at most 1.2e-6 relative per key. The device's
    exp2f (within 2 ulp) adds less than 1e-6, and the CPU's vector paths are
    held to 2e-5 of the largest mass against the reference
    (test_attention_mass.py)."""
    assert torch.equal(out.isnan(), ref.isnan())
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=2e-5 * max(ref.nan_to_num().abs().max().item(), 1e-30),
                               equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("Lk", [1, 7, 577, 4109])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_mass_lengths(dtype, Lk, causal):
    Lq = min(Lk, 5)
    _compare_attention_mass(1, 4, 4, Lq, Lk, 64, dtype, causal, (0, Lk), False, False, seed=Lk)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("Hq,Hkv", [(8, 1), (8, 2), (6, 3), (4, 4)])
def test_attention_mass_gqa(dtype, Hq, Hkv):
    _compare_attention_mass(2, Hq, Hkv, 17, 600, 128, dtype, True, (35, 611 - 11), False, False,
                            seed=Hq * 10 + Hkv)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
def test_attention_mass_mask_weights(dtype, causal):
    _compare_attention_mass(3, 8, 2, 40, 1100, 96, dtype, causal, (5, 1090), True, True, seed=7)


@pytest.mark.parametrize("D", [1, 40, 64, 80, 130, 256])
def test_attention_mass_head_dims(D):
    _compare_attention_mass(2, 4, 2, 9, 300, D, torch.float32, True, (0, 300), True, False, seed=D)


@pytest.mark.parametrize("span", [(0, 0), (0, 1), (3, 4), (100, 165), (4000, 4109), (0, 4109)])
def test_attention_mass_spans(span):
    _compare_attention_mass(2, 4, 2, 64, 4109, 64, torch.bfloat16, True, span, True, True, seed=3)


def test_attention_mass_many_rows():
    # More than one 32-row tile per KV group, tiles straddling head boundaries.
    _compare_attention_mass(1, 12, 3, 45, 700, 64, torch.float16, True, (0, 700), False, True, seed=11)


def test_attention_mass_noncontiguous():
    g = torch.Generator().manual_seed(5)
    q = torch.randn(2, 10, 4, 64, generator=g).transpose(1, 2)  # [B, Hq=4, Lq=10, D]
    k = torch.randn(2, 300, 2, 64, generator=g).transpose(1, 2)  # [B, Hkv=2, Lk=300, D]
    kt = torch.randn(2, 2, 64, 300, generator=g).transpose(2, 3)  # last dim not contiguous
    for kk in (k, kt):
        ref = _attention_mass(q, kk, 10, 290, True, 0.125)
        out = _attention_mass(q.cuda(), kk.cuda(), 10, 290, True, 0.125)
        _assert_mass_close(out.cpu(), ref)


def test_attention_mass_nan_and_inf_make_the_batch_row_nan():
    g = torch.Generator().manual_seed(9)
    q, k = torch.randn(3, 4, 3, 32, generator=g), torch.randn(3, 2, 90, 32, generator=g)
    q[0, 1, 2, 5] = float("nan")
    k[1, 0, 4, 0] = float("inf")
    mask = torch.rand(3, 90, generator=g) > 0.2
    for dt in DTYPES:
        ref = _attention_mass(q.to(dt), k.to(dt), 0, 90, True, 0.2, mask)
        out = _attention_mass(q.to(dt).cuda(), k.to(dt).cuda(), 0, 90, True, 0.2, mask.cuda()).cpu()
        assert out[:2].isnan().all() and ref[:2].isnan().all() and not out[2].isnan().any()
        _assert_mass_close(out, ref)


def test_attention_mass_tiny_and_subnormal_inputs():
    # q.k products far below the smallest normal: near-uniform attention on both
    # backends (the CUDA build keeps IEEE denormals).
    g = torch.Generator().manual_seed(8)
    q = torch.randn(2, 4, 3, 64, generator=g) * 1e-30
    k = torch.randn(2, 2, 200, 64, generator=g)
    q[0, 0, 0, :8] = 1e-40
    ref = _attention_mass(q, k, 0, 200, True, 0.125)
    out = _attention_mass(q.cuda(), k.cuda(), 0, 200, True, 0.125)
    _assert_mass_close(out.cpu(), ref)


def test_attention_mass_zero_weights():
    q = torch.randn(2, 2, 3, 32)
    k = torch.randn(2, 2, 50, 32)
    w = torch.zeros(2, 3)
    ref = _attention_mass(q, k, 0, 50, True, 0.2, None, w)
    out = _attention_mass(q.cuda(), k.cuda(), 0, 50, True, 0.2, None, w.cuda())
    assert torch.equal(out.cpu(), ref)
    assert not out.any()


# ---- topk_indices -------------------------------------------------------------------

def _topk(scores, keep, k_max):
    return torch.ops.vlmkern.topk_indices(scores, keep, k_max)


def _compare_topk(scores, keep, k_max):
    ref = _topk(scores, keep, k_max)
    out = _topk(scores.cuda(), keep.cuda(), k_max)
    assert out.dtype == torch.int64 and out.device.type == "cuda"
    assert torch.equal(out.cpu(), ref), (out.cpu(), ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N", [1, 7, 577, 4109, 70000])
def test_topk_random(dtype, N):
    g = torch.Generator().manual_seed(N)
    B = 4
    scores = torch.randn(B, N, generator=g).to(dtype)
    keep = torch.tensor([0, 1, N // 3, N], dtype=torch.int64)
    _compare_topk(scores, keep, N)
    k_max = max(1, N // 2)
    keep2 = torch.clamp(torch.tensor([0, 1, N // 3, N // 2]), max=k_max)
    _compare_topk(scores, keep2, k_max)


@pytest.mark.parametrize("dtype", DTYPES)
def test_topk_ties_nan_inf(dtype):
    g = torch.Generator().manual_seed(0)
    N = 3000
    s = torch.randint(-3, 4, (3, N), generator=g).to(torch.float32)  # heavy ties
    s[1, ::7] = float("nan")
    s[1, 5::11] = float("inf")
    s[1, 9::13] = float("-inf")
    s[2] = 0.0
    s[2, ::2] = -0.0  # -0.0 == +0.0: ties broken by index only
    s[2, 100:110] = float("nan")
    scores = s.to(dtype)
    for kv in (1, 2, 50, 429, 1500, 2999, 3000):
        keep = torch.full((3,), kv, dtype=torch.int64)
        _compare_topk(scores, keep, kv)
        _compare_topk(scores, keep, N)


def test_topk_all_nan_and_constant():
    N = 1000
    scores = torch.stack([torch.full((N,), float("nan")), torch.full((N,), 1.5)])
    for kv in (0, 1, 333, 999, 1000):
        _compare_topk(scores, torch.tensor([kv, kv]), max(kv, 1))


def test_topk_subnormal_and_strided():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(5, 2 * 1234, generator=g)
    base[:, ::3] *= 1e-42  # fp32 subnormals must rank as on the CPU
    scores = base[:, ::2]  # non-unit stride along N
    keep = torch.tensor([0, 10, 300, 617, 1234])
    _compare_topk(scores, keep, 1234)
    _compare_topk(base.t().contiguous().t(), torch.tensor([7, 7, 7, 7, 7]), 7)  # column-major


def test_topk_per_row_keep_many_rows():
    g = torch.Generator().manual_seed(2)
    B, N, k_max = 300, 513, 200
    scores = torch.randn(B, N, generator=g).half()
    keep = torch.randint(0, k_max + 1, (B,), generator=g)
    _compare_topk(scores, keep, k_max)


def test_topk_deterministic():
    g = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 5, (8, 20000), generator=g).float().cuda()
    keep = torch.full((8,), 4321, dtype=torch.int64, device="cuda")
    outs = [_topk(scores, keep, 5000) for _ in range(3)]
    for o in outs[1:]:
        assert torch.equal(o, outs[0])


def test_topk_empty():
    scores = torch.randn(0, 10).cuda()
    out = _topk(scores, torch.zeros(0, dtype=torch.int64, device="cuda"), 3)
    assert out.shape == (0, 3)
    out = _topk(torch.randn(2, 10).cuda(), torch.zeros(2, dtype=torch.int64, device="cuda"), 0)
    assert out.shape == (2, 0)


# ---- W4A8 --------------------------------------------------------------------------------

W4A8_SHAPES = [(1, 16, 128, 128), (1, 4096, 4096, 128), (2, 17, 64, 32), (3, 100, 384, 64),
               (5, 33, 96, 96), (7, 8, 40, 40), (70, 130, 1024, 128), (300, 64, 256, 32)]


def _w4a8_inputs(M, N, K, G, seed=0):
    from vlmkern.reference import w4a8 as wref

    g = torch.Generator().manual_seed(seed)
    nib, ws = wref.quantize_weight(torch.randn(N, K, generator=g) * 0.05, G)
    x = torch.randn(M, K, generator=g) * 3
    if M > 2:
        x[1] = 0
        x[2, 0] = 1e4
    if M > 4:
        x[3] *= 1e-39  # a row of fp32 subnormals: exact only without flush-to-zero
        x[4] *= 1e-36  # tiny normals with subnormal products
    return nib, ws, x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,N,K,G", W4A8_SHAPES)
def test_w4a8_quantize_bit_exact(M, N, K, G, dtype):
    _, _, x = _w4a8_inputs(M, N, K, G)
    x = x.to(dtype)
    cpu = torch.ops.vlmkern.quantize_per_token_int8(x, G)
    gpu = torch.ops.vlmkern.quantize_per_token_int8(x.cuda(), G)
    for a, b in zip(cpu, gpu):
        assert torch.equal(a, b.cpu())


def test_w4a8_pack_layout():
    from vlmkern.reference import w4a8 as wref

    N, K = 20, 48
    nib = torch.randint(0, 256, (N, K // 2), dtype=torch.uint8)
    p = torch.ops.vlmkern.w4a8_pack(nib.cuda(), torch.ones(N, 1).cuda(), K).cpu()
    assert p.shape == (N, K // 8, 4)
    p = p.view(N, K // 2)
    v = wref.unpack_nibbles(nib)
    for n in range(N):
        for o in range(K // 8):
            want = v[n, 8 * o:8 * o + 4] | (v[n, 8 * o + 4:8 * o + 8] << 4)
            assert torch.equal(p[n, 4 * o:4 * o + 4].to(torch.int32), want)


@pytest.mark.parametrize("out_dtype", DTYPES)
@pytest.mark.parametrize("M,N,K,G", W4A8_SHAPES)
def test_w4a8_gemm_and_linear_match_cpu(M, N, K, G, out_dtype):
    nib, ws, x = _w4a8_inputs(M, N, K, G)
    b = torch.randn(N)
    c, xs, rs = torch.ops.vlmkern.quantize_per_token_int8(x, G)
    want = torch.ops.vlmkern.w4a8_gemm(c, xs, rs, torch.ops.vlmkern.w4a8_pack(nib, ws, G), ws, G, b,
                                       out_dtype)
    pg = torch.ops.vlmkern.w4a8_pack(nib.cuda(), ws.cuda(), G)
    got = torch.ops.vlmkern.w4a8_gemm(c.cuda(), xs.cuda(), rs.cuda(), pg, ws.cuda(), G, b.cuda(),
                                      out_dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if out_dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(got.cpu().float(), want.float(), **tol)
    lin = torch.ops.vlmkern.w4a8_linear(x.to(out_dtype).cuda(), pg, ws.cuda(), G, b.cuda())
    lin_cpu = torch.ops.vlmkern.w4a8_linear(x.to(out_dtype), torch.ops.vlmkern.w4a8_pack(nib, ws, G),
                                            ws, G, b)
    torch.testing.assert_close(lin.cpu().float(), lin_cpu.float(), **tol)


@pytest.mark.parametrize("M,N,K,G", [(16, 32, 128, 32), (17, 40, 256, 64), (70, 130, 1024, 128),
                                     (300, 64, 256, 256)])
def test_w4a8_tensor_core_path_is_bit_exact(M, N, K, G):
    """M >= 16 and G % 32 == 0 take the mma.sync kernel, which keeps the CPU's
    order of fp32 operations: equal bit for bit, not just close."""
    nib, ws, x = _w4a8_inputs(M, N, K, G, seed=3)
    b = torch.randn(N)
    c, xs, rs = torch.ops.vlmkern.quantize_per_token_int8(x, G)
    want = torch.ops.vlmkern.w4a8_gemm(c, xs, rs, torch.ops.vlmkern.w4a8_pack(nib, ws, G), ws, G, b)
    pg = torch.ops.vlmkern.w4a8_pack(nib.cuda(), ws.cuda(), G)
    got = torch.ops.vlmkern.w4a8_gemm(c.cuda(), xs.cuda(), rs.cuda(), pg, ws.cuda(), G, b.cuda())
    assert torch.equal(got.cpu(), want)


def test_w4a8_gemm_trusts_x_rowsums_on_both_backends():
    """x_rowsums is taken as given by every path (it is the quantizer's output);
    a perturbed one changes the CPU and both CUDA kernels alike."""
    for M in (3, 33):  # DP4A and tensor cores
        nib, ws, x = _w4a8_inputs(M, 24, 128, 32, seed=4)
        c, xs, rs = torch.ops.vlmkern.quantize_per_token_int8(x, 32)
        rs = rs + torch.randint(-3, 4, rs.shape, dtype=torch.int32)
        want = torch.ops.vlmkern.w4a8_gemm(c, xs, rs, torch.ops.vlmkern.w4a8_pack(nib, ws, 32), ws, 32)
        pg = torch.ops.vlmkern.w4a8_pack(nib.cuda(), ws.cuda(), 32)
        got = torch.ops.vlmkern.w4a8_gemm(c.cuda(), xs.cuda(), rs.cuda(), pg, ws.cuda(), 32)
        torch.testing.assert_close(got.cpu(), want, rtol=1e-5, atol=1e-5)


def test_topk_keep_out_of_range_raises_like_the_cpu():
    scores = torch.randn(2, 10)
    for keep in (torch.tensor([3, 11]), torch.tensor([-1, 2])):
        with pytest.raises(RuntimeError) as cpu_err:
            _topk(scores, keep, 10)
        with pytest.raises(RuntimeError) as cuda_err:
            _topk(scores.cuda(), keep.cuda(), 10)
        assert str(cpu_err.value).splitlines()[0] == str(cuda_err.value).splitlines()[0]


def test_w4a8_gemm_checks_w_scales_like_the_cpu():
    for M in (2, 20):  # DP4A and tensor cores
        nib, ws, x = _w4a8_inputs(M, 16, 64, 32)
        c, xs, rs = torch.ops.vlmkern.quantize_per_token_int8(x, 32)
        pg = torch.ops.vlmkern.w4a8_pack(nib.cuda(), ws.cuda(), 32)
        bad = ws.clone()
        bad[3, 1] = float("nan")
        with pytest.raises(RuntimeError, match="w_scales: expected finite, strictly positive"):
            torch.ops.vlmkern.w4a8_gemm(c.cuda(), xs.cuda(), rs.cuda(), pg, bad.cuda(), 32)
        with pytest.raises(RuntimeError, match="w_scales: expected finite, strictly positive"):
            torch.ops.vlmkern.w4a8_gemm(c, xs, rs, torch.ops.vlmkern.w4a8_pack(nib, ws, 32), bad, 32)


def test_w4a8_errors_on_cuda():
    nib, ws, x = _w4a8_inputs(2, 16, 64, 32)
    with pytest.raises(RuntimeError, match="scales: expected finite, strictly positive"):
        torch.ops.vlmkern.w4a8_pack(nib.cuda(), (ws * 0).cuda(), 32)
    cpu_packed = torch.ops.vlmkern.w4a8_pack(nib, ws, 32)
    c, xs, rs = torch.ops.vlmkern.quantize_per_token_int8(x.cuda(), 32)
    with pytest.raises(RuntimeError, match="packed: expected the CUDA layout"):
        torch.ops.vlmkern.w4a8_gemm(c, xs, rs, cpu_packed.cuda(), ws.cuda(), 32)
    with pytest.raises(RuntimeError, match="packed: expected the CUDA layout"):  # unpacked nibbles
        torch.ops.vlmkern.w4a8_gemm(c, xs, rs, nib.cuda(), ws.cuda(), 32)
    gpu_packed = torch.ops.vlmkern.w4a8_pack(nib.cuda(), ws.cuda(), 32)
    with pytest.raises(RuntimeError, match="packed and x must be on the same device"):
        torch.ops.vlmkern.w4a8_linear(x, gpu_packed, ws.cuda(), 32)


def test_w4a8_linear_module_on_cuda():
    from vlmkern.nn import W4A8Linear

    lin = torch.nn.Linear(256, 96, bias=True)
    q = W4A8Linear.from_linear(lin, 64)
    x = torch.randn(3, 5, 256)
    want = q(x)
    q.cuda()
    got = q(x.cuda())
    torch.testing.assert_close(got.cpu(), want, rtol=1e-5, atol=1e-5)
