// Device code and launch planning of vlmkern::topk_indices on CUDA, torch-free
// (compiled by nvcc through csrc/cuda/topk_indices.cu, and on the CPU by the
// CUDA emulator in tests/cudasim). It mirrors the CPU kernel
// (csrc/cpu/topk_indices_kernel.cpp): same unique 64-bit keys (math/topk.h),
// same threshold-then-ordered-scan structure, hence the same output.
//
// One block per row b, kb = min(keep[b], k_max):
//   select   radix select of the kb-th largest key, MSB first, 8 passes of 8-bit
//            digits. A pass builds a 256-bin histogram in shared memory of the
//            keys that still match the chosen prefix (warp-aggregated with
//            __match_any_sync, so a popular digit costs one atomic per warp),
//            then one warp scans the bins from the top digit down and picks the
//            bin holding the kb-th key. When that bin holds exactly the keys
//            still needed, every key of it is kept and the select stops early.
//   compact  one ascending scan over the row: indices whose (key & mask) >=
//            prefix are kept (exactly kb of them, as keys are unique); their
//            output slots come from a block-wide prefix sum (ballot + popc
//            inside a warp, warp totals in shared memory across warps), so the
//            indices leave sorted ascending without a sort. Then -1 padding.
// Keys are never stored: each pass recomputes them from the scores, so a row
// is read at most 9 times (from L2 after the first pass for N up to a few
// million), and the kernel needs only ~1.2 KB of shared memory and no
// workspace. Everything is integer arithmetic on keys: deterministic, and
// independent of flush-to-zero (keys come from the raw float bits).
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "cuda/device.cuh"
#include "math/convert.h"
#include "math/topk.h"

namespace vlmkern::cuda {
namespace {  // one including translation unit per binary (the op's .cu, or the emulator)

constexpr int kTopkThreads = 512;
constexpr int kTopkWarps = kTopkThreads / 32;
constexpr unsigned kTopkFull = 0xffffffffu;
constexpr unsigned kNoDigit = 256u;  // "not a candidate" in the histogram pass

// Raw float32 bits of element i (no float arithmetic: exact under FTZ).
__device__ __forceinline__ uint32_t score_bits(const float* s, int64_t off) {
  return reinterpret_cast<const uint32_t*>(s)[off];
}
__device__ __forceinline__ uint32_t score_bits(const math::Bf16* s, int64_t off) {
  return uint32_t(s[off].bits) << 16;
}
__device__ __forceinline__ uint32_t score_bits(const math::Fp16* s, int64_t off) {
  // f16 -> f32 is exact; f16 subnormals are f32 normals, so FTZ cannot touch them.
  return __float_as_uint(__half2float(__ushort_as_half(s[off].bits)));
}

template <typename T>
__device__ __forceinline__ uint64_t key_at(const T* row, int64_t sn, int64_t i) {
  return math::topk_key_from_bits(score_bits(row, i * sn), uint32_t(i));
}

template <typename T>
__global__ void __launch_bounds__(kTopkThreads)
    topk_indices_kernel(const T* __restrict__ scores, int64_t s_sb, int64_t s_sn, int64_t N,
                        const int64_t* __restrict__ keep, int64_t k_max,
                        int64_t* __restrict__ out) {
  __shared__ uint32_t hist[256];
  __shared__ uint32_t warp_count[kTopkWarps];
  __shared__ uint32_t sel_digit, sel_above, sel_bucket;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t b = blockIdx.x;
  const T* row = scores + b * s_sb;
  int64_t* o = out + b * k_max;

  // keep[b] is in [0, k_max] (checked by the op for both backends).
  const int64_t kb = keep[b] < k_max ? keep[b] : k_max;

  int64_t cnt = 0;  // block-uniform: indices written so far
  if (kb >= N) {
    // Every index is kept (only possible when k_max == N).
    for (int64_t i = tid; i < N; i += kTopkThreads) o[i] = i;
    cnt = N;
  } else if (kb > 0) {
    // ---- radix select: find (prefix, mask) such that exactly kb keys satisfy
    //      (key & mask) >= prefix. Invariant: candidates (keys matching prefix
    //      under mask) number >= krem >= 1.
    uint64_t prefix = 0, mask = 0;
    uint32_t krem = uint32_t(kb);  // kb < N < 2^31
    for (int shift = 56; shift >= 0; shift -= 8) {
      for (int t = tid; t < 256; t += kTopkThreads) hist[t] = 0u;
      __syncthreads();
      // Uniform trip count over the block: every lane reaches __match_any_sync.
      for (int64_t base = 0; base < N; base += kTopkThreads) {
        const int64_t i = base + tid;
        unsigned digit = kNoDigit;
        if (i < N) {
          const uint64_t key = key_at(row, s_sn, i);
          if ((key & mask) == prefix) digit = unsigned(key >> shift) & 0xffu;
        }
        const unsigned peers = __match_any_sync(kTopkFull, digit);
        if (digit != kNoDigit && lane == __ffs(peers) - 1) atomicAdd(&hist[digit], __popc(peers));
      }
      __syncthreads();
      if (warp == 0) {
        // Lane L owns digits 255-8L down to 248-8L (descending key order).
        uint32_t c[8], local = 0;
#pragma unroll
        for (int t = 0; t < 8; ++t) {
          c[t] = hist[255 - 8 * lane - t];
          local += c[t];
        }
        uint32_t incl = local;  // inclusive scan over lanes (higher digits first)
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
          const uint32_t v = __shfl_up_sync(kTopkFull, incl, off);
          if (lane >= off) incl += v;
        }
        const uint32_t excl = incl - local;
        if (excl < krem && krem <= incl) {  // exactly one lane
          uint32_t above = excl;
#pragma unroll
          for (int t = 0; t < 8; ++t) {
            if (above + c[t] >= krem) {
              sel_digit = uint32_t(255 - 8 * lane - t);
              sel_above = above;
              sel_bucket = c[t];
              break;
            }
            above += c[t];
          }
        }
      }
      __syncthreads();
      krem -= sel_above;  // keys in higher buckets are all kept
      prefix |= uint64_t(sel_digit) << shift;
      mask |= uint64_t(0xff) << shift;
      const bool done = sel_bucket == krem;  // keep the whole bucket
      __syncthreads();  // sel_* and hist are rewritten by the next pass
      if (done) break;  // block-uniform
    }

    // ---- ordered compaction: ascending index scan, block-wide prefix sum.
    const unsigned lt_mask = (1u << lane) - 1u;
    for (int64_t base = 0; base < N; base += kTopkThreads) {
      const int64_t i = base + tid;
      const bool sel = i < N && (key_at(row, s_sn, i) & mask) >= prefix;
      const unsigned ballot = __ballot_sync(kTopkFull, sel);
      if (lane == 0) warp_count[warp] = uint32_t(__popc(ballot));
      __syncthreads();
      uint32_t before = 0, total = 0;
#pragma unroll
      for (int w = 0; w < kTopkWarps; ++w) {
        const uint32_t v = warp_count[w];
        before += w < warp ? v : 0u;
        total += v;
      }
      if (sel) {
        const int64_t pos = cnt + before + uint32_t(__popc(ballot & lt_mask));
        if (pos < k_max) o[pos] = i;  // always true: exactly kb keys qualify
      }
      cnt += total;
      __syncthreads();  // warp_count is rewritten by the next iteration
    }
    if (cnt > k_max) cnt = k_max;
  }
  for (int64_t i = cnt + tid; i < k_max; i += kTopkThreads) o[i] = -1;
}

struct TopkArgs {
  DType dtype;
  const void* scores;  // [B, N], element strides s_sb, s_sn
  int64_t s_sb, s_sn, B, N;
  const int64_t* keep;  // [B], values in [0, k_max]
  int64_t k_max;
  int64_t* out;  // [B, k_max] contiguous
};

// Why this launch cannot run, or nullptr.
const char* topk_indices_plan_error(const TopkArgs& a) {
  if (a.B >= (int64_t(1) << 31)) return "scores: at most 2^31 - 1 rows on CUDA";
  return nullptr;
}

// Enqueues the kernel (nothing for an empty output); returns the launch status.
cudaError_t topk_indices_launch(const TopkArgs& a, cudaStream_t stream) {
  if (a.B == 0 || a.k_max == 0) return cudaSuccess;
  with_element_type(a.dtype, [&](auto t) {
    using T = decltype(t);
    VLMKERN_LAUNCH(topk_indices_kernel<T>, dim3(unsigned(a.B)), kTopkThreads, 0, stream)(
        static_cast<const T*>(a.scores), a.s_sb, a.s_sn, a.N, a.keep, a.k_max, a.out);
  });
  return cudaGetLastError();
}

}  // namespace
}  // namespace vlmkern::cuda
