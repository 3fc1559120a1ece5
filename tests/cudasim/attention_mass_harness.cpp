// attention_mass: the three CUDA kernels (csrc/cuda/attention_mass_kernels.cuh,
// run by the emulator through their launch planning) against the plain C++
// CPU kernel (csrc/cpu/attention_mass_kernel.cpp, the same split softmax).
// Both score in fp32 with the same head-dim order (the CPU with separate
// multiply and add, CUDA with fmaf) and sum the probabilities in different
// orders, so they agree to a few fp32 roundings: |cuda - cpu| <= 2e-6 * |cpu|
// + 1e-12 per key (the largest deviation over these cases is printed with
// --verbose and reported by the Python test). NaN inputs must give NaN at the
// same keys (NaN or Inf in q or k make the batch row's masses NaN on both).
// Cases: those of tests/test_cuda_parity.py, then many chunks, head dim 1024,
// full causal squares, masked-out rows, NaN, Inf and subnormal inputs, strided
// (transposed) q and k.
#include <algorithm>

#include "cpu/attention_mass_kernel.h"
#include "cuda/attention_mass_kernels.cuh"
#include "harness.h"

namespace harness {
namespace {

using vlmkern::DType;
constexpr double kRtol = 2e-6, kAtol = 1e-12;

const char* dname(DType d) { return d == DType::kF32 ? "f32" : d == DType::kBF16 ? "bf16" : "f16"; }

struct Spec {
  int64_t B, Hq, Hkv, Lq, Lk, D;
  DType dt;
  bool causal;
  int64_t key_start, key_end;
  bool masked, weighted;
  uint64_t seed;
  bool transposed = false;  // q, k stored as [B, L, H, D] (strided heads)
  float q_scale = 1.f;      // scale of q's values (tiny: subnormal products)
  bool nan_q = false;       // one NaN in q of batch row 0
  bool inf_k = false;       // one +inf in k of the last batch row
  bool zero_weights = false;
};

struct Tensor16 {
  std::vector<uint32_t> f32;
  std::vector<uint16_t> h;
  const void* data(DType dt) const { return dt == DType::kF32 ? static_cast<const void*>(f32.data()) : h.data(); }
};

// [B, H, L, D] logical, stored [B, H, L, D] or [B, L, H, D]; strides in elements.
Tensor16 make(DType dt, Rng& g, int64_t B, int64_t H, int64_t L, int64_t D, bool transposed, float scale,
              int64_t st[3]) {
  Tensor16 t;
  const size_t n = size_t(B * H * L * D);
  if (dt == DType::kF32) t.f32.resize(n);
  else t.h.resize(n);
  if (transposed) st[0] = L * H * D, st[1] = D, st[2] = H * D;
  else st[0] = H * L * D, st[1] = L * D, st[2] = D;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t l = 0; l < L; ++l)
        for (int64_t d = 0; d < D; ++d) {
          const size_t at = size_t(b * st[0] + h * st[1] + l * st[2] + d);
          const float x = g.normal() * scale;
          if (dt == DType::kF32) t.f32[at] = bits(x);
          else t.h[at] = dt == DType::kBF16 ? to_bf16(x) : to_fp16(x);
        }
  return t;
}

std::string name_of(const Spec& s) {
  return fmt("%s B%lld Hq%lld Hkv%lld Lq%lld Lk%lld D%lld%s span[%lld,%lld)%s%s%s%s%s", dname(s.dt),
             (long long)s.B, (long long)s.Hq, (long long)s.Hkv, (long long)s.Lq, (long long)s.Lk,
             (long long)s.D, s.causal ? " causal" : "", (long long)s.key_start, (long long)s.key_end,
             s.masked ? " masked" : "", s.weighted ? (s.zero_weights ? " zero-weights" : " weighted") : "",
             s.transposed ? " strided" : "", s.q_scale != 1.f ? " tiny-q" : "",
             s.nan_q ? " nan" : (s.inf_k ? " inf" : ""));
}

double g_max_rel = 0;  // largest |cuda - cpu| / (|cpu| + atol/rtol) seen, for --verbose

int run(const Spec& s) {
  Rng g(s.seed);
  int64_t qs[3], ks[3];
  Tensor16 q = make(s.dt, g, s.B, s.Hq, s.Lq, s.D, s.transposed, s.q_scale, qs);
  Tensor16 k = make(s.dt, g, s.B, s.Hkv, s.Lk, s.D, s.transposed, 1.f, ks);
  if (s.nan_q) {
    if (s.dt == DType::kF32) q.f32[0] = 0x7fc00000u;
    else q.h[0] = 0x7e00u;
  }
  if (s.inf_k) {  // batch row B-1, KV head 0, key 3, dim 0
    const size_t at = size_t((s.B - 1) * ks[0] + 3 * ks[2]);
    if (s.dt == DType::kF32) k.f32[at] = 0x7f800000u;
    else k.h[at] = s.dt == DType::kBF16 ? 0x7f80u : 0x7c00u;
  }
  std::vector<uint8_t> valid;
  std::vector<float> weights;
  if (s.masked) {
    valid.resize(size_t(s.B * s.Lk));
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t j = 0; j < s.Lk; ++j)
        valid[size_t(b * s.Lk + j)] = b == 0 ? 1 : (b == s.B - 1 && s.B > 1 ? 0 : g.uniform() > 0.3);
  }
  if (s.weighted) {
    weights.resize(size_t(s.B * s.Lq));
    for (float& w : weights) w = s.zero_weights ? 0.f : float(g.uniform());
  }
  const int64_t span = s.key_end - s.key_start;

  // CPU: the plain C++ path, serially.
  vlmkern::cpu::AttentionMassArgs a{};
  a.dtype = s.dt;
  a.q = q.data(s.dt);
  a.k = k.data(s.dt);
  a.B = s.B, a.Hq = s.Hq, a.Hkv = s.Hkv, a.Lq = s.Lq, a.Lk = s.Lk, a.D = s.D;
  a.q_sb = qs[0], a.q_sh = qs[1], a.q_sl = qs[2];
  a.k_sb = ks[0], a.k_sh = ks[1], a.k_sl = ks[2];
  a.key_valid = s.masked ? valid.data() : nullptr;
  a.query_weights = s.weighted ? weights.data() : nullptr;
  a.key_start = s.key_start, a.key_end = s.key_end;
  a.causal = s.causal;
  a.scale2 = float(1.0 / std::sqrt(double(s.D))) * vlmkern::math::kLog2e;
  std::vector<float> want(size_t(s.B * span), 0.f);
  a.out = want.data();
  if (span > 0 && s.B > 0) {
    const auto wsz = vlmkern::cpu::attention_mass_plan(a, vlmkern::CpuIsa::kScalar);
    std::vector<uint8_t> qprep(size_t(wsz.qprep_bytes));
    std::vector<float> ws(size_t(wsz.floats));
    vlmkern::cpu::attention_mass_bind(a, qprep.data(), ws.data());
    vlmkern::cpu::attention_mass_run(a, vlmkern::CpuIsa::kScalar,
                                     [](int64_t b0, int64_t b1, int64_t, const auto& fn) { fn(b0, b1); });
  }

  vlmkern::cuda::AttentionMassProblem pb{};
  pb.dtype = s.dt;
  pb.q = q.data(s.dt);
  pb.k = k.data(s.dt);
  pb.B = s.B, pb.Hq = s.Hq, pb.Hkv = s.Hkv, pb.Lq = s.Lq, pb.Lk = s.Lk, pb.D = s.D;
  pb.q_sb = qs[0], pb.q_sh = qs[1], pb.q_sl = qs[2];
  pb.k_sb = ks[0], pb.k_sh = ks[1], pb.k_sl = ks[2];
  static_assert(sizeof(bool) == 1);
  pb.key_valid = s.masked ? reinterpret_cast<const bool*>(valid.data()) : nullptr;
  pb.query_weights = s.weighted ? weights.data() : nullptr;
  pb.key_start = s.key_start, pb.key_end = s.key_end;
  pb.causal = s.causal;
  pb.scale = float(1.0 / std::sqrt(double(s.D)));
  const std::string name = name_of(s);
  return each_schedule(name, Ftz::kBoth, [&]() -> std::string {
    std::vector<float> got(size_t(s.B * span), NAN);  // every key must be written
    pb.out = got.data();
    if (const char* why = vlmkern::cuda::attention_mass_plan_error(pb)) return fmt("plan error: %s", why);
    std::vector<float> ws(size_t(vlmkern::cuda::attention_mass_workspace_floats(pb)), NAN);
    const cudaError_t e = vlmkern::cuda::attention_mass_launch(pb, ws.data(), nullptr);
    if (e != cudaSuccess) return fmt("launch: %s", cudaGetErrorString(e));
    for (size_t i = 0; i < got.size(); ++i) {
      const double c = want[i], d = got[i];
      if (std::isnan(c) || std::isnan(d)) {
        if (std::isnan(c) != std::isnan(d))
          return fmt("row %lld key %lld: CUDA %g, CPU %g", (long long)(i / size_t(span)),
                     (long long)(s.key_start + int64_t(i % size_t(span))), d, c);
        continue;
      }
      const double err = std::fabs(d - c), bound = kRtol * std::fabs(c) + kAtol;
      g_max_rel = std::max(g_max_rel, err / bound * kRtol);
      if (!(err <= bound))
        return fmt("row %lld key %lld: CUDA %.9g, CPU %.9g (|diff| %.3g > %.3g)",
                   (long long)(i / size_t(span)), (long long)(s.key_start + int64_t(i % size_t(span))), d,
                   c, err, bound);
    }
    return "";
  });
}

void add(Cases& out, const Spec& s, Size size = Size::kQuick) {
  out.push_back({name_of(s), [s] { return run(s); }, size});
}

}  // namespace

double attention_mass_max_rel_error() { return g_max_rel; }

void add_attention_mass_cases(Cases& out) {
  const DType dts[] = {DType::kF32, DType::kBF16, DType::kF16};
  // The parity test's cases.
  for (DType dt : dts)
    for (int64_t Lk : {1, 7, 577, 4109})
      for (bool causal : {false, true})
        add(out, {1, 4, 4, std::min<int64_t>(Lk, 5), Lk, 64, dt, causal, 0, Lk, false, false, uint64_t(Lk)},
            Lk > 1000 ? Size::kFull : Size::kQuick);
  for (DType dt : dts)
    for (auto [Hq, Hkv] : {std::pair<int64_t, int64_t>{8, 1}, {8, 2}, {6, 3}, {4, 4}})
      add(out, {2, Hq, Hkv, 17, 600, 128, dt, true, 35, 600, false, false, uint64_t(Hq * 10 + Hkv)});
  for (DType dt : dts)
    for (bool causal : {false, true})
      add(out, {3, 8, 2, 40, 1100, 96, dt, causal, 5, 1090, true, true, 7}, Size::kFull);
  for (int64_t D : {1, 40, 64, 80, 130, 256})
    add(out, {2, 4, 2, 9, 300, D, DType::kF32, true, 0, 300, true, false, uint64_t(D)});
  for (auto [lo, hi] : {std::pair<int64_t, int64_t>{0, 0}, {0, 1}, {3, 4}, {100, 165}, {4000, 4109}, {0, 4109}})
    add(out, {2, 4, 2, 64, 4109, 64, DType::kBF16, true, lo, hi, true, true, 3},
        hi - lo > 1000 ? Size::kFull : Size::kQuick);
  add(out, {1, 12, 3, 45, 700, 64, DType::kF16, true, 0, 700, false, true, 11});  // row tiles straddle heads
  {
    Spec s{2, 4, 2, 10, 300, 64, DType::kF32, true, 10, 290, false, false, 5};
    s.transposed = true;
    add(out, s);
    s.dt = DType::kBF16;
    add(out, s);
  }
  {
    Spec s{2, 2, 2, 3, 50, 32, DType::kF32, true, 0, 50, false, true, 9};
    s.zero_weights = true;
    add(out, s);
  }
  // Larger and stranger: many chunks, the largest head dim, a full causal
  // square, NaN in q, subnormal products, a batch of 5 with ragged masks.
  add(out, {1, 2, 1, 3, 20000, 64, DType::kBF16, true, 0, 20000, true, false, 21}, Size::kFull);
  add(out, {1, 2, 2, 4, 300, 1024, DType::kF32, false, 17, 283, false, true, 22});
  add(out, {1, 2, 1, 200, 200, 32, DType::kF16, true, 0, 200, false, false, 23});
  {
    Spec s{2, 2, 1, 4, 100, 16, DType::kF32, true, 0, 100, false, false, 24};
    s.nan_q = true;
    add(out, s);
    s.nan_q = false;
    s.inf_k = true;  // +inf in k: the last batch row's masses are NaN on both backends
    add(out, s);
    s.dt = DType::kBF16;
    add(out, s);
    s = {1, 2, 1, 4, 100, 16, DType::kF32, false, 0, 100, false, false, 25};
    s.q_scale = 1e-30f;  // q.k products are subnormal: near-uniform attention
    add(out, s);
  }
  add(out, {5, 4, 2, 7, 513, 64, DType::kF16, true, 1, 512, true, true, 26});
  out.push_back({"launch limits", [] {  // planning only: sizes no test could allocate
    int f = 0;
    vlmkern::cuda::AttentionMassProblem pb{};
    pb.dtype = DType::kBF16, pb.B = 65536, pb.Hq = 28, pb.Hkv = 4, pb.Lq = 1, pb.Lk = 8192, pb.D = 128;
    pb.key_end = pb.Lk, pb.scale = 1.f;
    if (!vlmkern::cuda::attention_mass_plan_error(pb)) std::printf("FAIL launch limits: B=65536 accepted\n"), ++f;
    pb.B = 1, pb.Lk = int64_t(1) << 40, pb.key_end = pb.Lk;  // 2^34 key tiles
    if (!vlmkern::cuda::attention_mass_plan_error(pb)) std::printf("FAIL launch limits: 2^40 keys accepted\n"), ++f;
    pb.Lk = 131072, pb.key_end = pb.Lk;  // a long video is fine
    if (const char* e = vlmkern::cuda::attention_mass_plan_error(pb)) std::printf("FAIL launch limits: %s\n", e), ++f;
    const int64_t ws = vlmkern::cuda::attention_mass_workspace_floats(pb);
    if (ws <= 0 || ws > (int64_t(1) << 24)) std::printf("FAIL launch limits: workspace %lld\n", (long long)ws), ++f;
    return f;
  }});
}

}  // namespace harness
