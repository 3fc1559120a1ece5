"""dpc_knn's AVX2 and AVX-512 Gram tiles, run under emulation on every machine.

The Gram matrix is the claim dpc_knn's backends rest on: each entry is one
fp32 FMA chain over the channels in ``math::dpc_channel``'s order, so the
scalar, AVX2 and AVX-512 tiles (and the CUDA kernel, tests/cudasim) give the
same G bit for bit and so the same clusters. tests/test_dpc_knn.py checks the
paths this machine has natively; this test compiles csrc/cpu/dpc_knn_avx2.cpp
and csrc/cpu/dpc_knn_avx512.cpp against SIMDe's portable intrinsics
(tests/simde/immintrin.h shadows the system header and makes their FMAs round
once, like the hardware's) with the plain C++ kernel, and holds both tiles to
the scalar tile, and the scalar tile to the FMA chain written out, bit for
bit (tests/simde/dpc_knn_harness.cpp): D from 1 to 257, partial panels, rows
with repeats, channel chunks split at every allowed (even) boundary, continued
accumulators, subnormal and overflowing products, under AddressSanitizer and
UBSan. Speed is not measured.
"""

import os
import shutil

import pytest

from simde_build import build_and_run

simde_py = pytest.importorskip("simde_py", reason="simde-py (requirements.txt) is not installed")


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
@pytest.mark.skipif(os.environ.get("VLMKERN_SANITIZED") == "1",
                    reason="make sanitize preloads ASan into every child process; this test builds its own "
                           "sanitized harness and runs in make test")
def test_vector_tiles_match_the_scalar_tile_bit_for_bit_under_emulation(tmp_path):
    r = build_and_run(tmp_path, simde_py.get_include(),
                      emulated=["csrc/cpu/dpc_knn_avx2.cpp", "csrc/cpu/dpc_knn_avx512.cpp"],
                      plain=["csrc/cpu/dpc_knn_kernel.cpp", "tests/simde/dpc_knn_harness.cpp"],
                      extra_flags=("-fsanitize=address,undefined", "-fno-sanitize-recover=all"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "240 cases x 3 paths, 0 failures" in r.stdout, r.stdout[-2000:]
