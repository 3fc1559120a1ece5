"""dpc_knn (density-peak clustering) against the eager PyTorch formulation of
the released DPC-kNN codes (torch.cdist on fp32, top-k neighbours, a dense
"denser than" mask, top-k centres, argmin assignment), at the shapes of
PruneVid / HoliTom (n = 1568 tokens of a segment, Qwen2.5-VL-7B's 3584
channels, k = 7) and FastVID (anchor frames, k = 4).

The work is the Gram matrix X X^T: n^2 D / 2 multiply-adds for its upper
triangle. The ceiling shown is this machine's best fp32 GEMM rate, measured in
the same run as torch.mm of the same rows (MKL/oneDNN, full n x n product).
"""

import pytest
import torch

import vlmkern
from vlmkern.ops import dpc_knn
from vlmkern.reference.cluster import dpc_knn_torch

import _util

CASES = [("prunevid_1568x3584_k7", 1568, 3584, 7, 784), ("fastvid_392x3584_k4", 392, 3584, 4, 40)]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_dpc_knn(benchmark, case):
    _, n, D, k, m = case
    torch.manual_seed(0)
    hubs = torch.randn(1, 64, D) * 2
    x = (hubs[:, torch.randint(0, 64, (n,))] + torch.randn(1, n, D)).bfloat16()
    c, a = dpc_knn(x, k, m)
    tc, ta = dpc_knn_torch(x, k, m)
    assert torch.equal(tc.sort(dim=1).values, c)  # the same centres as the baseline
    xf = x[0].float()
    t_k, t_b = _util.ab_times(lambda: dpc_knn(x, k, m), lambda: dpc_knn_torch(x, k, m), rounds=7)
    t_mm, _ = _util.ab_times(lambda: xf @ xf.T, lambda: None, rounds=7)
    benchmark.pedantic(lambda: dpc_knn(x, k, m), rounds=5, warmup_rounds=1)
    half_macs = n * n * D / 2
    benchmark.extra_info.update({
        "threads": torch.get_num_threads(), "cpu_isa": vlmkern._C.cpu_isa(),
        "time_vlmkern_ms": t_k * 1e3, "time_eager_ms": t_b * 1e3, "speedup": t_b / t_k,
        "gram_GMACps_vlmkern": half_macs / t_k / 1e9,
        "time_torch_mm_full_gram_ms": t_mm * 1e3, "GMACps_torch_mm": 2 * half_macs / t_mm / 1e9})
