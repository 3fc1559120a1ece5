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

import shutil

import pytest

from simde_build import build_and_run

simde_py = pytest.importorskip("simde_py", reason="simde-py (requirements.txt) is not installed")


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_avx512_and_bf16_kernels_match_fp64_under_emulation(tmp_path):
    # with AddressSanitizer and UBSan: the vector code's tails stay inside their buffers
    r = build_and_run(tmp_path, simde_py.get_include(), emulated=["csrc/cpu/attention_mass_avx512.cpp"],
                      plain=["csrc/cpu/attention_mass_kernel.cpp", "tests/simde/attention_mass_avx512_harness.cpp"],
                      extra_flags=("-fsanitize=address,undefined", "-fno-sanitize-recover=all"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "177 cases x 3 paths, 0 failures" in r.stdout, r.stdout[-2000:]
