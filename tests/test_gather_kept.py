"""vlmkern.ops.gather_kept against plain indexing."""

import pytest
import torch

from vlmkern import ops


def _expected(x, idx, off):
    rows = []
    for b in range(idx.shape[0]):
        src = x[b if x.shape[0] > 1 else 0]
        rows.append(src[idx[b] + off[b]])
    return torch.stack(rows)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.bool])
@pytest.mark.parametrize("rest", [(), (7,), (4096,), (2, 3, 5)], ids=str)
def test_matches_indexing(dtype, rest):
    B, L, k = 3, 41, 9
    x = (torch.randn(B, L, *rest) * 10).to(dtype)
    idx = torch.stack([torch.randperm(30)[:k].sort().values for _ in range(B)])
    off = torch.tensor([0, 5, 11])
    out = ops.gather_kept(x, idx, off)
    assert out.shape == (B, k, *rest) and out.dtype == dtype
    assert torch.equal(out, _expected(x, idx, off))


def test_shared_rows_int_offset_and_non_contiguous():
    cos = torch.randn(1, 50, 16)  # rotary table shared by the batch
    idx = torch.tensor([[0, 3, 49], [1, 2, 4]])
    out = ops.gather_kept(cos, idx)
    assert torch.equal(out, _expected(cos, idx, torch.zeros(2, dtype=torch.long)))
    x = torch.randn(2, 16, 50).transpose(1, 2)  # [2, 50, 16] non-contiguous
    assert torch.equal(ops.gather_kept(x, idx, 0), _expected(x, idx, torch.zeros(2, dtype=torch.long)))


def test_empty_and_errors():
    x = torch.randn(2, 10, 4)
    assert ops.gather_kept(x, torch.zeros(2, 0, dtype=torch.long)).shape == (2, 0, 4)
    with pytest.raises((IndexError, RuntimeError), match="out of range"):
        ops.gather_kept(x, torch.tensor([[0], [5]]), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="x: expected batch 1 or 2"):
        ops.gather_kept(torch.randn(3, 10), torch.zeros(2, 1, dtype=torch.long))


def test_compile():
    x = torch.randn(2, 20, 8)
    idx = torch.tensor([[1, 4, 7], [0, 2, 19]])

    def f(x, idx):
        return ops.gather_kept(x, idx, 0) * 2

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x, idx), f(x, idx))
