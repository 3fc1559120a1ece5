"""W4A8 GEMM against stock PyTorch on this CPU, same process, same threads.

Decode (M = 1): each method cycles through enough copies of its weights to
have more than 1 GiB in rotation, so the weights come from DRAM as in a real
decoder (not from the 32 MB L3); the bandwidth figure is (weight + scale bytes)
/ time against the measured DRAM read ceiling.

Prefill (M = 512, 2048): one weight, cache-warm; int8 throughput against the
AVX2 VPMADDUBSW ceiling of this machine (2 per cycle x 32 u8*s8 products per
core), since it has no AMX (the issue's AMX-INT8 peak cannot be measured here).

Baselines: bf16 and fp32 ``F.linear`` (oneDNN / MKL), PyTorch's dynamic int8
``nn.Linear`` (fbgemm W8A8; quantizes the activations per tensor each call).
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
import torch
import torch.nn.functional as F

import vlmkern
from vlmkern import ops

import _util

G = 128
SHAPES = [(4096, 4096), (14336, 4096), (4096, 14336)]  # (N, K)
ROTATE_BYTES = 1.1 * 2**30
GHZ = 2.45  # this machine's nominal clock (lscpu); used only for the ceiling below


def avx2_int8_peak_ops() -> float:
    """u8 x s8 multiply-adds per second with VPMADDUBSW at 2 per cycle per core, x2 ops."""
    return torch.get_num_threads() * GHZ * 1e9 * 2 * 32 * 2


def _w4a8_weights(N, K, copies):
    out = []
    for _ in range(copies):
        nib = torch.randint(0, 256, (N, K // 2), dtype=torch.uint8)
        ws = torch.rand(N, K // G) * 1e-3 + 1e-4
        out.append((ops.w4a8_pack(nib, ws, G), ws))
    return out


def _dyn_int8(w):
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    lin.weight.data = w
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear},
                                                      dtype=torch.qint8)


def _rotation_time(fn, items, x, rounds):
    """Median seconds per call over full passes through `items`."""
    for it in items[:2]:
        fn(x, it)
    per = []
    for _ in range(rounds):
        t = time.perf_counter()
        for it in items:
            fn(x, it)
        per.append((time.perf_counter() - t) / len(items))
    return statistics.median(per)


@pytest.mark.parametrize("shape", SHAPES, ids=[f"N{n}_K{k}" for n, k in SHAPES])
def test_decode_m1(benchmark, shape, ceilings):
    N, K = shape
    w4_bytes = N * K // 2 + N * (K // G) * 4
    bf_bytes, i8_bytes = N * K * 2, N * K + N * 4
    cw = _w4a8_weights(N, K, max(2, int(ROTATE_BYTES // w4_bytes) + 1))
    cb = [torch.randn(N, K).to(torch.bfloat16) for _ in range(max(2, int(ROTATE_BYTES // bf_bytes) + 1))]
    w0 = torch.randn(N, K) * 0.02
    ci = [_dyn_int8(w0) for _ in range(max(2, int(ROTATE_BYTES // i8_bytes) + 1))]
    x = torch.randn(1, K)
    xb = x.to(torch.bfloat16)
    times = {"w4a8": [], "bf16": [], "dyn_int8": []}
    for _ in range(3):  # A B C A B C ...
        times["w4a8"].append(_rotation_time(lambda x, it: ops.w4a8_linear(x, it[0], it[1], G), cw, x, 3))
        times["bf16"].append(_rotation_time(lambda x, w: F.linear(x, w), cb, xb, 3))
        times["dyn_int8"].append(_rotation_time(lambda x, m: m(x), ci, x, 3))
    t = {k: statistics.median(v) for k, v in times.items()}
    gbps = w4_bytes / t["w4a8"] / 1e9
    info = {
        "threads": torch.get_num_threads(), "M": 1, "N": N, "K": K, "group_size": G,
        "cpu_path": vlmkern._C.w4a8_cpu_path(),
        "rotation_GiB": {"w4a8": len(cw) * w4_bytes / 2**30, "bf16": len(cb) * bf_bytes / 2**30,
                         "dyn_int8": len(ci) * i8_bytes / 2**30},
        "time_w4a8_ms": t["w4a8"] * 1e3, "time_bf16_ms": t["bf16"] * 1e3,
        "time_dyn_int8_ms": t["dyn_int8"] * 1e3,
        "speedup_vs_bf16": t["bf16"] / t["w4a8"], "speedup_vs_dyn_int8": t["dyn_int8"] / t["w4a8"],
        "w4a8_GBps": gbps, "dram_read_GBps": ceilings["dram_read_GBps"],
        "fraction_of_dram_read": gbps / ceilings["dram_read_GBps"],
        "bf16_GBps": bf_bytes / t["bf16"] / 1e9, "dyn_int8_GBps": i8_bytes / t["dyn_int8"] / 1e9,
    }
    benchmark.extra_info.update(info)
    it = iter(range(10**9))
    benchmark.pedantic(lambda: ops.w4a8_linear(x, *cw[next(it) % len(cw)], G), rounds=len(cw), iterations=1)


PREFILL = [(512, 4096, 4096), (2048, 4096, 4096), (512, 14336, 4096), (2048, 14336, 4096)]


@pytest.mark.parametrize("case", PREFILL, ids=[f"M{m}_N{n}_K{k}" for m, n, k in PREFILL])
def test_prefill(benchmark, case):
    M, N, K = case
    (packed, ws), = _w4a8_weights(N, K, 1)
    w = torch.randn(N, K) * 0.02
    wb = w.to(torch.bfloat16)
    dyn = _dyn_int8(w)
    x = torch.randn(M, K)
    xb = x.to(torch.bfloat16)
    big = M * N >= 2048 * 14336
    rounds = 2 if big else 3
    fns = {"w4a8": lambda: ops.w4a8_linear(x, packed, ws, G),
           "w4a8_bf16_io": lambda: ops.w4a8_linear(xb, packed, ws, G),
           "bf16": lambda: F.linear(xb, wb), "fp32": lambda: F.linear(x, w), "dyn_int8": lambda: dyn(x)}
    times = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    t = {k: min(v) for k, v in times.items()}
    ops_ = 2 * M * N * K
    info = {"threads": torch.get_num_threads(), "M": M, "N": N, "K": K, "group_size": G,
            "cpu_path": vlmkern._C.w4a8_cpu_path(),
            **{f"time_{k}_ms": v * 1e3 for k, v in t.items()},
            "speedup_vs_bf16": t["bf16"] / t["w4a8_bf16_io"], "speedup_vs_fp32": t["fp32"] / t["w4a8"],
            "speedup_vs_dyn_int8": t["dyn_int8"] / t["w4a8"],
            "w4a8_TOPS": ops_ / t["w4a8"] / 1e12,
            "avx2_int8_peak_TOPS": avx2_int8_peak_ops() / 1e12,
            "fraction_of_avx2_int8_peak": ops_ / t["w4a8"] / avx2_int8_peak_ops()}
    benchmark.extra_info.update(info)
    benchmark.pedantic(fns["w4a8"], rounds=1, iterations=1)
