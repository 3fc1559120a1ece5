// topk_indices: the CUDA kernel (csrc/cuda/topk_indices_kernels.cuh, run by the
// emulator through its launch planning) against the CPU kernel
// (csrc/cpu/topk_indices_kernel.cpp). Selection is integer arithmetic on the
// raw float bits, so the indices must be equal, with and without flush-to-zero.
// Cases: those of tests/test_cuda_parity.py, then strided and column-major
// scores, subnormals, heavy ties, NaN/Inf, per-row budgets, and rows long
// enough that every radix pass runs.
#include "cpu/topk_indices_kernel.h"
#include "cuda/topk_indices_kernels.cuh"
#include "harness.h"

namespace harness {
namespace {

using vlmkern::DType;

const DType kDTypes[] = {DType::kF32, DType::kBF16, DType::kF16};
const char* dname(DType d) { return d == DType::kF32 ? "f32" : d == DType::kBF16 ? "bf16" : "f16"; }

// Scores [B, N] from logical values v (row-major), stored with strides.
struct Scores {
  DType dt;
  int64_t B, N, sb, sn;
  std::vector<uint32_t> f32;
  std::vector<uint16_t> h;
  const void* data() const { return dt == DType::kF32 ? static_cast<const void*>(f32.data()) : h.data(); }
};

enum class Layout { kContiguous, kEveryOther, kColumnMajor };

Scores make_scores(DType dt, const std::vector<float>& v, int64_t B, int64_t N, Layout layout) {
  Scores s{dt, B, N, N, 1, {}, {}};
  int64_t elems = B * N;
  if (layout == Layout::kEveryOther) s.sb = 2 * N, s.sn = 2, elems = 2 * B * N;
  if (layout == Layout::kColumnMajor) s.sb = 1, s.sn = B;
  // Gaps between strided elements hold NaN: a kernel reading them would rank them.
  if (dt == DType::kF32) s.f32.assign(size_t(elems), 0x7fc00000u);
  else s.h.assign(size_t(elems), 0x7e00u);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < N; ++i) {
      const size_t at = size_t(b * s.sb + i * s.sn);
      const float x = v[size_t(b * N + i)];
      if (dt == DType::kF32) s.f32[at] = bits(x);
      else s.h[at] = dt == DType::kBF16 ? to_bf16(x) : to_fp16(x);
    }
  return s;
}

int check(const std::string& name, const Scores& s, const std::vector<int64_t>& keep, int64_t k_max) {
  std::vector<int64_t> want(static_cast<size_t>(s.B * k_max));
  vlmkern::cpu::topk_indices_rows(s.dt, s.data(), s.sb, s.sn, s.N, keep.data(), k_max, want.data(), 0,
                                  s.B);
  return each_schedule(name, Ftz::kBoth, [&]() -> std::string {
    std::vector<int64_t> got(size_t(s.B * k_max), int64_t(0x5a5a5a5a5a5a5a5a));
    const vlmkern::cuda::TopkArgs a{s.dt, s.data(), s.sb, s.sn, s.B, s.N, keep.data(), k_max, got.data()};
    if (const char* why = vlmkern::cuda::topk_indices_plan_error(a)) return fmt("plan error: %s", why);
    const cudaError_t e = vlmkern::cuda::topk_indices_launch(a, nullptr);
    if (e != cudaSuccess) return fmt("launch: %s", cudaGetErrorString(e));
    for (size_t i = 0; i < got.size(); ++i)
      if (got[i] != want[i])
        return fmt("row %lld slot %lld: CUDA %lld, CPU %lld", (long long)(i / size_t(k_max)),
                   (long long)(i % size_t(k_max)), (long long)got[i], (long long)want[i]);
    return "";
  });
}

std::vector<float> randn(Rng& g, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = g.normal();
  return v;
}

void add(Cases& out, std::string name, std::function<int()> fn, Size size = Size::kQuick) {
  out.push_back({std::move(name), std::move(fn), size});
}

}  // namespace

void add_topk_indices_cases(Cases& out) {
  // Random rows, the parity test's lengths and budgets.
  for (DType dt : kDTypes)
    for (int64_t N : {1, 7, 577, 4109, 70000})
      add(out, fmt("random %s N=%lld", dname(dt), (long long)N), [dt, N] {
        Rng g(static_cast<uint64_t>(N));
        const int64_t B = 4;
        const Scores s = make_scores(dt, randn(g, B * N), B, N, Layout::kContiguous);
        int f = check(fmt("random %s N=%lld k_max=N", dname(dt), (long long)N), s, {0, 1, N / 3, N}, N);
        const int64_t k_max = std::max<int64_t>(1, N / 2);
        std::vector<int64_t> keep = {0, 1, N / 3, N / 2};
        for (int64_t& k : keep) k = std::min(k, k_max);
        return f + check(fmt("random %s N=%lld k_max=N/2", dname(dt), (long long)N), s, keep, k_max);
      }, N > 5000 ? Size::kFull : Size::kQuick);

  // Heavy ties, NaN, +-inf, -0.0 == +0.0.
  for (DType dt : kDTypes)
    add(out, fmt("ties nan inf %s", dname(dt)), [dt] {
      Rng g(0);
      const int64_t B = 3, N = 3000;
      std::vector<float> v(static_cast<size_t>(B * N));
      for (float& x : v) x = float(g.below(7) - 3);
      for (int64_t i = 0; i < N; ++i) {
        float* r1 = &v[size_t(N + i)];
        if (i % 7 == 0) *r1 = NAN;
        if (i % 11 == 5) *r1 = INFINITY;
        if (i % 13 == 9) *r1 = -INFINITY;
        v[size_t(2 * N + i)] = i % 2 ? 0.f : -0.f;
        if (i >= 100 && i < 110) v[size_t(2 * N + i)] = NAN;
      }
      const Scores s = make_scores(dt, v, B, N, Layout::kContiguous);
      int f = 0;
      for (int64_t kv : {1, 2, 50, 429, 1500, 2999, 3000}) {
        f += check(fmt("ties %s keep=%lld k_max=keep", dname(dt), (long long)kv), s, {kv, kv, kv}, kv);
        f += check(fmt("ties %s keep=%lld k_max=N", dname(dt), (long long)kv), s, {kv, kv, kv}, N);
      }
      return f;
    });

  add(out, "all nan and constant rows", [] {
    const int64_t N = 1000;
    std::vector<float> v(static_cast<size_t>(2 * N));
    for (int64_t i = 0; i < N; ++i) v[size_t(i)] = NAN, v[size_t(N + i)] = 1.5f;
    const Scores s = make_scores(DType::kF32, v, 2, N, Layout::kContiguous);
    int f = 0;
    for (int64_t kv : {0, 1, 333, 999, 1000})
      f += check(fmt("nan/constant keep=%lld", (long long)kv), s, {kv, kv}, std::max<int64_t>(kv, 1));
    return f;
  });

  // Subnormal scores rank by their bits on both backends, also under FTZ;
  // strided and column-major rows.
  for (DType dt : {DType::kF32, DType::kBF16})
    add(out, fmt("subnormal strided %s", dname(dt)), [dt] {
      Rng g(1);
      const int64_t B = 5, N = 1234;
      std::vector<float> v = randn(g, B * N);
      for (size_t i = 0; i < v.size(); i += 3) v[i] *= 1e-42f;
      int f = check(fmt("subnormal every-other %s", dname(dt)), make_scores(dt, v, B, N, Layout::kEveryOther),
                    {0, 10, 300, 617, 1234}, 1234);
      f += check(fmt("subnormal column-major %s", dname(dt)), make_scores(dt, v, B, N, Layout::kColumnMajor),
                 {7, 7, 7, 7, 7}, 7);
      return f;
    });

  add(out, "per-row keep, 300 rows f16", [] {
    Rng g(2);
    const int64_t B = 300, N = 513, k_max = 200;
    const Scores s = make_scores(DType::kF16, randn(g, B * N), B, N, Layout::kContiguous);
    std::vector<int64_t> keep(static_cast<size_t>(B));
    for (int64_t& k : keep) k = g.below(k_max + 1);
    return check("per-row keep", s, keep, k_max);
  });

  add(out, "empty outputs launch nothing", [] {
    const Scores s = make_scores(DType::kF32, {1.f, 2.f}, 2, 1, Layout::kContiguous);
    const std::vector<int64_t> keep = {0, 0};
    const uint64_t before = cudasim::stats().launches;
    int f = check("k_max=0", s, keep, 0);
    const Scores none = make_scores(DType::kF32, {}, 0, 5, Layout::kContiguous);
    f += check("B=0", none, {}, 3);
    if (cudasim::stats().launches != before) {
      std::printf("FAIL empty outputs: a kernel was launched\n");
      ++f;
    }
    return f;
  });

  add(out, "launch limit", [] {
    vlmkern::cuda::TopkArgs a{DType::kF32, nullptr, 1, 1, int64_t(1) << 31, 1, nullptr, 1, nullptr};
    if (vlmkern::cuda::topk_indices_plan_error(a) == nullptr) {
      std::printf("FAIL launch limit: 2^31 rows accepted\n");
      return 1;
    }
    return 0;
  });

  // Keys that agree on long prefixes: equal scores (only the index bits
  // differ, so all eight radix passes run), and near-equal values.
  for (DType dt : kDTypes)
    add(out, fmt("long prefixes %s", dname(dt)), [dt] {
      Rng g(3);
      const int64_t B = 3, N = 5000;
      std::vector<float> v(size_t(B * N), 0.25f);
      for (int64_t i = 0; i < N; ++i) v[size_t(N + i)] = 1.f + float(g.below(4)) * 0x1p-20f;
      for (int64_t i = 0; i < N; ++i) v[size_t(2 * N + i)] = i % 1000 == 999 ? 2.f : 0.25f;
      const Scores s = make_scores(dt, v, B, N, Layout::kContiguous);
      int f = 0;
      for (int64_t kv : {1, 5, 511, 512, 513, 2500, 4999})
        f += check(fmt("prefixes %s keep=%lld", dname(dt), (long long)kv), s, {kv, kv, kv}, kv);
      return f;
    });

  add(out, "one long row N=2^20+3", [] {
    Rng g(4);
    const int64_t N = (int64_t(1) << 20) + 3;
    std::vector<float> v(static_cast<size_t>(N));
    for (float& x : v) x = float(g.below(100));
    const Scores s = make_scores(DType::kF32, v, 1, N, Layout::kContiguous);
    return check("long row keep=N-1", s, {N - 1}, N) + check("long row keep=12345", s, {12345}, 12345);
  }, Size::kFull);
}

}  // namespace harness
