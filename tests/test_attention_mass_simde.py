"""The AVX-512 and AVX512-BF16 attention_mass kernels, run under emulation on
every machine.

The project's machines differ: some have AVX-512 and AVX512-BF16 (there
tests/test_attention_mass.py runs these paths natively), some stop at AVX2.
This test compiles csrc/cpu/attention_mass_avx512.cpp against SIMDe's portable
intrinsics (tests/simde/immintrin.h shadows the system header) with the plain
C++ kernel and the torch-free CPU driver, and checks both vector paths and the
plain one against an fp64 reference on 177 cases: every scores tile shape
(1..8 query rows per KV head), key tails, head dims around the 16- and 32-lane
widths, masks, weights, spans and the three dtypes
(tests/simde/attention_mass_avx512_harness.cpp), under AddressSanitizer and
UBSan. SIMDe's own masked loads and stores touch whole vectors, so
tests/simde/immintrin.h replaces them with element-wise ones that, like the
hardware, touch only the selected elements. Speed is not measured.
"""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
simde_py = pytest.importorskip("simde_py", reason="simde-py (requirements.txt) is not installed")


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_avx512_and_bf16_kernels_match_fp64_under_emulation(tmp_path):
    # with AddressSanitizer and UBSan: the vector code's tails stay inside their buffers
    cxx = ["g++", "-std=c++20", "-O1", "-w", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
           f"-I{os.path.join(ROOT, 'csrc')}"]
    emulated = cxx + ["-DVLMKERN_EMULATED_ISA", f"-I{os.path.join(ROOT, 'tests', 'simde')}",
                      f"-I{simde_py.get_include()}"]
    objs = []
    for src, flags in [("csrc/cpu/attention_mass_avx512.cpp", emulated),
                       ("csrc/cpu/attention_mass_kernel.cpp", cxx),
                       ("tests/simde/attention_mass_avx512_harness.cpp", cxx)]:
        obj = str(tmp_path / (os.path.basename(src) + ".o"))
        r = subprocess.run(flags + ["-c", os.path.join(ROOT, src), "-o", obj], capture_output=True, text=True)
        assert r.returncode == 0, f"compiling {src} failed:\n{r.stderr[-3000:]}"
        objs.append(obj)
    exe = str(tmp_path / "harness")
    r = subprocess.run(["g++", "-fsanitize=address,undefined"] + objs + ["-o", exe], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([exe], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "177 cases x 3 paths, 0 failures" in r.stdout, r.stdout[-2000:]
