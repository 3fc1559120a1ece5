// The harness's CPU reference is the plain C++ path of each CPU kernel (the
// Python tests hold every vector path to it: bit-identical for W4A8 and
// topk_indices, within the tolerances of test_attention_mass.py). The vector
// translation units need their ISA flags, so the harness links these empty
// tables in their place; a call that would need one is a harness bug.
#include <cstdio>
#include <cstdlib>

#include "cpu/attention_mass_kernel.h"
#include "cpu/frame_similarity_kernel.h"
#include "cpu/w4a8_kernel.h"

namespace vlmkern::cpu {

const AttentionMassIsaOps* attention_mass_ops_avx512(CpuIsa) { return nullptr; }
const AttentionMassIsaOps* attention_mass_ops_avx2(CpuIsa) { return nullptr; }
const W4A8IsaOps* w4a8_ops_avx2(CpuIsa) { return nullptr; }
const W4A8IsaOps* w4a8_ops_avx512(CpuIsa) { return nullptr; }
bool w4a8_gemm_blocks_amx(const W4A8GemmArgs&, int64_t, int64_t) {
  std::fprintf(stderr, "harness: the AMX path was chosen for the plain C++ reference\n");
  std::abort();
}
Dot3 frame_dot3_avx2(DType, const void*, const void*, int64_t) {
  std::fprintf(stderr, "harness: the AVX2 frame_similarity loop was chosen for the plain C++ reference\n");
  std::abort();
}
Dot3 frame_dot3_avx512(DType, const void*, const void*, int64_t) {
  std::fprintf(stderr, "harness: the AVX-512 frame_similarity loop was chosen for the plain C++ reference\n");
  std::abort();
}

}  // namespace vlmkern::cpu
