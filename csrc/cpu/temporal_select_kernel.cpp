// temporal_select on the CPU: the four phases (see temporal_select_kernel.h).
// The vector work is frame_similarity's inner loops (frame_dot3_avx2 /
// _avx512, chosen from the ISA); the selection is topk_indices' plain C++.
#include "cpu/temporal_select_kernel.h"

#include <cstring>
#include <limits>

#include "cpu/frame_similarity_kernel.h"
#include "cpu/topk_indices_kernel.h"
#include "math/cosine.h"

namespace vlmkern::cpu {

void temporal_select_scores_run(const TemporalSelectArgs& a, CpuIsa isa, int64_t t0, int64_t t1) {
  auto dot3 = isa >= CpuIsa::kAvx512 ? &frame_dot3_avx512
              : isa >= CpuIsa::kAvx2 ? &frame_dot3_avx2
                                     : &frame_dot3_scalar;
  const float none = a.global ? std::numeric_limits<float>::infinity()
                              : std::numeric_limits<float>::quiet_NaN();
  const int64_t tiles = (a.N + kTemporalSelectTile - 1) / kTemporalSelectTile;
  const int64_t es = a.dtype == DType::kF32 ? 4 : 2;
  const auto* base = static_cast<const uint8_t*>(a.x);
  for (int64_t task = t0; task < t1; ++task) {
    const int64_t b = task / tiles, n0 = (task % tiles) * kTemporalSelectTile;
    const int64_t n1 = n0 + kTemporalSelectTile < a.N ? n0 + kTemporalSelectTile : a.N;
    for (int64_t t = 0; t < a.T; ++t) {
      float* out = a.scores + (b * a.T + t) * a.N;
      const int64_t r = a.ref[t];
      for (int64_t n = n0; n < n1; ++n) {
        if (r < 0) {
          out[n] = none;
          continue;
        }
        const uint8_t* px = base + (b * a.sb + t * a.st + n * a.sn) * es;
        const uint8_t* pr = base + (b * a.sb + r * a.st + n * a.sn) * es;
        const Dot3 s = dot3(a.dtype, px, pr, a.D);
        out[n] = -math::cosine_finish(s.dot, s.xx, s.rr, a.eps);
      }
    }
  }
}

void temporal_select_select_run(const TemporalSelectArgs& a, int64_t r0, int64_t r1) {
  if (a.global) {
    for (int64_t b = r0; b < r1; ++b) a.row_keep[b] = a.keep;
    topk_indices_rows(DType::kF32, a.scores, a.T * a.N, 1, a.T * a.N, a.row_keep, a.K, a.idx, r0, r1);
  } else {
    for (int64_t r = r0; r < r1; ++r) a.row_keep[r] = a.ref[r % a.T] < 0 ? a.N : a.keep;
    topk_indices_rows(DType::kF32, a.scores, a.N, 1, a.N, a.row_keep, a.N, a.sel, r0, r1);
  }
}

void temporal_select_place_run(const TemporalSelectArgs& a, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / a.T, t = r % a.T;
    int64_t off = 0;
    for (int64_t u = 0; u < t; ++u) off += a.ref[u] < 0 ? a.N : a.keep;
    const int64_t cnt = a.ref[t] < 0 ? a.N : a.keep;
    const int64_t* s = a.sel + r * a.N;
    int64_t* o = a.idx + b * a.K + off;
    for (int64_t j = 0; j < cnt; ++j) o[j] = t * a.N + s[j];
  }
}

void temporal_select_gather_run(const TemporalSelectArgs& a, int64_t i0, int64_t i1) {
  const int64_t es = a.dtype == DType::kF32 ? 4 : 2;
  const auto* base = static_cast<const uint8_t*>(a.x);
  auto* feat = static_cast<uint8_t*>(a.feat);
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t b = i / a.K, f = a.idx[i];
    const int64_t t = f / a.N, n = f % a.N;
    a.thw[3 * i] = t;
    a.thw[3 * i + 1] = n / a.W;
    a.thw[3 * i + 2] = n % a.W;
    if (feat != nullptr && a.D > 0)
      std::memcpy(feat + i * a.D * es, base + (b * a.sb + t * a.st + n * a.sn) * es, size_t(a.D * es));
  }
}

}  // namespace vlmkern::cpu
