"""attention_mass at real shapes against the two eager baselines.

(a) what FastV implementations do today: eager attention of layer K-1 over the
    whole prefill with every probability materialized ([B, H, L, L]), last row;
(b) the best eager formulation of the same numbers: the query row only, one
    grouped matmul that does not copy K per query head, softmax, mean.
Each case records in extra_info: both times, the ratios, the peak extra memory
of each (fresh subprocess, peak RSS), and the kernel's effective bandwidth over
one read of K against the measured DRAM read ceiling.
"""

import pytest
import torch

import vlmkern
from vlmkern.reference import attention as ref_attn

import _util

# name, Hq, Hkv, Lk, D, (key_start, key_end): LLaVA-1.5-7B (576 image tokens
# after a 35-token system prompt), Qwen2.5-VL-7B (28/4 heads) at 2k and 8k.
CASES = [
    ("llava15_7b_L640", 32, 32, 640, 128, (35, 611)),
    ("qwen25vl_7b_L2048", 28, 4, 2048, 128, (15, 2015)),
    ("qwen25vl_7b_L8192", 28, 4, 8192, 128, (15, 8159)),
]
# Baseline (a) needs ~(2 + 4 + 2) bytes x H x L^2: 15 GB at L=8192 on a 24 GB
# machine. It runs (once, in a subprocess) only where it fits comfortably.
BASELINE_A_MAX_L = 4096


def _inputs(Hq, Hkv, L, D, dtype):
    q_all = torch.randn(1, Hq, L, D).to(dtype)
    k = torch.randn(1, Hkv, L, D).to(dtype)
    return q_all, k


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_attention_mass(benchmark, case, dtype, ceilings):
    name, Hq, Hkv, L, D, (ks, ke) = case
    q_all, k = _inputs(Hq, Hkv, L, D, dtype)
    q = q_all[:, :, -1:].contiguous()

    def kern():
        return vlmkern.ops.attention_mass(q, k, ks, ke)

    def base_b():
        return ref_attn.attention_mass_grouped(q, k, ks, ke)

    # same numbers first (the exact reference; baseline (b) rounds its bf16 scores)
    exact = vlmkern.reference.attention_mass(q, k, ks, ke)
    torch.testing.assert_close(kern(), exact, rtol=0, atol=2e-5 * exact.abs().max().item())
    t_k, t_b = _util.ab_times(kern, base_b, rounds=21)
    benchmark.pedantic(kern, rounds=21, warmup_rounds=2)

    es = torch.finfo(dtype).bits // 8
    setup = (f"q = torch.empty(1, {Hq}, 1, {D}, dtype={dtype}).normal_()\n"
             f"k = torch.empty(1, {Hkv}, {L}, {D}, dtype={dtype}).normal_()")
    info = {
        "threads": torch.get_num_threads(),
        "isa": vlmkern._C.cpu_isa(),
        "time_vlmkern_ms": t_k * 1e3,
        "time_baseline_b_ms": t_b * 1e3,
        "speedup_vs_b": t_b / t_k,
        "peak_extra_vlmkern_B": _util.peak_extra_bytes(setup, f"vlmkern.ops.attention_mass(q, k, {ks}, {ke})"),
        "peak_extra_baseline_b_B": _util.peak_extra_bytes(
            setup, f"vlmkern.reference.attention.attention_mass_grouped(q, k, {ks}, {ke})"),
        "k_bytes": k.numel() * es,
        "k_read_once_at_dram_ms": k.numel() * es / (ceilings["dram_read_GBps"] * 1e9) * 1e3,
        "dram_read_GBps": ceilings["dram_read_GBps"],
    }
    info["x_of_k_read_time"] = info["time_vlmkern_ms"] / info["k_read_once_at_dram_ms"]
    if L <= BASELINE_A_MAX_L:
        def base_a():
            return ref_attn.attention_mass_eager_layer(q_all, k, ks, ke)
        t_k2, t_a = _util.ab_times(kern, base_a, rounds=3, warmup=1)
        setup_a = (f"q = torch.empty(1, {Hq}, {L}, {D}, dtype={dtype}).normal_()\n"
                   f"k = torch.empty(1, {Hkv}, {L}, {D}, dtype={dtype}).normal_()")
        info["time_baseline_a_ms"] = t_a * 1e3
        info["speedup_vs_a"] = t_a / t_k2
        info["peak_extra_baseline_a_B"] = _util.peak_extra_bytes(
            setup_a, f"vlmkern.reference.attention.attention_mass_eager_layer(q, k, {ks}, {ke})")
        info["memory_ratio_a"] = info["peak_extra_baseline_a_B"] / max(info["peak_extra_vlmkern_B"], 4096)
    else:
        info["baseline_a_skipped"] = f"needs ~{8 * Hq * L * L / 1e9:.0f} GB (L={L})"
    benchmark.extra_info.update(info)
