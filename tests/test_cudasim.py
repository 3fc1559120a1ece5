"""Every CUDA kernel of vlmkern, executed on the CPU by the CUDA emulator
(tests/cudasim) and compared with the CPU kernel.

The emulator compiles the real kernel headers (csrc/cuda/*_kernels.cuh) and
their launch planning with the host compiler, runs one fiber per CUDA thread,
resolves barriers and warp collectives (shuffles, ballots, match, reduce,
mma.sync) with the GPU's semantics, and reports divergence, deadlocks and
out-of-mask reads with file and line. What these tests establish:

- the kernels agree with the CPU kernels on the parity cases of
  test_cuda_parity.py and on larger and stranger ones (exactly where the code
  claims bit equality), under the lock-step schedule and with a warp running
  ahead (a missing barrier shows there), with and without flush-to-zero where
  a result must not depend on it;
- the same with AddressSanitizer and UndefinedBehaviorSanitizer;
- each mutation that CUDA code commonly suffers makes them fail (the
  mutation table below);
- the emulator's own semantics (test_emulator_*).

What they do not establish: speed, the memory model, the device's exp2f and
FMA contraction, and anything about a real GPU; test_cuda_parity.py runs
there.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cudasim"))
import build as cudasim_build  # noqa: E402

FAMILIES = ("topk_indices", "attention_mass", "w4a8", "frame_similarity", "pixel_dedup", "dpc_knn",
            "temporal_select")
TIMEOUT = 1200


@pytest.fixture(scope="session")
def harness() -> Path:
    return cudasim_build.build("release")


@pytest.fixture(scope="session")
def sanitized_harness() -> Path:
    return cudasim_build.build("sanitize")


def _run(exe: Path, *args: str, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout)


def _summaries(out: str) -> dict[str, tuple[int, int, int]]:
    """family -> (cases, launches, failures) from the harness's SUMMARY lines."""
    found = {}
    for fam, cases, launches, failures in re.findall(
            r"^SUMMARY (\w+): (\d+) cases, (\d+) launches, (\d+) failures", out, re.M):
        found[fam] = (int(cases), int(launches), int(failures))
    return found


def _run_families(exe: Path, *args: str) -> dict[str, tuple[int, int, int]]:
    """Runs each kernel family in its own process, two at a time, and checks
    that every one ran cases and none failed."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda fam: (fam, _run(exe, "--only", fam + "/", *args)), FAMILIES))
    summary = {}
    for fam, r in results:
        out = r.stdout + r.stderr
        assert r.returncode == 0, f"{fam} under {args}:\n{out[-6000:]}"
        got = _summaries(r.stdout)
        assert fam in got and got[fam][0] > 0 and got[fam][2] == 0, out[-3000:]
        summary[fam] = got[fam]
        print(f"{fam} {' '.join(args)}: {got[fam][0]} cases, {got[fam][1]} launches")
        for line in re.findall(r"^(?:MAXERR|NOTES).*$", r.stdout, re.M):
            print(line)
    return summary


# ---- the kernels against the CPU ------------------------------------------------------------

def test_kernels_lockstep_and_warp_ahead_with_and_without_ftz(harness):
    """Every case (the parity cases and the larger ones) under the lock-step
    schedule and with the last warp of each block running ahead; cases whose
    result must not depend on flush-to-zero run both ways."""
    s = _run_families(harness, "--size", "full", "--schedules", "lockstep,warp-ahead", "--ftz", "both")
    # the case counts the closing notes cite; fewer means cases were lost
    assert s["topk_indices"][0] >= 28 and s["attention_mass"][0] >= 64 and s["w4a8"][0] >= 59
    assert s["frame_similarity"][0] >= 81 and s["pixel_dedup"][0] >= 83 and s["dpc_knn"][0] >= 349
    assert s["temporal_select"][0] >= 30


def test_kernels_other_schedules(harness):
    """The quick cases in reversed order, with warp 0 running ahead, and in
    two random orders (blocks and threads)."""
    _run_families(harness, "--schedules", "reverse,warp-ahead:0,random:1,random:2")


def test_kernels_under_sanitizers(sanitized_harness):
    """The quick cases with AddressSanitizer (global and shared memory: out
    of bounds, use after free) and UndefinedBehaviorSanitizer (overflow,
    misaligned loads, bad shifts)."""
    _run_families(sanitized_harness)


# ---- the emulator itself -------------------------------------------------------------------

def test_emulator_semantics(harness):
    """Collectives against their PTX definitions (every shuffle width),
    barriers with predicates and early exits, the mma fragment layout,
    shared-memory poisoning, flush-to-zero, 16-bit conversions, launch checks."""
    r = _run(harness, "--only", "selftest/", "--schedules", "lockstep,reverse,warp-ahead,random:5",
             "--ftz", "both")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _summaries(r.stdout)["selftest"][2] == 0


def test_emulator_semantics_under_sanitizers(sanitized_harness):
    r = _run(sanitized_harness, "--only", "selftest/")
    assert r.returncode == 0, r.stdout + r.stderr


ERRORS = [
    ("divergent-barrier", r"divergent barrier: thread 32 waits at __syncthreads \(selftest\.cpp:\d+\) "
                          r"while thread 0 waits at __syncthreads \(selftest\.cpp:\d+\)"),
    ("exited-lane", r"__shfl_xor_sync: mask 0xffffffff names lane 7, which has exited"),
    ("lane-at-barrier", r"deadlock: __shfl_xor_sync with mask 0xffffffff in warp 0 waits for lane 16, "
                        r"which waits at __syncthreads"),
    ("outside-mask", r"__shfl_sync: lane 0 reads lane 20, which is not in the mask 0x0000ffff"),
    ("own-mask", r"__ballot_sync: lane 1 is not in its own mask 0x00000001"),
    ("bad-width", r"__shfl_down_sync: width 12 is not a power of two"),
    ("partial-mma", r"mma\.sync\.aligned\.m16n8k32.*names lane 16, which has exited"),
]


@pytest.mark.parametrize("name,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_emulator_reports(harness, name, message):
    """A kernel that breaks a rule ends with the emulator's report (file,
    line, block, thread), never with a result."""
    r = _run(harness, "--error", name, timeout=60)
    assert r.returncode == 86, r.stdout + r.stderr
    assert re.search(message, r.stderr), r.stderr
    assert re.search(r"in kernel \w+, block \(\d+,\d+,\d+\), thread \(\d+,\d+,\d+\)", r.stderr), r.stderr


# ---- mutations: each must make the emulator tests fail -----------------------------------

TOPK = "csrc/cuda/topk_indices_kernels.cuh"
ATTN = "csrc/cuda/attention_mass_kernels.cuh"
W4A8 = "csrc/cuda/w4a8_kernels.cuh"
FRAME = "csrc/cuda/frame_similarity_kernels.cuh"
PIXEL = "csrc/cuda/pixel_dedup_kernels.cuh"
DPC = "csrc/cuda/dpc_knn_kernels.cuh"
TSEL = "csrc/cuda/temporal_select_kernels.cuh"

# (id, header, exact original text, replacement, config, harness args, expected
#  exit status, pattern the output must contain)
MUTATIONS = [
    ("shuffle-up scan off by one", TOPK,
     "if (lane >= off) incl += v;", "if (lane > off) incl += v;",
     "release", ["--only", "topk_indices/random f32 N=577"], 1, r"FAIL random f32 N=577"),
    ("swapped mma A fragments", W4A8,
     "const int a[4] = {va ? xa[q] : 0, vb ? xb[q] : 0, va ? xa[q + 4] : 0, vb ? xb[q + 4] : 0};",
     "const int a[4] = {va ? xa[q] : 0, va ? xa[q + 4] : 0, vb ? xb[q] : 0, vb ? xb[q + 4] : 0};",
     "release", ["--only", "w4a8/gemm tensor-core"], 1, r"FAIL gemm M\d+ .* mma \[lockstep\]"),
    ("wrong B nibble", W4A8,
     "const int sh = (tid & 1) * 4;", "const int sh = ((tid + 1) & 1) * 4;",
     "release", ["--only", "w4a8/gemm tensor-core"], 1, r"FAIL gemm M\d+ .* mma \[lockstep\]"),
    ("xor butterfly turned into shfl_down", ATTN,
     "const float m2 = __shfl_xor_sync(0xffffffffu, m[r], off);\n"
     "      const float l2 = __shfl_xor_sync(0xffffffffu, l[r], off);",
     "const float m2 = __shfl_down_sync(0xffffffffu, m[r], off);\n"
     "      const float l2 = __shfl_down_sync(0xffffffffu, l[r], off);",
     "release", ["--only", "attention_mass/f32 B2 Hq4 Hkv2 Lq9"], 1, r"FAIL f32 B2 Hq4 Hkv2 Lq9"),
    ("dropped __syncthreads (lock-step misses it)", TOPK,
     "hist[t] = 0u;\n      __syncthreads();", "hist[t] = 0u;",
     "release", ["--only", "topk_indices/random f32 N=577", "--schedules", "lockstep"], 0, r"0 failures"),
    ("dropped __syncthreads (a warp running ahead catches it)", TOPK,
     "hist[t] = 0u;\n      __syncthreads();", "hist[t] = 0u;",
     "release", ["--only", "topk_indices/random f32 N=577", "--schedules", "warp-ahead"], 1,
     r"FAIL random f32 N=577 .*\[warp-ahead\]"),
    ("threadIdx.x < 16 before a full-mask shuffle", ATTN,
     "for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);",
     "if (threadIdx.x < 16)\n      for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);",
     "release", ["--only", "attention_mass/f16 B1 Hq12"], 86,
     r"deadlock: __shfl_xor_sync with mask 0xffffffff in warp 0 waits for lane 16, which waits at "
     r"__syncthreads \(attention_mass_kernels\.cuh:\d+\)"),
    ("barrier inside if (warp == 0)", TOPK,
     "      }\n      __syncthreads();\n      krem -= sel_above;",
     "        __syncthreads();\n      }\n      krem -= sel_above;",
     "release", ["--only", "topk_indices/random f32 N=577"], 86,
     r"divergent barrier: thread 32 waits at __syncthreads \(topk_indices_kernels\.cuh:\d+\) while "
     r"thread 0 waits at __syncthreads \(topk_indices_kernels\.cuh:\d+\)"),
    ("out-of-bounds write", W4A8,
     "if (i >= N * K8) return;", "if (i > N * K8) return;",
     "sanitize", ["--only", "w4a8/gemm M2 N17"], None,
     r"ERROR: AddressSanitizer: heap-buffer-overflow.*\n(.*\n)*.*pack_kernel"),
    ("DP4A recomputes the row sums (the reviewed defect)", W4A8,
     "iacc[r] += __dp4a(wh, xr[2 * o + 1], __dp4a(wl, xr[2 * o], 0));\n"
     "            if (first) iacc[r] -= math::kW4A8Offset * rowsums[(m0 + r) * n_groups + g];",
     "const int sum_x = __dp4a(0x01010101, xr[2 * o], __dp4a(0x01010101, xr[2 * o + 1], 0));\n"
     "            iacc[r] += __dp4a(wh, xr[2 * o + 1], __dp4a(wl, xr[2 * o], 0)) - "
     "math::kW4A8Offset * sum_x;\n            (void)first;",
     "release", ["--only", "w4a8/gemm trusts x_rowsums"], 1, r"FAIL gemm M33 .* dp4a"),
    ("xor butterfly starting at 8 (lanes 16-31 never summed)", FRAME,
     "for (int o = 16; o > 0; o >>= 1) {", "for (int o = 8; o > 0; o >>= 1) {",
     "release", ["--only", "frame_similarity/random f32 B3 T9 N5 D33"], 1,
     r"FAIL random f32 B3 T9 N5 D33 \[lockstep\]: \(b \d+, t \d+, n \d+, ref \d+\): CUDA .*\|diff\|"),
    # Without the step's second barrier the last warp starts the next step
    # before thread 0 has decided this one: it reads the old anchor and
    # overwrites its warp sum. Lock-step (and warp 0 ahead) hide it.
    ("pixel_dedup without the barrier that publishes the anchor", PIXEL,
     "    __syncthreads();  // the new anchor is visible; warp_sums may be reused\n", "",
     "release", ["--only", "pixel_dedup/exact repeats f32 F1176", "--schedules", "warp-ahead"], 1,
     r"FAIL exact repeats f32 F1176 tol=0 \[warp-ahead\]: video 0 group \d+: CUDA source \d+, CPU \d+"),
    # Each G entry must be one FMA chain in math::dpc_channel's order (pairs,
    # odd channel first): summing in storage order changes G's last bits.
    ("dpc_knn Gram in storage channel order", DPC,
     "const int64_t ch = math::dpc_channel(pos, D);", "const int64_t ch = pos;",
     "release", ["--only", "dpc_knn/normal f32 B1 n65 D17"], 1,
     r"FAIL normal f32 B1 n65 D17 k\d+ m\d+ \[lockstep\]: G\[\d+\]\[\d+\]: CUDA \S+ \(0x[0-9a-f]{8}\), "
     r"CPU \S+ \(0x[0-9a-f]{8}\)"),
    # Equal densities (duplicate points) must rank the lower index as denser.
    ("dpc_knn density ties toward the higher index", DPC,
     "r += math::dpc_denser(mean[j], j, mean[i], i) ? 1 : 0;",
     "r += math::dpc_denser(mean[j], -j, mean[i], -i) ? 1 : 0;",
     "release", ["--only", "dpc_knn/duplicates quarters f32"], 1,
     r"FAIL duplicates quarters f32 B2 n40 D17 distinct15 k\d+ m\d+ \[lockstep\]: item 0 alone: "
     r"rank\[\d+\]: CUDA \d+, CPU \d+"),
    # Frames without a reference must score +inf in global mode (EVS keeps
    # frame 0 whole); NaN would rank them last.
    ("temporal_select global mode without frame 0's forcing", TSEL,
     "__int_as_float(global ? 0x7f800000 : 0x7fc00000)", "__int_as_float(0x7fc00000)",
     "release", ["--only", "temporal_select/random f32 B3 T5 N15 D77"], 1,
     r"FAIL random f32 B3 T5 N15 D77 global keep=\d+ \[lockstep\]: score \d+: CUDA nan, CPU inf"),
    # Frame t's kept tokens start after every earlier frame's, frame 0 included.
    ("temporal_select per-frame offsets skip frame 0", TSEL,
     "for (int64_t u = 0; u < t; ++u) off += ref[u] < 0 ? N : keep;",
     "for (int64_t u = 1; u < t; ++u) off += ref[u] < 0 ? N : keep;",
     "release", ["--only", "temporal_select/random bf16 B2 T9 N12 D40"], 1,
     r"FAIL random bf16 B2 T9 N12 D40 per_frame keep=\d+ \[lockstep\]: video \d+ slot \d+: CUDA -?\d+, "
     r"CPU on CUDA's scores \d+"),
]


@pytest.fixture(scope="session")
def mutants(harness, sanitized_harness, tmp_path_factory) -> dict[str, Path]:
    """Every mutant harness, built two at a time."""
    base = tmp_path_factory.mktemp("mutants")

    def make(i_m):
        i, (mid, header, old, new, config, *_rest) = i_m
        d = base / f"m{i}"
        shutil.copytree(ROOT / "csrc", d / "csrc")
        path = d / header
        text = path.read_text()
        assert text.count(old) == 1, f"mutation {mid!r}: the original text is not in {header} exactly once"
        path.write_text(text.replace(old, new))
        return mid, cudasim_build.build_mutant(config, d / "csrc", header, d / "build")

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(make, enumerate(MUTATIONS)))


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_mutation_is_caught(mutants, mutation):
    mid, _header, _old, _new, _config, args, status, pattern = mutation
    r = _run(mutants[mid], *args, timeout=300)
    out = r.stdout + r.stderr
    if status is None:
        assert r.returncode != 0, out[-4000:]
    else:
        assert r.returncode == status, out[-4000:]
    assert re.search(pattern, out), out[-4000:]
