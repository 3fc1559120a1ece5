"""W4A8 ops against vlmkern.reference.w4a8: exact integer partials, bit-equal
results across every CPU path, odd shapes, batch > 1, errors."""

import pytest
import torch

import vlmkern
from vlmkern import ops
from vlmkern.reference import w4a8 as ref
from conftest import cpu_isa_params, cpu_isas

SHAPES = [  # M, N, K, G
    (1, 16, 128, 128),
    (1, 4096, 256, 128),
    (2, 17, 64, 32),
    (3, 100, 384, 64),
    (5, 33, 96, 96),  # per-channel group, K not a multiple of 32
    (7, 8, 40, 40),  # K % 16 != 0
    (13, 49, 512, 128),
    (64, 64, 256, 32),
    (70, 130, 1024, 128),  # row chunks of 64 + a tail, channel tail
]


def _weights(N, K, G, std=0.05):
    return ref.quantize_weight(torch.randn(N, K) * std, G)


def _acts(M, K, dtype=torch.float32):
    x = torch.randn(M, K) * 3
    if M > 2:
        x[1] = 0  # a zero row: scale 1, codes 0
        x[2, :5] = torch.tensor([1e4, -1e4, 0.5, -0.5, 127.0])  # saturated row
    return x.to(dtype)


@pytest.mark.parametrize("isa", cpu_isa_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("M,K,G", [(1, 128, 128), (6, 96, 32), (9, 1040, 1040), (33, 512, 64)])
def test_quantize_per_token_matches_reference(isa, dtype, M, K, G, isa_cap):
    isa_cap(isa)
    x = _acts(M, K, dtype)
    c, s, rs = ops.quantize_per_token_int8(x, G)
    c2, s2, rs2 = ref.quantize_per_token_int8(x, G)
    assert c.dtype == torch.int8 and s.dtype == torch.float32 and rs.dtype == torch.int32
    assert torch.equal(c, c2) and torch.equal(s, s2) and torch.equal(rs, rs2)


def test_quantize_per_token_edge_rows_and_leading_dims():
    x = torch.randn(2, 3, 64)
    x[0, 0] = 0
    x[0, 1, 7] = float("nan")
    x[1, 2, 0] = float("inf")
    c, s, rs = ops.quantize_per_token_int8(x, 32)
    assert c.shape == (2, 3, 64) and s.shape == (2, 3) and rs.shape == (2, 3, 2)
    assert s[0, 0] == 1 and (c[0, 0] == 0).all()
    assert torch.isnan(s[0, 1]) and torch.isnan(s[1, 2])  # non-finite rows: NaN outputs, not garbage
    assert (c[0, 1] == 0).all() and (rs[1, 2] == 0).all()
    c2, s2, rs2 = ref.quantize_per_token_int8(x, 32)
    assert torch.equal(c, c2) and torch.equal(s.nan_to_num(-1), s2.nan_to_num(-1)) and torch.equal(rs, rs2)
    # codes: the row's absmax maps to +-127, half-way values round to even
    y = torch.tensor([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, 3.0, -127.0]])
    c, s, _ = ops.quantize_per_token_int8(y, 8)
    assert s.item() == 1.0 and c.tolist() == [[127, 0, 2, 2, 0, -2, 3, -127]]


@pytest.mark.parametrize("isa", cpu_isa_params())
def test_quantize_tiny_rows(isa, isa_cap):
    """absmax below 127 / FLT_MAX: the inverse scale is capped (no inf, no NaN codes)."""
    isa_cap(isa)
    x = torch.zeros(2, 64)
    x[0, 3], x[0, 9] = 1e-38, -5e-39
    x[1, :] = torch.linspace(-1e-37, 1e-37, 64)
    got = ops.quantize_per_token_int8(x, 32)
    want = ref.quantize_per_token_int8(x, 32)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    assert (got[0][0, [0, 1, 2]] == 0).all()


def test_quantize_non_contiguous_rows():
    x = torch.randn(10, 256)[::2, :128]
    for a, b in zip(ops.quantize_per_token_int8(x, 64), ref.quantize_per_token_int8(x.contiguous(), 64)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("M,N,K,G", SHAPES)
def test_gemm_int32_partials_exact(M, N, K, G, isa_cap):
    """Unit scales: the float result is the integer sum itself (|sum| < 2^24)."""
    nib, _ = _weights(N, K, G)
    codes = torch.randint(-127, 128, (M, K), dtype=torch.int8)
    rs = codes.to(torch.int32).view(M, K // G, G).sum(-1, dtype=torch.int32)
    ws = torch.ones(N, K // G)
    xs = torch.ones(M)
    exact = ref.w4a8_group_partials(codes, rs, nib, G).sum(-1)  # int64 [M, N]
    assert exact.abs().max() < 2**24
    for isa in cpu_isas():
        isa_cap(isa)
        packed = ops.w4a8_pack(nib, ws, G)
        y = ops.w4a8_gemm(codes, xs, rs, packed, ws, G)
        assert torch.equal(y.to(torch.int64), exact), isa
        assert torch.equal(y, y.round())


@pytest.mark.parametrize("M,N,K,G", SHAPES)
@pytest.mark.parametrize("bias", [False, True])
def test_gemm_matches_reference_and_paths_agree(M, N, K, G, bias, isa_cap):
    nib, ws = _weights(N, K, G)
    x = _acts(M, K)
    b = torch.randn(N) if bias else None
    c, xs, rs = ref.quantize_per_token_int8(x, G)
    want = ref.w4a8_gemm(c, xs, rs, nib, ws, G, b)
    results = {}
    for isa in cpu_isas():
        isa_cap(isa)
        y = ops.w4a8_gemm(c, xs, rs, ops.w4a8_pack(nib, ws, G), ws, G, b)
        assert y.shape == (M, N) and y.dtype == torch.float32
        # same operation order as the reference: equal up to fp32 double rounding
        torch.testing.assert_close(y, want, rtol=2e-6, atol=1e-6)
        results[isa] = y
    first = next(iter(results.values()))
    for isa, y in results.items():
        assert torch.equal(y, first), f"{isa} differs from {next(iter(results))}"


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_gemm_out_dtype_and_bias_dtype(out_dtype):
    M, N, K, G = 4, 40, 256, 64
    nib, ws = _weights(N, K, G)
    c, xs, rs = ops.quantize_per_token_int8(_acts(M, K), G)
    b = torch.randn(N, dtype=torch.bfloat16)
    y = ops.w4a8_gemm(c, xs, rs, ops.w4a8_pack(nib, ws, G), ws, G, b, out_dtype=out_dtype)
    want = ref.w4a8_gemm(c, xs, rs, nib, ws, G, b, out_dtype=torch.float32)
    assert y.dtype == out_dtype
    assert torch.equal(y, want.to(out_dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("lead", [(1,), (3,), (2, 5)])
def test_linear_equals_quantize_then_gemm(dtype, lead):
    N, K, G = 72, 320, 64
    nib, ws = _weights(N, K, G)
    packed = ops.w4a8_pack(nib, ws, G)
    x = torch.randn(*lead, K).to(dtype)
    b = torch.randn(N).to(dtype)
    y = ops.w4a8_linear(x, packed, ws, G, b)
    assert y.shape == (*lead, N) and y.dtype == dtype
    c, xs, rs = ops.quantize_per_token_int8(x.reshape(-1, K), G)
    want = ops.w4a8_gemm(c, xs, rs, packed, ws, G, b, out_dtype=dtype).view(*lead, N)
    assert torch.equal(y, want)


def test_linear_thread_counts_agree():
    N, K, G = 300, 1024, 128
    nib, ws = _weights(N, K, G)
    packed = ops.w4a8_pack(nib, ws, G)
    x = torch.randn(37, K)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.w4a8_linear(x, packed, ws, G)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(ops.w4a8_linear(x, packed, ws, G), one)


def test_empty_rows():
    nib, ws = _weights(16, 64, 32)
    y = ops.w4a8_linear(torch.randn(0, 64), ops.w4a8_pack(nib, ws, 32), ws, 32)
    assert y.shape == (0, 16)


def test_pack_matches_logical_format():
    """Packed unit: byte j of channel n, octet o = nib(8o + j) | nib(8o + 4 + j) << 4."""
    N, K = 20, 48
    nib = torch.randint(0, 256, (N, K // 2), dtype=torch.uint8)
    p = ops.w4a8_pack(nib, torch.ones(N, 1), K)
    assert p.shape == (2, K // 8, 64) and p.dtype == torch.uint8
    v = ref.unpack_nibbles(nib)  # [N, K]
    for n in (0, 5, 19):
        for o in range(K // 8):
            got = p[n // 16, o, (n % 16) * 4:(n % 16) * 4 + 4]
            want = v[n, 8 * o:8 * o + 4] | (v[n, 8 * o + 4:8 * o + 8] << 4)
            assert torch.equal(got.to(torch.int32), want), (n, o)
    assert (p[1, :, 4 * 4:] == 0x88).all()  # channels past N: weight 0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_scales_are_errors(bad):
    nib, ws = _weights(32, 128, 64)
    ws_bad = ws.clone()
    ws_bad[3, 1] = bad
    with pytest.raises(RuntimeError, match="scales: expected finite, strictly positive"):
        ops.w4a8_pack(nib, ws_bad, 64)
    packed = ops.w4a8_pack(nib, ws, 64)
    c, xs, rs = ops.quantize_per_token_int8(torch.randn(2, 128), 64)
    with pytest.raises(RuntimeError, match="w_scales: expected finite, strictly positive"):
        ops.w4a8_gemm(c, xs, rs, packed, ws_bad, 64)


def test_argument_errors_name_the_argument():
    nib, ws = _weights(32, 128, 64)
    packed = ops.w4a8_pack(nib, ws, 64)
    x = torch.randn(2, 128)
    c, xs, rs = ops.quantize_per_token_int8(x, 64)
    with pytest.raises(RuntimeError, match="x: K=128 is not divisible by group_size=48"):
        ops.quantize_per_token_int8(x, 48)
    with pytest.raises(RuntimeError, match="group_size: expected a positive multiple of 8"):
        ops.quantize_per_token_int8(x, 12)
    with pytest.raises(RuntimeError, match="weight: K=128 is not divisible by group_size=96"):
        ops.w4a8_pack(nib, ws, 96)
    with pytest.raises(RuntimeError, match="weight: expected uint8"):
        ops.w4a8_pack(nib.to(torch.int8), ws, 64)
    with pytest.raises(RuntimeError, match=r"scales: expected shape \[N, K/group_size\]"):
        ops.w4a8_pack(nib, ws[:, :1], 64)
    with pytest.raises(RuntimeError, match="codes: expected int8"):
        ops.w4a8_gemm(c.int(), xs, rs, packed, ws, 64)
    with pytest.raises(RuntimeError, match="x_scales: expected float32"):
        ops.w4a8_gemm(c, xs.double(), rs, packed, ws, 64)
    with pytest.raises(RuntimeError, match="x_rowsums: expected int32"):
        ops.w4a8_gemm(c, xs, rs[:, :1], packed, ws, 64)
    with pytest.raises(RuntimeError, match="w_scales: expected float32"):
        ops.w4a8_gemm(c, xs, rs, packed, ws.half(), 64)
    with pytest.raises(RuntimeError, match="packed: expected the CPU layout"):
        ops.w4a8_gemm(c, xs, rs, nib, ws, 64)
    with pytest.raises(RuntimeError, match=r"bias: expected shape \[N\]"):
        ops.w4a8_gemm(c, xs, rs, packed, ws, 64, torch.zeros(3))
    with pytest.raises(RuntimeError, match="out_dtype: expected float32, bfloat16 or float16"):
        ops.w4a8_gemm(c, xs, rs, packed, ws, 64, out_dtype=torch.float64)
    with pytest.raises(NotImplementedError, match="x: expected a float32, bfloat16 or float16"):
        ops.w4a8_linear(x.double(), packed, ws, 64)


def test_cpu_path_is_reported():
    assert vlmkern._C.w4a8_cpu_path() in ("scalar", "avx2", "avx512_vnni", "amx")


def test_opcheck_and_compile():
    N, K, G = 48, 128, 32
    nib, ws = _weights(N, K, G)
    packed = ops.w4a8_pack(nib, ws, G)
    x = torch.randn(3, K)
    c, xs, rs = ops.quantize_per_token_int8(x, G)
    torch.library.opcheck(torch.ops.vlmkern.quantize_per_token_int8.default, (x, G))
    torch.library.opcheck(torch.ops.vlmkern.w4a8_pack.default, (nib, ws, G))
    torch.library.opcheck(torch.ops.vlmkern.w4a8_gemm.default, (c, xs, rs, packed, ws, G, None, torch.bfloat16))
    torch.library.opcheck(torch.ops.vlmkern.w4a8_linear.default, (x, packed, ws, G, torch.randn(N)))

    def f(x):
        return ops.w4a8_linear(x, packed, ws, G) * 2

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), f(x))
