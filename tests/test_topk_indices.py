"""vlmkern.ops.topk_indices against vlmkern.reference.topk_indices (exact)."""

import pytest
import torch

from vlmkern import ops, reference as ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("N", [1, 7, 577, 4109])
def test_matches_reference(N, dtype):
    B = 3
    s = torch.randn(B, N).to(dtype)
    for keep in sorted({0, 1, N // 4, N // 2, N}):
        out = ops.topk_indices(s, keep)
        assert out.dtype == torch.int64 and out.shape == (B, keep)
        assert torch.equal(out, ref.topk_indices(s, keep))


def test_ties_nan_inf_and_signed_zero():
    s = torch.tensor([[1.0, float("nan"), 1.0, float("-inf"), 0.0, -0.0, 1.0, float("inf")]])
    # order: inf(7), 1.0 (0, 2, 6 by index), 0.0 / -0.0 (4, 5 equal: lower index first), -inf, nan
    assert ops.topk_indices(s, 3).tolist() == [[0, 2, 7]]
    assert ops.topk_indices(s, 5).tolist() == [[0, 2, 4, 6, 7]]
    assert ops.topk_indices(s, 6).tolist() == [[0, 2, 4, 5, 6, 7]]
    assert ops.topk_indices(s, 7).tolist() == [[0, 2, 3, 4, 5, 6, 7]]
    assert ops.topk_indices(s, 8).tolist() == [list(range(8))]
    for k in range(9):
        assert torch.equal(ops.topk_indices(s, k), ref.topk_indices(s, k))


def test_subnormal_scores_rank_above_zero_even_with_flush_denormal():
    tiny = torch.tensor([[0.0, 1e-40, -1e-40, -0.0]])  # float32 subnormals
    assert ops.topk_indices(tiny, 1).tolist() == [[1]]
    assert ops.topk_indices(tiny, 3).tolist() == [[0, 1, 3]]
    if torch.set_flush_denormal(True):
        try:
            assert ops.topk_indices(tiny, 1).tolist() == [[1]]
            assert ops.topk_indices(tiny, 3).tolist() == [[0, 1, 3]]
        finally:
            torch.set_flush_denormal(False)


def test_all_equal_scores_keep_lowest_indices():
    s = torch.zeros(2, 1000, dtype=torch.bfloat16)
    assert ops.topk_indices(s, 10).tolist() == [list(range(10))] * 2


def test_per_row_budgets_pad_with_minus_one():
    s = torch.randn(4, 50)
    keep = torch.tensor([5, 0, 50, 12])
    out = ops.topk_indices(s, keep)
    assert out.shape == (4, 50)
    assert torch.equal(out, ref.topk_indices(s, keep))
    assert (out[0, 5:] == -1).all() and (out[1] == -1).all() and (out[2] == torch.arange(50)).all()
    # explicit k_max wider than the largest budget
    wide = ops.topk_indices(s, keep, k_max=50)
    assert torch.equal(wide, out)


def test_non_contiguous_scores_and_threads():
    s = torch.randn(300, 6)[:, 1:5].t()  # [4, 300], column-major view
    assert not s.is_contiguous()
    out = ops.topk_indices(s, 37)
    assert torch.equal(out, ref.topk_indices(s.contiguous(), 37))
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.topk_indices(s, 37)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(one, out)


def test_bad_arguments():
    s = torch.randn(2, 10)
    with pytest.raises(ValueError, match="keep: expected 0 <= keep <= N=10"):
        ops.topk_indices(s, 11)
    with pytest.raises(ValueError, match="keep: expected values in"):
        ops.topk_indices(s, torch.tensor([3, -1]))
    with pytest.raises(ValueError, match="keep: expected a tensor of shape"):
        ops.topk_indices(s, torch.tensor([3]))
    with pytest.raises(ValueError, match="scores: expected a 2-d"):
        ops.topk_indices(torch.randn(10), 3)
    with pytest.raises(RuntimeError, match="keep: expected values in"):
        torch.ops.vlmkern.topk_indices(s, torch.tensor([3, 5]), 4)
    with pytest.raises(NotImplementedError, match="scores: expected a float32"):
        ops.topk_indices(s.int(), 3)


def test_opcheck_and_compile():
    s = torch.randn(3, 40)
    keep = torch.tensor([4, 9, 1])
    torch.library.opcheck(torch.ops.vlmkern.topk_indices.default, (s, keep, 9))

    def f(s):
        return ops.topk_indices(s, 6) + 1

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(s), f(s))
