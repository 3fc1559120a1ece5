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

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
simde_py = pytest.importorskip("simde_py", reason="simde-py (requirements.txt) is not installed")


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_vnni_and_amx_kernels_match_plain_cpp_under_emulation(tmp_path):
    cxx = ["g++", "-std=c++20", "-O1", "-w", f"-I{os.path.join(ROOT, 'csrc')}"]
    # portable SIMDe only (no -m flags), with an exact fused multiply-add
    # (tests/simde/immintrin.h), and no AVX-512 target attributes
    emulated = cxx + ["-DVLMKERN_EMULATED_ISA", f"-I{os.path.join(ROOT, 'tests', 'simde')}",
                      f"-I{simde_py.get_include()}"]
    objs = []
    for src, flags in [("csrc/cpu/w4a8_avx512.cpp", emulated), ("csrc/cpu/w4a8_amx.cpp", emulated),
                       ("csrc/cpu/w4a8_kernel.cpp", cxx),
                       ("tests/simde/w4a8_vnni_harness.cpp", cxx)]:
        obj = str(tmp_path / (os.path.basename(src) + ".o"))
        r = subprocess.run(flags + ["-c", os.path.join(ROOT, src), "-o", obj], capture_output=True, text=True)
        assert r.returncode == 0, f"compiling {src} failed:\n{r.stderr[-3000:]}"
        objs.append(obj)
    exe = str(tmp_path / "harness")
    r = subprocess.run(["g++"] + objs + ["-o", exe], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([exe], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "39 cases (15 on AMX tiles), 0 failures" in r.stdout, r.stdout
