// frame_similarity: the CUDA kernel (csrc/cuda/frame_similarity_kernels.cuh,
// run by the emulator through frame_similarity_plan_error / _launch) against
// the plain C++ CPU kernel (csrc/cpu/frame_similarity_kernel.cpp, scalar path).
// Both accumulate <x, r>, |x|^2 and |r|^2 in fp32 with fmaf, in different
// orders (the CPU: 8 interleaved partial sums; CUDA: 32 lanes and an xor
// butterfly), and finish with the same math/cosine.h, so:
//   - |cuda - cpu| <= 1e-5 per output (cosines lie in [-1, 1]; the largest
//     deviation over these cases is printed as MAXERR);
//   - NaN exactly where the CPU has NaN (ref[t] == -1, NaN or Inf in a row,
//     overflowing sums);
//   - exactly 1.0f on both where a row is a bit-for-bit copy of its reference
//     row (x == r makes the three sums equal on each backend), and exactly 0
//     where either row is all zeros (the eps floor);
//   - the same bits under every schedule (one warp per output: nothing may
//     depend on the order the threads run in).
// Cases: those of tests/test_cuda_parity.py, then strided, transposed and
// broadcast (stride 0) layouts with NaN in the gaps, anchors (ref[t] = -1 at
// the anchors, forward references), copies, zero rows, NaN / Inf / overflow,
// tiny and subnormal inputs (without flush-to-zero), D = 0, empty outputs and
// the launch limit. Random normal inputs have no subnormal products, so those
// cases must give the same result with flush-to-zero too.
#include <algorithm>

#include "cpu/frame_similarity_kernel.h"
#include "cuda/frame_similarity_kernels.cuh"
#include "harness.h"

namespace harness {
namespace {

using vlmkern::DType;
constexpr double kAtol = 1e-5;

const DType kDTypes[] = {DType::kF32, DType::kBF16, DType::kF16};
const char* dname(DType d) { return d == DType::kF32 ? "f32" : d == DType::kBF16 ? "bf16" : "f16"; }

enum class Layout {
  kContiguous,  // [B, T, N, D]
  kGapped,      // [B, T, N, D] with gaps after each row, frame and video (filled with NaN)
  kTokenMajor,  // stored [B, N, T, D] (x.transpose(1, 2) of a contiguous tensor)
  kTimeMajor,   // stored [T, N, B, D]
  kFramesBroadcast,  // st = 0: every frame is the same storage (x.expand along T)
  kTokensBroadcast,  // sn = 0: every token of a frame is the same row
};
const char* lname(Layout l) {
  switch (l) {
    case Layout::kContiguous: return "";
    case Layout::kGapped: return " gapped";
    case Layout::kTokenMajor: return " token-major";
    case Layout::kTimeMajor: return " time-major";
    case Layout::kFramesBroadcast: return " st=0";
    case Layout::kTokensBroadcast: return " sn=0";
  }
  return "";
}

// x [B, T, N, D] stored with element strides; rows are `D` contiguous elements.
struct Frames {
  DType dt;
  int64_t B, T, N, D;
  int64_t sb = 0, st = 0, sn = 0;
  std::vector<uint32_t> f32;
  std::vector<uint16_t> h;
  const void* data() const { return dt == DType::kF32 ? static_cast<const void*>(f32.data()) : h.data(); }
  int64_t at(int64_t b, int64_t t, int64_t n) const { return b * sb + t * st + n * sn; }
  float get(int64_t off) const { return vlmkern::load_as_float(dt, data(), off); }
  void set(int64_t off, float v) {
    if (dt == DType::kF32) f32[size_t(off)] = bits(v);
    else h[size_t(off)] = dt == DType::kBF16 ? to_bf16(v) : to_fp16(v);
  }
  // Raw bits of element `off` (for bit-for-bit row comparisons).
  uint32_t raw(int64_t off) const { return dt == DType::kF32 ? f32[size_t(off)] : h[size_t(off)]; }
};

// Logical values v [B, T, N, D] (row-major) stored in `layout`; the gaps hold NaN.
Frames make_frames(DType dt, const std::vector<float>& v, int64_t B, int64_t T, int64_t N, int64_t D,
                   Layout layout) {
  Frames x{dt, B, T, N, D};
  switch (layout) {
    case Layout::kContiguous: x.sn = D, x.st = N * D, x.sb = T * N * D; break;
    case Layout::kGapped: x.sn = D + 3, x.st = N * (D + 3) + 5, x.sb = T * x.st + 11; break;
    case Layout::kTokenMajor: x.st = D, x.sn = T * D, x.sb = N * T * D; break;
    case Layout::kTimeMajor: x.sb = D, x.sn = B * D, x.st = N * B * D; break;
    case Layout::kFramesBroadcast: x.st = 0, x.sn = D, x.sb = N * D; break;
    case Layout::kTokensBroadcast: x.sn = 0, x.st = D, x.sb = T * D; break;
  }
  int64_t elems = 0;  // one past the last element any row reaches
  if (B > 0 && T > 0 && N > 0) elems = x.at(B - 1, T - 1, N - 1) + D;
  for (int64_t b = 0; b < B; ++b)  // strides may be 0 or out of order: take the largest row start
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < N; ++n) elems = std::max(elems, x.at(b, t, n) + D);
  if (layout == Layout::kGapped) elems += 7;
  if (dt == DType::kF32) x.f32.assign(size_t(elems), 0x7fc00000u);
  else x.h.assign(size_t(elems), dt == DType::kBF16 ? uint16_t(0x7fc0u) : uint16_t(0x7e00u));
  for (int64_t b = 0; b < B; ++b)  // broadcast layouts: the last write of a shared row wins
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t d = 0; d < D; ++d) x.set(x.at(b, t, n) + d, v[size_t(((b * T + t) * N + n) * D + d)]);
  return x;
}

std::vector<int64_t> previous_frame(int64_t T) {
  std::vector<int64_t> r(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) r[size_t(t)] = t - 1;
  return r;
}

std::vector<float> randn(Rng& g, int64_t n, float scale = 1.f) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = g.normal() * scale;
  return v;
}

double g_max_abs = 0;  // largest |cuda - cpu| over the non-NaN outputs so far

// Expected-exact outputs of a row pair: 1 where the rows are the same bits (and
// their norm is safely between eps and overflow), 0 where one row is all zeros.
enum class Exact { kNone, kOne, kZero };

Exact exact_of(const Frames& x, int64_t b, int64_t t, int64_t r, int64_t n, float eps) {
  const int64_t px = x.at(b, t, n), pr = x.at(b, r, n);
  bool same = true, x_zero = true, r_zero = true, finite = true;
  double xx = 0, rr = 0;
  for (int64_t d = 0; d < x.D; ++d) {
    const float a = x.get(px + d), c = x.get(pr + d);
    same = same && x.raw(px + d) == x.raw(pr + d);
    x_zero = x_zero && a == 0.f;
    r_zero = r_zero && c == 0.f;
    finite = finite && std::isfinite(a) && std::isfinite(c);
    xx += double(a) * a, rr += double(c) * c;
  }
  if (!finite) return Exact::kNone;
  if (x_zero || r_zero) return Exact::kZero;
  // Margins: fp32 sums of squares within a factor 2 of the double ones; no
  // subnormal squares (which flush-to-zero would drop).
  if (same && xx > 4.0 * eps && xx > 1e-30 && xx < 1e37) return Exact::kOne;
  return Exact::kNone;
}

struct Outcome {
  int64_t ones = 0, zeros = 0, nans = 0;  // exact checks made, NaN outputs
};

// Runs the CPU kernel once and the CUDA kernel under every schedule (and FTZ
// mode for Ftz::kBoth); returns the number of failures.
int check(const std::string& name, const Frames& x, const std::vector<int64_t>& ref, float eps, Ftz ftz,
          Outcome* seen = nullptr) {
  const int64_t rows = x.B * x.T * x.N;
  std::vector<float> want(size_t(rows), 0.f);
  vlmkern::cpu::FrameSimilarityArgs ca{x.dt, x.data(), x.B, x.T, x.N, x.D, x.sb, x.st, x.sn,
                                       ref.data(), eps, want.data()};
  vlmkern::cpu::frame_similarity_tasks_run(ca, vlmkern::CpuIsa::kScalar, 0,
                                           vlmkern::cpu::frame_similarity_tasks(ca));
  std::vector<Exact> exact(size_t(rows), Exact::kNone);
  Outcome o;
  int failures = 0;
  for (int64_t b = 0; b < x.B; ++b)
    for (int64_t t = 0; t < x.T; ++t)
      for (int64_t n = 0; n < x.N; ++n) {
        const size_t i = size_t((b * x.T + t) * x.N + n);
        if (ref[size_t(t)] < 0) continue;
        exact[i] = exact_of(x, b, t, ref[size_t(t)], n, eps);
        // The CPU's own guarantee, checked once here.
        if ((exact[i] == Exact::kOne && want[i] != 1.f) || (exact[i] == Exact::kZero && want[i] != 0.f)) {
          std::printf("FAIL %s: CPU gives %.9g at (%lld, %lld, %lld), expected exactly %d\n", name.c_str(),
                      want[i], (long long)b, (long long)t, (long long)n, exact[i] == Exact::kOne ? 1 : 0);
          ++failures;
        }
        o.ones += exact[i] == Exact::kOne;
        o.zeros += exact[i] == Exact::kZero;
      }
  for (float w : want) o.nans += std::isnan(w);
  if (seen) *seen = o;

  std::vector<float> first;  // the first run's output
  failures += each_schedule(name, ftz, [&]() -> std::string {
    // 42 is no cosine: every output must be written.
    std::vector<float> got(size_t(rows), 42.f);
    const vlmkern::cuda::FrameSimilarityArgs a{x.dt, x.data(), x.B, x.T, x.N, x.D, x.sb, x.st, x.sn,
                                               ref.data(), eps, got.data()};
    if (const char* why = vlmkern::cuda::frame_similarity_plan_error(a)) return fmt("plan error: %s", why);
    const cudaError_t e = vlmkern::cuda::frame_similarity_launch(a, nullptr);
    if (e != cudaSuccess) return fmt("launch: %s", cudaGetErrorString(e));
    for (size_t i = 0; i < got.size(); ++i) {
      const int64_t n = int64_t(i) % x.N, t = (int64_t(i) / x.N) % x.T, b = int64_t(i) / (x.N * x.T);
      const float c = want[i], d = got[i];
      const std::string where = fmt("(b %lld, t %lld, n %lld, ref %lld)", (long long)b, (long long)t,
                                    (long long)n, (long long)ref[size_t(t)]);
      if (std::isnan(c) || std::isnan(d)) {
        if (std::isnan(c) != std::isnan(d)) return fmt("%s: CUDA %.9g, CPU %.9g", where.c_str(), d, c);
        continue;
      }
      if (exact[i] == Exact::kOne && d != 1.f)
        return fmt("%s: an exact copy of its reference row gives %.9g (0x%08x), not exactly 1", where.c_str(),
                   d, bits(d));
      if (exact[i] == Exact::kZero && d != 0.f)
        return fmt("%s: a zero row gives %.9g, not exactly 0", where.c_str(), d);
      const double err = std::fabs(double(d) - double(c));
      g_max_abs = std::max(g_max_abs, err);
      if (!(err <= kAtol))
        return fmt("%s: CUDA %.9g, CPU %.9g (|diff| %.3g > %.3g)", where.c_str(), d, c, err, kAtol);
    }
    // One warp per output, a fixed butterfly: the bits must not depend on the
    // schedule, nor (Ftz::kBoth: inputs without subnormal products) on FTZ.
    if (first.empty()) first = got;
    else if (std::memcmp(first.data(), got.data(), got.size() * sizeof(float)) != 0)
      return "the output differs from the first schedule's (or the one without flush-to-zero)";
    return "";
  });
  return failures;
}

struct Spec {
  DType dt;
  int64_t B, T, N, D;
  Layout layout = Layout::kContiguous;
  std::vector<int64_t> ref = {};  // empty: previous frame
  uint64_t seed = 0;
};

std::string name_of(const Spec& s, const char* what = "") {
  std::string r = fmt("%s%s B%lld T%lld N%lld D%lld%s", what, dname(s.dt), (long long)s.B, (long long)s.T,
                      (long long)s.N, (long long)s.D, lname(s.layout));
  if (!s.ref.empty()) {
    r += " ref[";
    for (size_t i = 0; i < s.ref.size(); ++i) r += fmt(i ? ",%lld" : "%lld", (long long)s.ref[i]);
    r += "]";
  }
  return r;
}

void add(Cases& out, std::string name, std::function<int()> fn, Size size = Size::kQuick) {
  out.push_back({std::move(name), std::move(fn), size});
}

// Random normal rows: no subnormal products, so the result holds with FTZ too.
void add_random(Cases& out, const Spec& s, Size size = Size::kQuick) {
  const std::string name = name_of(s, "random ");
  add(out, name, [s, name] {
    Rng g(s.seed * 1000003 + uint64_t(s.D));
    const Frames x = make_frames(s.dt, randn(g, s.B * s.T * s.N * s.D), s.B, s.T, s.N, s.D, s.layout);
    const std::vector<int64_t> ref = s.ref.empty() ? previous_frame(s.T) : s.ref;
    return check(name, x, ref, 1e-8f, Ftz::kBoth);
  }, size);
}

// Frames that are bit-for-bit copies of their references (whole frames and
// some tokens), next to near-copies (one element scaled by 1.0625) and negated copies.
int run_copies(const std::string& name, DType dt, int64_t B, int64_t D, uint64_t seed) {
  Rng g(seed);
  const int64_t T = 8, N = 11;
  const std::vector<int64_t> ref = {-1, 0, 0, 0, -1, 4, 4, 4};
  std::vector<float> v = randn(g, B * T * N * D);
  auto row = [&](int64_t b, int64_t t, int64_t n) { return v.begin() + ((b * T + t) * N + n) * D; };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < N; ++n) {
      std::copy(row(b, 0, n), row(b, 0, n) + D, row(b, 1, n));  // frame 1: a copy of its anchor
      if (n % 2 == 0) std::copy(row(b, 0, n), row(b, 0, n) + D, row(b, 2, n));  // half the tokens
      std::copy(row(b, 4, n), row(b, 4, n) + D, row(b, 5, n));
      std::copy(row(b, 4, n), row(b, 4, n) + D, row(b, 6, n));
      row(b, 6, n)[n % D] *= 1.0625f;  // a near-copy: within tolerance, not required to be 1
      for (int64_t d = 0; d < D; ++d) row(b, 7, n)[d] = -row(b, 4, n)[d];  // exactly -1 in exact math
    }
  Outcome o;
  int f = check(name, make_frames(dt, v, B, T, N, D, Layout::kContiguous), ref, 1e-8f, Ftz::kBoth, &o);
  if (o.ones != B * N * 2 + B * ((N + 1) / 2)) {  // frames 1 and 5, half of frame 2
    std::printf("FAIL %s: %lld exact-copy outputs checked, expected %lld\n", name.c_str(), (long long)o.ones,
                (long long)(B * N * 2 + B * ((N + 1) / 2)));
    ++f;
  }
  // A whole video whose frames are all the same storage: every output exactly 1.
  const Frames same = make_frames(dt, v, B, T, N, D, Layout::kFramesBroadcast);
  f += check(name + " st=0", same, previous_frame(T), 1e-8f, Ftz::kBoth, &o);
  if (o.ones != B * (T - 1) * N) {
    std::printf("FAIL %s st=0: %lld exact-copy outputs checked\n", name.c_str(), (long long)o.ones);
    ++f;
  }
  return f;
}

}  // namespace

double frame_similarity_max_abs_error() { return g_max_abs; }

void add_frame_similarity_cases(Cases& out) {
  // The parity test's cases (tests/test_cuda_parity.py): previous-frame
  // reference, odd sizes, rows that do not fill the last block.
  for (DType dt : kDTypes) {
    add_random(out, {dt, 1, 1, 1, 1});
    add_random(out, {dt, 1, 2, 1, 7});
    add_random(out, {dt, 3, 9, 5, 33});
    add_random(out, {dt, 1, 2, 196, 77});
    add_random(out, {dt, 2, 9, 196, 7}, Size::kFull);
    add_random(out, {dt, 1, 9, 196, 77}, Size::kFull);
    add_random(out, {dt, 1, 9, 196, 3584}, Size::kFull);  // a Qwen2-VL-7B hidden size
  }
  add_random(out, {DType::kBF16, 1, 3, 40, 3584});  // D = 3584 among the quick cases too

  // Custom references: anchors (-1 at the anchors), forward references, none at all.
  for (DType dt : kDTypes) {
    add_random(out, {dt, 3, 8, 5, 33, Layout::kContiguous, {-1, 0, 0, 0, -1, 4, 4, 4}});
    add_random(out, {dt, 1, 5, 9, 77, Layout::kContiguous, {4, -1, 1, 0, 1}});
  }
  add_random(out, {DType::kF32, 2, 3, 7, 16, Layout::kContiguous, {-1, -1, -1}});

  // Strided x: gaps (NaN) after every row, frame and video; transposed and
  // broadcast storage.
  for (DType dt : kDTypes)
    for (Layout l : {Layout::kGapped, Layout::kTokenMajor, Layout::kTimeMajor, Layout::kTokensBroadcast}) {
      add_random(out, {dt, 3, 9, 5, 33, l, {}, 7});
      if (l == Layout::kGapped) add_random(out, {dt, 2, 8, 5, 7, l, {-1, 0, 0, 0, -1, 4, 4, 4}, 8});
    }
  add_random(out, {DType::kBF16, 1, 2, 196, 77, Layout::kGapped, {}, 9});

  // Exact copies give exactly 1.0f on both backends.
  for (DType dt : kDTypes)
    for (int64_t D : {1, 7, 33, 77, 3584})
      add(out, fmt("copies %s D%lld", dname(dt), (long long)D),
          [dt, D] { return run_copies(fmt("copies %s D%lld", dname(dt), (long long)D), dt, D > 100 ? 1 : 2, D,
                                      uint64_t(D) + 100); },
          D > 100 ? Size::kFull : Size::kQuick);

  // Rows of zeros: cosine 0 through the eps floor (also both rows zero), and D = 0.
  for (DType dt : kDTypes)
    add(out, fmt("zero rows %s", dname(dt)), [dt] {
      Rng g(11);
      const int64_t B = 2, T = 5, N = 6, D = 33;
      std::vector<float> v = randn(g, B * T * N * D);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t n = 0; n < N; ++n)
          for (int64_t d = 0; d < D; ++d) {
            const auto at = [&](int64_t t) { return size_t(((b * T + t) * N + n) * D + d); };
            v[at(1)] = 0.f;                        // zero against random (frame 1 vs 0, 2 vs 1)
            if (n % 2) v[at(3)] = v[at(4)] = -0.f;  // zero against zero (-0.0)
          }
      Outcome o;
      int f = check(fmt("zero rows %s", dname(dt)), make_frames(dt, v, B, T, N, D, Layout::kContiguous),
                    previous_frame(T), 1e-8f, Ftz::kBoth, &o);
      if (o.zeros != B * N * 2 + B * (N / 2) * 2) {
        std::printf("FAIL zero rows %s: %lld exact zeros checked\n", dname(dt), (long long)o.zeros);
        ++f;
      }
      return f;
    });
  add(out, "D=0", [] {
    Outcome o;
    const Frames x = make_frames(DType::kF16, {}, 2, 3, 9, 0, Layout::kContiguous);
    const int f = check("D=0", x, {-1, 0, 0}, 1e-8f, Ftz::kBoth, &o);
    if (o.zeros != 2 * 2 * 9 || o.nans != 2 * 9) std::printf("FAIL D=0: not 0 and NaN\n");
    return f + (o.zeros != 2 * 2 * 9 || o.nans != 2 * 9);
  });

  // NaN and +-Inf in rows (NaN for the row and for every frame that refers to
  // it), and fp32 sums that overflow (values near sqrt(FLT_MAX)).
  for (DType dt : kDTypes)
    add(out, fmt("nan inf %s", dname(dt)), [dt] {
      Rng g(12);
      const int64_t B = 2, T = 8, N = 5, D = 40;
      std::vector<float> v = randn(g, B * T * N * D);
      auto at = [&](int64_t b, int64_t t, int64_t n, int64_t d) { return size_t(((b * T + t) * N + n) * D + d); };
      v[at(0, 2, 3, 5)] = NAN;  // frame 2 at token 3, and frame 3, which refers to it
      v[at(0, 0, 1, 0)] = NAN;  // the anchor at token 1: frames 1 and 2 refer to it
      v[at(1, 5, 0, 39)] = INFINITY;
      v[at(1, 6, 4, 17)] = -INFINITY;
      v[at(1, 6, 4, 18)] = INFINITY;
      Outcome o;
      int f = check(fmt("nan inf %s", dname(dt)), make_frames(dt, v, B, T, N, D, Layout::kContiguous),
                    {-1, 0, 0, 2, -1, 4, 4, 6}, 1e-8f, Ftz::kBoth, &o);
      // NaN: the 2 frames without reference (B x N each); video 0: frames 1
      // and 2 at n=1, 2 and 3 at n=3; video 1: frame 5 at n=0 (+Inf), 6 and 7
      // at n=4 (+-Inf in frame 6).
      const int64_t expect = 2 * B * N + 2 + 2 + 1 + 2;
      if (o.nans != expect) {
        std::printf("FAIL nan inf %s: %lld NaN outputs, expected %lld\n", dname(dt), (long long)o.nans,
                    (long long)expect);
        ++f;
      }
      return f;
    });
  for (DType dt : {DType::kF32, DType::kBF16})
    add(out, fmt("overflowing sums %s", dname(dt)), [dt] {
      Rng g(13);
      const int64_t B = 1, T = 4, N = 7, D = 33;
      std::vector<float> v = randn(g, B * T * N * D, 3e19f);  // squares near FLT_MAX: sums overflow
      for (int64_t i = 0; i < N * D; ++i) v[size_t(2 * N * D + i)] *= 1e-20f;  // frame 2: small
      return check(fmt("overflowing sums %s", dname(dt)), make_frames(dt, v, B, T, N, D, Layout::kContiguous),
                   previous_frame(T), 1e-8f, Ftz::kBoth);
    });

  // Tiny and subnormal inputs, without flush-to-zero only (the extension keeps
  // IEEE denormals: csrc/cuda/nvcc_flags.txt): with the default eps the
  // cosines are ~1e-30 or 0 (subnormal inputs: products below the smallest
  // subnormal); with a subnormal eps, sums near FLT_MIN with partly subnormal
  // products. Not here: sums that stay subnormal against a subnormal eps
  // (scale 1e-22, eps 1e-44); their products round to the 2^-149 grid with
  // ties (bf16), whose rounding depends on the summation order, and the two
  // backends differ by up to ~1e-4 there (measured 8.8e-5), a property of fp32,
  // not of either kernel.
  const std::pair<float, float> tiny[] = {{1e-22f, 1e-8f}, {1e-19f, 1e-8f}, {1e-19f, 1e-44f},
                                          {1e-40f, 1e-8f}, {1e-40f, 1e-44f}};
  for (DType dt : {DType::kF32, DType::kBF16})
    for (const auto& se : tiny) {
      const float scale = se.first, eps = se.second;
      const std::string name = fmt("tiny %s scale=%.0e eps=%.0e", dname(dt), scale, eps);
      add(out, name, [dt, scale, eps, name] {
        Rng g(14);
        const int64_t B = 2, T = 4, N = 6, D = 77;
        std::vector<float> v = randn(g, B * T * N * D, scale);
        return check(name, make_frames(dt, v, B, T, N, D, Layout::kContiguous), {-1, 0, 1, 0}, eps, Ftz::kOff);
      });
    }

  add(out, "empty outputs launch nothing", [] {
    const uint64_t before = cudasim::stats().launches;
    int f = 0;
    const std::vector<int64_t> ref3 = {-1, 0, 1};
    f += check("B=0", make_frames(DType::kF32, {}, 0, 3, 5, 8, Layout::kContiguous), ref3, 1e-8f, Ftz::kBoth);
    f += check("N=0", make_frames(DType::kBF16, {}, 2, 3, 0, 8, Layout::kContiguous), ref3, 1e-8f, Ftz::kBoth);
    f += check("T=0", make_frames(DType::kF16, {}, 2, 0, 5, 8, Layout::kContiguous), {}, 1e-8f, Ftz::kBoth);
    if (cudasim::stats().launches != before) {
      std::printf("FAIL empty outputs: a kernel was launched\n");
      ++f;
    }
    return f;
  });

  add(out, "launch limit", [] {  // planning only: sizes no test could allocate
    int f = 0;
    vlmkern::cuda::FrameSimilarityArgs a{DType::kBF16, nullptr, 1, 1, 1, 64, 64, 64, 64, nullptr, 1e-8f,
                                         nullptr};
    const int64_t max_rows = ((int64_t(1) << 31) - 1) * vlmkern::cuda::kFrameSimWarps;
    a.B = 1, a.T = 1, a.N = max_rows;  // exactly 2^31 - 1 blocks
    if (const char* e = vlmkern::cuda::frame_similarity_plan_error(a))
      std::printf("FAIL launch limit: (2^31 - 1) * 8 rows refused: %s\n", e), ++f;
    a.N = max_rows + 1;
    if (!vlmkern::cuda::frame_similarity_plan_error(a))
      std::printf("FAIL launch limit: (2^31 - 1) * 8 + 1 rows accepted\n"), ++f;
    a.B = 64, a.T = int64_t(1) << 20, a.N = int64_t(1) << 14;  // 2^40 rows
    if (!vlmkern::cuda::frame_similarity_plan_error(a))
      std::printf("FAIL launch limit: 2^40 rows accepted\n"), ++f;
    a.B = 4, a.T = 1024, a.N = 4096;  // a long batch of videos is fine
    if (const char* e = vlmkern::cuda::frame_similarity_plan_error(a))
      std::printf("FAIL launch limit: %s\n", e), ++f;
    return f;
  });
}

}  // namespace harness
