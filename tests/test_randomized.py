"""Randomized parity (hypothesis): every op against its vlmkern.reference on
random shapes (1, primes, sizes around every vector width and tile edge),
dtypes, GQA ratios, masks, budgets and CPU code paths; and thread safety: the
same bits at 1 and 2 intra-op threads, and two Python threads calling the ops
at once get what each gets alone.

Examples per op: VLMKERN_FUZZ_EXAMPLES (default 60 here; `make stress` runs
10^4). A failure shrinks to a minimal case; pin it below with @example so it
stays a regular test.
"""

from __future__ import annotations

import os
import threading

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis (requirements.txt) is not installed")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import vlmkern  # noqa: E402
from vlmkern import ops  # noqa: E402
from vlmkern.reference import attention_mass as ref_attention_mass  # noqa: E402
from vlmkern.reference import cluster as ref_cluster  # noqa: E402
from vlmkern.reference import topk as ref_topk  # noqa: E402
from vlmkern.reference import video as ref_video  # noqa: E402
from vlmkern.reference import w4a8 as ref_w4a8  # noqa: E402
from conftest import cpu_isas  # noqa: E402

EXAMPLES = int(os.environ.get("VLMKERN_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# Sizes that hit every tail: 1, primes, and each vector width (8, 16, 32) +- 1.
EDGES = [1, 2, 3, 5, 7, 8, 9, 13, 15, 16, 17, 31, 32, 33, 63, 64, 65, 97, 127, 128, 129]


def _isa(isa):
    vlmkern._C.set_cpu_isa_cap(isa)


@pytest.fixture(autouse=True)
def _restore_isa():
    yield
    vlmkern._C.set_cpu_isa_cap("amx")


@FUZZ
@given(B=st.integers(1, 3), Hkv=st.integers(1, 3), rep=st.integers(1, 4), Lq=st.sampled_from([1, 2, 3, 5, 9]),
       Lk=st.sampled_from(EDGES + [300, 577, 1031]), D=st.sampled_from(EDGES[:18]),
       dtype=st.sampled_from(DTYPES), causal=st.booleans(), masked=st.booleans(), weighted=st.booleans(),
       isa=st.sampled_from(cpu_isas()), span=st.tuples(st.floats(0, 1), st.floats(0, 1)), seed=st.integers(0, 2**16))
@example(B=1, Hkv=1, rep=1, Lq=1, Lk=1, D=1, dtype=torch.float32, causal=True, masked=False, weighted=False,
         isa="scalar", span=(0.0, 1.0), seed=0)
def test_attention_mass_random(B, Hkv, rep, Lq, Lk, D, dtype, causal, masked, weighted, isa, span, seed):
    Lq = min(Lq, Lk)
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Hkv * rep, Lq, D, generator=g).to(dtype)
    k = torch.randn(B, Hkv, Lk, D, generator=g).to(dtype)
    mask = (torch.rand(B, Lk, generator=g) > 0.3) if masked else None
    w = torch.rand(B, Lq, generator=g) if weighted else None
    lo, hi = sorted(int(f * Lk) for f in span)
    _isa(isa)
    out = ops.attention_mass(q, k, lo, hi, causal=causal, key_padding_mask=mask, query_weights=w)
    want = ref_attention_mass(q, k, lo, hi, causal=causal, key_padding_mask=mask, query_weights=w)
    # the CPU paths' tolerance (tests/test_attention_mass.py): 2e-5 of the largest mass
    tol = 2e-5 * max(want.abs().max().item() if want.numel() else 0.0, 1e-30)
    torch.testing.assert_close(out, want, rtol=0, atol=tol)


@FUZZ
@given(B=st.integers(1, 4), N=st.sampled_from(EDGES + [300, 1000, 4097]), dtype=st.sampled_from(DTYPES),
       ties=st.booleans(), nans=st.booleans(), strided=st.booleans(), data=st.data(), seed=st.integers(0, 2**16))
def test_topk_random(B, N, dtype, ties, nans, strided, data, seed):
    g = torch.Generator().manual_seed(seed)
    s = torch.randint(-3, 4, (B, 2 * N), generator=g).float() if ties else torch.randn(B, 2 * N, generator=g)
    if nans:
        s[torch.rand(B, 2 * N, generator=g) < 0.1] = float("nan")
    s = s.to(dtype)
    s = s[:, ::2] if strided else s[:, :N].contiguous()
    keep = torch.tensor(data.draw(st.lists(st.integers(0, N), min_size=B, max_size=B)), dtype=torch.int64)
    got = ops.topk_indices(s, keep)
    assert torch.equal(got, ref_topk.topk_indices(s, keep))


@FUZZ
@given(M=st.sampled_from([1, 2, 3, 4, 5, 15, 16, 17, 33, 64, 65]), N=st.sampled_from([1, 7, 15, 16, 17, 31, 33, 70]),
       G=st.sampled_from([8, 16, 32, 64, 128]), groups=st.integers(1, 4), bias=st.booleans(),
       out_dtype=st.sampled_from(DTYPES), isa=st.sampled_from(cpu_isas()), seed=st.integers(0, 2**16))
def test_w4a8_random(M, N, G, groups, bias, out_dtype, isa, seed):
    K = G * groups
    g = torch.Generator().manual_seed(seed)
    nib, ws = ref_w4a8.quantize_weight(torch.randn(N, K, generator=g) * 0.05, G, clip_search=False)
    x = torch.randn(M, K, generator=g) * 3
    b = torch.randn(N, generator=g) if bias else None
    _isa(isa)
    c, xs, rs = ops.quantize_per_token_int8(x, G)
    c2, xs2, rs2 = ref_w4a8.quantize_per_token_int8(x, G)
    assert torch.equal(c, c2) and torch.equal(xs, xs2) and torch.equal(rs, rs2)
    y = ops.w4a8_gemm(c, xs, rs, ops.w4a8_pack(nib, ws, G), ws, G, b, out_dtype)
    want = ref_w4a8.w4a8_gemm(c, xs, rs, nib, ws, G, b)
    if out_dtype == torch.float32:  # same order as the reference: fp32 double rounding at most
        torch.testing.assert_close(y, want, rtol=2e-6, atol=1e-6)
    else:  # then one rounding to the output dtype (one unit in the last place)
        torch.testing.assert_close(y.float(), want, rtol=2**-7 if out_dtype == torch.bfloat16 else 2**-10,
                                   atol=1e-5)


# ---- video ops -----------------------------------------------------------------------------

def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}[t.dtype])


def _maybe_strided(x: torch.Tensor, strided: bool) -> torch.Tensor:
    """x as a view whose rows are 3 elements apart (only the last dim contiguous)."""
    if not strided:
        return x
    wide = torch.zeros(*x.shape[:-1], x.shape[-1] + 3, dtype=x.dtype)
    wide[..., :x.shape[-1]] = x
    return wide[..., :x.shape[-1]]


@FUZZ
@given(B=st.integers(1, 3), T=st.integers(1, 6), N=st.sampled_from([1, 2, 3, 7, 8, 9, 15, 16, 17, 33]),
       D=st.sampled_from(EDGES + [300, 1031]), dtype=st.sampled_from(DTYPES), repeats=st.booleans(),
       special=st.sampled_from(["none", "zero", "nan"]), strided=st.booleans(), isa=st.sampled_from(cpu_isas()),
       data=st.data(), seed=st.integers(0, 2**16))
@example(B=1, T=1, N=1, D=1, dtype=torch.float32, repeats=False, special="none", strided=False, isa="scalar",
         data=None, seed=0)
def test_frame_similarity_random(B, T, N, D, dtype, repeats, special, strided, isa, data, seed):
    # any reference frame other than the frame itself, or -1 (none)
    ref = [-1] if data is None else [data.draw(st.sampled_from([-1] + [r for r in range(T) if r != t]))
                                     for t in range(T)]
    ref = torch.tensor(ref, dtype=torch.int64)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, N, D, generator=g).to(dtype)
    if repeats and T > 1:  # identical rows and a power-of-two multiple: the cosine is exactly 1
        x[:, T - 1] = x[:, 0]
        x[:, T // 2] = x[:, 0] * 2
    if special == "zero":  # a zero row: cos 0 by the eps floor
        x.view(-1, D)[torch.randint(0, B * T * N, (2,), generator=g)] = 0
    elif special == "nan":  # NaN in a row: that cosine (and those against the row) NaN
        x.view(-1)[torch.randint(0, x.numel(), (3,), generator=g)] = float("nan")
    x = _maybe_strided(x, strided)
    _isa(isa)
    got = ops.frame_similarity(x, ref)
    want = ref_video.frame_similarity(x, ref)
    assert got.dtype == torch.float32 and got.shape == (B, T, N)
    assert torch.equal(got.isnan(), want.isnan())
    # tests/test_frame_similarity.py's tolerance against the fp64 definition
    torch.testing.assert_close(got.nan_to_num(), want.nan_to_num(), rtol=0, atol=2e-6)
    if repeats and special == "none" and T > 1 and int(ref[T - 1]) == 0:
        assert (got[:, T - 1] == 1).all()  # two identical rows give exactly 1.0 on every backend


@FUZZ
@given(grids=st.lists(st.tuples(st.integers(1, 6), st.integers(1, 4), st.integers(1, 4)), min_size=0, max_size=3),
       F=st.sampled_from([1, 2, 3, 7, 8, 9, 16, 17, 33, 64, 65, 129]), dtype=st.sampled_from(DTYPES),
       tol=st.sampled_from([0.0, 0.03, 0.07, 0.5, 10.0]), nan=st.booleans(), isa=st.sampled_from(cpu_isas()),
       data=st.data(), seed=st.integers(0, 2**16))
def test_pixel_dedup_random(grids, F, dtype, tol, nan, isa, data, seed):
    g = torch.Generator().manual_seed(seed)
    grid = torch.tensor(grids, dtype=torch.int64).view(-1, 3)
    x = torch.randn(int(grid.prod(-1).sum()), F, generator=g).to(dtype)
    row = 0
    for t, h, w in grids:  # each later group: fresh, an exact repeat, or a near repeat of an earlier one
        hw = h * w
        for i in range(1, t):
            kind = data.draw(st.sampled_from(["fresh", "repeat", "near"]))
            j = data.draw(st.integers(0, i - 1))
            src = x[row + j * hw: row + (j + 1) * hw]
            if kind == "repeat":
                x[row + i * hw: row + (i + 1) * hw] = src
            elif kind == "near":  # mean absolute difference about 0.0625, between the tolerances
                x[row + i * hw: row + (i + 1) * hw] = (src.float() + 0.0625).to(dtype)
        row += t * hw
    if nan and x.numel():  # NaN never matches
        x.view(-1)[torch.randint(0, x.numel(), (2,), generator=g)] = float("nan")
    _isa(isa)
    got = ops.pixel_dedup(x, grid, tol)
    assert got.dtype == torch.int64 and got.shape == (int(grid[:, 0].sum()),)
    assert torch.equal(got, ref_video.pixel_dedup(x, grid, tol))


@FUZZ
@given(B=st.integers(1, 2), n=st.sampled_from([1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 65, 100]),
       D=st.sampled_from(EDGES[:18] + [257]), dtype=st.sampled_from(DTYPES),
       layout=st.sampled_from(["clustered", "duplicates", "line", "low_rank"]), strided=st.booleans(),
       isa=st.sampled_from(cpu_isas()), data=st.data(), seed=st.integers(0, 2**16))
def test_dpc_knn_random(B, n, D, dtype, layout, strided, isa, data, seed):
    k = data.draw(st.integers(1, min(n, 64)))
    m = data.draw(st.integers(1, n))
    g = torch.Generator().manual_seed(seed)
    if layout == "clustered":  # a few hubs plus noise: what the methods feed it
        hubs = torch.randn(B, 6, D, generator=g) * 3
        x = hubs[:, torch.randint(0, 6, (n,), generator=g)] + torch.randn(B, n, D, generator=g)
    elif layout == "duplicates":  # copies at distance exactly 0, tied densities
        base = torch.randn(B, (n + 1) // 2, D, generator=g)
        x = torch.cat([base, base], 1)[:, torch.randperm(2 * base.shape[1], generator=g)[:n]]
    elif layout == "line":  # equal spacing: exactly equal distances everywhere
        x = torch.zeros(B, n, D)
        x[..., 0] = torch.arange(float(n))
    else:  # many almost equal distances
        x = torch.randn(B, n, 3, generator=g) @ torch.randn(3, D, generator=g)
    x = _maybe_strided(x.to(dtype), strided)
    _isa(isa)
    centres, assign = ops.dpc_knn(x, k, m)
    want_c, want_a = ref_cluster.dpc_knn(x, k, m)
    assert centres.shape == (B, m) and assign.shape == (B, n)
    assert torch.equal(centres, want_c), (centres, want_c)
    assert torch.equal(assign, want_a)
    if isa != "scalar":  # every path bit for bit the same as the scalar one
        _isa("scalar")
        c1, a1 = ops.dpc_knn(x, k, m)
        assert torch.equal(c1, centres) and torch.equal(a1, assign)


@FUZZ
@given(B=st.integers(1, 3), T=st.integers(1, 6), H=st.integers(1, 5), W=st.integers(1, 6),
       D=st.sampled_from(EDGES + [300]), dtype=st.sampled_from(DTYPES), mode=st.sampled_from(["global", "per_frame"]),
       repeats=st.booleans(), nan=st.booleans(), strided=st.booleans(), as_tensor=st.booleans(),
       features=st.booleans(), isa=st.sampled_from(cpu_isas()), data=st.data(), seed=st.integers(0, 2**16))
def test_temporal_select_random(B, T, H, W, D, dtype, mode, repeats, nan, strided, as_tensor, features, isa, data,
                                seed):
    """tests/test_temporal_select.py's check (the reference fed the op's own
    similarities, so exact), here also on strided input, a tensor ref, without
    the features, and every path against the scalar one bit for bit."""
    N = H * W
    ref = [data.draw(st.integers(-1, t - 1)) for t in range(T)]
    keep = data.draw(st.integers(0, T * N if mode == "global" else N))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, N, D, generator=g).to(dtype)
    if repeats and T > 1:  # exact ties: a frame repeated, another a power-of-two multiple
        x[:, T - 1] = x[:, 0]
        x[:, T // 2] = x[:, 0] * 2
    if nan:  # NaN similarities rank last
        x.view(-1)[torch.randint(0, x.numel(), (3,), generator=g)] = float("nan")
    x = _maybe_strided(x, strided)
    ref_arg = torch.tensor(ref, dtype=torch.int64) if as_tensor else ref
    _isa(isa)
    idx, thw, feat = ops.temporal_select(x, ref_arg, mode, keep, H, W, features=features)
    sim = ops.frame_similarity(x, torch.tensor(ref, dtype=torch.int64))
    w_idx, w_thw, w_feat = ref_video.temporal_select(x, ref, mode, keep, H, W, sim=sim)
    K = keep if mode == "global" else sum(N if r < 0 else keep for r in ref)
    assert idx.shape == (B, K) and thw.shape == (B, K, 3)
    assert torch.equal(idx, w_idx), (idx, w_idx)
    assert torch.equal(thw, w_thw)
    if features:
        assert torch.equal(_bits(feat), _bits(w_feat))
    else:
        assert feat.shape == (0,) and feat.dtype == x.dtype
    if isa != "scalar":
        _isa("scalar")
        idx1, _, _ = ops.temporal_select(x, ref_arg, mode, keep, H, W, features=False)
        assert torch.equal(idx1, idx)


# ---- threads -------------------------------------------------------------------------------

def _workloads():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 8, 4, 64, generator=g), torch.randn(2, 2, 2048, 64, generator=g)
    s = torch.randn(4, 5000, generator=g)
    nib, ws = ref_w4a8.quantize_weight(torch.randn(96, 512, generator=g) * 0.05, 128, clip_search=False)
    packed = ops.w4a8_pack(nib, ws, 128)
    x = torch.randn(70, 512, generator=g)
    video = torch.randn(2, 8, 196, 128, generator=g).bfloat16()
    video[:, 5] = video[:, 4]  # exact ties
    frames = torch.tensor([-1, 0, 1, 2, -1, 4, 4, 6])
    grid = torch.tensor([[6, 16, 16], [3, 8, 8]])
    pixels = torch.randn(int(grid.prod(-1).sum()), 1176, generator=g)
    pixels[256:512] = pixels[:256]
    pixels[512:768] = pixels[:256] + 1e-3
    pts = torch.randn(3, 6, 64, generator=g)[:, torch.randint(0, 6, (300,), generator=g)] * 3
    pts = pts + torch.randn(3, 300, 64, generator=g)
    return {
        "attention_mass": lambda: ops.attention_mass(q, k, 1000, 2048),
        "topk_indices": lambda: ops.topk_indices(s, 1234),
        "w4a8_linear": lambda: ops.w4a8_linear(x, packed, ws, 128),
        "quantize_per_token_int8": lambda: ops.quantize_per_token_int8(x, 128)[0],
        # the video ops; floats compared as bits (frame_similarity's NaN rows)
        "frame_similarity": lambda: _bits(ops.frame_similarity(video, frames)),
        "pixel_dedup": lambda: ops.pixel_dedup(pixels, grid, 2e-3),
        "dpc_knn": lambda: torch.cat(ops.dpc_knn(pts, 9, 40), 1),
        "temporal_select global": lambda: _cat_bits(ops.temporal_select(video, frames, "global", 700, 14, 14)),
        "temporal_select per_frame": lambda: _cat_bits(ops.temporal_select(video, frames, "per_frame", 50, 14, 14)),
    }


def _cat_bits(out):
    idx, thw, feat = out
    return torch.cat([idx.flatten(), thw.flatten(), _bits(feat).flatten().long()])


@pytest.mark.parametrize("isa", cpu_isas())
def test_same_bits_at_one_and_two_threads(isa):
    _isa(isa)
    n = torch.get_num_threads()
    try:
        for name, fn in _workloads().items():
            torch.set_num_threads(1)
            one = fn()
            torch.set_num_threads(2)
            two = fn()
            assert torch.equal(one, two), (isa, name)
    finally:
        torch.set_num_threads(n)


def test_two_python_threads_at_once():
    """Each op called from two Python threads at the same time, many times,
    gives what it gives alone (no shared scratch, per-thread state only)."""
    work = _workloads()
    alone = {name: fn() for name, fn in work.items()}
    errors = []

    def run(order):
        try:
            for _ in range(5):
                for name in order:
                    if not torch.equal(work[name](), alone[name]):
                        errors.append(name)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    names = list(work)
    threads = [threading.Thread(target=run, args=(names,)), threading.Thread(target=run, args=(names[::-1],))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
