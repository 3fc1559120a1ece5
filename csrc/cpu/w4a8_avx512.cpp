// AVX512-VNNI pieces of the W4A8 CPU kernel: not written yet (see README,
// "W4A8 on CPUs with AVX-512"). CPUs with AVX-512 take the AVX2 path.
#include "cpu/w4a8_kernel.h"

namespace vlmkern::cpu {

const W4A8IsaOps* w4a8_ops_avx512(CpuIsa) { return nullptr; }

}  // namespace vlmkern::cpu
