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
from vlmkern.reference import topk as ref_topk  # noqa: E402
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


# ---- threads -------------------------------------------------------------------------------

def _workloads():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 8, 4, 64, generator=g), torch.randn(2, 2, 2048, 64, generator=g)
    s = torch.randn(4, 5000, generator=g)
    nib, ws = ref_w4a8.quantize_weight(torch.randn(96, 512, generator=g) * 0.05, 128, clip_search=False)
    packed = ops.w4a8_pack(nib, ws, 128)
    x = torch.randn(70, 512, generator=g)
    return {
        "attention_mass": lambda: ops.attention_mass(q, k, 1000, 2048),
        "topk_indices": lambda: ops.topk_indices(s, 1234),
        "w4a8_linear": lambda: ops.w4a8_linear(x, packed, ws, 128),
        "quantize_per_token_int8": lambda: ops.quantize_per_token_int8(x, 128)[0],
    }


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
