// pixel_dedup: the CUDA kernel (csrc/cuda/pixel_dedup_kernels.cuh, run by the
// emulator through pixel_dedup_plan_error / _launch, with the device arrays
// grid, row0 and g0 built here as the op's .cu builds them) against the CPU
// kernel (csrc/cpu/pixel_dedup_kernel.{h,cpp}, pixel_dedup_run with a plain
// serial `par`). The outputs are integer decisions, so they must be EQUAL,
// under every schedule and with and without flush-to-zero (the sums are fp64
// of normal inputs: nothing subnormal to flush).
//
// Both sum |x - anchor| in fp64, in different orders (the CPU: chunks of
// 65536 values, 4 partial sums each, chunk sums added in order; CUDA: 256
// strided per-thread sums, an xor butterfly and the 8 warp sums), so the two
// could differ only for a group whose mean lies within fp64 rounding of tol.
// No case here is built that way: the random cases keep their means far
// (>= 0.005, measured) from a nonzero tol, and the cases with a mean exactly at tol ("near repeats", "drift") use
// values on a 2^-6 grid whose every sum is exact in fp64 on both backends
// (mean == tol matches; one ulp below tol does not).
//
// Besides CUDA == CPU, each case checks the CPU against the definition
// computed here directly (long double sums; equal away from tol), the CPU
// against itself with its chunks run one at a time in reverse order (the
// result must not depend on the thread count), and the constructed cases
// against their expected `source` written out by hand.
//
// Cases: those of tests/test_cuda_parity.py (three dtypes, several videos per
// call with different grids), t = 1, t = 0, empty slabs (h = 0, F = 0),
// slabs that are no multiple of 256 or of the 65536-value chunk and slabs of
// several chunks, exact repeats with tol = 0, near repeats (noise 2^-6) with
// tol below, at and above their mean, a slow drift (each group within tol of
// the previous one but not of the anchor: the walk compares against the last
// KEPT group), NaN and Inf (never match; a NaN group becomes the anchor),
// -0.0 vs 0.0, all groups identical, F = 1, many videos, V = 0 (launches
// nothing) and the launch limit.
#include <algorithm>

#include "cpu/pixel_dedup_kernel.h"
#include "cuda/pixel_dedup_kernels.cuh"
#include "harness.h"

namespace harness {
namespace {

using vlmkern::DType;

const DType kDTypes[] = {DType::kF32, DType::kBF16, DType::kF16};
const char* dname(DType d) { return d == DType::kF32 ? "f32" : d == DType::kBF16 ? "bf16" : "f16"; }

constexpr double kStep = 0x1.0p-6;  // 0.015625: noise and drift step (exact in every dtype near 1)

// pixels [P, F] (logical values, row-major) and the grid [V, 3].
struct Pixels {
  DType dt;
  int64_t F;
  std::vector<int64_t> grid;   // V * 3
  std::vector<size_t> first;   // per video: offset of its first value in v
  std::vector<float> v;        // P * F

  int64_t V() const { return int64_t(grid.size() / 3); }
  int64_t slab(int64_t video) const { return grid[size_t(3 * video + 1)] * grid[size_t(3 * video + 2)] * F; }
  int64_t groups() const {
    int64_t g = 0;
    for (int64_t i = 0; i < V(); ++i) g += grid[size_t(3 * i)];
    return g;
  }
  // Appends a video (values 0); returns its index.
  int64_t add(int64_t t, int64_t h, int64_t w) {
    grid.insert(grid.end(), {t, h, w});
    first.push_back(v.size());
    v.resize(v.size() + size_t(t * h * w * F), 0.f);
    return V() - 1;
  }
  float* group(int64_t video, int64_t i) { return v.data() + first[size_t(video)] + size_t(i * slab(video)); }
};

// The stored pixels (rounded to the dtype) as the kernels see them.
struct Stored {
  DType dt;
  std::vector<uint32_t> f32;
  std::vector<uint16_t> h;
  const void* data() const { return dt == DType::kF32 ? static_cast<const void*>(f32.data()) : h.data(); }
  float get(int64_t i) const { return vlmkern::load_as_float(dt, data(), i); }
};

Stored store(const Pixels& x) {
  Stored s{x.dt, {}, {}};
  // Exactly P * F elements: a read past the last group is out of bounds for ASan.
  if (x.dt == DType::kF32) {
    s.f32.resize(x.v.size());
    for (size_t i = 0; i < x.v.size(); ++i) s.f32[i] = bits(x.v[i]);
  } else {
    s.h.resize(x.v.size());
    for (size_t i = 0; i < x.v.size(); ++i) s.h[i] = x.dt == DType::kBF16 ? to_bf16(x.v[i]) : to_fp16(x.v[i]);
  }
  return s;
}

// The definition, written out again: per video, walk the groups keeping an
// anchor; long double sums. Also returns each group's mean against its anchor.
std::vector<int64_t> definition(const Pixels& x, const Stored& s, double tol, std::vector<double>* means) {
  std::vector<int64_t> src;
  int64_t g0 = 0;
  for (int64_t video = 0; video < x.V(); ++video) {
    const int64_t T = x.grid[size_t(3 * video)], n = x.slab(video);
    const int64_t base = int64_t(x.first[size_t(video)]);
    int64_t anchor = 0;
    for (int64_t i = 0; i < T; ++i) {
      if (i == 0) {
        src.push_back(g0);
        if (means) means->push_back(0);
        continue;
      }
      long double sum = 0;
      for (int64_t j = 0; j < n; ++j)
        sum += fabsl((long double)s.get(base + i * n + j) - (long double)s.get(base + anchor * n + j));
      const double mean = n ? double(sum / n) : 0.0;
      if (means) means->push_back(mean);
      if (n == 0 || mean <= tol) {
        src.push_back(g0 + anchor);
      } else {
        src.push_back(g0 + i);
        anchor = i;
      }
    }
    g0 += T;
  }
  return src;
}

std::string where(const Pixels& x, int64_t g) {  // "video v group i" of global group g
  int64_t g0 = 0;
  for (int64_t video = 0; video < x.V(); ++video) {
    const int64_t T = x.grid[size_t(3 * video)];
    if (g < g0 + T) return fmt("video %lld group %lld", (long long)video, (long long)(g - g0));
    g0 += T;
  }
  return fmt("group %lld", (long long)g);
}

std::vector<int64_t> cpu_run(const Pixels& x, const Stored& s, double tol, bool reversed_chunks) {
  std::vector<int64_t> src(size_t(x.groups()), -7);
  const vlmkern::cpu::PixelDedupArgs a{x.dt, s.data(), x.F, x.grid.data(), x.V(), tol, src.data()};
  std::vector<double> partial(size_t(vlmkern::cpu::pixel_dedup_max_chunks(a)) + 1, NAN);
  if (!reversed_chunks) {
    vlmkern::cpu::pixel_dedup_run(a, partial.data(), [](int64_t b, int64_t e, int64_t, auto&& fn) { fn(b, e); });
  } else {
    vlmkern::cpu::pixel_dedup_run(a, partial.data(), [](int64_t b, int64_t e, int64_t, auto&& fn) {
      for (int64_t c = e - 1; c >= b; --c) fn(c, c + 1);
    });
  }
  return src;
}

// CPU once (and against the definition and `expect`, when given), then CUDA
// under every schedule and FTZ mode; returns the number of failures.
int check(const std::string& name, const Pixels& x, double tol, const std::vector<int64_t>& expect = {}) {
  const Stored s = store(x);
  const std::vector<int64_t> want = cpu_run(x, s, tol, false);
  int failures = 0;
  auto fail = [&](const std::string& what) {
    std::printf("FAIL %s: %s\n", name.c_str(), what.c_str());
    ++failures;
  };
  if (cpu_run(x, s, tol, true) != want) fail("the CPU's result depends on the order of its chunks");
  std::vector<double> means;
  const std::vector<int64_t> def = definition(x, s, tol, &means);
  for (size_t g = 0; g < want.size(); ++g)
    if (want[g] != def[g]) {
      fail(fmt("CPU source %lld, the definition %lld at %s (mean %.17g, tol %.17g)", (long long)want[g],
               (long long)def[g], where(x, int64_t(g)).c_str(), means[g], tol));
      break;
    }
  if (!expect.empty() && expect != want) {
    std::string w = "CPU source [", e = "expected [";
    for (size_t g = 0; g < want.size(); ++g) w += fmt(g ? ",%lld" : "%lld", (long long)want[g]);
    for (size_t g = 0; g < expect.size(); ++g) e += fmt(g ? ",%lld" : "%lld", (long long)expect[g]);
    fail(w + "], " + e + "]");
  }

  // The device arrays, as csrc/cuda/pixel_dedup.cu builds them: the grid and
  // the exclusive prefix sums of t * h * w (first patch row) and t (first group).
  const int64_t V = x.V();
  std::vector<int64_t> row0(size_t(V) + 1), g0(size_t(V) + 1);
  int64_t rows = 0, groups = 0;
  for (int64_t video = 0; video < V; ++video) {
    const int64_t* gr = &x.grid[size_t(3 * video)];
    row0[size_t(video)] = rows, g0[size_t(video)] = groups;
    rows += gr[0] * gr[1] * gr[2];
    groups += gr[0];
  }
  failures += each_schedule(name, Ftz::kBoth, [&]() -> std::string {
    // -7 is no group index: every output must be written.
    std::vector<int64_t> got(size_t(groups) + 1, -7);  // one more: a write past the end shows
    const vlmkern::cuda::PixelDedupArgs a{x.dt, s.data(), x.F, x.grid.data(), row0.data(), g0.data(),
                                          V, tol, got.data()};
    if (const char* why = vlmkern::cuda::pixel_dedup_plan_error(a)) return fmt("plan error: %s", why);
    const cudaError_t e = vlmkern::cuda::pixel_dedup_launch(a, nullptr);
    if (e != cudaSuccess) return fmt("launch: %s", cudaGetErrorString(e));
    for (size_t g = 0; g < want.size(); ++g)
      if (got[g] != want[g])
        return fmt("%s: CUDA source %lld, CPU %lld (mean against the CPU's anchor %.17g, tol %.17g)",
                   where(x, int64_t(g)).c_str(), (long long)got[g], (long long)want[g], means[g], tol);
    if (got.back() != -7) return "a write past the end of source";
    return "";
  });
  return failures;
}

// Local source indices of consecutive videos -> global ones.
std::vector<int64_t> globalize(const std::vector<std::vector<int64_t>>& per_video) {
  std::vector<int64_t> r;
  int64_t g0 = 0;
  for (const auto& v : per_video) {
    for (int64_t s : v) r.push_back(g0 + s);
    g0 += int64_t(v.size());
  }
  return r;
}

void randn(Rng& g, float* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = g.normal();
}
// Values on the 2^-6 grid in [-1.5, 1.5]: exact in every dtype, and so is
// such a value plus a few steps of kStep (|x| < 2).
void grid_values(Rng& g, float* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = float(int64_t(g.below(193)) - 96) * float(kStep);
}

void add(Cases& out, std::string name, std::function<int()> fn, Size size = Size::kQuick) {
  out.push_back({std::move(name), std::move(fn), size});
}

// A random video: group 0 normal; each later group a bit-for-bit copy of the
// previous group (1 in 4), a near copy of it (+-2^-6 on every value: mean
// ~0.016 from it, a few steps from the anchor after a chain of them; 2 in 4)
// or fresh normals (mean ~1.13 from anything; 1 in 4). With tol 0, 0.005, 0.05
// or 0.6 no mean comes within fp64 rounding of tol (measured over these cases:
// a mean 0 at tol 0, exact copies, or at least 0.005 from tol); the check
// against the definition would show a case that came close.
void fill_random(Rng& g, Pixels& x, int64_t video) {
  const int64_t T = x.grid[size_t(3 * video)], n = x.slab(video);
  if (T == 0 || n == 0) return;
  randn(g, x.group(video, 0), n);
  for (int64_t i = 1; i < T; ++i) {
    float* cur = x.group(video, i);
    const float* prev = x.group(video, i - 1);
    switch (g.below(4)) {
      case 0: std::copy(prev, prev + n, cur); break;
      case 1:
      case 2:
        for (int64_t j = 0; j < n; ++j) cur[j] = prev[j] + float(g.below(2) ? kStep : -kStep);
        break;
      default: randn(g, cur, n); break;
    }
  }
}

struct Grid {
  int64_t t, h, w;
};

std::string grid_name(const std::vector<Grid>& grids) {
  std::string r;
  for (const Grid& q : grids) r += fmt(" (%lld,%lld,%lld)", (long long)q.t, (long long)q.h, (long long)q.w);
  return r;
}

void add_random(Cases& out, DType dt, int64_t F, std::vector<Grid> grids, double tol, uint64_t seed,
                Size size = Size::kQuick) {
  const std::string name = fmt("random %s F%lld tol=%g", dname(dt), (long long)F, tol) + grid_name(grids);
  add(out, name, [=] {
    Rng g(seed);
    Pixels x{dt, F};
    for (const Grid& q : grids) fill_random(g, x, x.add(q.t, q.h, q.w));
    return check(name, x, tol);
  }, size);
}

}  // namespace

void add_pixel_dedup_cases(Cases& out) {
  // The parity test's cases (tests/test_cuda_parity.py): several videos per
  // call with different grids, t = 1 and t = 0 among them; 7 * 5 * 3 = 105
  // values per slab (no multiple of 256); a Qwen-VL patch (F = 1176) with
  // 7 x 9 = 63 patches (74088 values: two chunks, the second partial).
  const std::vector<Grid> mixed = {{4, 2, 3}, {1, 5, 5}, {0, 3, 3}, {6, 7, 5}, {3, 1, 1}};
  for (DType dt : kDTypes) {
    for (double tol : {0.0, 0.005, 0.05, 0.6}) add_random(out, dt, 3, mixed, tol, 1);
    add_random(out, dt, 1176, {{5, 7, 9}, {2, 2, 2}}, 0.05, 2);
    add_random(out, dt, 1176, {{5, 7, 9}, {3, 4, 4}}, 0.0, 3, Size::kFull);
    add_random(out, dt, 1, {{9, 3, 5}, {1, 1, 1}, {12, 1, 1}}, 0.05, 4);  // F = 1
  }
  // Slabs of several chunks: 16 x 16 Qwen-VL patches (301056 values, 4.6
  // chunks) and 65536 + 256 values; and exactly one chunk.
  add_random(out, DType::kBF16, 1176, {{4, 16, 16}}, 0.05, 5);
  add_random(out, DType::kF32, 256, {{5, 257, 1}, {4, 16, 16}}, 0.0, 6);
  for (DType dt : kDTypes) {
    add_random(out, dt, 1176, {{6, 16, 16}, {2, 1, 3}}, 0.005, 7, Size::kFull);
    add_random(out, dt, 1176, {{6, 32, 24}}, 0.05, 8, Size::kFull);  // 903168 values: 14 chunks
  }
  // Many videos: 40 blocks, each with its own row0 and g0.
  for (DType dt : kDTypes) {
    std::vector<Grid> many;
    Rng g(9);
    for (int i = 0; i < 40; ++i) many.push_back({g.below(6), 1 + g.below(4), 1 + g.below(5)});
    const std::string name = fmt("many videos %s F7 tol=0.05 V40", dname(dt));
    add(out, name, [dt, many, name] {
      Rng r(10);
      Pixels x{dt, 7};
      for (const Grid& q : many) fill_random(r, x, x.add(q.t, q.h, q.w));
      return check(name, x, 0.05);
    });
  }

  // Exact repeats, tol = 0: a copy of the anchor matches; a copy of an earlier
  // group that is not the anchor does not. Also a video of one group, one of
  // no group, and one longer than a chunk.
  for (DType dt : kDTypes)
    for (int64_t F : {int64_t(3), int64_t(1176)}) {
      const std::string name = fmt("exact repeats %s F%lld tol=0", dname(dt), (long long)F);
      add(out, name, [dt, F, name] {
        Rng g(20);
        Pixels x{dt, F};
        const int64_t a = x.add(8, 7, 9), b = x.add(1, 2, 3), c = x.add(0, 4, 4), d = x.add(3, 2, 5);
        const int64_t n = x.slab(a);
        auto copy = [&](int64_t video, int64_t from, int64_t to) {
          std::copy(x.group(video, from), x.group(video, from) + x.slab(video), x.group(video, to));
        };
        randn(g, x.group(a, 0), n);
        copy(a, 0, 1);                     // 1: matches 0
        randn(g, x.group(a, 2), n);        // 2: kept
        copy(a, 2, 3);                     // 3: matches 2
        copy(a, 0, 4);                     // 4: a copy of 0, not of the anchor 2: kept
        copy(a, 4, 5);                     // 5: matches 4
        copy(a, 4, 6);
        x.group(a, 6)[n - 1] += 1.f;       // 6: one value differs (in the last, partial chunk): kept
        copy(a, 6, 7);                     // 7: matches 6
        randn(g, x.group(b, 0), x.slab(b));
        randn(g, x.group(d, 0), x.slab(d));
        copy(d, 0, 1), copy(d, 0, 2);
        (void)c;
        return check(name, x, 0.0, globalize({{0, 0, 2, 2, 4, 4, 6, 6}, {0}, {}, {0, 0, 0}}));
      });
    }

  // Near repeats: values on the 2^-6 grid, each later group the previous one
  // +-2^-6 on every value, so every mean against the anchor is exactly 2^-6
  // (one step) or 0 / 2^-5 per value, and every fp64 sum is exact on both
  // backends: the decisions at tol == mean are as deterministic as away from it.
  for (DType dt : kDTypes) {
    struct T {
      double tol;
      std::vector<int64_t> expect;
    };
    const T tols[] = {
        {0.005, {0, 1, 2, 2, 4}},                       // below the noise: only the exact copy matches
        {0.02, {0, 0, 0, 0, 0}},                        // above it
        {kStep, {0, 0, 0, 0, 0}},                       // exactly at it: mean == tol matches
        {std::nextafter(kStep, 0.0), {0, 1, 2, 2, 4}},  // one ulp below: no match
    };
    for (const T& tc : tols) {
      const std::string name = fmt("near repeats %s tol=%.17g", dname(dt), tc.tol);
      add(out, name, [dt, tc, name] {
        Rng g(30);
        Pixels x{dt, 1176};
        const int64_t a = x.add(5, 7, 9), n = x.slab(a);  // two chunks
        grid_values(g, x.group(a, 0), n);
        // 1: group 0 +-2^-6 (mean exactly 2^-6 against 0). 2: group 0 -+2^-6
        // (2^-6 against 0, 2^-5 against 1). 3: a copy of 2. 4: group 2 with
        // the sign of its noise flipped back, i.e. group 1 (2^-5 from 2, 2^-6 from 0).
        std::vector<float> sign(static_cast<size_t>(n));
        for (float& s : sign) s = g.below(2) ? 1.f : -1.f;
        for (int64_t j = 0; j < n; ++j) {
          const float b = x.group(a, 0)[j], e = sign[size_t(j)] * float(kStep);
          x.group(a, 1)[j] = b + e, x.group(a, 2)[j] = b - e, x.group(a, 3)[j] = b - e, x.group(a, 4)[j] = b + e;
        }
        int f = check(name, x, tc.tol, tc.expect);
        // The stored values are the intended ones (exact in this dtype).
        const Stored s = store(x);
        for (int64_t j = 0; j < 5 * n; ++j)
          if (s.get(j) != x.v[size_t(j)]) {
            std::printf("FAIL %s: value %lld is not exact in %s\n", name.c_str(), (long long)j, dname(dt));
            return f + 1;
          }
        return f;
      });
    }
  }

  // A slow drift: group i = group 0 + i * 2^-6 on every value. Each group is
  // within tol of the previous one but not always of the anchor: the walk
  // compares against the last KEPT group (against the previous group every
  // group would match and source would be all 0).
  for (DType dt : kDTypes) {
    const std::pair<double, std::vector<int64_t>> tols[] = {
        {1.5 * kStep, {0, 0, 2, 2, 4, 4, 6, 6}},
        {2.5 * kStep, {0, 0, 0, 3, 3, 3, 6, 6}},
        {2.0 * kStep, {0, 0, 0, 3, 3, 3, 6, 6}},  // mean == tol (exact sums) matches
        {0.5 * kStep, {0, 1, 2, 3, 4, 5, 6, 7}},
        {8.0 * kStep, {0, 0, 0, 0, 0, 0, 0, 0}},
    };
    for (const auto& [tol, expect] : tols) {
      const std::string name = fmt("drift %s tol=%g steps", dname(dt), tol / kStep);
      add(out, name, [dt, tol, expect, name] {
        Rng g(40);
        Pixels x{dt, 33};
        const int64_t a = x.add(8, 3, 5), n = x.slab(a);
        for (int64_t j = 0; j < n; ++j) x.group(a, 0)[j] = float(int64_t(g.below(129)) - 64) * float(kStep);
        for (int64_t i = 1; i < 8; ++i)
          for (int64_t j = 0; j < n; ++j) x.group(a, i)[j] = x.group(a, 0)[j] + float(i * kStep);
        return check(name, x, tol, expect);
      });
    }
  }

  // NaN and Inf never match: a group with a NaN is kept and becomes the
  // anchor, so the group after it is kept too even when it is an exact copy
  // (NaN - NaN) or a clean copy of group 0 (x - NaN); +Inf against a finite
  // value or against +Inf (Inf - Inf = NaN) is kept. A NaN in group 0 of
  // another video: no later group of it matches until one is kept.
  for (DType dt : kDTypes)
    for (double tol : {0.0, 0.5, 1e30}) {
      const std::string name = fmt("nan inf %s tol=%g", dname(dt), tol);
      add(out, name, [dt, tol, name] {
        Rng g(50);
        Pixels x{dt, 7};
        const int64_t a = x.add(9, 3, 4), b = x.add(4, 2, 2);
        const int64_t n = x.slab(a);
        randn(g, x.group(a, 0), n);
        auto copy = [&](int64_t video, int64_t from, int64_t to) {
          std::copy(x.group(video, from), x.group(video, from) + x.slab(video), x.group(video, to));
        };
        copy(a, 0, 1);                  // 1: matches 0
        copy(a, 0, 2);
        x.group(a, 2)[17] = NAN;        // 2: kept (NaN), the anchor
        copy(a, 2, 3);                  // 3: copy of 2, NaN included: kept
        copy(a, 0, 4);                  // 4: clean copy of 0 against the NaN anchor 3: kept
        copy(a, 0, 5);                  // 5: matches 4
        copy(a, 0, 6);
        x.group(a, 6)[n - 1] = INFINITY;  // 6: +Inf against finite: kept
        copy(a, 6, 7);                    // 7: Inf - Inf: kept
        copy(a, 0, 8);                    // 8: against 7 (Inf): kept
        randn(g, x.group(b, 0), x.slab(b));
        x.group(b, 0)[0] = NAN;  // video b: NaN in group 0
        copy(b, 0, 1);           // kept
        copy(b, 0, 2);
        x.group(b, 2)[0] = 0.25f;  // kept (against NaN)
        copy(b, 2, 3);             // matches 2
        return check(name, x, tol, globalize({{0, 0, 2, 3, 4, 4, 6, 7, 8}, {0, 1, 2, 2}}));
      });
    }

  // -0.0 and +0.0 are equal: zeros of either sign match each other at tol = 0.
  for (DType dt : kDTypes)
    add(out, fmt("signed zeros %s tol=0", dname(dt)), [dt] {
      Rng g(60);
      Pixels x{dt, 5};
      const int64_t a = x.add(5, 3, 3), n = x.slab(a);
      for (int64_t j = 0; j < n; ++j) x.group(a, 0)[j] = g.below(2) ? 0.f : -0.f;
      for (int64_t j = 0; j < n; ++j) x.group(a, 1)[j] = -0.f;
      for (int64_t j = 0; j < n; ++j) x.group(a, 2)[j] = 0.f;
      randn(g, x.group(a, 3), n);
      for (int64_t j = 0; j < n; j += 2) x.group(a, 3)[j] = 0.f;
      std::copy(x.group(a, 3), x.group(a, 3) + n, x.group(a, 4));
      for (int64_t j = 0; j < n; j += 2) x.group(a, 4)[j] = -0.f;
      return check(fmt("signed zeros %s tol=0", dname(dt)), x, 0.0, globalize({{0, 0, 0, 3, 3}}));
    });

  // All groups identical (tol 0): every group reuses group 0, in a video of
  // one slab of several chunks too.
  for (DType dt : kDTypes)
    add(out, fmt("all identical %s tol=0", dname(dt)), [dt] {
      Rng g(70);
      Pixels x{dt, 1176};
      const int64_t a = x.add(9, 2, 3), b = x.add(3, 8, 8);  // b: 75264 values, two chunks
      for (int64_t video : {a, b}) {
        randn(g, x.group(video, 0), x.slab(video));
        for (int64_t i = 1; i < x.grid[size_t(3 * video)]; ++i)
          std::copy(x.group(video, 0), x.group(video, 0) + x.slab(video), x.group(video, i));
      }
      return check(fmt("all identical %s tol=0", dname(dt)), x, 0.0,
                   globalize({std::vector<int64_t>(9, 0), std::vector<int64_t>(3, 0)}));
    });

  // Empty slabs: h = 0 (no rows: every group matches group 0, n == 0), F = 0,
  // and videos of no group; one call where no video has a group.
  add(out, "empty slabs", [] {
    int f = 0;
    Rng g(80);
    Pixels x{DType::kF16, 6};
    x.add(3, 0, 5);
    fill_random(g, x, x.add(4, 2, 2));
    x.add(0, 3, 3);
    x.add(2, 4, 0);
    f += check("empty slabs h=0 w=0", x, 0.0);
    // The h = 0 and w = 0 videos' groups all reuse their group 0 (global 0 and 7).
    const Stored s = store(x);
    const std::vector<int64_t> src = cpu_run(x, s, 0.0, false);
    const std::vector<int64_t> want = {0, 0, 0, 7, 7};
    const std::vector<int64_t> seen = {src[0], src[1], src[2], src[7], src[8]};
    if (src.size() != 9 || seen != want)
      std::printf("FAIL empty slabs: h = 0 or w = 0 groups do not reuse their group 0\n"), ++f;
    Pixels z{DType::kBF16, 0};  // F = 0
    z.add(4, 3, 3);
    z.add(1, 2, 2);
    f += check("empty slabs F=0", z, 0.0, globalize({{0, 0, 0, 0}, {0}}));
    Pixels none{DType::kF32, 4};  // videos, but no group: the kernel runs and writes nothing
    none.add(0, 2, 2);
    none.add(0, 1, 1);
    f += check("empty slabs no group", none, 0.0, {});
    return f;
  });

  add(out, "empty launches nothing", [] {
    int f = 0;
    const uint64_t before = cudasim::stats().launches;
    for (DType dt : kDTypes) f += check(fmt("V=0 %s", dname(dt)), Pixels{dt, 1176}, 0.0, {});
    if (cudasim::stats().launches != before) {
      std::printf("FAIL empty launches nothing: a kernel was launched for V = 0\n");
      ++f;
    }
    return f;
  });

  add(out, "launch limit", [] {  // planning only: sizes no test could allocate
    int f = 0;
    vlmkern::cuda::PixelDedupArgs a{DType::kBF16, nullptr, 1176, nullptr, nullptr, nullptr, 1, 0.0, nullptr};
    a.V = (int64_t(1) << 31) - 1;  // one block per video: exactly 2^31 - 1 blocks
    if (const char* e = vlmkern::cuda::pixel_dedup_plan_error(a))
      std::printf("FAIL launch limit: 2^31 - 1 videos refused: %s\n", e), ++f;
    a.V = int64_t(1) << 31;
    if (!vlmkern::cuda::pixel_dedup_plan_error(a)) std::printf("FAIL launch limit: 2^31 videos accepted\n"), ++f;
    a.V = int64_t(1) << 40;
    if (!vlmkern::cuda::pixel_dedup_plan_error(a)) std::printf("FAIL launch limit: 2^40 videos accepted\n"), ++f;
    a.V = 1;
    if (const char* e = vlmkern::cuda::pixel_dedup_plan_error(a))
      std::printf("FAIL launch limit: one video refused: %s\n", e), ++f;
    return f;
  });
}

}  // namespace harness
