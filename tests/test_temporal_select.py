"""vlmkern.ops.temporal_select against vlmkern.reference.temporal_select on
every CPU path this machine has: the selection, triples and compacted rows
exactly, given the similarities; the similarities themselves are
frame_similarity's bits (its own tests hold them to the fp64 definition), and
the kept set is checked against the fp64 definition up to near-ties."""

from __future__ import annotations

import pytest
import torch

import vlmkern
from vlmkern import ops, reference
from vlmkern.methods.dycoke import dycoke_anchors
from conftest import cpu_isa_params

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def isa_params():
    """temporal_select's paths are frame_similarity's (scalar, AVX2, AVX-512)."""
    return [p for p in cpu_isa_params() if (p.values[0] if hasattr(p, "values") else p)
            in ("scalar", "avx2", "avx512")]


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32 if t.dtype == torch.float32 else torch.int16)


def _check(x, ref, mode, keep, H, W):
    """The op against the reference fed the op's own similarities (so equal
    bit for bit); returns the op's outputs."""
    idx, thw, feat = ops.temporal_select(x, ref, mode, keep, H, W)
    refs = list(range(-1, x.shape[1] - 1)) if ref is None else [int(r) for r in ref]
    sim = ops.frame_similarity(x, torch.tensor(refs, dtype=torch.int64)) if x.shape[1] else None
    w_idx, w_thw, w_feat = reference.temporal_select(x, refs, mode, keep, H, W, sim=sim)
    B, T, N, D = x.shape
    K = keep if mode == "global" else sum(N if r < 0 else keep for r in refs)
    assert idx.shape == (B, K) and idx.dtype == torch.int64
    assert thw.shape == (B, K, 3) and thw.dtype == torch.int64
    assert feat.shape == (B, K, D) and feat.dtype == x.dtype
    assert torch.equal(idx, w_idx), (idx, w_idx)
    assert torch.equal(thw, w_thw)
    assert torch.equal(_bits(feat), _bits(w_feat))
    if K:
        assert (idx[:, 1:] > idx[:, :-1]).all()  # ascending, no repeats
    return idx, thw, feat


SHAPES = [(1, 1, 7, 5, 1, 7), (2, 2, 6, 33, 2, 3), (3, 5, 15, 77, 3, 5), (2, 9, 12, 40, 4, 3),
          (1, 4, 196, 130, 14, 14)]


@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s[:4])) for s in SHAPES])
def test_global_matches_reference(isa_cap, isa, dtype, shape):
    isa_cap(isa)
    B, T, N, D, H, W = shape
    x = torch.randn(B, T, N, D).to(dtype)
    for keep in sorted({0, 1, N - 1, N, N + 1, (T * N) // 4, T * N - 1, T * N}):
        if 0 <= keep <= T * N:
            idx, _, _ = _check(x, None, "global", keep, H, W)
            if keep >= N:  # frame 0 forced: kept whole
                assert torch.equal(idx[:, :N], torch.arange(N).expand(B, N))


@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s[:4])) for s in SHAPES])
def test_per_frame_matches_reference(isa_cap, isa, dtype, shape):
    isa_cap(isa)
    B, T, N, D, H, W = shape
    x = torch.randn(B, T, N, D).to(dtype)
    refs = [dycoke_anchors(T), [-1] + [0] * (T - 1), list(range(-1, T - 1))]
    for ref in refs:
        for keep in sorted({0, 1, N // 3, N - 1, N}):
            _check(x, torch.tensor(ref), "per_frame", keep, H, W)


@pytest.mark.parametrize("isa", isa_params())
def test_cosines_are_frame_similarity_bits_and_close_to_fp64(isa_cap, isa):
    """The kept set equals the fp64 definition's up to near-ties: every kept
    token's fp64 dissimilarity is at least every dropped one's minus 1e-6."""
    isa_cap(isa)
    x = torch.randn(2, 6, 40, 96)
    idx, _, _ = ops.temporal_select(x, None, "global", 70, 5, 8)
    s = -reference.frame_similarity(x).double()
    s[:, 0] = float("inf")
    s = s.reshape(2, -1)
    for b in range(2):
        kept = torch.zeros(s.shape[1], dtype=torch.bool)
        kept[idx[b]] = True
        assert s[b][kept].min() >= s[b][~kept].max() - 1e-6


@pytest.mark.parametrize("isa", isa_params())
def test_same_as_evs_and_dycoke_unfused_paths(isa_cap, isa):
    """Equal to frame_similarity + topk_indices + gather (the methods' old path)."""
    isa_cap(isa)
    V, T, N, D = 3, 8, 20, 64
    x = torch.randn(V, T, N, D, dtype=torch.bfloat16)
    keep = 37
    score = -ops.frame_similarity(x)
    score[:, 0] = float("inf")
    want = ops.topk_indices(score.view(V, T * N), keep)
    idx, _, feat = ops.temporal_select(x, None, "global", keep, 4, 5)
    assert torch.equal(idx, want)
    assert torch.equal(_bits(feat), _bits(ops.gather_kept(x.view(V, T * N, D), want)))
    ref = torch.tensor(dycoke_anchors(T))
    score = -ops.frame_similarity(x, ref)
    fk = 6
    rows = ops.topk_indices(score.view(V * T, N), torch.where(ref >= 0, fk, N).repeat(V), N).view(V, T, N)
    want = torch.cat([rows[:, t, : (N if ref[t] < 0 else fk)] + t * N for t in range(T)], dim=1)
    idx, _, _ = ops.temporal_select(x, ref, "per_frame", fk, 4, 5)
    assert torch.equal(idx, want)


@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_ties_repeated_frames_and_scaled_copies(isa_cap, isa, dtype):
    """Copies and power-of-two multiples of a frame have cosine exactly 1, so
    their tokens tie exactly: the lower flat index wins."""
    isa_cap(isa)
    B, T, N, D = 2, 4, 10, 37
    x = torch.randn(B, T, N, D).to(dtype)
    x[:, 1] = x[:, 0]
    x[:, 2] = x[:, 1] * 2
    # frame 3 is random: its tokens are all less similar than the copies
    idx, _, _ = _check(x, None, "global", N + N + 3, 2, 5)
    assert torch.equal(idx[:, :N], torch.arange(N).expand(B, N))
    # the three best of the 2N tied tokens of frames 1 and 2 (-1 exactly): frame 1's first three
    assert torch.equal(idx[:, N:N + 3], torch.tensor([N, N + 1, N + 2]).expand(B, 3))
    assert torch.equal(idx[:, N + 3:], torch.arange(3 * N, 4 * N).expand(B, N))
    idx, _, _ = _check(x, [-1, 0, 1, 0], "per_frame", 3, 2, 5)
    assert torch.equal(idx[:, N:N + 3], torch.tensor([N, N + 1, N + 2]).expand(B, 3))
    assert torch.equal(idx[:, N + 3:N + 6], torch.tensor([2 * N, 2 * N + 1, 2 * N + 2]).expand(B, 3))
    # repeated frames all along: every token of frames >= 1 ties
    y = x[:, :1].expand(B, T, N, D).contiguous()
    idx, _, _ = _check(y, None, "global", N + 5, 2, 5)
    assert torch.equal(idx[0], torch.arange(N + 5))


@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_rank_last(isa_cap, isa, dtype):
    """NaN or inf in a token's row or in its reference row makes its cosine
    NaN: it ranks after every number. Frame 0 (no reference) is kept anyway."""
    isa_cap(isa)
    B, T, N, D = 1, 3, 6, 17
    x = torch.randn(B, T, N, D).to(dtype)
    x[0, 0, 0, 3] = float("nan")   # frame 0, token 0: forced; frame 1 token 0 refers to it
    x[0, 1, 2, 0] = float("inf")   # frame 1 token 2, and frame 2 token 2 refers to it
    x[0, 2, 4, 5] = float("-inf")  # frame 2 token 4
    bad = {N + 0, N + 2, 2 * N + 2, 2 * N + 4}
    keep = T * N - len(bad)
    idx, _, feat = _check(x, None, "global", keep, 2, 3)
    assert set(idx[0].tolist()) == set(range(T * N)) - bad
    assert feat[0, 0].isnan().any()  # frame 0's NaN row kept and copied
    idx, _, _ = _check(x, None, "global", T * N, 2, 3)
    assert torch.equal(idx[0], torch.arange(T * N))
    idx, _, _ = _check(x, None, "per_frame", N - 2, 2, 3)
    assert set(idx[0].tolist()) == set(range(T * N)) - bad


@pytest.mark.parametrize("isa", isa_params())
def test_strided_input(isa_cap, isa):
    isa_cap(isa)
    base = torch.randn(2, 9, 5, 40, dtype=torch.float16)
    x = base.transpose(1, 2)  # [2, 5, 9, 40]: only the last dim contiguous
    a = ops.temporal_select(x, None, "global", 20, 3, 3)
    b = ops.temporal_select(x.contiguous(), None, "global", 20, 3, 3)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    _check(x, [-1, 0, 0, 2, 2], "per_frame", 4, 3, 3)


def test_every_isa_gives_the_same_bits_as_its_frame_similarity():
    """Each path's selection equals the one made from that path's frame_similarity."""
    from conftest import cpu_isas

    x = torch.randn(2, 7, 33, 201, dtype=torch.bfloat16)
    try:
        for isa in cpu_isas():
            if isa not in ("scalar", "avx2", "avx512"):
                continue
            vlmkern._C.set_cpu_isa_cap(isa)
            _check(x, None, "global", 60, 3, 11)
            _check(x, dycoke_anchors(7), "per_frame", 10, 3, 11)
    finally:
        vlmkern._C.set_cpu_isa_cap("amx")


def test_triples_and_no_features():
    x = torch.randn(1, 3, 6, 8)
    idx, thw, feat = ops.temporal_select(x, None, "global", 18, 2, 3)
    assert torch.equal(idx[0], torch.arange(18))
    t, n = idx // 6, idx % 6
    assert torch.equal(thw, torch.stack([t, n // 3, n % 3], -1))
    assert torch.equal(feat, x.view(1, 18, 8))
    idx2, thw2, none = ops.temporal_select(x, None, "global", 18, 2, 3, features=False)
    assert torch.equal(idx2, idx) and torch.equal(thw2, thw) and none.shape == (0,) and none.dtype == x.dtype


def test_empty_shapes():
    for shape, ref, mode, keep, H, W, K in [((0, 3, 4, 5), None, "global", 2, 2, 2, 2),
                                            ((2, 0, 4, 5), [], "global", 0, 2, 2, 0),
                                            ((2, 3, 0, 5), None, "per_frame", 0, 0, 7, 0),
                                            ((2, 3, 4, 0), None, "global", 5, 2, 2, 5),
                                            ((2, 3, 4, 5), None, "global", 0, 2, 2, 0)]:
        x = torch.randn(shape)
        idx, thw, feat = ops.temporal_select(x, ref, mode, keep, H, W)
        assert idx.shape == (shape[0], K) and thw.shape == (shape[0], K, 3)
        assert feat.shape == (shape[0], K, shape[3])


def test_opcheck_fake_and_compile():
    x = torch.randn(2, 5, 6, 12)
    op = torch.ops.vlmkern.temporal_select.default
    for args in [(x, [-1, 0, 1, 2, 3], "global", 9, 2, 3, 1e-8, True),
                 (x, [-1, 0, -1, 2, 0], "per_frame", 2, 3, 2, 1e-8, True),
                 (x.bfloat16(), [-1, 0, 0, 0, 0], "per_frame", 4, 6, 1, 1e-8, False)]:
        torch.library.opcheck(op, args)
    m = torch.empty(2, 5, 6, 12, device="meta", dtype=torch.bfloat16)
    idx, thw, feat = ops.temporal_select(m, [-1, 0, -1, 2, 0], "per_frame", 2, 3, 2)
    assert idx.shape == (2, 6 + 6 + 2 + 2 + 2) and thw.shape == (2, 18, 3) and feat.shape == (2, 18, 12)

    def f(v):
        return ops.temporal_select(v, [-1, 0, 0, 2, 2], "per_frame", 3, 2, 3)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    for u, v in zip(compiled(x), f(x)):
        assert torch.equal(u, v)


BAD = [
    (lambda x: (x[0], None, "global", 3, 2, 3), r"x: expected a 4-d tensor"),
    (lambda x: (x.to(torch.int32), None, "global", 3, 2, 3), r"x: expected a float32, bfloat16 or float16"),
    (lambda x: (x, None, "global", 3, 2, 2), r"H, W: expected .*H \* W == N"),
    (lambda x: (x, None, "topk", 3, 2, 3), r"mode: expected 'global' or 'per_frame'"),
    (lambda x: (x, None, "global", 25, 2, 3), r"keep: expected 0 <= keep <= T \* N=24"),
    (lambda x: (x, None, "global", -1, 2, 3), r"keep: expected 0 <= keep"),
    (lambda x: (x, None, "per_frame", 7, 2, 3), r"keep: expected 0 <= keep <= N=6"),
    (lambda x: (x, None, "global", 2.5, 2, 3), r"keep: expected an int"),
    (lambda x: (x, [-1, 0, 1], "global", 3, 2, 3), r"ref: expected T=4 entries"),
    (lambda x: (x, torch.tensor([-1, 0, 1, 1, 2]), "global", 3, 2, 3), r"ref: expected T=4 entries"),
    (lambda x: (x, [-1, 0, 1, 3], "global", 3, 2, 3), r"ref: .*earlier frame.*got ref\[3\]=3"),
    (lambda x: (x, [-1, 2, 1, 0], "per_frame", 3, 2, 3), r"ref: .*earlier frame.*got ref\[1\]=2"),
    (lambda x: (x, [-2, 0, 1, 0], "global", 3, 2, 3), r"ref: .*got ref\[0\]=-2"),
    (lambda x: (x, [0, 0, 1, 0], "global", 3, 2, 3), r"ref: .*got ref\[0\]=0"),
    (lambda x: (x, torch.tensor([-1.0, 0, 1, 2]), "global", 3, 2, 3), r"ref: expected an integer tensor"),
    (lambda x: (x, None, "global", 3, 2, 3, 0.0), r"eps: expected a finite"),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_arguments_name_the_argument(case):
    make, msg = BAD[case]
    x = torch.randn(2, 4, 6, 8)
    args = make(x)
    kw = {}
    if len(args) == 7:
        args, kw = args[:6], {"eps": args[6]}
    with pytest.raises((RuntimeError, ValueError, TypeError, NotImplementedError), match=msg):
        ops.temporal_select(*args, **kw)


def test_bad_arguments_reach_the_op_checks():
    """The compiled op checks the same things (torch.ops callers skip the wrapper)."""
    x = torch.randn(2, 4, 6, 8)
    op = torch.ops.vlmkern.temporal_select
    with pytest.raises(RuntimeError, match=r"ref: .*earlier frame.*ref\[2\]=2"):
        op(x, [-1, 0, 2, 1], "global", 3, 2, 3, 1e-8)
    with pytest.raises(RuntimeError, match=r"keep: expected 0 <= keep <= N=6"):
        op(x, [-1, 0, 1, 2], "per_frame", 9, 2, 3, 1e-8)
    with pytest.raises(RuntimeError, match=r"H, W"):
        op(x, [-1, 0, 1, 2], "global", 3, 3, 3, 1e-8)
    with pytest.raises(RuntimeError, match=r"x: expected a float32, bfloat16 or float16"):
        op(x.to(torch.int64), [-1, 0, 1, 2], "global", 3, 2, 3, 1e-8)
    with pytest.raises(RuntimeError, match=r"x: expected .*\[B, T, N, D\]"):
        op(x[0], [-1, 0, 1, 2], "global", 3, 2, 3, 1e-8)


# ---- randomized (hypothesis; VLMKERN_FUZZ_EXAMPLES examples, 60 by default) ----------------

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis (requirements.txt) is not installed")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_FUZZ = settings(max_examples=int(__import__("os").environ.get("VLMKERN_FUZZ_EXAMPLES", "60")), deadline=None,
                 derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.function_scoped_fixture])
_EDGES = [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 129]


@_FUZZ
@given(B=st.integers(1, 3), T=st.integers(1, 7), H=st.integers(1, 5), W=st.integers(1, 7),
       D=st.sampled_from(_EDGES), dtype=st.sampled_from(DTYPES), mode=st.sampled_from(["global", "per_frame"]),
       repeats=st.booleans(), nan=st.booleans(), data=st.data(), seed=st.integers(0, 2**16))
def test_random_against_reference(B, T, H, W, D, dtype, mode, repeats, nan, data, seed):
    from conftest import cpu_isas

    isa = data.draw(st.sampled_from([i for i in cpu_isas() if i in ("scalar", "avx2", "avx512")]))
    N = H * W
    ref = [data.draw(st.integers(-1, t - 1)) for t in range(T)]
    keep = data.draw(st.integers(0, T * N if mode == "global" else N))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, N, D, generator=g).to(dtype)
    if repeats and T > 1:  # exact ties: a frame repeated, another a power-of-two multiple
        x[:, T - 1] = x[:, 0]
        x[:, T // 2] = x[:, 0] * 2
    if nan:
        x.view(-1)[torch.randint(0, x.numel(), (3,), generator=g)] = float("nan")
    try:
        vlmkern._C.set_cpu_isa_cap(isa)
        _check(x, ref, mode, keep, H, W)
    finally:
        vlmkern._C.set_cpu_isa_cap("amx")
