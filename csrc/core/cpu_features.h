// x86 feature detection, done once per process (CPUID + XGETBV + Linux's AMX
// permission request). Kernels ask `cpu_isa()` which path to take.
#pragma once
#include <string>

namespace vlmkern {

enum class CpuIsa : int {
  kScalar = 0,      // plain C++
  kAvx2 = 1,        // AVX2 + FMA
  kAvx512 = 2,      // AVX-512 F/BW/VL/DQ
  kAvx512Bf16 = 3,  // + AVX512-BF16 (VDPBF16PS)
  kAmx = 4,         // + AMX-TILE/BF16/INT8, tile state granted by the OS
};

struct CpuFeatures {
  bool avx2 = false, fma = false, avx512f = false, avx512bw = false, avx512vl = false,
       avx512dq = false, avx512_vnni = false, avx512_bf16 = false, avx512_fp16 = false,
       avx_vnni = false, amx_tile = false, amx_bf16 = false, amx_int8 = false,
       os_avx512 = false, os_amx = false;
};

const CpuFeatures& cpu_features();

// Best ISA this machine supports, capped by the environment variable
// VLMKERN_CPU_ISA (scalar|avx2|avx512|avx512_bf16|amx) and by
// set_cpu_isa_cap(); the cap lets tests force every path.
CpuIsa cpu_isa();
CpuIsa cpu_isa_supported();
void set_cpu_isa_cap(CpuIsa cap);
const char* cpu_isa_name(CpuIsa isa);
// The ISA named `name` (as cpu_isa_name spells it); false if none is.
bool cpu_isa_from_name(const std::string& name, CpuIsa* isa);
// Why VLMKERN_CPU_ISA is unusable, or "" (checked when the extension loads).
std::string cpu_isa_env_error();
std::string cpu_features_string();

}  // namespace vlmkern
