// Runs the AVX-512 and AVX512-BF16 attention_mass kernels (csrc/cpu/
// attention_mass_avx512.cpp compiled against SIMDe, see immintrin.h here) and
// the plain C++ kernel through the CPU driver on the same random inputs, and
// checks each against an fp64 reference with the Python tests' tolerance
// (2e-5 of the largest mass per batch row). Cases cover every tile shape of
// the scores (1..8 query rows per KV head, key tails of 1..15), head dims
// around the 16- and 32-lane widths, masks, weights, causal and non-causal,
// spans and all three dtypes. Built and run by tests/test_attention_mass_simde.py.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "cpu/attention_mass_kernel.h"
#include "math/convert.h"
#include "math/softmax.h"

namespace vlmkern::cpu {
// The AVX2 table is not part of this test (tests/test_attention_mass.py runs
// it natively on every CI machine).
const AttentionMassIsaOps* attention_mass_ops_avx2(CpuIsa) { return nullptr; }
}  // namespace vlmkern::cpu

using namespace vlmkern;

namespace {

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
uint16_t to_fp16(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}

struct Case {
  DType dt;
  int64_t B, Hq, Hkv, Lq, Lk, D, key_start, key_end;
  bool causal, masked, weighted;
};

// fp64 attention mass of the values the kernel sees (after rounding to dt).
std::vector<double> reference(const Case& c, const std::vector<float>& q, const std::vector<float>& k,
                              const std::vector<uint8_t>& valid, const std::vector<float>& w) {
  const int64_t span = c.key_end - c.key_start, rep = c.Hq / c.Hkv;
  const double scale = 1.0 / std::sqrt(double(c.D));
  std::vector<double> out(size_t(c.B * span), 0.0), s(size_t(c.Lk));
  for (int64_t b = 0; b < c.B; ++b) {
    double wsum = 0;
    for (int64_t i = 0; i < c.Lq; ++i) wsum += c.weighted ? w[size_t(b * c.Lq + i)] : 1.0;
    for (int64_t h = 0; h < c.Hq; ++h)
      for (int64_t i = 0; i < c.Lq; ++i) {
        const int64_t lim = c.causal ? c.Lk - c.Lq + i + 1 : c.Lk;
        double m = -INFINITY;
        for (int64_t j = 0; j < c.Lk; ++j) {
          s[size_t(j)] = -INFINITY;
          if (j >= lim || (c.masked && !valid[size_t(b * c.Lk + j)])) continue;
          double d = 0;
          for (int64_t e = 0; e < c.D; ++e)
            d += double(q[size_t(((b * c.Hq + h) * c.Lq + i) * c.D + e)]) *
                 double(k[size_t(((b * c.Hkv + h / rep) * c.Lk + j) * c.D + e)]);
          s[size_t(j)] = d * scale;
          m = std::max(m, s[size_t(j)]);
        }
        if (m == -INFINITY) continue;
        double l = 0;
        for (int64_t j = 0; j < c.Lk; ++j) l += std::exp(s[size_t(j)] - m);
        const double wi = c.weighted ? w[size_t(b * c.Lq + i)] : 1.0;
        if (wsum == 0) continue;
        for (int64_t j = c.key_start; j < c.key_end; ++j)
          out[size_t(b * span + j - c.key_start)] += wi / (wsum * c.Hq) * std::exp(s[size_t(j)] - m) / l;
      }
  }
  return out;
}

int run(std::mt19937& rng, const Case& c) {
  std::normal_distribution<float> nd;
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  const size_t nq = size_t(c.B * c.Hq * c.Lq * c.D), nk = size_t(c.B * c.Hkv * c.Lk * c.D);
  std::vector<float> qf(nq), kf(nk), w(size_t(c.B * c.Lq));
  std::vector<uint16_t> qh(nq), kh(nk);
  std::vector<uint8_t> valid(size_t(c.B * c.Lk), 1);
  auto store = [&](std::vector<float>& f, std::vector<uint16_t>& h) {
    for (size_t i = 0; i < f.size(); ++i) {
      f[i] = nd(rng);
      if (c.dt == DType::kBF16) h[i] = to_bf16(f[i]), f[i] = math::bf16_to_float(h[i]);
      if (c.dt == DType::kF16) h[i] = to_fp16(f[i]), f[i] = math::fp16_to_float(h[i]);
    }
  };
  store(qf, qh);
  store(kf, kh);
  for (auto& v : w) v = ud(rng);
  if (c.masked)
    for (auto& v : valid) v = ud(rng) > 0.3f;
  const std::vector<double> ref = reference(c, qf, kf, valid, w);
  const int64_t span = c.key_end - c.key_start;
  int fails = 0;
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16}) {
    std::vector<float> out(size_t(c.B * span));
    cpu::AttentionMassArgs a{};
    a.dtype = c.dt;
    a.q = c.dt == DType::kF32 ? static_cast<const void*>(qf.data()) : qh.data();
    a.k = c.dt == DType::kF32 ? static_cast<const void*>(kf.data()) : kh.data();
    a.B = c.B, a.Hq = c.Hq, a.Hkv = c.Hkv, a.Lq = c.Lq, a.Lk = c.Lk, a.D = c.D;
    a.q_sb = c.Hq * c.Lq * c.D, a.q_sh = c.Lq * c.D, a.q_sl = c.D;
    a.k_sb = c.Hkv * c.Lk * c.D, a.k_sh = c.Lk * c.D, a.k_sl = c.D;
    a.key_valid = c.masked ? valid.data() : nullptr;
    a.query_weights = c.weighted ? w.data() : nullptr;
    a.key_start = c.key_start, a.key_end = c.key_end;
    a.causal = c.causal;
    a.scale2 = float(1.0 / std::sqrt(double(c.D))) * math::kLog2e;
    a.out = out.data();
    const auto ws = cpu::attention_mass_plan(a, isa);
    std::vector<uint8_t> qprep(size_t(ws.qprep_bytes));
    std::vector<float> work(size_t(ws.floats));
    cpu::attention_mass_bind(a, qprep.data(), work.data());
    cpu::attention_mass_run(a, isa, [](int64_t b0, int64_t b1, int64_t, const auto& fn) { fn(b0, b1); });
    for (int64_t b = 0; b < c.B; ++b) {
      double mx = 1e-30;
      for (int64_t j = 0; j < span; ++j) mx = std::max(mx, std::fabs(ref[size_t(b * span + j)]));
      for (int64_t j = 0; j < span; ++j) {
        const double d = std::fabs(double(out[size_t(b * span + j)]) - ref[size_t(b * span + j)]);
        if (!(d <= 2e-5 * mx)) {
          std::printf("FAIL %s dt=%d B%ld Hq%ld Hkv%ld Lq%ld Lk%ld D%ld: row %ld key %ld: %.9g vs fp64 %.9g\n",
                      cpu::attention_mass_ops_avx512(isa) == nullptr ? "scalar"
                      : isa == CpuIsa::kAvx512                      ? "avx512"
                                                                    : "avx512_bf16",
                      int(c.dt), long(c.B), long(c.Hq), long(c.Hkv), long(c.Lq), long(c.Lk), long(c.D), long(b),
                      long(c.key_start + j), out[size_t(b * span + j)], ref[size_t(b * span + j)]);
          ++fails;
          break;
        }
      }
    }
  }
  return fails;
}

}  // namespace

int main() {
  std::mt19937 rng(99);
  std::vector<Case> cases;
  const DType dts[] = {DType::kF32, DType::kBF16, DType::kF16};
  // Query rows per KV head 1..8 (every scores tile shape), key tails, odd head dims.
  const int64_t heads[][3] = {{1, 1, 1}, {2, 1, 1}, {3, 1, 1}, {4, 2, 2}, {5, 5, 1}, {6, 2, 2},
                              {7, 1, 1}, {8, 1, 1}, {4, 1, 3}, {8, 2, 5}, {28, 4, 1}};  // Hq, Hkv, Lq
  for (DType dt : dts)
    for (const auto& h : heads)
      for (int64_t D : {16, 33, 64, 80})
        cases.push_back({dt, 2, h[0], h[1], h[2], 37 + D % 13, D, 0, 37 + D % 13, true, false, false});
  for (DType dt : dts)
    for (int64_t D : {1, 15, 17, 31, 32, 47, 128, 130, 256})
      cases.push_back({dt, 1, 4, 2, 3, 100, D, 3, 97, D % 2 == 0, true, true});
  for (DType dt : dts)
    for (int64_t Lk : {1, 15, 16, 17, 300, 1111})
      cases.push_back({dt, 3, 8, 2, std::min<int64_t>(Lk, 9), Lk, 64, 0, Lk, true, true, Lk % 2 == 1});
  int fails = 0;
  for (const Case& c : cases) fails += run(rng, c);
  std::printf("%zu cases x 3 paths, %d failures\n", cases.size(), fails);
  return fails != 0;
}
