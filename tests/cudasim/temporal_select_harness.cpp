// temporal_select: the CUDA kernels (csrc/cuda/temporal_select_kernels.cuh,
// run by the emulator through temporal_select_plan_error / _launch) against
// the plain C++ CPU kernel (csrc/cpu/temporal_select_kernel.cpp, scalar path).
// Per case and schedule:
//   - scores: the CUDA scratch scores against the CPU's: NaN and +inf at the
//     same places, |cuda - cpu| <= 1e-5 elsewhere (the cosines of the two
//     backends differ in their last bits, as frame_similarity's; MAXERR);
//   - selection: the CPU's select and place phases run on CUDA's own scores
//     must give CUDA's indices bit for bit (the same math/topk.h ranking);
//   - triples and rows: the CPU's gather phase on CUDA's indices must give
//     CUDA's (t, h, w) and feature bits exactly;
//   - end to end: CUDA's indices equal the CPU's (true here: the random cases
//     have no near-ties, and exact ties — copied and power-of-two-scaled
//     frames — give exactly -1 on both backends).
// Cases: random inputs of odd sizes in the three dtypes, both modes, budgets
// from 0 to everything, previous-frame, DyCoke and single-anchor references,
// strided layouts with NaN in the gaps, exact ties, NaN / Inf rows, no
// compaction, empty outputs (no launch) and the launch limits.
#include <algorithm>

#include "cpu/temporal_select_kernel.h"
#include "cuda/temporal_select_kernels.cuh"
#include "harness.h"

namespace harness {
namespace {

using vlmkern::DType;
constexpr double kAtol = 1e-5;
double g_max_abs = 0;

const DType kDTypes[] = {DType::kF32, DType::kBF16, DType::kF16};
const char* dname(DType d) { return d == DType::kF32 ? "f32" : d == DType::kBF16 ? "bf16" : "f16"; }

enum class Layout { kContiguous, kGapped, kTokenMajor };

struct Frames {
  DType dt;
  int64_t B, T, N, D;
  int64_t sb = 0, st = 0, sn = 0;
  std::vector<uint32_t> f32;
  std::vector<uint16_t> h;
  const void* data() const { return dt == DType::kF32 ? static_cast<const void*>(f32.data()) : h.data(); }
  int64_t es() const { return dt == DType::kF32 ? 4 : 2; }
};

Frames make_frames(DType dt, const std::vector<float>& v, int64_t B, int64_t T, int64_t N, int64_t D,
                   Layout layout) {
  Frames x{dt, B, T, N, D};
  switch (layout) {
    case Layout::kContiguous: x.sn = D, x.st = N * D, x.sb = T * N * D; break;
    case Layout::kGapped: x.sn = D + 3, x.st = N * (D + 3) + 5, x.sb = T * x.st + 11; break;
    case Layout::kTokenMajor: x.st = D, x.sn = T * D, x.sb = N * T * D; break;
  }
  const int64_t elems = std::max<int64_t>(B * x.sb, 1) + 16;
  if (dt == DType::kF32) x.f32.assign(size_t(elems), 0x7fc00000u);
  else x.h.assign(size_t(elems), dt == DType::kBF16 ? uint16_t(0x7fc0u) : uint16_t(0x7e00u));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t d = 0; d < D; ++d) {
          const float f = v[size_t(((b * T + t) * N + n) * D + d)];
          const size_t at = size_t(b * x.sb + t * x.st + n * x.sn + d);
          if (dt == DType::kF32) x.f32[at] = bits(f);
          else x.h[at] = dt == DType::kBF16 ? to_bf16(f) : to_fp16(f);
        }
  return x;
}

std::vector<float> randn(Rng& g, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = g.normal();
  return v;
}

std::vector<int64_t> previous_frame(int64_t T) {
  std::vector<int64_t> r(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) r[size_t(t)] = t - 1;
  return r;
}

std::vector<int64_t> dycoke(int64_t T) {
  std::vector<int64_t> r(size_t(T), -1);
  for (int64_t t = 1; t < T; t += 2) r[size_t(t)] = t - 1;
  for (int64_t i = 0; i + 4 < T; i += 4) r[size_t(i + 2)] = i;
  return r;
}

// Everything one run produces, in buffers of the right sizes.
struct Out {
  std::vector<float> scores;
  std::vector<int64_t> row_keep, sel, idx, thw;
  std::vector<uint8_t> feat;
};

Out make_out(const Frames& x, bool global, int64_t K) {
  Out o;
  o.scores.assign(size_t(std::max<int64_t>(x.B * x.T * x.N, 1)), 12345.f);
  o.row_keep.assign(size_t(std::max<int64_t>(global ? x.B : x.B * x.T, 1)), -7);
  o.sel.assign(size_t(std::max<int64_t>(x.B * x.T * x.N, 1)), -7);
  o.idx.assign(size_t(std::max<int64_t>(x.B * K, 1)), -7);
  o.thw.assign(size_t(std::max<int64_t>(3 * x.B * K, 1)), -7);
  o.feat.assign(size_t(std::max<int64_t>(x.B * K * x.D * x.es(), 1)), 0xa5);
  return o;
}

vlmkern::cpu::TemporalSelectArgs cpu_args(const Frames& x, const std::vector<int64_t>& ref, bool global,
                                          int64_t keep, int64_t W, int64_t K, float eps, bool features,
                                          Out& o) {
  return {x.dt, x.data(), x.B, x.T, x.N, x.D, x.sb, x.st, x.sn, ref.data(), global, keep, W, K, eps,
          o.scores.data(), o.row_keep.data(), global ? nullptr : o.sel.data(), o.idx.data(), o.thw.data(),
          features ? o.feat.data() : nullptr};
}

// The CPU phases after `scores` (already in o.scores).
void cpu_after_scores(const vlmkern::cpu::TemporalSelectArgs& a) {
  vlmkern::cpu::temporal_select_select_run(a, 0, vlmkern::cpu::temporal_select_rows(a));
  if (!a.global) vlmkern::cpu::temporal_select_place_run(a, 0, a.B * a.T);
  vlmkern::cpu::temporal_select_gather_run(a, 0, a.B * a.K);
}

int check(const std::string& name, const Frames& x, const std::vector<int64_t>& ref, bool global, int64_t keep,
          int64_t W, float eps = 1e-8f, bool features = true, Ftz ftz = Ftz::kBoth) {
  const int64_t K = vlmkern::cpu::temporal_select_count(global, ref.data(), x.T, x.N, keep);
  Out want = make_out(x, global, K);
  const auto wa = cpu_args(x, ref, global, keep, W, K, eps, features, want);
  if (x.B > 0 && K > 0) {
    vlmkern::cpu::temporal_select_scores_run(wa, vlmkern::CpuIsa::kScalar, 0,
                                             vlmkern::cpu::temporal_select_score_tasks(wa));
    cpu_after_scores(wa);
  }
  return each_schedule(name, ftz, [&]() -> std::string {
    Out got = make_out(x, global, K);
    const vlmkern::cuda::TemporalSelectArgs a{
        x.dt, x.data(), x.B, x.T, x.N, x.D, x.sb, x.st, x.sn, ref.data(), global, keep, W, K, eps,
        got.scores.data(), got.row_keep.data(), global ? nullptr : got.sel.data(), got.idx.data(),
        got.thw.data(), features ? got.feat.data() : nullptr};
    if (const char* why = vlmkern::cuda::temporal_select_plan_error(a)) return fmt("plan error: %s", why);
    const cudaError_t e = vlmkern::cuda::temporal_select_launch(a, nullptr);
    if (e != cudaSuccess) return fmt("launch: %s", cudaGetErrorString(e));
    if (x.B == 0 || K == 0) return "";
    for (int64_t i = 0; i < x.B * x.T * x.N; ++i) {
      const float g = got.scores[size_t(i)], w = want.scores[size_t(i)];
      if (std::isnan(g) != std::isnan(w) || (std::isinf(w) && g != w))
        return fmt("score %lld: CUDA %g, CPU %g", (long long)i, g, w);
      if (std::isnan(w) || std::isinf(w)) continue;
      const double d = std::fabs(double(g) - double(w));
      g_max_abs = std::max(g_max_abs, d);
      if (d > kAtol) return fmt("score %lld: CUDA %.9g, CPU %.9g, |diff| %.3g", (long long)i, g, w, d);
    }
    // The CPU's selection, placement and gather on CUDA's scores.
    Out mirror = make_out(x, global, K);
    mirror.scores = got.scores;
    cpu_after_scores(cpu_args(x, ref, global, keep, W, K, eps, features, mirror));
    for (int64_t i = 0; i < x.B * K; ++i)
      if (got.idx[size_t(i)] != mirror.idx[size_t(i)])
        return fmt("video %lld slot %lld: CUDA %lld, CPU on CUDA's scores %lld", (long long)(i / K),
                   (long long)(i % K), (long long)got.idx[size_t(i)], (long long)mirror.idx[size_t(i)]);
    for (int64_t i = 0; i < 3 * x.B * K; ++i)
      if (got.thw[size_t(i)] != mirror.thw[size_t(i)])
        return fmt("thw %lld: CUDA %lld, CPU %lld", (long long)i, (long long)got.thw[size_t(i)],
                   (long long)mirror.thw[size_t(i)]);
    if (features && got.feat != mirror.feat) return "kept rows differ from the CPU's gather";
    if (!features && got.feat != make_out(x, global, K).feat) return "features=false wrote rows";
    for (int64_t i = 0; i < x.B * K; ++i)
      if (got.idx[size_t(i)] != want.idx[size_t(i)])
        return fmt("video %lld slot %lld: CUDA %lld, CPU %lld", (long long)(i / K), (long long)(i % K),
                   (long long)got.idx[size_t(i)], (long long)want.idx[size_t(i)]);
    return "";
  });
}

void add(Cases& out, std::string name, std::function<int()> fn, Size size = Size::kQuick) {
  out.push_back({std::move(name), std::move(fn), size});
}

struct Shape {
  int64_t B, T, N, D, H, W;
};

}  // namespace

double temporal_select_max_abs_error() { return g_max_abs; }

void add_temporal_select_cases(Cases& out) {
  const Shape shapes[] = {{1, 1, 7, 5, 1, 7}, {2, 2, 6, 33, 2, 3}, {3, 5, 15, 77, 3, 5}, {2, 9, 12, 40, 4, 3},
                          {1, 4, 196, 130, 14, 14}};
  for (DType dt : kDTypes)
    for (const Shape& s : shapes) {
      const std::string base = fmt("random %s B%lld T%lld N%lld D%lld", dname(dt), (long long)s.B,
                                   (long long)s.T, (long long)s.N, (long long)s.D);
      add(out, base, [dt, s, base] {
        Rng g(uint64_t(s.N * 131 + s.D * 7 + s.T));
        const Frames x = make_frames(dt, randn(g, s.B * s.T * s.N * s.D), s.B, s.T, s.N, s.D, Layout::kContiguous);
        int f = 0;
        const int64_t TN = s.T * s.N;
        for (int64_t keep : {int64_t(0), int64_t(1), s.N, s.N + 1, TN / 3, TN - 1, TN})
          if (keep >= 0 && keep <= TN)
            f += check(fmt("%s global keep=%lld", base.c_str(), (long long)keep), x, previous_frame(s.T), true,
                       keep, s.W);
        std::vector<int64_t> one(size_t(s.T), 0);
        one[0] = -1;
        for (const auto& ref : {previous_frame(s.T), dycoke(s.T), one})
          for (int64_t keep : {int64_t(0), int64_t(1), s.N / 3, s.N})
            f += check(fmt("%s per_frame keep=%lld", base.c_str(), (long long)keep), x, ref, false, keep, s.W);
        f += check(fmt("%s global dycoke refs", base.c_str()), x, dycoke(s.T), true, TN / 2, s.W);
        return f;
      });
    }
  add(out, "random bf16 B1 T16 N196 D3584", [] {
    Rng g(21);
    const Frames x = make_frames(DType::kBF16, randn(g, 16 * 196 * 3584), 1, 16, 196, 3584, Layout::kContiguous);
    return check("qwen size global", x, previous_frame(16), true, 784, 14) +
           check("qwen size per_frame", x, dycoke(16), false, 59, 14);
  }, Size::kFull);

  // Strided layouts (NaN in the gaps: a kernel reading them would rank them).
  for (DType dt : kDTypes)
    for (Layout l : {Layout::kGapped, Layout::kTokenMajor}) {
      const std::string name = fmt("strided %s %s", dname(dt), l == Layout::kGapped ? "gapped" : "token-major");
      add(out, name, [dt, l, name] {
        Rng g(5);
        const Frames x = make_frames(dt, randn(g, 2 * 6 * 10 * 37), 2, 6, 10, 37, l);
        return check(name + " global", x, previous_frame(6), true, 23, 5) +
               check(name + " per_frame", x, dycoke(6), false, 4, 5) +
               check(name + " no features", x, dycoke(6), false, 4, 5, 1e-8f, false);
      });
    }

  // Exact ties: copies and power-of-two multiples give -1 exactly on both.
  for (DType dt : kDTypes)
    add(out, fmt("copies %s", dname(dt)), [dt] {
      Rng g(6);
      const int64_t B = 2, T = 5, N = 10, D = 37;
      std::vector<float> v = randn(g, B * T * N * D);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < N * D; ++i) {
          const size_t f0 = size_t(b * T * N * D + i);
          v[f0 + size_t(N * D)] = v[f0];
          v[f0 + size_t(2 * N * D)] = 2.f * v[f0];
          v[f0 + size_t(4 * N * D)] = v[f0 + size_t(3 * N * D)];
        }
      const Frames x = make_frames(dt, v, B, T, N, D, Layout::kContiguous);
      int f = 0;
      for (int64_t keep : {int64_t(N), N + 3, 2 * N + 7, 4 * N})
        f += check(fmt("copies %s global keep=%lld", dname(dt), (long long)keep), x, previous_frame(T), true, keep, 5);
      for (int64_t keep : {int64_t(1), int64_t(3), N - 1})
        f += check(fmt("copies %s per_frame keep=%lld", dname(dt), (long long)keep), x, {-1, 0, 1, 0, 3}, false,
                   keep, 2);
      return f;
    });

  // NaN / Inf in rows: NaN cosines rank last; frames without a reference are kept.
  for (DType dt : kDTypes)
    add(out, fmt("nan inf %s", dname(dt)), [dt] {
      Rng g(7);
      const int64_t B = 2, T = 4, N = 6, D = 19;
      std::vector<float> v = randn(g, B * T * N * D);
      auto at = [&](int64_t b, int64_t t, int64_t n, int64_t d) { return size_t(((b * T + t) * N + n) * D + d); };
      v[at(0, 0, 0, 3)] = NAN;
      v[at(0, 1, 2, 0)] = INFINITY;
      v[at(1, 2, 4, 5)] = -INFINITY;
      v[at(1, 3, 5, 18)] = NAN;
      const Frames x = make_frames(dt, v, B, T, N, D, Layout::kContiguous);
      int f = 0;
      for (int64_t keep : {int64_t(7), int64_t(T * N - 4), int64_t(T * N)})
        f += check(fmt("nan inf %s global keep=%lld", dname(dt), (long long)keep), x, previous_frame(T), true,
                   keep, 3);
      for (int64_t keep : {int64_t(2), int64_t(N - 1), int64_t(N)})
        f += check(fmt("nan inf %s per_frame keep=%lld", dname(dt), (long long)keep), x, previous_frame(T), false,
                   keep, 3);
      return f;
    });

  add(out, "empty outputs launch nothing", [] {
    const uint64_t before = cudasim::stats().launches;
    int f = 0;
    f += check("B=0", make_frames(DType::kF32, {}, 0, 3, 4, 8, Layout::kContiguous), previous_frame(3), true, 2, 2);
    f += check("keep=0", make_frames(DType::kBF16, std::vector<float>(2 * 3 * 4 * 8, 1.f), 2, 3, 4, 8,
                                      Layout::kContiguous), previous_frame(3), true, 0, 2);
    f += check("T=0", make_frames(DType::kF16, {}, 2, 0, 4, 8, Layout::kContiguous), {}, false, 3, 2);
    if (cudasim::stats().launches != before) {
      std::printf("FAIL empty outputs: a kernel was launched\n");
      ++f;
    }
    return f;
  });

  add(out, "launch limits", [] {
    int f = 0;
    vlmkern::cuda::TemporalSelectArgs a{};
    a.dtype = DType::kBF16, a.B = 1, a.T = 1, a.N = 1, a.D = 64, a.K = 1;
    const int64_t max_rows = ((int64_t(1) << 31) - 1) * vlmkern::cuda::kTemporalWarps;
    a.N = max_rows;
    if (const char* e = vlmkern::cuda::temporal_select_plan_error(a))
      std::printf("FAIL launch limits: (2^31 - 1) * 8 tokens refused: %s\n", e), ++f;
    a.N = max_rows + 1;
    if (!vlmkern::cuda::temporal_select_plan_error(a)) std::printf("FAIL launch limits: too many tokens accepted\n"), ++f;
    a.N = 196, a.B = 1, a.K = max_rows + 1;
    if (!vlmkern::cuda::temporal_select_plan_error(a)) std::printf("FAIL launch limits: too many kept accepted\n"), ++f;
    a.B = 4, a.T = 1024, a.N = 4096, a.K = 1024 * 4096;
    if (const char* e = vlmkern::cuda::temporal_select_plan_error(a)) std::printf("FAIL launch limits: %s\n", e), ++f;
    return f;
  });
}

}  // namespace harness
