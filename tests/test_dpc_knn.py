"""vlmkern.ops.dpc_knn against vlmkern.reference.dpc_knn (fp64, distances by
differences) on every CPU path this machine has; the paths against each other
bit for bit; ties, duplicates, threads, bad arguments, opcheck and compile."""

from __future__ import annotations

import pytest
import torch

from vlmkern import ops, reference
from vlmkern.reference.cluster import dpc_knn_torch
from conftest import cpu_isa_params, cpu_isas

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def isa_params():
    """The Gram tiles dpc_knn has (scalar, AVX2, AVX-512), skipped visibly where
    this CPU lacks them (tests/test_dpc_knn_simde.py runs the vector tiles under
    emulation on every machine)."""
    return [p for p in cpu_isa_params() if (p.values[0] if hasattr(p, "values") else p)
            in ("scalar", "avx2", "avx512")]


def _check(x, k, m):
    centres, assign = ops.dpc_knn(x, k, m)
    want_c, want_a = reference.dpc_knn(x, k, m)
    B, n = x.shape[:2]
    assert centres.shape == (B, m) and assign.shape == (B, n)
    assert centres.dtype == torch.int64 and assign.dtype == torch.int64
    assert torch.equal(centres, want_c), (centres, want_c)
    assert torch.equal(assign, want_a)
    return centres, assign


@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,n,D,k,m", [(1, 1, 1, 1, 1), (2, 37, 19, 3, 5), (3, 65, 33, 7, 20),
                                       (1, 100, 257, 64, 99), (2, 50, 2, 1, 50), (1, 97, 64, 5, 1)])
def test_matches_reference(isa_cap, isa, dtype, B, n, D, k, m):
    isa_cap(isa)
    # Clustered points (a few centres plus noise): the shape the methods feed it.
    hubs = torch.randn(B, 6, D) * 3
    x = hubs[:, torch.randint(0, 6, (n,))] + torch.randn(B, n, D)
    _check(x.to(dtype), k, m)


def test_paths_agree_bit_for_bit(isa_cap):
    """Every Gram entry is one FMA chain in the same channel order on every
    tile, so all paths give the same clusters even on near-ties (a low-rank
    cloud with many almost equal distances)."""
    paths = [p for p in ("scalar", "avx2", "avx512") if p in cpu_isas()]
    if len(paths) < 2:
        pytest.skip(f"this CPU has only the {paths[0]} tile")
    x = (torch.randn(2, 150, 3) @ torch.randn(3, 301)).bfloat16()
    got = []
    for isa in paths:
        isa_cap(isa)
        got.append(ops.dpc_knn(x, 7, 40))
    for c, a in got[1:]:
        assert torch.equal(c, got[0][0]) and torch.equal(a, got[0][1])


@pytest.mark.parametrize("isa", isa_params())
def test_duplicates_and_ties(isa_cap, isa):
    isa_cap(isa)
    base = torch.randn(1, 12, 40)
    x = torch.cat([base, base, base[:, :5]], dim=1)  # every point at least twice
    c, a = _check(x, 3, 12)
    # Copies are at distance exactly 0 and tie in density: the lower index is
    # denser, so a later copy has delta 0 and never beats its first copy.
    assert (c < 12).all()
    assert torch.equal(c[0], torch.arange(12))
    assert torch.equal(a[0, 12:24], torch.arange(12)) and torch.equal(a[0, 24:], torch.arange(5))
    # All points identical: the first is the densest (it gets the largest
    # distance, 0); every score is 0, so the centres are the lowest indices.
    same = torch.randn(1, 1, 16).expand(2, 30, 16).contiguous()
    c, a = _check(same, 4, 3)
    assert torch.equal(c, torch.tensor([[0, 1, 2]] * 2))
    assert torch.equal(a[:, 3:], torch.zeros(2, 27, dtype=torch.int64))
    # Points on a line at equal spacing: exact equal distances everywhere.
    grid = torch.zeros(1, 9, 4)
    grid[0, :, 0] = torch.arange(9.0)
    _check(grid, 3, 3)


@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_squares_that_overflow_are_far_from_everything(isa_cap, isa, dtype):
    """Finite features whose fp32 squares overflow give inf (and inf - inf) in
    the Gram matrix: they must be at infinite distance, not clamped to 0 (which
    would make far-apart points duplicates of each other)."""
    isa_cap(isa)
    x = torch.randn(1, 8, 4)
    x[0, 5] = torch.tensor([1e20, -1e20, 1e20, -1e20])
    x[0, 6] = torch.tensor([-1e20, 1e20, 1e20, 1e20])
    x[0, 7] = torch.tensor([1e20, 1e20, -1e20, 3e19])
    c, a = ops.dpc_knn(x.to(dtype), 2, 3)
    assert (c[0] < 5).all()  # density 0: score 0, never a centre while finite points remain
    assert torch.equal(a[0, 5:], torch.zeros(3, dtype=torch.int64))  # all at inf: the first centre
    want_c, want_a = reference.dpc_knn(x[:, :5], 2, 3)  # the finite points cluster as without them
    assert torch.equal(c, want_c) and torch.equal(a[:, :5], want_a)


@pytest.mark.parametrize("isa", isa_params())
def test_strided_input(isa_cap, isa):
    isa_cap(isa)
    big = torch.randn(3, 40, 70, dtype=torch.bfloat16)
    x = big[:, ::2, 3:53]  # rows 2 apart, last dim contiguous
    assert not x.is_contiguous()
    _check(x, 5, 7)
    _check(big.transpose(1, 2)[:, :, :20].transpose(1, 2), 2, 4)  # last dim not contiguous: copied


def test_matches_the_released_formulation():
    """The eager formulation of the released codes (cdist, top-k, dense mask,
    top-k, argmin; without their random noise) picks the same clusters on data
    without near-ties. Its centres come in score order; the op's ascending."""
    x = torch.randn(2, 120, 48) + 4 * torch.randn(2, 1, 48)
    c, a = ops.dpc_knn(x, 5, 12)
    tc, ta = dpc_knn_torch(x, 5, 12)
    order = tc.sort(dim=1)
    assert torch.equal(order.values, c)
    pos = order.indices.argsort(dim=1)  # score-order position -> ascending position
    assert torch.equal(torch.gather(pos, 1, ta), a)


def test_threads_give_the_same_clusters():
    x = torch.randn(2, 300, 130, dtype=torch.bfloat16)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.dpc_knn(x, 7, 60)
        torch.set_num_threads(max(2, n))
        two = ops.dpc_knn(x, 7, 60)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_empty_batch_and_bad_arguments():
    c, a = ops.dpc_knn(torch.randn(0, 5, 3), 2, 2)
    assert c.shape == (0, 2) and a.shape == (0, 5)
    x = torch.randn(1, 10, 8)
    with pytest.raises(ValueError, match=r"x: expected a 3-d tensor"):
        ops.dpc_knn(x[0], 2, 2)
    with pytest.raises(NotImplementedError, match="x: expected a float32, bfloat16 or float16"):
        ops.dpc_knn(x.double(), 2, 2)
    with pytest.raises(ValueError, match=r"k: expected 1 <= k <= min\(n=10, 64\), got 11"):
        ops.dpc_knn(x, 11, 2)
    with pytest.raises(ValueError, match=r"k: expected 1 <= k <= min\(n=10, 64\), got 0"):
        ops.dpc_knn(x, 0, 2)
    with pytest.raises(ValueError, match=r"m: expected 1 <= m <= n=10, got 0"):
        ops.dpc_knn(x, 2, 0)
    with pytest.raises(TypeError, match="m: expected an int"):
        ops.dpc_knn(x, 2, 2.5)
    with pytest.raises(TypeError, match="k: expected an int"):
        ops.dpc_knn(x, True, 2)
    bad = x.clone()
    bad[0, 3, 1] = float("nan")
    with pytest.raises(RuntimeError, match="x: expected finite values"):
        ops.dpc_knn(bad, 2, 2)
    with pytest.raises(RuntimeError, match="x: expected at least one point and one channel"):
        torch.ops.vlmkern.dpc_knn(torch.randn(1, 4, 0), 1, 1)
    with pytest.raises(RuntimeError, match=r"k: expected 1 <= k <= min\(n=70, 64\)"):
        torch.ops.vlmkern.dpc_knn(torch.randn(1, 70, 3), 65, 1)  # the op checks too


def test_opcheck_and_compile():
    x = torch.randn(2, 33, 24)
    torch.library.opcheck(torch.ops.vlmkern.dpc_knn.default, (x, 3, 5))

    def f(x):
        c, a = ops.dpc_knn(x, 3, 5)
        return c * 2, a + 1

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(x), f(x)):
        assert torch.equal(got, want)
