// topk_indices on the CPU, raw pointers only. Per row: map (score, index) to the
// unique 64-bit keys of math/topk.h, find the keep-th largest key with
// nth_element (O(N)), then emit every index whose key is >= it in one ascending
// scan, so the output is sorted without a sort. Rows run in parallel.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace vlmkern::cpu {

void topk_indices_rows(DType dt, const void* scores, int64_t s_sb, int64_t s_sn, int64_t N,
                       const int64_t* keep, int64_t k_max, int64_t* out, int64_t b0, int64_t b1);

}  // namespace vlmkern::cpu
