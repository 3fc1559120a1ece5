// Device code and launch planning of vlmkern::frame_similarity on CUDA,
// torch-free (compiled by nvcc through csrc/cuda/frame_similarity.cu, and on
// the CPU by the CUDA emulator in tests/cudasim). It mirrors the CPU kernel
// (csrc/cpu/frame_similarity_kernel.cpp): per token the three fp32 sums
// <x, r>, |x|^2, |r|^2 in one pass over D, finished by math/cosine.h (so
// identical rows give exactly 1 here too).
//
// One warp per output (b, t, n); 8 warps per block. Lane l reads elements
// l, l + 32, ... of both rows (consecutive lanes, consecutive addresses:
// coalesced), then a butterfly of shuffles sums the lanes. The reference row
// of frame t is frame ref[t]'s row at the same n, read by another warp of the
// grid as its own x row: on a GPU the second read comes from L2 for
// neighbouring frames (grid order is (b, t, n) with n fastest).
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "cuda/device.cuh"
#include "math/convert.h"
#include "math/cosine.h"

namespace vlmkern::cuda {
namespace {  // one including translation unit per binary (the op's .cu, or the emulator)

constexpr int kFrameSimWarps = 8;
constexpr unsigned kFrameSimFull = 0xffffffffu;

struct FrameSimilarityArgs {
  DType dtype;
  const void* x;  // [B, T, N, D], last dim contiguous
  int64_t B, T, N, D;
  int64_t sb, st, sn;  // element strides
  const int64_t* ref;  // [T], device memory
  float eps;
  float* out;  // [B, T, N], contiguous
};

template <typename T>
__global__ void __launch_bounds__(kFrameSimWarps * 32)
    frame_similarity_kernel(const T* __restrict__ x, int64_t B, int64_t Tn, int64_t N, int64_t D,
                            int64_t sb, int64_t st, int64_t sn, const int64_t* __restrict__ ref,
                            float eps, float* __restrict__ out) {
  const int lane = int(threadIdx.x & 31u);
  const int64_t row = int64_t(blockIdx.x) * kFrameSimWarps + int64_t(threadIdx.x >> 5);
  if (row >= B * Tn * N) return;  // whole warps leave together (rows are per warp)
  const int64_t n = row % N, t = (row / N) % Tn, b = row / (N * Tn);
  const int64_t r = ref[t];
  if (r < 0) {
    if (lane == 0) out[row] = __int_as_float(0x7fc00000);
    return;
  }
  const T* px = x + b * sb + t * st + n * sn;
  const T* pr = x + b * sb + r * st + n * sn;
  float dot = 0.f, xx = 0.f, rr = 0.f;
  for (int64_t i = lane; i < D; i += 32) {
    const float a = math::to_float(px[i]), c = math::to_float(pr[i]);
    dot = fmaf(a, c, dot);
    xx = fmaf(a, a, xx);
    rr = fmaf(c, c, rr);
  }
  for (int o = 16; o > 0; o >>= 1) {
    dot += __shfl_xor_sync(kFrameSimFull, dot, o);
    xx += __shfl_xor_sync(kFrameSimFull, xx, o);
    rr += __shfl_xor_sync(kFrameSimFull, rr, o);
  }
  if (lane == 0) out[row] = math::cosine_finish(dot, xx, rr, eps);
}

// Why this shape cannot be launched, or nullptr.
const char* frame_similarity_plan_error(const FrameSimilarityArgs& a) {
  const int64_t rows = a.B * a.T * a.N;
  if ((rows + kFrameSimWarps - 1) / kFrameSimWarps >= (int64_t(1) << 31))
    return "x: at most (2^31 - 1) * 8 rows B * T * N on CUDA";
  return nullptr;
}

// Enqueues the kernel (nothing for an empty output); returns the launch status.
cudaError_t frame_similarity_launch(const FrameSimilarityArgs& a, cudaStream_t stream) {
  const int64_t rows = a.B * a.T * a.N;
  if (rows == 0) return cudaSuccess;
  const unsigned blocks = unsigned((rows + kFrameSimWarps - 1) / kFrameSimWarps);
  with_element_type(a.dtype, [&](auto t) {
    using T = decltype(t);
    VLMKERN_LAUNCH(frame_similarity_kernel<T>, dim3(blocks), kFrameSimWarps * 32, 0, stream)(
        static_cast<const T*>(a.x), a.B, a.T, a.N, a.D, a.sb, a.st, a.sn, a.ref, a.eps, a.out);
  });
  return cudaGetLastError();
}

}  // namespace
}  // namespace vlmkern::cuda
