// CUDA implementation of the W4A8 ops, mirroring the CPU kernel
// (csrc/cpu/w4a8_kernel.cpp) and sharing its arithmetic (math/w4a8.h): the
// same activation quantizer (bit-identical codes, scales and row sums), the
// same packed 4-byte unit (low nibbles = k 0..3, high = k 4..7 of an octet),
// exact int32 sums with the -8 correction in integers, fp32 products with
// the group scales. The CUDA layout is [N, K/8, 4]: a channel's units are
// contiguous along k (16-byte loads in the DP4A kernel, 4-byte fragments in
// the tensor-core one). The tensor-core kernel keeps the CPU's order of fp32
// operations and matches it bit for bit; the DP4A kernel splits a channel's k
// range over the 32 lanes of a warp (a lane's int32 partial covers its 32 k of
// a group and is scaled and added in fp32 when the lane moves on; the lanes'
// sums are reduced by shuffles), so it agrees with the CPU to fp32 rounding.
//
// Kernels
//   quantize  one block per row: absmax (+ finite flag) by block reduction,
//             then one warp per group writes codes and the group's row sum.
//   pack      one thread per (channel, octet) unit.
//   gemm      (M < 16, or a group size not a multiple of 32; decode)
//             one warp per output channel and tile of kRows rows: a lane
//             loads 4 units (16 bytes) of weights once and dots them against
//             each row's codes with DP4A (nibbles 0..15 are valid signed
//             operands); group changes flush the int32 sum with one FMA by
//             the group scale; a warp reduction and the epilogue (x scale,
//             bias, dtype) end it.
//   gemm_mma  M >= 16 and G % 32 == 0: int8 tensor cores (mma.sync m16n8k32),
//             see the comment above the kernel; bit-identical to the CPU.
// Not yet: shared-memory staging / ldmatrix / cp.async pipelining, CUTLASS.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include <cfloat>
#include <cstdint>

#include "core/op_checks.h"
#include "core/w4a8_host.h"
#include "math/convert.h"
#include "math/w4a8.h"
#include "ops.h"

namespace vlmkern {
namespace {

constexpr int kQuantThreads = 256;
constexpr int kGemmWarps = 4;  // output channels per block
constexpr int kRows = 8;       // activation rows per block

template <typename T>
__device__ __forceinline__ float load_x(const T* p, int64_t i) {
  if constexpr (std::is_same_v<T, float>) {
    return p[i];
  } else {
    return math::to_float(p[i]);
  }
}

template <typename T>
__global__ void quantize_kernel(const T* __restrict__ x, int64_t x_sm, int64_t K, int64_t G,
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
__device__ __forceinline__ void store_out(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ void store_out(__half* p, float v) { *p = __float2half_rn(v); }

template <typename OutT>
__global__ void gemm_kernel(const int8_t* __restrict__ codes, const float* __restrict__ x_scales,
                            const uint32_t* __restrict__ packed, const float* __restrict__ w_scales,
                            const float* __restrict__ bias, int64_t M, int64_t N, int64_t K,
                            int64_t G, OutT* __restrict__ out) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n = int64_t(blockIdx.x) * kGemmWarps + warp;
  if (n >= N) return;
  const int64_t K8 = K / 8, n_groups = K / G;
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
      int64_t gcur = (c * 32) / G;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t o = 4 * c + j;
        if (o >= K8) break;
        const int64_t g = (o * 8) / G;
        if (g != gcur) {
          const float s = sw[gcur];
#pragma unroll
          for (int r = 0; r < kRows; ++r) acc[r] = fmaf(float(iacc[r]), s, acc[r]), iacc[r] = 0;
          gcur = g;
        }
        const int wl = int(w[j] & 0x0f0f0f0fu), wh = int((w[j] >> 4) & 0x0f0f0f0fu);
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          if (r < mr) {
            const int* xr = reinterpret_cast<const int*>(codes + (m0 + r) * K);
            const int xa = xr[2 * o], xb = xr[2 * o + 1];
            const int sum_x = __dp4a(0x01010101, xa, __dp4a(0x01010101, xb, 0));
            iacc[r] += __dp4a(wh, xb, __dp4a(wl, xa, 0)) - math::kW4A8Offset * sum_x;
          }
        }
      }
      const float s = sw[gcur];
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
// the row sums). Fragments (PTX ISA, lane = 4 * gid + tid): A a0 = row gid,
// k 4tid..4tid+3; a1 = row gid + 8; a2, a3 = the same rows at k + 16. B b0 =
// channel gid, k 4tid..4tid+3 = the low (tid even) or high (tid odd) nibbles of
// packed unit k0/8 + tid/2; b1 = the same at k + 16. C c0, c1 = row gid,
// channels 2tid, 2tid+1; c2, c3 = row gid + 8. Per group the int32 C (exact,
// reset each group) gets the same correction and FMA as on the CPU, in the
// same order, so this path matches the CPU result bit for bit. Operands are
// read from global memory (L1-cached; the 4 warps of a block share the A
// rows); no shared-memory staging or ldmatrix yet.
__device__ __forceinline__ void mma_s8_16832(int (&c)[4], const int (&a)[4], int b0, int b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

constexpr int kMmaWarps = 4;  // a block: 16 rows x 32 channels

template <typename OutT>
__global__ void gemm_mma_kernel(const int8_t* __restrict__ codes, const float* __restrict__ x_scales,
                                const int32_t* __restrict__ rowsums,
                                const uint32_t* __restrict__ packed,
                                const float* __restrict__ w_scales, const float* __restrict__ bias,
                                int64_t M, int64_t N, int64_t K, int64_t G,
                                OutT* __restrict__ out) {
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
        mma_s8_16832(c, a, int((u0 >> sh) & 0x0f0f0f0fu), int((u1 >> sh) & 0x0f0f0f0fu));
      }
      const int32_t ca = va ? math::kW4A8Offset * rowsums[ra * n_groups + g] : 0;
      const int32_t cb = vb ? math::kW4A8Offset * rowsums[rb * n_groups + g] : 0;
      const float s0 = nc0 < N ? w_scales[nc0 * n_groups + g] : 0.f;
      const float s1 = nc1 < N ? w_scales[nc1 * n_groups + g] : 0.f;
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



}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_per_token_int8_cuda(const at::Tensor& x_in,
                                                                            int64_t group_size) {
  const c10::cuda::CUDAGuard guard(x_in.device());
  W4A8QuantSetup q = w4a8_quant_setup(x_in, group_size);
  const at::Tensor& x = q.x;
  const int64_t M = q.M, K = q.K;
  at::Tensor codes = q.codes, scales = q.scales, rowsums = q.rowsums;
  if (M == 0) return {codes, scales, rowsums};
  TORCH_CHECK(M < (int64_t(1) << 31), "x: too many rows for one launch (", M, ")");
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const dim3 grid{unsigned(M)}, block{unsigned(kQuantThreads)};
  auto launch = [&](auto* p) {
    quantize_kernel<<<grid, block, 0, stream>>>(p, x.stride(0), K, group_size,
                                                codes.data_ptr<int8_t>(), scales.data_ptr<float>(),
                                                rowsums.data_ptr<int32_t>());
  };
  switch (x.scalar_type()) {
    case at::kFloat: launch(x.data_ptr<float>()); break;
    case at::kBFloat16: launch(reinterpret_cast<const math::Bf16*>(x.data_ptr())); break;
    default: launch(reinterpret_cast<const math::Fp16*>(x.data_ptr())); break;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {codes, scales, rowsums};
}

at::Tensor w4a8_pack_cuda(const at::Tensor& weight_in, const at::Tensor& scales,
                          int64_t group_size) {
  check_w4a8_weight(weight_in, scales, group_size);
  const int64_t N = weight_in.size(0), K = weight_in.size(1) * 2;
  const c10::cuda::CUDAGuard guard(weight_in.device());
  check_w4a8_scale_values(scales, "scales");
  const at::Tensor weight = weight_in.contiguous();
  at::Tensor packed = at::empty({N, K / 8, 4}, weight.options());
  const int64_t units = N * (K / 8);
  const int threads = 256;
  pack_kernel<<<unsigned((units + threads - 1) / threads), threads, 0,
                c10::cuda::getCurrentCUDAStream()>>>(
      weight.data_ptr<uint8_t>(), N, K, reinterpret_cast<uint32_t*>(packed.data_ptr<uint8_t>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return packed;
}

namespace {

at::Tensor gemm_impl(const at::Tensor& codes_in, const at::Tensor& x_scales_in,
                     const at::Tensor& x_rowsums, const at::Tensor& packed,
                     const at::Tensor& w_scales_in, int64_t group_size,
                     const std::optional<at::Tensor>& bias, at::ScalarType out_dtype) {
  const W4A8GemmShape s = check_w4a8_gemm_args(codes_in, x_scales_in, x_rowsums, packed,
                                                w_scales_in, group_size, bias);
  TORCH_CHECK(packed.dim() == 3 && packed.size(0) == s.N && packed.size(1) == s.K / 8 &&
                  packed.size(2) == 4 && packed.is_contiguous() &&
                  reinterpret_cast<uintptr_t>(packed.data_ptr()) % 16 == 0,
              "packed: expected the CUDA layout [N, K/8, 4] = [", s.N, ", ", s.K / 8,
              ", 4], contiguous and 16-byte aligned, made by w4a8_pack on a CUDA device, got ",
              describe(packed));
  const c10::cuda::CUDAGuard guard(codes_in.device());
  // Weight scales are validated by w4a8_pack; a per-call check here would
  // need a device-to-host sync on every layer.
  at::Tensor codes = codes_in.contiguous();
  if (reinterpret_cast<uintptr_t>(codes.data_ptr()) % 4 != 0) codes = codes.clone();  // int loads
  const at::Tensor x_scales = x_scales_in.contiguous();
  const at::Tensor w_scales = w_scales_in.contiguous();
  at::Tensor b32;
  if (bias) b32 = bias->to(at::kFloat).contiguous();
  at::Tensor out = at::empty({s.M, s.N}, codes.options().dtype(out_dtype));
  if (s.M == 0) return out;
  const dim3 grid(unsigned((s.N + kGemmWarps - 1) / kGemmWarps),
                  unsigned(std::min<int64_t>((s.M + kRows - 1) / kRows, 65535)));
  const dim3 block(32 * kGemmWarps);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const bool tensor_cores = s.M >= 16 && group_size % 32 == 0;
  const at::Tensor rowsums = x_rowsums.contiguous();
  auto launch = [&](auto* o) {
    const uint32_t* pk = reinterpret_cast<const uint32_t*>(packed.data_ptr<uint8_t>());
    const float* bp = b32.defined() ? b32.data_ptr<float>() : nullptr;
    if (tensor_cores) {
      const dim3 g2(unsigned((s.N + 8 * kMmaWarps - 1) / (8 * kMmaWarps)),
                    unsigned(std::min<int64_t>((s.M + 15) / 16, 65535)));
      gemm_mma_kernel<<<g2, dim3(32 * kMmaWarps), 0, stream>>>(
          codes.data_ptr<int8_t>(), x_scales.data_ptr<float>(), rowsums.data_ptr<int32_t>(), pk,
          w_scales.data_ptr<float>(), bp, s.M, s.N, s.K, group_size, o);
    } else {
      gemm_kernel<<<grid, block, 0, stream>>>(codes.data_ptr<int8_t>(), x_scales.data_ptr<float>(),
                                              pk, w_scales.data_ptr<float>(), bp, s.M, s.N, s.K,
                                              group_size, o);
    }
  };
  switch (out_dtype) {
    case at::kFloat: launch(out.data_ptr<float>()); break;
    case at::kBFloat16: launch(reinterpret_cast<__nv_bfloat16*>(out.data_ptr())); break;
    default: launch(reinterpret_cast<__half*>(out.data_ptr())); break;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

at::Tensor w4a8_gemm_cuda(const at::Tensor& codes, const at::Tensor& x_scales,
                          const at::Tensor& x_rowsums, const at::Tensor& packed,
                          const at::Tensor& w_scales, int64_t group_size,
                          const std::optional<at::Tensor>& bias,
                          std::optional<at::ScalarType> out_dtype) {
  return gemm_impl(codes, x_scales, x_rowsums, packed, w_scales, group_size, bias,
                   check_w4a8_out_dtype(out_dtype));
}

at::Tensor w4a8_linear_cuda(const at::Tensor& x, const at::Tensor& packed,
                            const at::Tensor& w_scales, int64_t group_size,
                            const std::optional<at::Tensor>& bias) {
  return w4a8_linear_with(x, packed, w_scales, group_size, bias, quantize_per_token_int8_cuda,
                          gemm_impl);
}

TORCH_LIBRARY_IMPL(vlmkern, CUDA, m) {
  m.impl("quantize_per_token_int8", &quantize_per_token_int8_cuda);
  m.impl("w4a8_pack", &w4a8_pack_cuda);
  m.impl("w4a8_gemm", &w4a8_gemm_cuda);
  m.impl("w4a8_linear", &w4a8_linear_cuda);
}

}  // namespace vlmkern
