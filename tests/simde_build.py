"""Builds and runs a SIMDe harness (tests/simde/*_harness.cpp): the AVX-512 /
AMX kernel sources compiled against SIMDe's portable intrinsics
(tests/simde/immintrin.h shadows the system header, VLMKERN_EMULATED_ISA drops
the target attributes), the other sources as plain C++."""

from __future__ import annotations

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_and_run(tmp_path, simde_include: str, emulated: list[str], plain: list[str],
                  extra_flags: tuple[str, ...] = (), timeout: int = 900) -> subprocess.CompletedProcess:
    cxx = ["g++", "-std=c++20", "-O1", "-w", *extra_flags, f"-I{os.path.join(ROOT, 'csrc')}"]
    emu = cxx + ["-DVLMKERN_EMULATED_ISA", f"-I{os.path.join(ROOT, 'tests', 'simde')}", f"-I{simde_include}"]
    objs = []
    for src, flags in [(s, emu) for s in emulated] + [(s, cxx) for s in plain]:
        obj = str(tmp_path / (os.path.basename(src) + ".o"))
        r = subprocess.run(flags + ["-c", os.path.join(ROOT, src), "-o", obj], capture_output=True, text=True)
        assert r.returncode == 0, f"compiling {src} failed:\n{r.stderr[-3000:]}"
        objs.append(obj)
    exe = str(tmp_path / "harness")
    r = subprocess.run(["g++", *extra_flags, *objs, "-o", exe], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return subprocess.run([exe], capture_output=True, text=True, timeout=timeout)
