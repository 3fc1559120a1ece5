// What every torch-free CUDA kernel header (csrc/cuda/*_kernels.cuh) includes:
// the CUDA device API, a launch macro, and the only inline PTX of vlmkern.
//
// Built by nvcc, this is the real CUDA API. Built by the host compiler with
// VLMKERN_CUDASIM defined (tests/cudasim, the CUDA emulator that runs every
// kernel on the CPU in `make test`), the same names come from the emulator,
// so the emulator compiles the real kernels and their launch planning, not a
// copy. Rules that keep that true:
//   - kernels and launch planning live in *_kernels.cuh and never see torch;
//     the .cu that registers an op only checks tensors and calls the planner;
//   - launches go through VLMKERN_LAUNCH, never <<<>>> directly;
//   - inline PTX lives here, one device helper per instruction, each with an
//     emulator version; an asm statement elsewhere fails to compile under the
//     emulator (the host assembler rejects PTX), so nothing passes silently.
#pragma once
#include <cstdint>

#ifdef VLMKERN_CUDASIM
#include "cudasim.h"
// kernel<<<grid, block, smem, stream>>>(args...) as a call the emulator runs.
#define VLMKERN_LAUNCH(kernel, grid, block, smem, stream) \
  ::cudasim::Launch((kernel), #kernel, (grid), (block), (smem), (stream))
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#define VLMKERN_LAUNCH(kernel, grid, block, smem, stream) kernel<<<(grid), (block), (smem), (stream)>>>
#endif

namespace vlmkern::cuda {

// Largest gridDim.y / gridDim.z of a launch.
constexpr int64_t kMaxGridYZ = 65535;

// d = a * b + c for one warp: A 16x32 s8 (row), B 32x8 s8 (col), C/D 16x8 s32.
// Fragments (PTX ISA, mma.m16n8k32; lane = 4 * gid + tig): a0 = row gid,
// k 4tig..4tig+3; a1 = row gid + 8, same k; a2, a3 = a0, a1 at k + 16. b0 =
// column gid, k 4tig..4tig+3; b1 = the same at k + 16. c0, c1 = row gid,
// columns 2tig, 2tig + 1; c2, c3 = row gid + 8. Every lane of the warp must
// execute it together (.aligned).
__device__ __forceinline__ void mma_m16n8k32_s8(int (&c)[4], const int (&a)[4], int b0, int b1) {
#ifdef VLMKERN_CUDASIM
  ::cudasim::mma_m16n8k32_s8(c, a, b0, b1);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

}  // namespace vlmkern::cuda
