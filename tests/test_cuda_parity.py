"""CUDA kernels against the CPU kernels (the CPU ones are tested against the
eager references elsewhere). They run where a CUDA device exists; on these
project machines, which have none, the same kernels run under the CUDA
emulator instead (tests/test_cudasim.py).

An extension that fails to import is an error here as everywhere, and on a
machine with a GPU an extension built without its CUDA kernels fails (unless
it was built with VLMKERN_CUDA=OFF on purpose)."""

from __future__ import annotations

import math
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


# ---- frame_similarity ------------------------------------------------------------------

def _frame_similarity(x, ref, eps=1e-8):
    return torch.ops.vlmkern.frame_similarity(x, ref, eps)


def _previous_frame(T):
    return torch.arange(-1, T - 1, dtype=torch.int64)


def _compare_frame_similarity(x, ref, eps=1e-8):
    want = _frame_similarity(x, ref, eps)
    out = _frame_similarity(x.cuda(), ref.cuda(), eps)
    assert out.device.type == "cuda" and out.dtype == torch.float32
    assert out.shape == want.shape == x.shape[:3]
    out = out.cpu()
    _assert_cosine_close(out, want)
    return out, want


def _assert_cosine_close(out, ref):
    """Within 1e-5 absolute (cosines lie in [-1, 1]), NaN at the same places.
    Why: both backends sum <x, r>, |x|^2, |r|^2 in fp32 with FMAs, in different
    orders (CPU: 8 partial sums or vector lanes; CUDA: 32 lanes and a butterfly),
    and finish alike (math/cosine.h); under the emulator (tests/test_cudasim.py)
    CUDA and the CPU's plain C++ path differ by at most 1.8e-7."""
    assert torch.equal(out.isnan(), ref.isnan())
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,T,N,D", [(1, 1, 1, 1), (1, 2, 1, 7), (3, 9, 5, 33), (1, 2, 196, 77),
                                     (2, 9, 196, 7), (1, 9, 196, 77), (1, 9, 196, 3584)])
def test_frame_similarity_sizes(dtype, B, T, N, D):
    g = torch.Generator().manual_seed(B * 1000 + T * 100 + N + D)
    x = torch.randn(B, T, N, D, generator=g).to(dtype)
    out, _ = _compare_frame_similarity(x, _previous_frame(T))
    assert out[:, 0].isnan().all() and not out[:, 1:].isnan().any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ref", [[-1, 0, 0, 0, -1, 4, 4, 4], [4, -1, 1, 0, 1, 2, -1, 6], [-1] * 8])
def test_frame_similarity_anchors(dtype, ref):
    g = torch.Generator().manual_seed(len(ref))
    x = torch.randn(3, 8, 5, 33, generator=g).to(dtype)
    ref = torch.tensor(ref, dtype=torch.int64)
    out, _ = _compare_frame_similarity(x, ref)
    assert torch.equal(out.isnan().all(2).all(0), ref < 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_frame_similarity_strided(dtype):
    g = torch.Generator().manual_seed(6)
    base = torch.randn(3, 9, 5, 40, generator=g).to(dtype)
    _compare_frame_similarity(base[..., 3:36], _previous_frame(9))  # row, frame and video gaps
    _compare_frame_similarity(base[:, :, ::2, :33], _previous_frame(9))
    tokens_major = torch.randn(3, 5, 9, 33, generator=g).to(dtype).transpose(1, 2)  # [B, T, N, D]
    _compare_frame_similarity(tokens_major, torch.tensor([-1, 0, 0, 0, -1, 4, 4, 4, 4]))
    time_major = torch.randn(9, 5, 3, 33, generator=g).to(dtype).permute(2, 0, 1, 3)
    _compare_frame_similarity(time_major, _previous_frame(9))
    one_token = torch.randn(3, 9, 1, 33, generator=g).to(dtype).expand(3, 9, 5, 33)  # stride 0 along N
    _compare_frame_similarity(one_token, _previous_frame(9))
    one_frame = base[:, :1].expand(3, 9, 5, 40)  # stride 0 along T: every frame a copy
    out, want = _compare_frame_similarity(one_frame, _previous_frame(9))
    assert (out[:, 1:] == 1).all() and (want[:, 1:] == 1).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("D", [1, 7, 33, 77, 3584])
def test_frame_similarity_copies_are_exactly_one(dtype, D):
    """A frame that is a copy of its reference gives exactly 1.0 on both
    backends (the three sums are equal bit for bit; the division is exact)."""
    g = torch.Generator().manual_seed(D)
    x = torch.randn(2, 8, 11, D, generator=g).to(dtype)
    x[:, 1] = x[:, 0]
    x[:, 2, ::2] = x[:, 0, ::2]
    x[:, 5] = x[:, 4]
    x[:, 6] = x[:, 4]
    x[:, 6, :, 0] += 3  # not a copy
    out, want = _compare_frame_similarity(x, torch.tensor([-1, 0, 0, 0, -1, 4, 4, 4]))
    for o in (out, want):
        assert (o[:, 1] == 1).all() and (o[:, 2, ::2] == 1).all() and (o[:, 5] == 1).all()
        assert D == 1 or (o[:, 6] < 1).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_frame_similarity_zero_nan_inf(dtype):
    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 8, 5, 40, generator=g)
    x[:, 1] = 0  # zero against random: exactly 0 (the eps floor)
    x[:, 2, 1::2] = -0.0
    x[:, 3, 1::2] = 0.0  # zero against zero
    x[0, 5, 3, 5] = float("nan")
    x[1, 6, 0, 39] = float("inf")
    x[1, 7, 4, 17] = float("-inf")
    x = x.to(dtype)
    ref = torch.tensor([-1, 0, 1, 2, -1, 4, 5, 6])
    out, want = _compare_frame_similarity(x, ref)
    for o in (out, want):
        assert (o[:, 1] == 0).all() and (o[:, 2] == 0).all() and (o[:, 3, 1::2] == 0).all()
        assert o[0, 5, 3].isnan() and o[0, 6, 3].isnan() and o[1, 6, 0].isnan() and o[1, 7, 0].isnan()
        assert o[1, 7, 4].isnan() and o.isnan().sum() == 2 * 2 * 5 + 5


def test_frame_similarity_tiny_inputs():
    # Sums near and below FLT_MIN: the CUDA build keeps IEEE denormals.
    g = torch.Generator().manual_seed(14)
    for scale, eps in ((1e-22, 1e-8), (1e-19, 1e-8), (1e-19, 1e-44), (1e-40, 1e-8)):
        x = torch.randn(2, 4, 6, 77, generator=g) * scale
        _compare_frame_similarity(x, torch.tensor([-1, 0, 1, 0]), eps)


def test_frame_similarity_empty():
    for shape in ((0, 3, 5, 8), (2, 3, 0, 8), (2, 0, 5, 8)):
        x = torch.randn(*shape)
        ref = _previous_frame(shape[1])
        out = _frame_similarity(x.cuda(), ref.cuda())
        assert out.shape == shape[:3] and out.device.type == "cuda"
    x = torch.randn(2, 3, 9, 0)
    out, _ = _compare_frame_similarity(x, torch.tensor([-1, 0, 0]))
    assert (out[:, 1:] == 0).all()


# ---- pixel_dedup -------------------------------------------------------------------------

def _pixel_dedup(pixels, grid, tol=0.0):
    return torch.ops.vlmkern.pixel_dedup(pixels, grid, tol)


STEP = 2.0**-6  # noise and drift step: exact in every dtype for |x| < 2


def _compare_pixel_dedup(pixels, grid, tol, expect=None):
    """The same source indices on both backends. Both sum |x - anchor| in fp64,
    in different orders (CPU: chunks of 65536 values; CUDA: 256 strided sums and
    a butterfly), so they could differ only for a group whose mean lies within
    fp64 rounding of tol; these cases keep every mean far from tol, or put
    every value on a 2^-6 grid so that every sum is exact. Under the emulator
    (tests/test_cudasim.py) the CUDA kernel equals the CPU on all its cases."""
    grid = torch.as_tensor(grid, dtype=torch.int64).reshape(-1, 3)
    want = _pixel_dedup(pixels, grid, tol)
    out = _pixel_dedup(pixels.cuda(), grid.cuda(), tol)
    assert out.device.type == "cuda" and out.dtype == torch.int64
    assert out.shape == want.shape == (int(grid[:, 0].sum()),)
    assert torch.equal(out.cpu(), want), (out.cpu(), want)
    if expect is not None:
        assert want.tolist() == expect, (want.tolist(), expect)
    return want


def _random_videos(grids, F, dtype, seed):
    """Each video: group 0 normal; each later group a copy of the previous one,
    a near copy (+-2^-6 on every value, mean ~0.016 from it) or fresh normals
    (mean ~1.13 from anything), so with tol 0, 0.005, 0.05 or 0.6 no mean is
    near tol."""
    g = torch.Generator().manual_seed(seed)
    parts = []
    for t, h, w in grids:
        groups = []
        for i in range(t):
            kind = int(torch.randint(0, 4, (1,), generator=g)) if i else 3
            if kind == 0:
                groups.append(groups[-1].clone())
            elif kind in (1, 2):
                sign = torch.randint(0, 2, (h * w, F), generator=g).float() * 2 - 1
                groups.append(groups[-1] + sign * STEP)
            else:
                groups.append(torch.randn(h * w, F, generator=g))
        parts.append(torch.cat(groups) if groups else torch.zeros(0, F))
    return torch.cat(parts).to(dtype), torch.tensor(grids, dtype=torch.int64).reshape(-1, 3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tol", [0.0, 0.005, 0.05, 0.6])
def test_pixel_dedup_videos(dtype, tol):
    # Several videos per call; t = 1 and t = 0 among them; 105 values per slab.
    pixels, grid = _random_videos([(4, 2, 3), (1, 5, 5), (0, 3, 3), (6, 7, 5), (3, 1, 1)], 3, dtype, 1)
    _compare_pixel_dedup(pixels, grid, tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("grids,F,tol", [([(5, 7, 9), (2, 2, 2)], 1176, 0.05),  # a two-chunk slab
                                         ([(4, 16, 16)], 1176, 0.0),  # 4.6 chunks per slab
                                         ([(6, 32, 24), (2, 1, 3)], 1176, 0.005),
                                         ([(9, 3, 5), (1, 1, 1), (12, 1, 1)], 1, 0.05)])  # F = 1
def test_pixel_dedup_sizes(dtype, grids, F, tol):
    pixels, grid = _random_videos(grids, F, dtype, len(grids) * 100 + F)
    _compare_pixel_dedup(pixels, grid, tol)


def test_pixel_dedup_many_videos():
    g = torch.Generator().manual_seed(9)
    grids = [(int(t), int(h) + 1, int(w) + 1) for t, h, w in torch.randint(0, 6, (40, 3), generator=g)]
    pixels, grid = _random_videos(grids, 7, torch.bfloat16, 10)
    _compare_pixel_dedup(pixels, grid, 0.05)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pixel_dedup_exact_and_near_repeats(dtype):
    g = torch.Generator().manual_seed(20)
    x = torch.randn(8, 63, 1176, generator=g)  # 8 groups of 7 x 9 patches: two chunks each
    x[1] = x[0]
    x[3] = x[2]
    x[4] = x[0]  # a copy of group 0, which is not the anchor (2): kept
    x[5] = x[4]
    x[6] = x[4]
    x[6, -1, -1] += 1  # one value differs: kept
    x[7] = x[6]
    _compare_pixel_dedup(x.reshape(-1, 1176).to(dtype), [(8, 7, 9)], 0.0, [0, 0, 2, 2, 4, 4, 6, 6])
    # Near repeats on the 2^-6 grid: means exactly 2^-6 or 2^-5, every sum exact.
    base = torch.randint(-96, 97, (63, 1176), generator=g).float() * STEP
    e = (torch.randint(0, 2, (63, 1176), generator=g).float() * 2 - 1) * STEP
    y = torch.stack([base, base + e, base - e, base - e, base + e]).reshape(-1, 1176).to(dtype)
    for tol, expect in ((0.005, [0, 1, 2, 2, 4]), (0.02, [0] * 5), (STEP, [0] * 5),
                        (math.nextafter(STEP, 0), [0, 1, 2, 2, 4])):
        _compare_pixel_dedup(y, [(5, 7, 9)], tol, expect)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pixel_dedup_drift_compares_with_the_anchor(dtype):
    """Each group within tol of the previous one, not of the anchor (the last
    kept group): against the previous group every group would match."""
    g = torch.Generator().manual_seed(40)
    base = torch.randint(-64, 65, (15, 33), generator=g).float() * STEP
    x = torch.stack([base + i * STEP for i in range(8)]).reshape(-1, 33).to(dtype)
    for steps, expect in ((1.5, [0, 0, 2, 2, 4, 4, 6, 6]), (2.0, [0, 0, 0, 3, 3, 3, 6, 6]),
                          (0.5, list(range(8))), (8.0, [0] * 8)):
        _compare_pixel_dedup(x, [(8, 3, 5)], steps * STEP, expect)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pixel_dedup_nan_inf_and_signed_zeros(dtype):
    g = torch.Generator().manual_seed(50)
    x = torch.randn(9, 12, 7, generator=g)
    x[1:] = x[0]
    x[2, 3, 3] = float("nan")  # kept, and the anchor: 3 (its copy) and 4 (clean) are kept too
    x[3] = x[2]
    x[6, -1, -1] = float("inf")  # kept; 7 (Inf - Inf) and 8 (against Inf) too
    x[7] = x[6]
    v = torch.randn(4, 4, 7, generator=g)
    v[0, 0, 0] = float("nan")  # NaN in group 0: group 1 (a copy) is kept
    v[1] = v[0]
    v[2] = v[0]
    v[2, 0, 0] = 0.25
    v[3] = v[2]
    pixels = torch.cat([x.reshape(-1, 7), v.reshape(-1, 7)]).to(dtype)
    for tol in (0.0, 0.5, 1e30):
        _compare_pixel_dedup(pixels, [(9, 3, 4), (4, 2, 2)], tol, [0, 0, 2, 3, 4, 4, 6, 7, 8, 9, 10, 11, 11])
    z = torch.randn(5, 9, 5, generator=g)
    z[0] = torch.where(torch.rand(9, 5, generator=g) < 0.5, 0.0, -0.0)
    z[1] = -0.0
    z[2] = 0.0
    z[3, :, ::2] = 0.0
    z[4] = z[3]
    z[4, :, ::2] = -0.0
    _compare_pixel_dedup(z.reshape(-1, 5).to(dtype), [(5, 3, 3)], 0.0, [0, 0, 0, 3, 3])


def test_pixel_dedup_empty():
    for dtype in DTYPES:
        out = _pixel_dedup(torch.zeros(0, 1176, dtype=dtype).cuda(), torch.zeros(0, 3, dtype=torch.int64).cuda())
        assert out.shape == (0,) and out.device.type == "cuda"
    _compare_pixel_dedup(torch.zeros(0, 6), [(0, 2, 2), (0, 1, 1)], 0.0, [])
    pixels, grid = _random_videos([(3, 0, 5), (4, 2, 2), (0, 3, 3), (2, 4, 0)], 6, torch.float16, 80)
    want = _compare_pixel_dedup(pixels, grid, 0.0)  # h = 0, w = 0: every group matches group 0
    assert want[:3].tolist() == [0, 0, 0] and want[7:].tolist() == [7, 7]
    _compare_pixel_dedup(torch.zeros(40, 0, dtype=torch.bfloat16), [(4, 3, 3), (1, 2, 2)], 0.0,
                         [0, 0, 0, 0, 4])  # F = 0


def test_pixel_dedup_errors_like_the_cpu():
    pixels, grid = _random_videos([(2, 2, 2)], 4, torch.float32, 3)
    bad = [(pixels, grid, -1.0), (pixels, grid, float("nan")), (pixels[:-1], grid, 0.0),
           (pixels, torch.tensor([[-1, 2, 2]]), 0.0), (pixels, grid[:, :2], 0.0)]
    for p, gr, tol in bad:
        with pytest.raises(RuntimeError) as cpu_err:
            _pixel_dedup(p, gr, tol)
        with pytest.raises(RuntimeError) as cuda_err:
            _pixel_dedup(p.cuda(), gr.cuda(), tol)
        # the same message, up to the device the tensors are described on
        cuda_msg = str(cuda_err.value).splitlines()[0].replace(" CUDA ", " CPU ")
        assert str(cpu_err.value).splitlines()[0] == cuda_msg


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
