#include "cpu/topk_indices_kernel.h"

#include <algorithm>
#include <functional>
#include <vector>

#include "math/convert.h"
#include "math/topk.h"

namespace vlmkern::cpu {
namespace {

template <typename T>
void rows_impl(const T* scores, int64_t s_sb, int64_t s_sn, int64_t N, const int64_t* keep,
               int64_t k_max, int64_t* out, int64_t b0, int64_t b1) {
  std::vector<uint64_t> keys(N);
  for (int64_t b = b0; b < b1; ++b) {
    const T* s = scores + b * s_sb;
    int64_t* o = out + b * k_max;
    const int64_t kb = std::min(keep[b], k_max);
    int64_t cnt = 0;
    if (kb >= N) {
      for (int64_t i = 0; i < N; ++i) o[cnt++] = i;
    } else if (kb > 0) {
      for (int64_t i = 0; i < N; ++i) keys[i] = math::topk_key(math::to_float(s[i * s_sn]), uint32_t(i));
      std::nth_element(keys.begin(), keys.begin() + (kb - 1), keys.end(), std::greater<uint64_t>());
      const uint64_t thr = keys[kb - 1];
      for (int64_t i = 0; i < N; ++i)
        if (math::topk_key(math::to_float(s[i * s_sn]), uint32_t(i)) >= thr) o[cnt++] = i;
    }
    for (; cnt < k_max; ++cnt) o[cnt] = -1;
  }
}

}  // namespace

void topk_indices_rows(DType dt, const void* scores, int64_t s_sb, int64_t s_sn, int64_t N,
                       const int64_t* keep, int64_t k_max, int64_t* out, int64_t b0, int64_t b1) {
  with_element_type(dt, [&](auto t) {
    using T = decltype(t);
    rows_impl(static_cast<const T*>(scores), s_sb, s_sn, N, keep, k_max, out, b0, b1);
  });
}

}  // namespace vlmkern::cpu
