// Device code and launch planning of vlmkern::temporal_select on CUDA,
// torch-free (compiled by nvcc through csrc/cuda/temporal_select.cu, and on
// the CPU by the CUDA emulator in tests/cudasim). It mirrors the CPU kernel
// (csrc/cpu/temporal_select_kernel.h) phase for phase, on the same math
// headers:
//   scores   one warp per token (b, t, n), as frame_similarity's kernel: the
//            three fp32 sums over D by 32 lanes and an xor butterfly, then
//            -math::cosine_finish; +inf (global) or NaN (per frame) where
//            ref[t] < 0. Written to a scratch [B, T, N].
//   select   topk_indices_kernel (csrc/cuda/topk_indices_kernels.cuh) on the
//            scratch scores with a per-row budget (row_keep, filled here):
//            global, rows of T*N per video straight into idx; per frame, rows
//            of N per (video, frame) into the scratch sel. The ranking is
//            math/topk.h's, so given equal scores the kept set is the CPU's
//            bit for bit.
//   place    (per frame) one block per (b, t): frame t's kept positions to idx
//            at the offset sum over t' < t of the frames' counts.
//   gather   one warp per kept token: its (t, h, w) and its feature row
//            (copied as raw bits).
// The cosines differ from the CPU's in their last bits (another summation
// order, as frame_similarity's), so a near-tie between scores may break the
// other way; exact ties (copied frames: both give exactly -1) do not.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "cuda/device.cuh"
#include "cuda/topk_indices_kernels.cuh"
#include "math/convert.h"
#include "math/cosine.h"

namespace vlmkern::cuda {
namespace {  // one including translation unit per binary (the op's .cu, or the emulator)

constexpr int kTemporalWarps = 8;
constexpr int kTemporalPlaceThreads = 256;
constexpr unsigned kTemporalFull = 0xffffffffu;

struct TemporalSelectArgs {
  DType dtype;
  const void* x;  // [B, T, N, D], last dim contiguous
  int64_t B, T, N, D;
  int64_t sb, st, sn;   // element strides
  const int64_t* ref;   // [T], device memory, ref[t] in [-1, t)
  bool global;
  int64_t keep, W, K;
  float eps;
  float* scores;        // scratch [B, T, N]
  int64_t* row_keep;    // scratch: global [B]; per frame [B * T]
  int64_t* sel;         // scratch [B * T, N] (per frame only)
  int64_t* idx;         // [B, K]
  int64_t* thw;         // [B, K, 3]
  void* feat;           // [B, K, D] contiguous, or nullptr
};

template <typename T>
__global__ void __launch_bounds__(kTemporalWarps * 32)
    temporal_select_score_kernel(const T* __restrict__ x, int64_t B, int64_t Tn, int64_t N, int64_t D,
                                 int64_t sb, int64_t st, int64_t sn, const int64_t* __restrict__ ref,
                                 bool global, float eps, float* __restrict__ scores) {
  const int lane = int(threadIdx.x & 31u);
  const int64_t row = int64_t(blockIdx.x) * kTemporalWarps + int64_t(threadIdx.x >> 5);
  if (row >= B * Tn * N) return;  // whole warps leave together
  const int64_t n = row % N, t = (row / N) % Tn, b = row / (N * Tn);
  const int64_t r = ref[t];
  if (r < 0) {
    if (lane == 0) scores[row] = __int_as_float(global ? 0x7f800000 : 0x7fc00000);
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
    dot += __shfl_xor_sync(kTemporalFull, dot, o);
    xx += __shfl_xor_sync(kTemporalFull, xx, o);
    rr += __shfl_xor_sync(kTemporalFull, rr, o);
  }
  if (lane == 0) scores[row] = -math::cosine_finish(dot, xx, rr, eps);
}

// row_keep[r]: global keep per video; per frame keep or N (no reference).
__global__ void temporal_select_keep_kernel(const int64_t* __restrict__ ref, int64_t rows, int64_t Tn,
                                            int64_t N, bool global, int64_t keep,
                                            int64_t* __restrict__ row_keep) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  row_keep[r] = global ? keep : (ref[r % Tn] < 0 ? N : keep);
}

__global__ void __launch_bounds__(kTemporalPlaceThreads)
    temporal_select_place_kernel(const int64_t* __restrict__ ref, int64_t Tn, int64_t N, int64_t keep,
                                 int64_t K, const int64_t* __restrict__ sel, int64_t* __restrict__ idx) {
  const int64_t r = blockIdx.x, b = r / Tn, t = r % Tn;
  int64_t off = 0;
  for (int64_t u = 0; u < t; ++u) off += ref[u] < 0 ? N : keep;
  const int64_t cnt = ref[t] < 0 ? N : keep;
  const int64_t* s = sel + r * N;
  int64_t* o = idx + b * K + off;
  for (int64_t j = threadIdx.x; j < cnt; j += kTemporalPlaceThreads) o[j] = t * N + s[j];
}

// U: the element's storage (uint16_t or uint32_t): rows are copied as bits.
template <typename U>
__global__ void __launch_bounds__(kTemporalWarps * 32)
    temporal_select_gather_kernel(const U* __restrict__ x, int64_t B, int64_t N, int64_t D, int64_t sb,
                                  int64_t st, int64_t sn, int64_t W, int64_t K,
                                  const int64_t* __restrict__ idx, int64_t* __restrict__ thw,
                                  U* __restrict__ feat) {
  const int lane = int(threadIdx.x & 31u);
  const int64_t i = int64_t(blockIdx.x) * kTemporalWarps + int64_t(threadIdx.x >> 5);
  if (i >= B * K) return;
  const int64_t b = i / K, f = idx[i];
  const int64_t t = f / N, n = f % N;
  if (lane == 0) {
    thw[3 * i] = t;
    thw[3 * i + 1] = n / W;
    thw[3 * i + 2] = n % W;
  }
  if (feat == nullptr) return;
  const U* src = x + b * sb + t * st + n * sn;
  U* dst = feat + i * D;
  for (int64_t d = lane; d < D; d += 32) dst[d] = src[d];
}

// Why this shape cannot be launched, or nullptr.
const char* temporal_select_plan_error(const TemporalSelectArgs& a) {
  const int64_t lim = int64_t(1) << 31;
  if ((a.B * a.T * a.N + kTemporalWarps - 1) / kTemporalWarps >= lim)
    return "x: at most (2^31 - 1) * 8 tokens B * T * N on CUDA";
  if ((a.B * a.K + kTemporalWarps - 1) / kTemporalWarps >= lim)
    return "x: at most (2^31 - 1) * 8 kept tokens B * K on CUDA";
  if (a.B * a.T >= lim) return "x: at most 2^31 - 1 frames B * T on CUDA";
  return nullptr;
}

// Enqueues the four phases (nothing for an empty output); returns the launch status.
cudaError_t temporal_select_launch(const TemporalSelectArgs& a, cudaStream_t stream) {
  if (a.B == 0 || a.K == 0) return cudaSuccess;
  const int64_t tokens = a.B * a.T * a.N;
  with_element_type(a.dtype, [&](auto e) {
    using T = decltype(e);
    VLMKERN_LAUNCH(temporal_select_score_kernel<T>, dim3(unsigned((tokens + kTemporalWarps - 1) / kTemporalWarps)),
                   kTemporalWarps * 32, 0, stream)(static_cast<const T*>(a.x), a.B, a.T, a.N, a.D, a.sb, a.st,
                                                    a.sn, a.ref, a.global, a.eps, a.scores);
  });
  const int64_t rows = a.global ? a.B : a.B * a.T;
  VLMKERN_LAUNCH(temporal_select_keep_kernel, dim3(unsigned((rows + 255) / 256)), 256, 0, stream)(
      a.ref, rows, a.T, a.N, a.global, a.keep, a.row_keep);
  const TopkArgs sel = a.global
      ? TopkArgs{DType::kF32, a.scores, a.T * a.N, 1, a.B, a.T * a.N, a.row_keep, a.K, a.idx}
      : TopkArgs{DType::kF32, a.scores, a.N, 1, a.B * a.T, a.N, a.row_keep, a.N, a.sel};
  if (const cudaError_t e = topk_indices_launch(sel, stream); e != cudaSuccess) return e;
  if (!a.global)
    VLMKERN_LAUNCH(temporal_select_place_kernel, dim3(unsigned(a.B * a.T)), kTemporalPlaceThreads, 0, stream)(
        a.ref, a.T, a.N, a.keep, a.K, a.sel, a.idx);
  const unsigned gblocks = unsigned((a.B * a.K + kTemporalWarps - 1) / kTemporalWarps);
  if (a.dtype == DType::kF32)
    VLMKERN_LAUNCH(temporal_select_gather_kernel<uint32_t>, dim3(gblocks), kTemporalWarps * 32, 0, stream)(
        static_cast<const uint32_t*>(a.x), a.B, a.N, a.D, a.sb, a.st, a.sn, a.W, a.K, a.idx, a.thw,
        static_cast<uint32_t*>(a.feat));
  else
    VLMKERN_LAUNCH(temporal_select_gather_kernel<uint16_t>, dim3(gblocks), kTemporalWarps * 32, 0, stream)(
        static_cast<const uint16_t*>(a.x), a.B, a.N, a.D, a.sb, a.st, a.sn, a.W, a.K, a.idx, a.thw,
        static_cast<uint16_t*>(a.feat));
  return cudaGetLastError();
}

}  // namespace
}  // namespace vlmkern::cuda
