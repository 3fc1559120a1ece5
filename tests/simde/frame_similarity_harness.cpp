// frame_similarity's AVX2 and AVX-512 inner loops (compiled against SIMDe) and
// the plain one, each against an fp64 reference, through the CPU task loop:
// dtypes f32/bf16/f16, D around the 8-, 16- and 32-lane widths, N around the
// 8-token tile, strided rows, a reference map with anchors, identical frames
// (exactly 1.0 on every path), zero rows, NaN rows. Prints
// "<cases> cases x 3 paths, <failures> failures".
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "cpu/frame_similarity_kernel.h"

using vlmkern::CpuIsa;
using vlmkern::DType;
using vlmkern::cpu::FrameSimilarityArgs;

namespace {

uint64_t g_state = 12345;
int next_int(int n) {
  g_state = g_state * 6364136223846793005ull + 1442695040888963407ull;
  return int((g_state >> 33) % uint64_t(n));
}

uint16_t to_bf16(float f) {  // exact for the values used (few mantissa bits)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return uint16_t(u >> 16);
}
uint16_t to_fp16(float f) {  // exact for normal values with <= 10 mantissa bits
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  if ((u & 0x7fffffffu) == 0) return uint16_t(sign);
  if ((u & 0x7fffffffu) >= 0x7f800000u) return uint16_t(sign | 0x7c00u | ((u & 0x7fffffu) ? 0x200u : 0u));
  const int exp = int((u >> 23) & 0xff) - 127 + 15;
  return uint16_t(sign | uint32_t(exp) << 10 | ((u >> 13) & 0x3ffu));
}

int g_cases = 0, g_failures = 0;

void run_case(DType dt, int64_t B, int64_t T, int64_t N, int64_t D, int64_t pad, std::vector<int64_t> ref,
              int special) {
  ++g_cases;
  const int64_t sn = D + pad, st = N * sn + pad, sb = T * st + pad;
  const int64_t total = B * sb;
  std::vector<float> v(size_t(total), NAN);  // gaps hold NaN: a read of one shows up
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t d = 0; d < D; ++d) {
          float x = float(next_int(17) - 8) * 0.125f;
          if (special == 1 && t > 0) x = v[size_t(b * sb + n * sn + d)];  // frames identical to frame 0
          if (special == 2 && n == 1) x = 0.f;                            // a zero row
          if (special == 3 && n == 2 && t == 1 && d == D / 2) x = NAN;     // a NaN element
          v[size_t(b * sb + t * st + n * sn + d)] = x;
        }
  std::vector<uint16_t> h(static_cast<size_t>(total));
  for (size_t i = 0; i < h.size(); ++i) h[i] = dt == DType::kBF16 ? to_bf16(v[i]) : to_fp16(v[i]);
  const void* x = dt == DType::kF32 ? static_cast<const void*>(v.data()) : h.data();
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    std::vector<float> out(size_t(B * T * N), -7.f);
    const FrameSimilarityArgs a{dt, x, B, T, N, D, sb, st, sn, ref.data(), 1e-8f, out.data()};
    vlmkern::cpu::frame_similarity_tasks_run(a, isa, 0, vlmkern::cpu::frame_similarity_tasks(a));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t n = 0; n < N; ++n) {
          const float got = out[size_t((b * T + t) * N + n)];
          double want;
          if (ref[size_t(t)] < 0) {
            want = NAN;
          } else {
            double dot = 0, xx = 0, rr = 0;
            for (int64_t d = 0; d < D; ++d) {
              const double p = v[size_t(b * sb + t * st + n * sn + d)];
              const double q = v[size_t(b * sb + ref[size_t(t)] * st + n * sn + d)];
              dot += p * q, xx += p * p, rr += q * q;
            }
            want = dot / std::max(std::sqrt(xx * rr), 1e-8);
          }
          const bool identical = special == 1 && ref[size_t(t)] >= 0 && !(special == 2 && n == 1);
          bool ok = std::isnan(want) ? std::isnan(got) : std::fabs(got - want) <= 2e-6;
          if (identical && got != 1.0f) ok = false;
          if (!ok) {
            ++g_failures;
            std::printf("FAIL dt=%d isa=%d B=%lld T=%lld N=%lld D=%lld pad=%lld special=%d at (%lld,%lld,%lld): "
                        "got %.9g want %.9g\n", int(dt), int(isa), (long long)B, (long long)T, (long long)N,
                        (long long)D, (long long)pad, special, (long long)b, (long long)t, (long long)n,
                        double(got), want);
            return;
          }
        }
  }
}

std::vector<int64_t> previous(int64_t T) {
  std::vector<int64_t> r(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) r[size_t(t)] = t - 1;
  return r;
}

}  // namespace

int main() {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (int64_t D : {1, 7, 8, 15, 16, 17, 31, 32, 33, 47, 64, 77, 100})
      for (int64_t N : {1, 7, 8, 9})
        run_case(dt, 2, 3, N, D, D % 3, previous(3), 0);
    for (int special = 1; special <= 3; ++special)
      for (int64_t D : {5, 33, 96}) run_case(dt, 2, 4, 10, D, 1, previous(4), special);
    run_case(dt, 1, 8, 17, 40, 0, {-1, 0, 0, 0, -1, 4, 4, 4}, 0);
    run_case(dt, 3, 1, 5, 9, 0, {-1}, 0);
  }
  std::printf("%d cases x 3 paths, %d failures\n", g_cases, g_failures);
  return g_failures == 0 ? 0 : 1;
}
