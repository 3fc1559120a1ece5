// Device code and launch planning of the W4A8 ops on CUDA, torch-free
// (compiled by nvcc through csrc/cuda/w4a8.cu, and on the CPU by the CUDA
// emulator in tests/cudasim). It mirrors the CPU kernel
// (csrc/cpu/w4a8_kernel.cpp) and shares its arithmetic (math/w4a8.h): the same
// activation quantizer (bit-identical codes, scales and row sums), the same
// packed 4-byte unit (low nibbles = k 0..3, high = k 4..7 of an octet), exact
// int32 sums with the -8 correction from the row sums, fp32 products with the
// group scales. The CUDA layout is [N, K/8, 4]: a channel's units are
// contiguous along k (16-byte loads in the DP4A kernel, 4-byte fragments in
// the tensor-core one).
//
// Exactness: the quantizer and the tensor-core GEMM match the CPU bit for bit,
// which needs IEEE denormals on the device: these kernels must be built
// without flush-to-zero (no --use_fast_math; see csrc/cuda/nvcc_flags.txt).
// (A NaN output is NaN on both backends; its payload bits may differ, as the
// GPU returns the canonical NaN.)
// The DP4A GEMM splits a channel's k range over the 32 lanes of a warp (a
// lane's int32 partial is scaled and added in fp32 when the lane moves on to
// another group; the lanes' sums are reduced by shuffles), so it agrees with
// the CPU to fp32 rounding.
//
// Kernels
//   quantize  one block per row: absmax (+ finite flag) by block reduction,
//             then one warp per group writes codes and the group's row sum.
//   pack      one thread per (channel, octet) unit.
//   gemm      (M < 16, or a group size not a multiple of 32; decode)
//             one warp per output channel and tile of kRows rows: a lane
//             loads 4 units (16 bytes) of weights once and dots them against
//             each row's codes with DP4A (nibbles 0..15 are valid signed
//             operands); the lane that holds a group's first unit subtracts
//             8 x the row sum; group changes flush the int32 sum with one FMA
//             by the group scale; a warp reduction and the epilogue (x scale,
//             bias, dtype) end it.
//   gemm_mma  M >= 16 and G % 32 == 0: int8 tensor cores (mma.sync m16n8k32),
//             see the comment above the kernel; bit-identical to the CPU.
// Both GEMMs check every weight scale they read (math::w4a8_scale_ok) and set
// *bad_scale when one fails, as the CPU kernel flags them while staging; the
// op then raises the same error on both backends.
// Not yet: shared-memory staging / ldmatrix / cp.async pipelining, CUTLASS.
#pragma once
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/dtype.h"
#include "cuda/device.cuh"
#include "math/convert.h"
#include "math/w4a8.h"

namespace vlmkern::cuda {
namespace {  // one including translation unit per binary (the op's .cu, or the emulator)

constexpr int kQuantThreads = 256;
constexpr int kGemmWarps = 4;  // output channels per block
constexpr int kRows = 8;       // activation rows per block
constexpr int kMmaWarps = 4;   // a block: 16 rows x 32 channels

template <typename T>
__device__ __forceinline__ float load_x(const T* p, int64_t i) {
  if constexpr (std::is_same_v<T, float>) {
    return p[i];
  } else if constexpr (std::is_same_v<T, math::Fp16>) {
    return __half2float(__ushort_as_half(p[i].bits));  // exact
  } else {
    return math::to_float(p[i]);
  }
}

template <typename T>
__global__ void __launch_bounds__(kQuantThreads)
    quantize_kernel(const T* __restrict__ x, int64_t x_sm, int64_t K, int64_t G,
                    int8_t* __restrict__ codes, float* __restrict__ scales,
                    int32_t* __restrict__ rowsums) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * x_sm;
  float amax = 0.f;
  int finite = 1;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
    const float v = fabsf(load_x(xr, k));
    finite &= v <= FLT_MAX;
    amax = fmaxf(amax, v);
  }
  __shared__ float red[kQuantThreads / 32];
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
  if (lane == 0) red[warp] = amax;
  finite = __syncthreads_and(finite);
  if (threadIdx.x < 32) {
    float v = lane < nwarps ? red[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (lane == 0) red[0] = v;
  }
  __syncthreads();
  amax = red[0];
  const float inv = math::act_inv_scale(amax, finite != 0);
  if (threadIdx.x == 0) scales[row] = math::act_scale(amax, finite != 0);
  const int64_t n_groups = K / G;
  for (int64_t g = warp; g < n_groups; g += nwarps) {
    int32_t s = 0;
    for (int64_t k = g * G + lane; k < (g + 1) * G; k += 32) {
      const int32_t c = finite ? math::act_code(load_x(xr, k), inv) : 0;
      codes[row * K + k] = int8_t(c);
      s += c;
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) rowsums[row * n_groups + g] = s;
  }
}

__global__ void pack_kernel(const uint8_t* __restrict__ w, int64_t N, int64_t K,
                            uint32_t* __restrict__ out) {
  const int64_t K8 = K / 8;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N * K8) return;
  const int64_t n = i / K8, o = i % K8;
  out[i] = math::pack_unit(w + n * (K / 2), o * 8);
}

__device__ __forceinline__ void store_out(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_out(math::Bf16* p, float v) {
  p->bits = __bfloat16_as_ushort(__float2bfloat16_rn(v));
}
__device__ __forceinline__ void store_out(math::Fp16* p, float v) {
  p->bits = __half_as_ushort(__float2half_rn(v));
}

// A scale as read by a GEMM kernel; a bad one raises the flag.
__device__ __forceinline__ float read_scale(const float* sw, int64_t i, int* bad_scale) {
  const float s = sw[i];
  if (!math::w4a8_scale_ok(s)) *bad_scale = 1;
  return s;
}

template <typename OutT>
__global__ void gemm_kernel(const int8_t* __restrict__ codes, const float* __restrict__ x_scales,
                            const int32_t* __restrict__ rowsums,
                            const uint32_t* __restrict__ packed, const float* __restrict__ w_scales,
                            const float* __restrict__ bias, int64_t M, int64_t N, int64_t K,
                            int64_t G, OutT* __restrict__ out, int* __restrict__ bad_scale) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n = int64_t(blockIdx.x) * kGemmWarps + warp;
  if (n >= N) return;
  const int64_t K8 = K / 8, G8 = G / 8, n_groups = K / G;
  const uint32_t* wrow = packed + n * K8;
  const float* sw = w_scales + n * n_groups;
  const bool vec = (K8 % 4) == 0;  // 16-byte weight loads
  for (int64_t m0 = int64_t(blockIdx.y) * kRows; m0 < M; m0 += int64_t(gridDim.y) * kRows) {
    const int mr = M - m0 < kRows ? int(M - m0) : kRows;
    float acc[kRows];
    int32_t iacc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = 0.f, iacc[r] = 0;
    for (int64_t c = lane; c * 4 < K8; c += 32) {  // chunk c: units 4c .. 4c+3
      uint32_t w[4];
      if (vec) {
        const uint4 v = reinterpret_cast<const uint4*>(wrow)[c];
        w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) w[j] = 4 * c + j < K8 ? wrow[4 * c + j] : 0x88888888u;
      }
      int64_t gcur = (c * 4) / G8;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t o = 4 * c + j;
        if (o >= K8) break;
        const int64_t g = o / G8;
        if (g != gcur) {
          const float s = read_scale(sw, gcur, bad_scale);
#pragma unroll
          for (int r = 0; r < kRows; ++r) acc[r] = fmaf(float(iacc[r]), s, acc[r]), iacc[r] = 0;
          gcur = g;
        }
        const bool first = o % G8 == 0;  // this lane takes the group's -8 x row sum
        const int wl = int(w[j] & 0x0f0f0f0fu), wh = int((w[j] >> 4) & 0x0f0f0f0fu);
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          if (r < mr) {
            const int* xr = reinterpret_cast<const int*>(codes + (m0 + r) * K);
            iacc[r] += __dp4a(wh, xr[2 * o + 1], __dp4a(wl, xr[2 * o], 0));
            if (first) iacc[r] -= math::kW4A8Offset * rowsums[(m0 + r) * n_groups + g];
          }
        }
      }
      const float s = read_scale(sw, gcur, bad_scale);
#pragma unroll
      for (int r = 0; r < kRows; ++r) acc[r] = fmaf(float(iacc[r]), s, acc[r]), iacc[r] = 0;
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      for (int o = 16; o > 0; o >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
    if (lane == 0) {
      for (int r = 0; r < mr; ++r) {
        float v = __fmul_rn(acc[r], x_scales[m0 + r]);  // not fused, as on the CPU
        if (bias) v = __fadd_rn(v, bias[n]);
        store_out(out + (m0 + r) * N + n, v);
      }
    }
  }
}

// Tensor-core path (M >= 16, G % 32 == 0): one warp computes 16 rows x 8
// channels with mma.sync m16n8k32 s8 x s8 -> s32 per 32 k (the nibbles 0..15
// are the s8 B operand as they are; the -8 offset is taken out per group with
// the row sums). With the fragment layout of mma_m16n8k32_s8 (device.cuh), the
// B register b0 of lane (gid, tig) holds channel gid, k 4tig..4tig+3: the low
// (tig even) or high (tig odd) nibbles of packed unit k0/8 + tig/2; b1 the same
// at k + 16. Per group the int32 C (exact, reset each group) gets the same
// correction and FMA as on the CPU, in the same order, so this path matches
// the CPU result bit for bit. Operands are read from global memory
// (L1-cached; the 4 warps of a block share the A rows); no shared-memory
// staging or ldmatrix yet.
template <typename OutT>
__global__ void gemm_mma_kernel(const int8_t* __restrict__ codes, const float* __restrict__ x_scales,
                                const int32_t* __restrict__ rowsums,
                                const uint32_t* __restrict__ packed,
                                const float* __restrict__ w_scales, const float* __restrict__ bias,
                                int64_t M, int64_t N, int64_t K, int64_t G,
                                OutT* __restrict__ out, int* __restrict__ bad_scale) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, tid = lane & 3;
  const int64_t n0 = (int64_t(blockIdx.x) * kMmaWarps + warp) * 8;
  if (n0 >= N) return;  // warp-uniform
  const int64_t K8 = K / 8, n_groups = K / G;
  const int64_t nb = n0 + gid;  // this lane's B channel
  const bool nb_ok = nb < N;
  const uint32_t* wrow = packed + (nb_ok ? nb : 0) * K8;
  const int64_t nc0 = n0 + 2 * tid, nc1 = nc0 + 1;  // this lane's C channels
  for (int64_t m0 = int64_t(blockIdx.y) * 16; m0 < M; m0 += int64_t(gridDim.y) * 16) {
    const int64_t ra = m0 + gid, rb = ra + 8;
    const bool va = ra < M, vb = rb < M;
    const int* xa = reinterpret_cast<const int*>(codes + (va ? ra : 0) * K);
    const int* xb = reinterpret_cast<const int*>(codes + (vb ? rb : 0) * K);
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int64_t g = 0; g < n_groups; ++g) {
      int c[4] = {0, 0, 0, 0};
      for (int64_t k0 = g * G; k0 < (g + 1) * G; k0 += 32) {
        const int64_t q = k0 / 4 + tid;  // int index of k0 + 4 tid
        const int a[4] = {va ? xa[q] : 0, vb ? xb[q] : 0, va ? xa[q + 4] : 0, vb ? xb[q + 4] : 0};
        const uint32_t u0 = nb_ok ? wrow[k0 / 8 + tid / 2] : 0x88888888u;
        const uint32_t u1 = nb_ok ? wrow[k0 / 8 + 2 + tid / 2] : 0x88888888u;
        const int sh = (tid & 1) * 4;
        mma_m16n8k32_s8(c, a, int((u0 >> sh) & 0x0f0f0f0fu), int((u1 >> sh) & 0x0f0f0f0fu));
      }
      const int32_t ca = va ? math::kW4A8Offset * rowsums[ra * n_groups + g] : 0;
      const int32_t cb = vb ? math::kW4A8Offset * rowsums[rb * n_groups + g] : 0;
      const float s0 = nc0 < N ? read_scale(w_scales, nc0 * n_groups + g, bad_scale) : 0.f;
      const float s1 = nc1 < N ? read_scale(w_scales, nc1 * n_groups + g, bad_scale) : 0.f;
      acc[0] = fmaf(float(c[0] - ca), s0, acc[0]);
      acc[1] = fmaf(float(c[1] - ca), s1, acc[1]);
      acc[2] = fmaf(float(c[2] - cb), s0, acc[2]);
      acc[3] = fmaf(float(c[3] - cb), s1, acc[3]);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t m = i < 2 ? ra : rb, n = (i & 1) ? nc1 : nc0;
      if (m < M && n < N) {
        float v = __fmul_rn(acc[i], x_scales[m]);
        if (bias) v = __fadd_rn(v, bias[n]);
        store_out(out + m * N + n, v);
      }
    }
  }
}

// ---- launch planning ------------------------------------------------------------

struct W4A8QuantProblem {
  DType dtype;
  const void* x;  // [M, K], rows x_sm elements apart, last dim contiguous
  int64_t M, K, G, x_sm;
  int8_t* codes;     // [M, K] contiguous
  float* scales;     // [M]
  int32_t* rowsums;  // [M, K/G]
};

const char* w4a8_quantize_plan_error(const W4A8QuantProblem& p) {
  return p.M >= (int64_t(1) << 31) ? "x: too many rows for one launch" : nullptr;
}

cudaError_t w4a8_quantize_launch(const W4A8QuantProblem& p, cudaStream_t stream) {
  if (p.M == 0) return cudaSuccess;
  with_element_type(p.dtype, [&](auto t) {
    using T = decltype(t);
    VLMKERN_LAUNCH(quantize_kernel<T>, dim3(unsigned(p.M)), kQuantThreads, 0, stream)(
        static_cast<const T*>(p.x), p.x_sm, p.K, p.G, p.codes, p.scales, p.rowsums);
  });
  return cudaGetLastError();
}

const char* w4a8_pack_plan_error(int64_t N, int64_t K) {
  return (N * (K / 8) + 255) / 256 >= (int64_t(1) << 31) ? "weight: too large for one launch" : nullptr;
}

// weight: logical nibbles [N, K/2] contiguous -> out [N, K/8, 4].
cudaError_t w4a8_pack_launch(const uint8_t* weight, int64_t N, int64_t K, uint8_t* out,
                             cudaStream_t stream) {
  const int64_t units = N * (K / 8);
  if (units == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  VLMKERN_LAUNCH(pack_kernel, dim3(unsigned((units + kThreads - 1) / kThreads)), kThreads, 0,
                 stream)(weight, N, K, reinterpret_cast<uint32_t*>(out));
  return cudaGetLastError();
}

enum class W4A8GemmPath { kDp4a, kMma };

// The kernel a GEMM takes: tensor cores for M >= 16 when a group holds whole
// 32-k MMA steps, DP4A otherwise (decode).
W4A8GemmPath w4a8_gemm_path(int64_t M, int64_t G) {
  return M >= 16 && G % 32 == 0 ? W4A8GemmPath::kMma : W4A8GemmPath::kDp4a;
}

struct W4A8GemmProblem {
  const int8_t* codes;      // [M, K] contiguous, 4-byte aligned
  const float* x_scales;    // [M]
  const int32_t* rowsums;   // [M, K/G] contiguous (trusted: the quantizer's output)
  const uint8_t* packed;    // [N, K/8, 4] contiguous, 16-byte aligned
  const float* w_scales;    // [N, K/G] contiguous
  const float* bias;        // [N] fp32 or nullptr
  int64_t M, N, K, G;
  void* out;                // [M, N] contiguous, out_dtype
  DType out_dtype;
  int* bad_scale;           // one int, zeroed by the caller; set when a scale is bad
};

template <typename OutT>
void w4a8_gemm_launch_t(const W4A8GemmProblem& p, W4A8GemmPath path, int64_t max_grid_y,
                        cudaStream_t stream) {
  const uint32_t* pk = reinterpret_cast<const uint32_t*>(p.packed);
  OutT* o = static_cast<OutT*>(p.out);
  if (path == W4A8GemmPath::kMma) {
    const dim3 grid(unsigned((p.N + 8 * kMmaWarps - 1) / (8 * kMmaWarps)),
                    unsigned(std::min<int64_t>((p.M + 15) / 16, max_grid_y)));
    VLMKERN_LAUNCH(gemm_mma_kernel<OutT>, grid, 32 * kMmaWarps, 0, stream)(
        p.codes, p.x_scales, p.rowsums, pk, p.w_scales, p.bias, p.M, p.N, p.K, p.G, o,
        p.bad_scale);
  } else {
    const dim3 grid(unsigned((p.N + kGemmWarps - 1) / kGemmWarps),
                    unsigned(std::min<int64_t>((p.M + kRows - 1) / kRows, max_grid_y)));
    VLMKERN_LAUNCH(gemm_kernel<OutT>, grid, 32 * kGemmWarps, 0, stream)(
        p.codes, p.x_scales, p.rowsums, pk, p.w_scales, p.bias, p.M, p.N, p.K, p.G, o,
        p.bad_scale);
  }
}

// Enqueues the GEMM on `path` (w4a8_gemm_path(M, G) in the op; the emulator
// forces each). Rows beyond max_grid_y tiles are walked by a grid-stride loop.
cudaError_t w4a8_gemm_launch(const W4A8GemmProblem& p, W4A8GemmPath path, cudaStream_t stream,
                             int64_t max_grid_y = kMaxGridYZ) {
  if (p.M == 0) return cudaSuccess;
  if (path == W4A8GemmPath::kMma && p.G % 32 != 0) return cudaErrorInvalidValue;
  with_element_type(p.out_dtype, [&](auto t) {
    w4a8_gemm_launch_t<decltype(t)>(p, path, max_grid_y, stream);
  });
  return cudaGetLastError();
}

}  // namespace
}  // namespace vlmkern::cuda
