"""EVS's scoring and selection (frame_similarity + topk_indices) against the
eager PyTorch version of the definition, at Qwen2.5-VL-7B video shapes.

Baseline (what vLLM's EVS and the eager video methods do): F.cosine_similarity
of consecutive frames in the input dtype, 1 - cos, frame 0 set to the maximum,
one stable descending argsort over the video's tokens, the first
retained_tokens, sorted back to original order. vlmkern: one pass of
frame_similarity (fp32 sums) and topk_indices. The ceiling is one read of the
features at the DRAM read bandwidth measured in the same run.
"""

import math

import pytest
import torch

import vlmkern
from vlmkern.methods import EVS

import _util

CASES = [("qwen25vl7b_64x196x3584", 64, 196, 3584), ("qwen25vl7b_32x196x3584", 32, 196, 3584),
         ("llava_ov_32x196x896", 32, 196, 896)]


def _eager_evs(x: torch.Tensor, rate: float) -> torch.Tensor:
    """x [T, N, D] -> kept indices (ascending)."""
    T, N, _ = x.shape
    cos = torch.nn.functional.cosine_similarity(x[1:], x[:-1], dim=-1)
    dis = torch.cat([torch.full((N,), 255.0, dtype=cos.dtype), (1 - cos).flatten()])
    keep = max(N, math.floor(T * N * (1 - rate)))
    return torch.argsort(dis, descending=True, stable=True)[:keep].sort().values


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_evs_select(benchmark, case):
    _, T, N, D = case
    rate = 0.75
    evs = EVS(rate)
    # Rotate among enough videos that the working set (>= 1 GB) is not cache-resident.
    n_vid = max(2, math.ceil(1.2e9 / (T * N * D * 2)))
    vids = [torch.randn(1, T, N, D, dtype=torch.bfloat16) for _ in range(n_vid)]
    it = {"k": 0, "b": 0}

    def kern():
        it["k"] = (it["k"] + 1) % n_vid
        return evs.select(vids[it["k"]])

    def base():
        it["b"] = (it["b"] + 1) % n_vid
        return _eager_evs(vids[it["b"]][0], rate)

    # the same kept set as the definition evaluated in fp32 (the bf16 baseline
    # rounds its cosines to bf16 and so breaks near-ties differently)
    assert torch.equal(evs.select(vids[0]).nonzero()[:, 1], _eager_evs(vids[0][0].float(), rate))
    t_k, t_b = _util.ab_times(kern, base, rounds=9)
    benchmark.pedantic(kern, rounds=9, warmup_rounds=1)
    ceil = _util.ceilings()
    read_s = T * N * D * 2 / (ceil["dram_read_GBps"] * 1e9)
    benchmark.extra_info.update({
        "threads": torch.get_num_threads(), "cpu_isa": vlmkern._C.cpu_isa(),
        "time_vlmkern_ms": t_k * 1e3, "time_eager_ms": t_b * 1e3, "speedup": t_b / t_k,
        "time_one_read_at_dram_bw_ms": read_s * 1e3, "x_of_one_read": t_k / read_s,
        "GBps_vlmkern": T * N * D * 2 / t_k / 1e9, **ceil})
