"""The AVX512-VNNI and AMX-INT8 W4A8 kernels, run under emulation.

The development and CI machines have no AVX-512 and no AMX, so these paths
cannot run natively here. This test compiles csrc/cpu/w4a8_avx512.cpp and
csrc/cpu/w4a8_amx.cpp against SIMDe's portable intrinsics plus a software
model of the tile instructions (tests/simde/immintrin.h shadows the system
header) together with the plain C++ kernel, and checks bit-identical outputs
on odd shapes, every group size, with bias, and M across the AMX switch point
and row chunks (tests/simde/w4a8_vnni_harness.cpp). On a machine with those
instructions the real paths are also covered by test_w4a8_ops.py, which forces
every path the CPU supports. Speed on such machines is not measured.
"""

import shutil

import pytest

from simde_build import build_and_run

simde_py = pytest.importorskip("simde_py", reason="simde-py (requirements.txt) is not installed")


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_vnni_and_amx_kernels_match_plain_cpp_under_emulation(tmp_path):
    r = build_and_run(tmp_path, simde_py.get_include(),
                      emulated=["csrc/cpu/w4a8_avx512.cpp", "csrc/cpu/w4a8_amx.cpp"],
                      plain=["csrc/cpu/w4a8_kernel.cpp", "tests/simde/w4a8_vnni_harness.cpp"], timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "39 cases (15 on AMX tiles), 0 failures" in r.stdout, r.stdout
