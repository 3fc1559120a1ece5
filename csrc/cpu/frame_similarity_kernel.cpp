// frame_similarity on the CPU: task loop and the scalar inner loop (see
// frame_similarity_kernel.h). The AVX2 and AVX-512 inner loops are in
// frame_similarity_avx2.cpp / _avx512.cpp.
#include "cpu/frame_similarity_kernel.h"

#include <cmath>
#include <limits>

#include "math/cosine.h"

namespace vlmkern::cpu {

namespace {

template <class T>
Dot3 dot3_plain(const T* x, const T* r, int64_t D) {
  // Eight interleaved partial sums per quantity (the vector paths' shape, and
  // enough independent chains to keep the FMA units busy without -ffast-math).
  float d[8] = {}, xx[8] = {}, rr[8] = {};
  int64_t i = 0;
  for (; i + 8 <= D; i += 8)
    for (int j = 0; j < 8; ++j) {
      const float a = math::to_float(x[i + j]), b = math::to_float(r[i + j]);
      d[j] = std::fma(a, b, d[j]);
      xx[j] = std::fma(a, a, xx[j]);
      rr[j] = std::fma(b, b, rr[j]);
    }
  for (int j = 0; i < D; ++i, ++j) {
    const float a = math::to_float(x[i]), b = math::to_float(r[i]);
    d[j] = std::fma(a, b, d[j]);
    xx[j] = std::fma(a, a, xx[j]);
    rr[j] = std::fma(b, b, rr[j]);
  }
  Dot3 s{0.f, 0.f, 0.f};
  for (int j = 0; j < 8; ++j) s.dot += d[j], s.xx += xx[j], s.rr += rr[j];
  return s;
}

}  // namespace

Dot3 frame_dot3_scalar(DType dt, const void* x, const void* r, int64_t D) {
  return with_element_type(dt, [&](auto t) {
    using T = decltype(t);
    return dot3_plain(static_cast<const T*>(x), static_cast<const T*>(r), D);
  });
}

void frame_similarity_tasks_run(const FrameSimilarityArgs& a, CpuIsa isa, int64_t t0, int64_t t1) {
  auto dot3 = isa >= CpuIsa::kAvx512 ? &frame_dot3_avx512
              : isa >= CpuIsa::kAvx2 ? &frame_dot3_avx2
                                     : &frame_dot3_scalar;
  const int64_t tiles = (a.N + kFrameSimilarityTile - 1) / kFrameSimilarityTile;
  const int64_t es = a.dtype == DType::kF32 ? 4 : 2;
  const auto* base = static_cast<const uint8_t*>(a.x);
  for (int64_t task = t0; task < t1; ++task) {
    const int64_t b = task / tiles, n0 = (task % tiles) * kFrameSimilarityTile;
    const int64_t n1 = n0 + kFrameSimilarityTile < a.N ? n0 + kFrameSimilarityTile : a.N;
    for (int64_t t = 0; t < a.T; ++t) {
      float* out = a.out + (b * a.T + t) * a.N;
      const int64_t r = a.ref[t];
      for (int64_t n = n0; n < n1; ++n) {
        if (r < 0) {
          out[n] = std::numeric_limits<float>::quiet_NaN();
          continue;
        }
        const uint8_t* px = base + (b * a.sb + t * a.st + n * a.sn) * es;
        const uint8_t* pr = base + (b * a.sb + r * a.st + n * a.sn) * es;
        const Dot3 s = dot3(a.dtype, px, pr, a.D);
        out[n] = math::cosine_finish(s.dot, s.xx, s.rr, a.eps);
      }
    }
  }
}

}  // namespace vlmkern::cpu
