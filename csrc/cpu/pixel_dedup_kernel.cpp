// pixel_dedup on the CPU: the chunk sum (see pixel_dedup_kernel.h). Plain C++:
// the op is memory-bound and measured at well under 1% of the vision
// encoder's time on the same frames (bench/bench_video.py), so no ISA variants.
#include "cpu/pixel_dedup_kernel.h"

#include <cmath>

#include "math/convert.h"

namespace vlmkern::cpu {

int64_t pixel_dedup_max_chunks(const PixelDedupArgs& a) {
  int64_t m = 0;
  for (int64_t v = 0; v < a.V; ++v) {
    const int64_t slab = a.grid[3 * v + 1] * a.grid[3 * v + 2] * a.F;
    const int64_t c = (slab + math::kPixelDedupChunk - 1) / math::kPixelDedupChunk;
    m = c > m ? c : m;
  }
  return m;
}

double pixel_dedup_chunk_sum(DType dt, const void* x, const void* y, int64_t n) {
  return with_element_type(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* px = static_cast<const T*>(x);
    const T* py = static_cast<const T*>(y);
    // Four fp64 partial sums (independent chains), combined in a fixed order.
    double s[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
      for (int j = 0; j < 4; ++j)
        s[j] += std::fabs(double(math::to_float(px[i + j])) - double(math::to_float(py[i + j])));
    for (; i < n; ++i) s[0] += std::fabs(double(math::to_float(px[i])) - double(math::to_float(py[i])));
    return (s[0] + s[1]) + (s[2] + s[3]);
  });
}

}  // namespace vlmkern::cpu
