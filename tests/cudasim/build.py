"""Builds the CUDA emulator's harness: the real CUDA kernel headers
(csrc/cuda/*_kernels.cuh) compiled for the CPU against the emulator
(tests/cudasim/cudasim.{h,cpp}), linked with the plain C++ CPU kernels they are
compared with. Incremental (ninja, with header dependencies) under
build/cudasim/<config>/.

Configurations:
  release   -O2; __shared__ as thread-local memory poisoned before each block.
  sanitize  -O1 with AddressSanitizer and UndefinedBehaviorSanitizer; __shared__
            as plain statics, so ASan bounds-checks shared memory too.

By hand: ``python tests/cudasim/build.py [release|sanitize]`` prints the
harness's path; run it with ``--help`` for its options.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# Translation units compiled against the emulator (the kernels' harnesses).
EMULATED = ["cudasim.cpp", "fiber.cpp", "warp.cpp", "half.cpp", "harness_main.cpp", "selftest.cpp",
            "topk_indices_harness.cpp", "attention_mass_harness.cpp", "w4a8_harness.cpp",
            "frame_similarity_harness.cpp", "pixel_dedup_harness.cpp", "dpc_knn_harness.cpp",
            "temporal_select_harness.cpp"]
# The CPU side: the torch-free kernels as the extension compiles them (plain C++ path).
PLAIN = ["csrc/cpu/topk_indices_kernel.cpp", "csrc/cpu/attention_mass_kernel.cpp",
         "csrc/cpu/w4a8_kernel.cpp", "csrc/cpu/frame_similarity_kernel.cpp", "csrc/cpu/pixel_dedup_kernel.cpp",
         "csrc/cpu/dpc_knn_kernel.cpp", "csrc/cpu/temporal_select_kernel.cpp",
         "csrc/core/cpu_features.cpp",
         "tests/cudasim/cpu_plain_only.cpp"]
# Which harness translation unit includes each kernel header (for mutants).
HARNESS_OF = {
    "csrc/cuda/topk_indices_kernels.cuh": "topk_indices_harness.cpp",
    "csrc/cuda/attention_mass_kernels.cuh": "attention_mass_harness.cpp",
    "csrc/cuda/w4a8_kernels.cuh": "w4a8_harness.cpp",
    "csrc/cuda/frame_similarity_kernels.cuh": "frame_similarity_harness.cpp",
    "csrc/cuda/pixel_dedup_kernels.cuh": "pixel_dedup_harness.cpp",
    "csrc/cuda/dpc_knn_kernels.cuh": "dpc_knn_harness.cpp",
    "csrc/cuda/temporal_select_kernels.cuh": "temporal_select_harness.cpp",
}

SANITIZERS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
CONFIGS = {
    "release": {"opt": ["-O2"], "defs": [], "link": []},
    "sanitize": {"opt": ["-O1", "-fno-omit-frame-pointer"] + SANITIZERS,
                 "defs": ["-DCUDASIM_SHARED_STATIC"], "link": SANITIZERS},
}


def cxx() -> str:
    exe = os.environ.get("CXX", "g++")
    if shutil.which(exe) is None:
        raise RuntimeError(f"the CUDA emulator needs a C++20 compiler: {exe!r} not found (set CXX)")
    return exe


def ninja() -> str:
    exe = shutil.which("ninja")
    if exe is None:
        try:
            import ninja as ninja_pkg  # requirements.txt

            exe = os.path.join(ninja_pkg.BIN_DIR, "ninja")
        except ImportError as e:
            raise RuntimeError("ninja not found: pip install ninja (requirements.txt has it)") from e
    return exe


def _fma_flags() -> list[str]:
    # Hardware fmaf in the emulated code (speed only: the kernels' fmaf is exact
    # either way). Both CPU families these machines have support FMA3.
    if platform.machine() not in ("x86_64", "AMD64"):
        return []
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return ["-mfma"] if " fma " in flags else []


def flags(config: str, csrc: Path = ROOT / "csrc") -> tuple[list[str], list[str], list[str]]:
    """(flags of emulated TUs, flags of plain TUs, link flags) for a configuration."""
    c = CONFIGS[config]
    common = ["-std=c++20", "-g", "-Wall", "-Wno-unknown-pragmas", "-Wno-unused-function",
              "-fno-strict-aliasing"] + c["opt"]
    # No FMA contraction: the kernels say where they fuse (fmaf); nvcc's own
    # contraction of a * b + c is not modelled.
    emulated = common + ["-ffp-contract=off", "-DVLMKERN_CUDASIM"] + _fma_flags() + c["defs"] + [
        f"-I{csrc}", f"-I{HERE}"]
    plain = common + [f"-I{csrc}"]
    return emulated, plain, c["link"]


def build(config: str = "release", quiet: bool = True) -> Path:
    """Builds (incrementally) and returns the harness executable of `config`."""
    out = ROOT / "build" / "cudasim" / config
    out.mkdir(parents=True, exist_ok=True)
    emulated, plain, link = flags(config)
    lines = [
        f"cxx = {cxx()}",
        f"emulated = {' '.join(emulated)}",
        f"plain = {' '.join(plain)}",
        f"link = {' '.join(link)}",
        "rule emu",
        "  command = $cxx $emulated -MD -MF $out.d -c $in -o $out",
        "  depfile = $out.d",
        "  deps = gcc",
        "  description = emulated $in",
        "rule cc",
        "  command = $cxx $plain -MD -MF $out.d -c $in -o $out",
        "  depfile = $out.d",
        "  deps = gcc",
        "  description = cpu $in",
        "rule ld",
        "  command = $cxx $in $link -o $out",
        "  description = link $out",
    ]
    objs = []
    for src in EMULATED:
        obj = f"emu_{src[:-4]}.o"
        lines.append(f"build {obj}: emu {HERE / src}")
        objs.append(obj)
    for src in PLAIN:
        obj = f"cpu_{Path(src).stem}.o"
        lines.append(f"build {obj}: cc {ROOT / src}")
        objs.append(obj)
    lines.append(f"build cudasim_harness: ld {' '.join(objs)}")
    ninja_file = out / "build.ninja"
    text = "\n".join(lines) + "\n"
    if not ninja_file.exists() or ninja_file.read_text() != text:
        ninja_file.write_text(text)
    jobs = str(max(1, os.cpu_count() or 1))
    r = subprocess.run([ninja(), "-C", str(out), "-j", jobs], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"building the CUDA emulator harness ({config}) failed:\n"
                           f"{r.stdout[-6000:]}\n{r.stderr[-3000:]}")
    if not quiet:
        print(r.stdout, end="")
    return out / "cudasim_harness"


def build_mutant(config: str, csrc: Path, header: str, out_dir: Path) -> Path:
    """The harness of `config` with the translation unit that includes `header`
    recompiled against the kernel sources in `csrc` (a mutated copy of csrc/).
    `config` must have been built first."""
    base = ROOT / "build" / "cudasim" / config
    emulated, _, link = flags(config, csrc)
    tu = HARNESS_OF[header]
    out_dir.mkdir(parents=True, exist_ok=True)
    obj = out_dir / "mutant.o"
    r = subprocess.run([cxx()] + emulated + ["-c", str(HERE / tu), "-o", str(obj)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"compiling the mutant of {header} failed:\n{r.stderr[-4000:]}")
    objs = [str(obj)]
    objs += [str(base / f"emu_{s[:-4]}.o") for s in EMULATED if s != tu]
    objs += [str(base / f"cpu_{Path(s).stem}.o") for s in PLAIN]
    exe = out_dir / "cudasim_harness"
    r = subprocess.run([cxx()] + objs + link + ["-o", str(exe)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"linking the mutant of {header} failed:\n{r.stderr[-4000:]}")
    return exe


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else "release", quiet=False))
