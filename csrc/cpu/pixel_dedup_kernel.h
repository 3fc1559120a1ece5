// pixel_dedup on the CPU: raw pointers and sizes only (no torch here).
//
// Per video (patch grid t x h x w, its temporal groups contiguous slabs of
// h * w patch rows of F values each), walk the groups in order keeping an
// anchor (the last kept group, group 0 at first): group g whose mean absolute
// difference to the anchor is <= tol reuses the anchor (source[g] = anchor),
// any other group is kept and becomes the anchor (source[g] = g). A NaN
// difference never matches. The sums are fp64 over fixed chunks of
// kPixelDedupChunk values added in chunk order (math/pixel_dedup.h), so the
// result does not depend on the thread count. Memory-bound: each step reads
// two slabs (the anchor's often from cache).
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace vlmkern::cpu {

struct PixelDedupArgs {
  DType dtype;
  const void* pixels;    // [P, F], rows contiguous (row stride F)
  int64_t F;
  const int64_t* grid;   // [V, 3] host copy: t, h, w (patches)
  int64_t V;
  double tol;
  int64_t* source;       // [sum t] global group index each group reuses (itself if kept)
};

// par(begin, end, grain, fn) runs fn(c0, c1) over chunk subranges (at::parallel_for
// in the op, a plain call in tests); partial is scratch for the chunk sums of one
// step, pixel_dedup_max_chunks(a) doubles.
int64_t pixel_dedup_max_chunks(const PixelDedupArgs& a);
double pixel_dedup_chunk_sum(DType dt, const void* x, const void* y, int64_t n);

template <class ParallelFor>
void pixel_dedup_run(const PixelDedupArgs& a, double* partial, ParallelFor&& par);

}  // namespace vlmkern::cpu

#include "math/pixel_dedup.h"

namespace vlmkern::cpu {

template <class ParallelFor>
void pixel_dedup_run(const PixelDedupArgs& a, double* partial, ParallelFor&& par) {
  const int64_t es = a.dtype == DType::kF32 ? 4 : 2;
  const auto* base = static_cast<const uint8_t*>(a.pixels);
  int64_t row0 = 0, g0 = 0;
  for (int64_t v = 0; v < a.V; ++v) {
    const int64_t T = a.grid[3 * v], slab = a.grid[3 * v + 1] * a.grid[3 * v + 2] * a.F;
    const int64_t chunks = (slab + math::kPixelDedupChunk - 1) / math::kPixelDedupChunk;
    int64_t anchor = 0;
    for (int64_t t = 0; t < T; ++t) {
      if (t == 0) {
        a.source[g0] = g0;
        continue;
      }
      const uint8_t* x = base + (row0 * a.F + t * slab) * es;
      const uint8_t* y = base + (row0 * a.F + anchor * slab) * es;
      par(0, chunks, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          const int64_t off = c * math::kPixelDedupChunk;
          const int64_t n = slab - off < math::kPixelDedupChunk ? slab - off : math::kPixelDedupChunk;
          partial[c] = pixel_dedup_chunk_sum(a.dtype, x + off * es, y + off * es, n);
        }
      });
      double sum = 0;
      for (int64_t c = 0; c < chunks; ++c) sum += partial[c];
      if (math::pixel_dedup_matches(sum, slab, a.tol)) {
        a.source[g0 + t] = g0 + anchor;
      } else {
        a.source[g0 + t] = g0 + t;
        anchor = t;
      }
    }
    row0 += T * a.grid[3 * v + 1] * a.grid[3 * v + 2];
    g0 += T;
  }
}

}  // namespace vlmkern::cpu
