#include "core/cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#define VLMKERN_X86 1
#endif

namespace vlmkern {
namespace {

#ifdef VLMKERN_X86
unsigned long long xgetbv0() {
  unsigned int lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
}

// Linux hands out the AMX tile state only to processes that ask for it
// (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); without it the first tile
// instruction raises SIGILL.
bool request_amx_permission() {
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#ifdef VLMKERN_X86
  unsigned int a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1;
  const bool fma = (c >> 12) & 1;
  const bool f16c = (c >> 29) & 1;
  if (!osxsave) return f;
  if (__get_cpuid_max(0, nullptr) < 7) return f;  // no structured extended features
  const unsigned long long xcr0 = xgetbv0();
  const bool os_avx = (xcr0 & 0x6) == 0x6;
  f.os_avx512 = (xcr0 & 0xe6) == 0xe6;
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = os_avx && ((b >> 5) & 1);
  f.fma = os_avx && fma && f16c;
  f.avx512f = f.os_avx512 && ((b >> 16) & 1);
  f.avx512dq = f.os_avx512 && ((b >> 17) & 1);
  f.avx512bw = f.os_avx512 && ((b >> 30) & 1);
  f.avx512vl = f.os_avx512 && ((b >> 31) & 1);
  f.avx512_vnni = f.os_avx512 && ((c >> 11) & 1);
  f.avx512_fp16 = f.os_avx512 && ((d >> 23) & 1);
  f.amx_bf16 = (d >> 22) & 1;
  f.amx_tile = (d >> 24) & 1;
  f.amx_int8 = (d >> 25) & 1;
  unsigned int a1, b1, c1, d1;
  __cpuid_count(7, 1, a1, b1, c1, d1);
  f.avx_vnni = os_avx && ((a1 >> 4) & 1);
  f.avx512_bf16 = f.os_avx512 && ((a1 >> 5) & 1);
  if (f.amx_tile) f.os_amx = request_amx_permission();
#endif
  return f;
}

// VLMKERN_CPU_ISA as a cap; unset or empty: `fallback`. An unknown value is
// refused when the extension loads (cpu_isa_env_error), so it never gets here.
CpuIsa from_env(CpuIsa fallback) {
  const char* s = std::getenv("VLMKERN_CPU_ISA");
  if (!s || !*s) return fallback;
  CpuIsa isa;
  return cpu_isa_from_name(s, &isa) ? isa : fallback;
}

std::atomic<int> g_cap{-1};

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

CpuIsa cpu_isa_supported() {
  static const CpuIsa best = [] {
    const CpuFeatures& f = cpu_features();
    const bool avx512 = f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.fma;
    if (avx512 && f.avx512_bf16 && f.avx512_fp16 && f.amx_tile && f.amx_bf16 &&
        f.amx_int8 && f.os_amx)
      return CpuIsa::kAmx;
    if (avx512 && f.avx512_bf16) return CpuIsa::kAvx512Bf16;
    if (avx512) return CpuIsa::kAvx512;
    if (f.avx2 && f.fma) return CpuIsa::kAvx2;
    return CpuIsa::kScalar;
  }();
  return best;
}

CpuIsa cpu_isa() {
  static const CpuIsa env_cap = from_env(cpu_isa_supported());
  int cap = g_cap.load(std::memory_order_relaxed);
  CpuIsa isa = cpu_isa_supported();
  if (static_cast<int>(env_cap) < static_cast<int>(isa)) isa = env_cap;
  if (cap >= 0 && cap < static_cast<int>(isa)) isa = static_cast<CpuIsa>(cap);
  return isa;
}

void set_cpu_isa_cap(CpuIsa cap) { g_cap.store(static_cast<int>(cap)); }

bool cpu_isa_from_name(const std::string& name, CpuIsa* isa) {
  for (int i = 0; i <= static_cast<int>(CpuIsa::kAmx); ++i)
    if (name == cpu_isa_name(static_cast<CpuIsa>(i))) {
      *isa = static_cast<CpuIsa>(i);
      return true;
    }
  return false;
}

std::string cpu_isa_env_error() {
  const char* s = std::getenv("VLMKERN_CPU_ISA");
  CpuIsa isa;
  if (!s || !*s || cpu_isa_from_name(s, &isa)) return "";
  return std::string("VLMKERN_CPU_ISA: expected one of scalar, avx2, avx512, avx512_bf16, amx ") +
         "(or unset), got '" + s + "'";
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar: return "scalar";
    case CpuIsa::kAvx2: return "avx2";
    case CpuIsa::kAvx512: return "avx512";
    case CpuIsa::kAvx512Bf16: return "avx512_bf16";
    case CpuIsa::kAmx: return "amx";
  }
  return "?";
}

std::string cpu_features_string() {
  const CpuFeatures& f = cpu_features();
  std::string s;
  auto add = [&](bool on, const char* n) {
    if (on) { if (!s.empty()) s += ' '; s += n; }
  };
  add(f.avx2, "avx2"); add(f.fma, "fma"); add(f.avx_vnni, "avx_vnni");
  add(f.avx512f, "avx512f"); add(f.avx512bw, "avx512bw"); add(f.avx512vl, "avx512vl");
  add(f.avx512dq, "avx512dq"); add(f.avx512_vnni, "avx512_vnni");
  add(f.avx512_bf16, "avx512_bf16"); add(f.avx512_fp16, "avx512_fp16");
  add(f.amx_tile, "amx_tile"); add(f.amx_bf16, "amx_bf16"); add(f.amx_int8, "amx_int8");
  add(f.os_amx, "amx_os_granted");
  return s;
}

}  // namespace vlmkern
