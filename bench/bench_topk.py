"""topk_indices and the kept-token gather at real shapes against eager PyTorch.

Baseline: torch.topk over the span + sort of the indices (what token-pruning code
does today). The fused gather (ops.gather_kept: compaction of hidden states by kept indices)
is timed against torch.gather with an expanded index, against index_select (the
best eager formulation) and against a plain copy of the same bytes (the ceiling).
"""

import pytest
import torch

import vlmkern

import _util

CASES = [("llava15_576_keep144", 576, 144), ("llava_next_2880_keep720", 2880, 720),
         ("video_32x196_keep627", 6272, 627), ("qwen_8144_keep2036", 8144, 2036)]


@pytest.mark.parametrize("B", [1, 8])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_topk_indices(benchmark, case, B):
    _, N, keep = case
    s = torch.rand(B, N)

    def kern():
        return vlmkern.ops.topk_indices(s, keep)

    def base():
        return torch.topk(s, keep, dim=1).indices.sort(dim=1).values

    t_k, t_b = _util.ab_times(kern, base, rounds=31, inner=5)
    benchmark.pedantic(kern, rounds=31, warmup_rounds=2)
    benchmark.extra_info.update({"threads": torch.get_num_threads(), "time_vlmkern_us": t_k * 1e6,
                                 "time_torch_topk_sort_us": t_b * 1e6, "speedup": t_b / t_k})


@pytest.mark.parametrize("case", [("llava15_7b", 611, 35, 576, 144, 4096),
                                  ("qwen25vl_7b", 2048, 15, 2000, 500, 3584)],
                         ids=["llava15_7b", "qwen25vl_7b"])
def test_gather_kept(benchmark, case):
    _, L, start, N, keep, hidden = case
    x = torch.randn(1, L, hidden, dtype=torch.bfloat16)
    idx = vlmkern.ops.topk_indices(torch.rand(1, N), keep)

    def kern():
        return vlmkern.ops.gather_kept(x, idx, start)

    def base():  # torch.gather with an index expanded over the hidden dim
        i = (idx + start).unsqueeze(-1).expand(1, keep, hidden)
        return torch.gather(x, 1, i)

    def index_select():  # the best eager formulation
        return x[0].index_select(0, idx[0] + start).unsqueeze(0)

    y = torch.empty_like(x[:, :keep])
    src = x[:, :keep]

    def copy():  # the ceiling: a contiguous copy of the same bytes
        y.copy_(src)

    assert torch.equal(kern(), base())
    t_k, t_b = _util.ab_times(kern, base, rounds=31, inner=10)
    _, t_c = _util.ab_times(kern, copy, rounds=31, inner=10)
    _, t_i = _util.ab_times(kern, index_select, rounds=31, inner=10)
    benchmark.pedantic(kern, rounds=31, warmup_rounds=2)
    moved = 2 * keep * hidden * 2  # read + write, bf16
    benchmark.extra_info.update({"time_gather_kept_us": t_k * 1e6, "time_torch_gather_us": t_b * 1e6,
                                 "time_copy_same_bytes_us": t_c * 1e6, "speedup": t_b / t_k,
                                 "time_index_select_us": t_i * 1e6, "speedup_vs_index_select": t_i / t_k,
                                 "GBps_gather_kept": moved / t_k / 1e9, "GBps_copy": moved / t_c / 1e9})
