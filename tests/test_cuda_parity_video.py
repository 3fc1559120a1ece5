"""CUDA video kernels (frame_similarity, temporal_select, pixel_dedup, dpc_knn) against the CPU kernels,
where a CUDA device exists; the rules of tests/test_cuda_parity.py apply (on
these project machines, which have no GPU, the same kernels run under the CUDA
emulator: tests/test_cudasim.py)."""

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


# ---- temporal_select -------------------------------------------------------------------
# CUDA's scores are CUDA frame_similarity's bits (the same per-warp loop and
# math/cosine.h), so given those similarities the selection, triples and rows
# must equal the eager reference exactly; against the CPU op (other last bits
# of the cosines) the kept sets agree up to near-ties, and exactly where the
# ties are exact (copied frames).

def _temporal_select_both(x, ref, mode, keep, H, W, features=True):
    from vlmkern import ops

    cpu = ops.temporal_select(x, ref, mode, keep, H, W, features=features)
    out = ops.temporal_select(x.cuda(), ref, mode, keep, H, W, features=features)
    assert all(o.device.type == "cuda" for o in out)
    return cpu, tuple(o.cpu() for o in out)


def _check_temporal_select(x, ref, mode, keep, H, W):
    from vlmkern import ops, reference

    refs = list(range(-1, x.shape[1] - 1)) if ref is None else list(ref)
    cpu, (idx, thw, feat) = _temporal_select_both(x, ref, mode, keep, H, W)
    sim = ops.frame_similarity(x.cuda(), torch.tensor(refs, dtype=torch.int64).cuda()).cpu()
    w_idx, w_thw, w_feat = reference.temporal_select(x, refs, mode, keep, H, W, sim=sim)
    assert torch.equal(idx, w_idx) and torch.equal(thw, w_thw)
    assert torch.equal(feat.view(torch.uint8), w_feat.contiguous().view(torch.uint8))
    # against the CPU op: every kept token's fp64-free CPU score within 1e-5 of the dropped ones'
    score = -ops.frame_similarity(x, torch.tensor(refs, dtype=torch.int64)).double()
    B, T, N, _ = x.shape
    for b in range(B):
        if mode == "global":
            s = score[b].clone()
            s[torch.tensor(refs) < 0] = float("inf")
            groups = [(s.reshape(-1).nan_to_num(nan=-9.0), torch.arange(T * N))]
        else:
            groups = [(score[b, t].nan_to_num(nan=-9.0), torch.arange(N) + t * N) for t in range(T) if refs[t] >= 0]
        kept = set(idx[b].tolist())
        for s, flat in groups:
            m = torch.tensor([int(f) in kept for f in flat])
            if m.any() and (~m).any():
                assert s[m].min() >= s[~m].max() - 1e-5
    return cpu, (idx, thw, feat)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,T,N,D,H,W", [(1, 1, 7, 5, 1, 7), (2, 2, 6, 33, 2, 3), (3, 5, 15, 77, 3, 5),
                                         (2, 9, 12, 40, 4, 3), (1, 16, 196, 3584, 14, 14)])
def test_temporal_select_sizes(dtype, B, T, N, D, H, W):
    g = torch.Generator().manual_seed(B * 1000 + T * 100 + N + D)
    x = torch.randn(B, T, N, D, generator=g).to(dtype)
    for keep in sorted({0, 1, N, N + 1, (T * N) // 4, T * N}):
        if keep <= T * N:
            _check_temporal_select(x, None, "global", keep, H, W)
    anchors = [-1] * T
    for t in range(1, T, 2):
        anchors[t] = t - 1
    for keep in sorted({0, 1, N // 3, N}):
        _check_temporal_select(x, anchors, "per_frame", keep, H, W)


@pytest.mark.parametrize("dtype", DTYPES)
def test_temporal_select_exact_ties_nan_and_strides(dtype):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 5, 10, 37, generator=g).to(dtype)
    x[:, 1] = x[:, 0]
    x[:, 2] = x[:, 1] * 2
    x[0, 3, 4, 5] = float("nan")
    x[1, 4, 2, 0] = float("inf")
    for mode, ref, keep in [("global", None, 23), ("global", None, 50), ("per_frame", [-1, 0, 1, 0, 3], 3)]:
        cpu, cuda = _check_temporal_select(x, ref, mode, keep, 2, 5)
        for a, b in zip(cpu, cuda):  # exact ties and NaN: the same as the CPU op, bit for bit
            assert torch.equal(a.view(torch.uint8) if a.is_floating_point() else a,
                               b.view(torch.uint8) if b.is_floating_point() else b)
    xt = torch.randn(2, 6, 5, 40, generator=g).to(dtype).transpose(1, 2)  # only the last dim contiguous
    _check_temporal_select(xt, None, "global", 9, 2, 3)
    cpu, cuda = _temporal_select_both(xt, [-1, 0, 0, 2, 2], "per_frame", 3, 2, 3, features=False)
    assert cuda[2].shape == (0,)


def test_temporal_select_empty_and_errors_like_the_cpu():
    from vlmkern import ops

    x = torch.randn(2, 4, 6, 8)
    for args in [(x, None, "global", 0, 2, 3), (x[:0], None, "global", 3, 2, 3)]:
        cpu, cuda = _temporal_select_both(*args)
        assert all(a.shape == b.shape for a, b in zip(cpu, cuda))
    for args, msg in [((x, [-1, 0, 2, 1], "global", 3, 2, 3), r"ref: .*ref\[2\]=2"),
                      ((x, None, "per_frame", 9, 2, 3), r"keep: expected 0 <= keep <= N=6"),
                      ((x, None, "global", 3, 3, 3), r"H, W")]:
        for dev in ("cpu", "cuda"):
            with pytest.raises(RuntimeError, match=msg):
                ops.temporal_select(args[0].to(dev), *args[1:])


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


# ---- dpc_knn ---------------------------------------------------------------------------
# The Gram entries are one fp32 FMA chain in the same channel order on both
# backends and everything after them is exact, so the clusters must be EQUAL.

def _compare_dpc_knn(x, k, m):
    want = torch.ops.vlmkern.dpc_knn(x, k, m)
    got = torch.ops.vlmkern.dpc_knn(x.cuda(), k, m)
    assert got[0].device.type == "cuda"
    assert torch.equal(got[0].cpu(), want[0]) and torch.equal(got[1].cpu(), want[1])
    return want


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,n,D,k,m", [(1, 1, 1, 1, 1), (2, 37, 19, 3, 5), (3, 65, 33, 7, 20),
                                       (1, 200, 257, 64, 99), (2, 130, 2, 1, 130), (1, 1568, 96, 7, 784)])
def test_dpc_knn_sizes(dtype, B, n, D, k, m):
    hubs = torch.randn(B, 6, D) * 3
    x = hubs[:, torch.randint(0, 6, (n,))] + torch.randn(B, n, D)
    _compare_dpc_knn(x.to(dtype), k, m)


def test_dpc_knn_near_ties_duplicates_and_strides():
    _compare_dpc_knn((torch.randn(2, 150, 3) @ torch.randn(3, 301)).bfloat16(), 7, 40)  # near-ties
    base = torch.randn(1, 12, 40)
    _compare_dpc_knn(torch.cat([base, base, base[:, :5]], dim=1), 3, 12)
    _compare_dpc_knn(torch.randn(1, 1, 16).expand(2, 30, 16).contiguous(), 4, 3)
    big = torch.randn(3, 40, 70, dtype=torch.float16)
    _compare_dpc_knn(big[:, ::2, 3:53], 5, 7)


def test_dpc_knn_errors_like_the_cpu():
    x = torch.randn(1, 10, 8)
    nan = x.clone()
    nan[0, 2, 2] = float("nan")
    for args in [(x, 11, 2), (x, 2, 0), (nan, 2, 2), (torch.randn(1, 4, 0), 1, 1)]:
        with pytest.raises(RuntimeError) as cpu_err:
            torch.ops.vlmkern.dpc_knn(*args)
        with pytest.raises(RuntimeError) as cuda_err:
            torch.ops.vlmkern.dpc_knn(args[0].cuda(), *args[1:])
        cuda_msg = str(cuda_err.value).splitlines()[0].replace(" CUDA ", " CPU ")
        assert str(cpu_err.value).splitlines()[0] == cuda_msg
