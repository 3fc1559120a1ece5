"""The CUDA device code compiles for sm_80 and sm_90a on every machine (nvcc
only, no GPU and no torch headers: seconds per header), with the flags of the
extension's build (csrc/cuda/nvcc_flags.txt); and no kernel's PTX holds a
flush-to-zero instruction, since the W4A8 quantizer and tensor-core GEMM are
bit-identical to the CPU only with IEEE denormals (their emulator tests run
without flush-to-zero for that reason).

A kernel header that stops compiling fails here in seconds, before the
extension's full CUDA build (minutes) or a GPU machine would show it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("sm_80", "sm_90a")
# Each kernel header with the launch functions whose kernels it instantiates.
HEADERS = {
    "topk_indices": ["topk_indices_launch"],
    "attention_mass": ["attention_mass_launch"],
    "w4a8": ["w4a8_quantize_launch", "w4a8_pack_launch", "w4a8_gemm_launch"],
    "frame_similarity": ["frame_similarity_launch"],
    "pixel_dedup": ["pixel_dedup_launch"],
    "dpc_knn": ["dpc_knn_launch"],
    "temporal_select": ["temporal_select_launch"],
}


def nvcc_flags() -> list[str]:
    lines = (ROOT / "csrc" / "cuda" / "nvcc_flags.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def test_every_kernel_header_is_covered():
    found = {p.name[: -len("_kernels.cuh")] for p in (ROOT / "csrc" / "cuda").glob("*_kernels.cuh")}
    assert found == set(HEADERS), "add the new kernel header to HEADERS (and its harness to tests/cudasim)"


def test_no_fast_math_in_the_build():
    flags = nvcc_flags()
    assert "--use_fast_math" not in flags and "-ftz=true" not in flags
    assert "-ftz=false" in flags


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.fail("nvcc is not on PATH: these machines have it (CUDA 13); set PATH to include it")
    d = tmp_path_factory.mktemp("cubins")
    jobs = []
    for name, launches in HEADERS.items():
        tu = d / f"{name}.cu"
        refs = "\n".join(f"    reinterpret_cast<const void*>(&vlmkern::cuda::{f})," for f in launches)
        tu.write_text(f'#include "cuda/{name}_kernels.cuh"\n'
                      f"// Taking the launch functions' addresses instantiates every kernel.\n"
                      f'extern "C" const void* const vlmkern_launches[] = {{\n{refs}\n}};\n')
        for arch in ARCHS:
            base = [nvcc, f"-arch={arch}", *nvcc_flags(), f"-I{ROOT / 'csrc'}", str(tu)]
            jobs.append((name, arch, "cubin", base + ["-cubin", "-Xptxas", "-v", "-o", str(d / f"{name}.{arch}.cubin")]))
        jobs.append((name, "sm_80", "ptx", [nvcc, "-arch=sm_80", *nvcc_flags(), f"-I{ROOT / 'csrc'}", str(tu),
                                            "-ptx", "-o", str(d / f"{name}.ptx")]))

    def run(job):
        name, arch, kind, cmd = job
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        return name, arch, kind, r

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        results = list(pool.map(run, jobs))
    return d, results


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_kernels_compile_for_sm80_and_sm90a(compiled, name):
    d, results = compiled
    for n, arch, kind, r in results:
        if n != name:
            continue
        assert r.returncode == 0, f"{name} ({arch}, {kind}) does not compile:\n{r.stderr[-4000:]}"
        if kind == "cubin":
            assert (d / f"{name}.{arch}.cubin").stat().st_size > 0
            spills = re.findall(r"(\d+) bytes spill stores", r.stderr)
            print(f"{name} {arch}: {len(spills)} kernels, spill stores {sorted(set(spills))} bytes")


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_no_flush_to_zero_in_the_ptx(compiled, name):
    d, _ = compiled
    ptx = (d / f"{name}.ptx").read_text()
    ftz = sorted(set(re.findall(r"\b[a-z0-9.]+\.ftz[a-z0-9.]*", ptx)))
    assert not ftz, f"{name}: flush-to-zero instructions in the PTX: {ftz[:10]}"
