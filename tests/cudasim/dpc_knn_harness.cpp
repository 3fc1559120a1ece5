// dpc_knn: the CUDA kernels (csrc/cuda/dpc_knn_kernels.cuh, run by the
// emulator through dpc_knn_plan_error / _launch, with the scratch laid out as
// csrc/cuda/dpc_knn.cu lays it out) against the CPU kernel pieces
// (csrc/cpu/dpc_knn_kernel.{h,cpp}: the op's own dpc_gram_run with the scalar
// Gram tile and dpc_rows_run, with a serial `par`). The AVX2 and AVX-512 tiles need ISA
// flags this build does not pass; tests/simde/dpc_knn_harness.cpp holds them
// to the scalar tile bit for bit, and tests/test_dpc_knn.py runs them natively.
//
// The claim checked: every Gram entry is one fp32 FMA chain over the channels
// in math::dpc_channel's order on both backends, so G is BIT-IDENTICAL, and
// everything after G is exact double arithmetic with explicit tie rules, so
// the centres and the assignment are EQUAL; so are the intermediate arrays
// (densities, ranks, deltas, scores, centre flags), compared bit for bit for
// every batch item (one launch per item, the scratch holding that item), and
// then once more for the whole batch in one launch. Under every schedule, and
// with and without flush-to-zero except for the subnormal case.
//
// Besides CUDA == CPU, each case checks the CPU
//  - against itself with other channel chunks (2 or 16 instead of the op's
//    128) and the Gram tasks in reverse order (the result must not depend on
//    either);
//  - G against a long double Gram: equal on "exact" data (values on a 1/4
//    grid in [-8, 8]: every fp32 partial sum exact), within the fp32 bound
//    gamma_D * sum |x_i x_j| elsewhere;
//  - against the definition computed here, with distances by differences:
//    on exact data, in double with the CPU's roundings (raw * (1 / D), sums in
//    ascending order, the same exp and sqrt), which must match EXACTLY, ties
//    included (duplicates, grids, integer data); on random data in long
//    double, compared where every decision (the density order, the m-th
//    score boundary, each point's nearest centre) is separated by more than
//    the Gram's error bound from a tie (counted and printed as NOTES).
//
// Cases: f32 / bf16 / f16; n in {1, 2, 5, 63, 64, 65, 130, 200} (tiles of 64
// and blocks of 128 rows on CUDA, panels of 32 and blocks of 48 rows on the
// CPU); D in {1, 2, 3, 15, 16, 17, 33, 100} (odd D: the last channel alone;
// stages of 16); B in {1, 3}; k in {1, 3, 7, min(n, 64)}; m in {1, n/2, n};
// normal, clustered and exact integer data; layouts: contiguous, gaps after
// rows and items (NaN), point-major storage (sb < sn), gaps between items only
// (sb > n * sn), broadcast rows (sn = 0) and items (sb = 0); duplicate points,
// all points identical, points on grids and lines (exact equal distances),
// subnormal products (no FTZ), values whose squares overflow fp32, B = 0 and
// the launch limit.
#include <algorithm>
#include <numeric>

#include "cpu/dpc_knn_kernel.h"
#include "cuda/dpc_knn_kernels.cuh"
#include "harness.h"
#include "math/dpc_knn.h"

namespace harness {
namespace {

using vlmkern::DType;
namespace vc = vlmkern::cpu;
namespace vk = vlmkern::cuda;

const DType kDTypes[] = {DType::kF32, DType::kBF16, DType::kF16};
const char* dname(DType d) { return d == DType::kF32 ? "f32" : d == DType::kBF16 ? "bf16" : "f16"; }

// Definition checks made (exact data; random data separated from ties) and
// skipped (a decision too close to call: the density order, the m-th score,
// a nearest centre).
int64_t g_def_exact = 0, g_def_separated = 0, g_skip_density = 0, g_skip_score = 0, g_skip_centre = 0;

// ---- inputs -------------------------------------------------------------------------

enum class Layout {
  kContiguous,      // [B, n, D]
  kGapped,          // gaps (NaN) after every row and every item
  kBatchGapped,     // rows contiguous, gaps between items: sb > n * sn
  kPointMajor,      // stored [n, B, D] (x.transpose(0, 1) of a contiguous tensor): sb < sn
  kRowsBroadcast,   // sn = 0: every point of an item is the same row (x.expand along n)
  kBatchBroadcast,  // sb = 0: every item is the same storage
};
const char* lname(Layout l) {
  switch (l) {
    case Layout::kContiguous: return "";
    case Layout::kGapped: return " gapped";
    case Layout::kBatchGapped: return " sb>n*sn";
    case Layout::kPointMajor: return " point-major";
    case Layout::kRowsBroadcast: return " sn=0";
    case Layout::kBatchBroadcast: return " sb=0";
  }
  return "";
}

// x [B, n, D] with element strides sb, sn (the last dimension contiguous).
struct Points {
  DType dt;
  int64_t B, n, D;
  int64_t sb = 0, sn = 0;
  std::vector<float> f32;
  std::vector<uint16_t> h;
  const void* data() const { return dt == DType::kF32 ? static_cast<const void*>(f32.data()) : h.data(); }
  size_t esize() const { return dt == DType::kF32 ? 4 : 2; }
  const void* item(int64_t b) const { return static_cast<const char*>(data()) + b * sb * int64_t(esize()); }
  float get(int64_t b, int64_t i, int64_t c) const { return vlmkern::load_as_float(dt, data(), b * sb + i * sn + c); }
};

// Logical values v [B, n, D] (row-major) stored in `layout` as dt (rounded to
// nearest even); gaps hold NaN, and the storage ends where the last row ends
// (AddressSanitizer sees a read past it).
Points make_points(DType dt, const std::vector<float>& v, int64_t B, int64_t n, int64_t D, Layout layout) {
  Points x{dt, B, n, D};
  switch (layout) {
    case Layout::kContiguous: x.sn = D, x.sb = n * D; break;
    case Layout::kGapped: x.sn = D + 3, x.sb = n * (D + 3) + 5; break;
    case Layout::kBatchGapped: x.sn = D, x.sb = n * D + 7; break;
    case Layout::kPointMajor: x.sb = D, x.sn = B * D; break;
    case Layout::kRowsBroadcast: x.sn = 0, x.sb = D; break;
    case Layout::kBatchBroadcast: x.sn = D, x.sb = 0; break;
  }
  int64_t elems = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < n; ++i) elems = std::max(elems, b * x.sb + i * x.sn + D);
  if (dt == DType::kF32) x.f32.assign(size_t(elems), NAN);
  else x.h.assign(size_t(elems), dt == DType::kBF16 ? uint16_t(0x7fc0u) : uint16_t(0x7e00u));
  for (int64_t b = 0; b < B; ++b)  // broadcast layouts: the last write of a shared row wins
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < D; ++c) {
        const float f = v[size_t((b * n + i) * D + c)];
        const size_t at = size_t(b * x.sb + i * x.sn + c);
        if (dt == DType::kF32) x.f32[at] = f;
        else x.h[at] = dt == DType::kBF16 ? to_bf16(f) : to_fp16(f);
      }
  return x;
}

std::vector<float> randn(Rng& g, int64_t count, float scale = 1.f) {
  std::vector<float> v(static_cast<size_t>(count));
  for (float& f : v) f = g.normal() * scale;
  return v;
}
// Values on the 1/4 grid in [-lim, lim] (lim <= 8): exact in every dtype, and
// every fp32 partial sum of their products over D <= 100 channels is exact.
std::vector<float> quarters(Rng& g, int64_t count, int64_t lim) {
  std::vector<float> v(static_cast<size_t>(count));
  for (float& f : v) f = float(g.below(8 * lim + 1) - 4 * lim) * 0.25f;
  return v;
}
// A few hubs (scale 3) plus unit noise per item: the shape the methods feed it.
std::vector<float> clustered(Rng& g, int64_t B, int64_t n, int64_t D) {
  std::vector<float> v(static_cast<size_t>(B * n * D));
  for (int64_t b = 0; b < B; ++b) {
    const std::vector<float> hubs = randn(g, 6 * D, 3.f);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t hub = g.below(6);
      for (int64_t c = 0; c < D; ++c) v[size_t((b * n + i) * D + c)] = hubs[size_t(hub * D + c)] + g.normal();
    }
  }
  return v;
}

// ---- the CPU: the op's own phases ---------------------------------------------------

// The op's own cpu::dpc_gram_run (the scalar tile), with a serial `par` that
// splits every range into pieces of 3 and runs them first to last, or last to
// first (`reverse`, as threads may).
struct SerialPar {
  bool reverse = false;
  template <class Fn>
  void operator()(int64_t b, int64_t e, int64_t /*grain*/, Fn&& fn) const {
    constexpr int64_t kPiece = 3;
    std::vector<std::pair<int64_t, int64_t>> pieces;
    for (int64_t p = b; p < e; p += kPiece) pieces.emplace_back(p, std::min(e, p + kPiece));
    if (reverse) std::reverse(pieces.begin(), pieces.end());
    for (const auto& [p0, p1] : pieces) fn(p0, p1);
  }
};

void cpu_gram(const float* rows, int64_t ld, int64_t n, int64_t D, float* g, int64_t kc, bool reverse) {
  std::vector<float> packed(static_cast<size_t>(vc::dpc_packed_floats(n, D)));
  vc::dpc_gram_run(rows, ld, n, D, &vc::dpc_tile_scalar, kc, packed.data(), g, SerialPar{reverse});
}

constexpr uint32_t kUnwritten = 0x7fa0dbadu;  // a NaN no arithmetic produces
// The channels per tile call of the op.
constexpr int64_t kOpChunk = vc::kDpcChunk;

// G of item b: the rows as fp32 (f32 read in place with stride sn, 16-bit
// widened to a contiguous copy; the op copies every dtype to contiguous fp32
// rows, which gives the same G), every entry pre-filled with kUnwritten.
std::vector<float> cpu_gram_item(const Points& x, int64_t b, int64_t kc, bool reverse) {
  const int64_t n = x.n, D = x.D;
  std::vector<float> wide;
  const float* rows;
  int64_t ld;
  if (x.dt == DType::kF32) {
    rows = x.f32.data() + b * x.sb, ld = x.sn;
  } else {
    wide.resize(size_t(n * D));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < D; ++c) wide[size_t(i * D + c)] = x.get(b, i, c);
    rows = wide.data(), ld = D;
  }
  float unwritten;
  std::memcpy(&unwritten, &kUnwritten, 4);
  std::vector<float> g(size_t(n * n), unwritten);
  cpu_gram(rows, ld, n, D, g.data(), kc, reverse);
  return g;
}

// One item's results and the intermediates both backends keep.
struct Item {
  std::vector<float> g;  // [n, n]
  std::vector<double> mean, rowmax, delta, score;
  std::vector<int64_t> rank, centres, assign;
};

// The op's own cpu::dpc_rows_run, the row ranges split in 3s.
void cpu_rows(Item& it, int64_t n, int64_t D, int64_t k, int64_t m) {
  const size_t un = size_t(n);
  std::vector<float> diag(un);
  it.mean.assign(un, NAN), it.rowmax.assign(un, NAN), it.delta.assign(un, NAN), it.score.assign(un, NAN);
  it.rank.assign(un, -7), it.centres.assign(size_t(m), -7), it.assign.assign(un, -7);
  const vc::DpcRowScratch s{diag.data(), it.mean.data(), it.rowmax.data(), it.delta.data(),
                            it.score.data(), it.rank.data()};
  vc::dpc_rows_run(it.g.data(), n, D, k, m, s, it.centres.data(), it.assign.data(), SerialPar{});
}

// ---- the definition ---------------------------------------------------------------------

// DPC-kNN from a distance matrix d [n, n] in T, written out plainly: full row
// sorts, a stable density order, dense minima, a sorted score order, argmins.
template <typename T>
struct Def {
  std::vector<T> mean, delta, score;  // delta: -1 for the densest point
  std::vector<int64_t> rank, order, centres, assign;  // order: the score order
  T far = 0;
};

template <typename T>
Def<T> definition(const std::vector<T>& d, int64_t n, int64_t k, int64_t m) {
  Def<T> r;
  const size_t un = size_t(n);
  r.mean.resize(un), r.delta.resize(un), r.score.resize(un), r.rank.resize(un);
  std::vector<T> row(un);
  for (int64_t i = 0; i < n; ++i) {
    std::copy(d.begin() + i * n, d.begin() + (i + 1) * n, row.begin());
    std::sort(row.begin(), row.end());
    T s = 0;
    for (int64_t q = 0; q < k; ++q) s += row[size_t(q)];  // ascending, as the kernels sum
    r.mean[size_t(i)] = s / T(k);
    for (int64_t j = 0; j < n; ++j) r.far = std::max(r.far, d[size_t(i * n + j)]);
  }
  std::vector<int64_t> dens(un);
  std::iota(dens.begin(), dens.end(), int64_t(0));
  std::stable_sort(dens.begin(), dens.end(), [&](int64_t a, int64_t b) { return r.mean[size_t(a)] < r.mean[size_t(b)]; });
  for (int64_t q = 0; q < n; ++q) r.rank[size_t(dens[size_t(q)])] = q;
  for (int64_t i = 0; i < n; ++i) {
    T best = -1;
    for (int64_t j = 0; j < n; ++j)
      if (r.rank[size_t(j)] < r.rank[size_t(i)] && (best < 0 || d[size_t(i * n + j)] < best)) best = d[size_t(i * n + j)];
    r.delta[size_t(i)] = best;
    using std::exp, std::sqrt;
    r.score[size_t(i)] = exp(-r.mean[size_t(i)]) * sqrt(best < 0 ? r.far : best);
  }
  r.order.resize(un);
  std::iota(r.order.begin(), r.order.end(), int64_t(0));
  std::stable_sort(r.order.begin(), r.order.end(),
                   [&](int64_t a, int64_t b) { return r.score[size_t(a)] > r.score[size_t(b)]; });
  r.centres.assign(r.order.begin(), r.order.begin() + m);
  std::sort(r.centres.begin(), r.centres.end());
  r.assign.resize(un);
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = 0;
    for (int64_t q = 0; q < m; ++q) {
      if (r.centres[size_t(q)] == i) {
        best = q;
        break;
      }
      const int64_t c = r.centres[size_t(q)], b = r.centres[size_t(best)];
      if (d[size_t(i * n + c)] < d[size_t(i * n + b)]) best = q;
    }
    r.assign[size_t(i)] = best;
  }
  return r;
}

// Long double sums over item b: dot[i][j] = sum x_i x_j, mag[i][j] = sum
// |x_i x_j|, dd[i][j] = sum (x_i - x_j)^2.
struct Exact {
  std::vector<long double> dot, mag, dd;
};
Exact exact_sums(const Points& x, int64_t b) {
  const int64_t n = x.n, D = x.D;
  Exact e;
  e.dot.assign(size_t(n * n), 0), e.mag.assign(size_t(n * n), 0), e.dd.assign(size_t(n * n), 0);
  std::vector<long double> v(static_cast<size_t>(n * D));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < D; ++c) v[size_t(i * D + c)] = x.get(b, i, c);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      long double s = 0, a = 0, q = 0;
      for (int64_t c = 0; c < D; ++c) {
        const long double p = v[size_t(i * D + c)], r = v[size_t(j * D + c)];
        s += p * r, a += fabsl(p * r), q += (p - r) * (p - r);
      }
      e.dot[size_t(i * n + j)] = s, e.mag[size_t(i * n + j)] = a, e.dd[size_t(i * n + j)] = q;
    }
  return e;
}

// Whether every decision of the long double definition is farther from a tie
// than the CPU's errors reach: E[i] bounds the error of every distance in row
// i (so of mean[i], delta[i] and i's distances to the centres), Emax that of
// the largest distance. Returns "" or the first decision too close to call.
std::string near_tie(const Def<long double>& r, const std::vector<long double>& d, int64_t n, int64_t m,
                     const std::vector<long double>& E, long double Emax) {
  const size_t un = size_t(n);
  std::vector<int64_t> dens(un);
  for (int64_t i = 0; i < n; ++i) dens[size_t(r.rank[size_t(i)])] = i;
  for (int64_t q = 1; q < n; ++q) {  // the density order: adjacent intervals apart
    const int64_t a = dens[size_t(q - 1)], b = dens[size_t(q)];
    const long double ma = r.mean[size_t(a)], mb = r.mean[size_t(b)];
    if (!(mb - ma > E[size_t(a)] + E[size_t(b)] + 1e-13L * mb))
      return fmt("densities of %lld and %lld", (long long)a, (long long)b);
  }
  if (m < n) {  // the m-th score boundary
    auto bound = [&](int64_t i, int sign) {
      const bool densest = r.delta[size_t(i)] < 0;
      const long double dl = densest ? r.far : r.delta[size_t(i)], ed = densest ? Emax : E[size_t(i)];
      return expl(-(r.mean[size_t(i)] - sign * E[size_t(i)])) * sqrtl(std::max(0.0L, dl + sign * ed)) *
             (1 + sign * 1e-12L);
    };
    long double in_lo = INFINITY, out_hi = -INFINITY;
    for (int64_t q = 0; q < n; ++q) {
      if (q < m) in_lo = std::min(in_lo, bound(r.order[size_t(q)], -1));
      else out_hi = std::max(out_hi, bound(r.order[size_t(q)], +1));
    }
    if (!(in_lo > out_hi)) return fmt("the %lld-th score", (long long)m);
  }
  for (int64_t i = 0; i < n; ++i) {  // each point's nearest centre
    if (std::binary_search(r.centres.begin(), r.centres.end(), i) || m < 2) continue;
    long double d1 = INFINITY, d2 = INFINITY;
    for (int64_t c : r.centres) {
      const long double v = d[size_t(i * n + c)];
      if (v < d1) d2 = d1, d1 = v;
      else if (v < d2) d2 = v;
    }
    if (!(d2 - d1 > 2 * E[size_t(i)] + 1e-13L * d2)) return fmt("the nearest centre of %lld", (long long)i);
  }
  return "";
}

template <class V>
std::string list(const V& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size() && i < 24; ++i) s += fmt(i ? ",%lld" : "%lld", (long long)v[i]);
  return s + (v.size() > 24 ? ",...]" : "]");
}

// The CPU item against the definition; returns "" or what differs.
std::string check_definition(const Points& x, const Exact& e, const Item& it, int64_t k, int64_t m, bool exact) {
  const int64_t n = x.n, D = x.D;
  const size_t nn = size_t(n * n);
  if (exact) {
    // The CPU's own arithmetic after G: raw distance (exact here) * (1 / D) in double.
    std::vector<double> d(nn);
    const double inv_d = 1.0 / double(D);
    for (size_t q = 0; q < nn; ++q) d[q] = double(e.dd[q]) * inv_d;
    const Def<double> r = definition(d, n, k, m);
    ++g_def_exact;
    for (int64_t i = 0; i < n; ++i) {
      const size_t u = size_t(i);
      if (it.mean[u] != r.mean[u] || it.delta[u] != r.delta[u] || it.score[u] != r.score[u] || it.rank[u] != r.rank[u])
        return fmt("point %lld: CPU mean %.17g delta %.17g score %.17g rank %lld, the definition %.17g %.17g %.17g %lld",
                   (long long)i, it.mean[u], it.delta[u], it.score[u], (long long)it.rank[u], r.mean[u], r.delta[u],
                   r.score[u], (long long)r.rank[u]);
    }
    if (it.centres != r.centres) return "CPU centres " + list(it.centres) + ", the definition " + list(r.centres);
    if (it.assign != r.assign) return "CPU assign " + list(it.assign) + ", the definition " + list(r.assign);
    return "";
  }
  std::vector<long double> d(nn);
  for (size_t q = 0; q < nn; ++q) d[q] = e.dd[q] / D;
  const Def<long double> r = definition(d, n, k, m);
  // |CPU distance - exact| <= (err g_ii + err g_jj + 2 err g_ij) / D, each
  // err <= gamma_D sum |x_i x_j|, plus the double roundings; E[i]: the
  // largest over row i, Emax over all.
  const long double u = 0x1.0p-24L, gamma = D * u / (1 - D * u);
  std::vector<long double> E(static_cast<size_t>(n), 0.0L);
  long double Emax = 0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const long double mag = e.mag[size_t(i * n + i)] + e.mag[size_t(j * n + j)] + 2 * e.mag[size_t(i * n + j)];
      E[size_t(i)] = std::max(E[size_t(i)], (gamma + 0x1.0p-50L) * mag / D);
    }
    E[size_t(i)] = E[size_t(i)] * 1.01L + 1e-300L;
    Emax = std::max(Emax, E[size_t(i)]);
  }
  for (int64_t i = 0; i < n; ++i)  // the CPU's densities are within E of the definition's
    if (!(fabsl(it.mean[size_t(i)] - r.mean[size_t(i)]) <= E[size_t(i)] * 1.001L + 1e-14L * r.mean[size_t(i)]))
      return fmt("point %lld: CPU mean %.17g, the definition %.17Lg, beyond the bound %.3Lg", (long long)i,
                 it.mean[size_t(i)], r.mean[size_t(i)], E[size_t(i)]);
  if (const std::string why = near_tie(r, d, n, m, E, Emax); !why.empty()) {
    ++(why[0] == 'd' ? g_skip_density : why[4] == 'n' ? g_skip_centre : g_skip_score);
    return "";
  }
  ++g_def_separated;
  if (it.centres != r.centres) return "CPU centres " + list(it.centres) + ", the definition " + list(r.centres);
  if (it.assign != r.assign) return "CPU assign " + list(it.assign) + ", the definition " + list(r.assign);
  return "";
}

// ---- CPU vs CUDA --------------------------------------------------------------------------

template <class T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

std::string compare_item(const Item& w, int64_t n, int64_t m, const float* g, const double* f64,
                         const int64_t* i64, const int64_t* centres, const int64_t* assign) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const float a = g[i * n + j], c = w.g[size_t(i * n + j)];
      if (!same_bits(a, c))
        return fmt("G[%lld][%lld]: CUDA %.9g (0x%08x), CPU %.9g (0x%08x)", (long long)i, (long long)j, a, bits(a), c,
                   bits(c));
    }
  for (int64_t i = 0; i < n; ++i)
    if (!same_bits(g[n * n + i], w.g[size_t(i * n + i)])) return fmt("diag[%lld] is not G[%lld][%lld]", (long long)i,
                                                                     (long long)i, (long long)i);
  // In the order the phases compute them.
  auto doubles = [&](const char* what, const double* got, const std::vector<double>& w) -> std::string {
    for (int64_t i = 0; i < n; ++i)
      if (!same_bits(got[i], w[size_t(i)]))
        return fmt("%s[%lld]: CUDA %.17g, CPU %.17g", what, (long long)i, got[i], w[size_t(i)]);
    return "";
  };
  if (std::string e = doubles("mean", f64, w.mean); !e.empty()) return e;
  if (std::string e = doubles("rowmax", f64 + n, w.rowmax); !e.empty()) return e;
  for (int64_t i = 0; i < n; ++i)
    if (i64[i] != w.rank[size_t(i)])
      return fmt("rank[%lld]: CUDA %lld, CPU %lld", (long long)i, (long long)i64[i], (long long)w.rank[size_t(i)]);
  if (std::string e = doubles("delta", f64 + 2 * n, w.delta); !e.empty()) return e;
  if (std::string e = doubles("score", f64 + 3 * n, w.score); !e.empty()) return e;
  for (int64_t i = 0; i < n; ++i) {
    const bool centre = std::binary_search(w.centres.begin(), w.centres.end(), i);
    if (i64[n + i] != (centre ? 1 : 0)) return fmt("flag[%lld]: CUDA %lld, CPU centre: %d", (long long)i,
                                                   (long long)i64[n + i], int(centre));
  }
  if (!std::equal(centres, centres + m, w.centres.begin()))
    return "centres: CUDA " + list(std::vector<int64_t>(centres, centres + m)) + ", CPU " + list(w.centres);
  for (int64_t i = 0; i < n; ++i)
    if (assign[i] != w.assign[size_t(i)])
      return fmt("assign[%lld]: CUDA %lld, CPU %lld", (long long)i, (long long)assign[i], (long long)w.assign[size_t(i)]);
  return "";
}

// Runs the CUDA kernels on x under every schedule (and FTZ mode) and compares
// them with the CPU items `want` (one per batch item): the whole batch in one
// launch (every item's centres and assignment; the scratch ends with the last
// item's G and intermediates), and with `per_item`, first every other item
// alone (its G and intermediates). G does not depend on k and m, so one
// (k, m) per input runs per item.
int check_cuda(const std::string& name, const Points& x, int64_t k, int64_t m, const std::vector<Item>& want, Ftz ftz,
               bool per_item) {
  const int64_t B = x.B, n = x.n;
  return each_schedule(name, ftz, [&]() -> std::string {
    // Scratch as csrc/cuda/dpc_knn.cu allocates it (exact sizes: ASan sees an
    // overrun), poisoned; one output slot more than the outputs have.
    float poison;
    std::memcpy(&poison, &kUnwritten, 4);
    std::vector<float> g(static_cast<size_t>(n * n + n));
    std::vector<double> f64(static_cast<size_t>(4 * n));
    std::vector<int64_t> i64(static_cast<size_t>(2 * n));
    std::vector<int64_t> centres(size_t(B * m) + 1, -7), assign(size_t(B * n) + 1, -7);
    auto args = [&](const void* xp, int64_t items, int64_t* c, int64_t* a) {
      std::fill(g.begin(), g.end(), poison);
      std::fill(f64.begin(), f64.end(), NAN);
      std::fill(i64.begin(), i64.end(), -7);
      double* dp = f64.data();
      return vk::DpcKnnArgs{x.dt, xp, items, n, x.D, x.sb, x.sn, k, m, g.data(), g.data() + n * n,
                            dp, dp + n, dp + 2 * n, dp + 3 * n, i64.data(), i64.data() + n, c, a};
    };
    auto run = [&](const vk::DpcKnnArgs& a) -> std::string {
      if (const char* why = vk::dpc_knn_plan_error(a)) return fmt("plan error: %s", why);
      const cudaError_t e = vk::dpc_knn_launch(a, nullptr);
      if (e != cudaSuccess) return fmt("launch: %s", cudaGetErrorString(e));
      return "";
    };
    for (int64_t b = 0; per_item && b + 1 < B; ++b) {
      int64_t* cb = centres.data() + b * m;
      int64_t* ab = assign.data() + b * n;
      std::string err = run(args(x.item(b), 1, cb, ab));
      if (err.empty()) err = compare_item(want[size_t(b)], n, m, g.data(), f64.data(), i64.data(), cb, ab);
      if (!err.empty()) return fmt("item %lld alone: ", (long long)b) + err;
    }
    if (B == 0) return run(args(x.data(), 0, centres.data(), assign.data()));
    std::fill(centres.begin(), centres.end(), -7);
    std::fill(assign.begin(), assign.end(), -7);
    const std::string where = B > 1 ? fmt("B=%lld in one launch: ", (long long)B) : std::string();
    if (std::string err = run(args(x.data(), B, centres.data(), assign.data())); !err.empty()) return where + err;
    for (int64_t b = 0; b + 1 < B; ++b) {
      const Item& w = want[size_t(b)];
      if (!std::equal(w.centres.begin(), w.centres.end(), centres.begin() + b * m))
        return where + fmt("item %lld: centres: CUDA ", (long long)b) +
               list(std::vector<int64_t>(centres.begin() + b * m, centres.begin() + (b + 1) * m)) + ", CPU " +
               list(w.centres);
      if (!std::equal(w.assign.begin(), w.assign.end(), assign.begin() + b * n))
        return where + fmt("item %lld: assign: CUDA ", (long long)b) +
               list(std::vector<int64_t>(assign.begin() + b * n, assign.begin() + (b + 1) * n)) + ", CPU " +
               list(w.assign);
    }
    if (std::string err = compare_item(want[size_t(B - 1)], n, m, g.data(), f64.data(), i64.data(),
                                       centres.data() + (B - 1) * m, assign.data() + (B - 1) * n);
        !err.empty())
      return where + (B > 1 ? fmt("item %lld: ", (long long)(B - 1)) : std::string()) + err;
    if (centres.back() != -7 || assign.back() != -7) return "a write past the end of centres or assign";
    return "";
  });
}

using KM = std::vector<std::pair<int64_t, int64_t>>;

// The k in {1, 3, 7, min(n, 64)} and m in {1, n/2, n} that exist for n.
KM all_km(int64_t n) {
  std::vector<int64_t> ks = {1, 3, 7, std::min<int64_t>(n, 64)}, ms = {1, n / 2, n};
  KM r;
  for (int64_t k : ks)
    for (int64_t m : ms)
      if (k <= n && m >= 1 && std::find(r.begin(), r.end(), std::make_pair(k, m)) == r.end()) r.emplace_back(k, m);
  return r;
}

// Every check of one input: the CPU against itself, the long double Gram and
// the definition; then CUDA under every schedule, per (k, m).
// `exact`: values whose every fp32 partial sum is exact (G must equal the long
// double Gram, the definition must match in double); `definition`: false where
// the long double definition does not apply (subnormal or overflowing sums).
// `expect(item, b, k, m)` adds a case's own expectations.
using Expect = std::function<std::string(const Item&, int64_t, int64_t, int64_t)>;
int check(const std::string& name, const Points& x, const KM& km, bool exact, Ftz ftz,
          const Expect& expect = nullptr, bool definition = true) {
  int failures = 0;
  auto fail = [&](const std::string& what) {
    std::printf("FAIL %s: %s\n", name.c_str(), what.c_str());
    std::fflush(stdout);
    ++failures;
  };
  const int64_t n = x.n, D = x.D;
  std::vector<std::vector<float>> grams;
  std::vector<Exact> sums;
  for (int64_t b = 0; b < x.B; ++b) {
    grams.push_back(cpu_gram_item(x, b, kOpChunk, false));
    const std::vector<float>& g = grams.back();
    const int64_t kc = D > 16 ? 16 : 2;
    if (std::memcmp(cpu_gram_item(x, b, kc, true).data(), g.data(), g.size() * sizeof(float)) != 0)
      fail(fmt("item %lld: the CPU's G changes with chunks of %lld channels and the tasks reversed", (long long)b,
               (long long)kc));
    sums.push_back(exact_sums(x, b));
    const Exact& e = sums.back();
    const long double gamma = D * 0x1.0p-24L / (1 - D * 0x1.0p-24L);
    for (int64_t q = 0; q < n * n; ++q) {
      const long double got = g[size_t(q)], want = e.dot[size_t(q)];
      const bool ok = !definition || (exact ? got == want : fabsl(got - want) <= gamma * e.mag[size_t(q)]);
      if (!ok) {
        fail(fmt("item %lld: CPU G[%lld][%lld] = %.9g, exact %.12Lg%s", (long long)b, (long long)(q / n),
                 (long long)(q % n), double(got), want, exact ? " (exact data)" : " (beyond the fp32 bound)"));
        break;
      }
    }
  }
  for (size_t q = 0; q < km.size(); ++q) {
    const auto [k, m] = km[q];
    const std::string kname = name + fmt(" k%lld m%lld", (long long)k, (long long)m);
    std::vector<Item> items(static_cast<size_t>(x.B));
    for (int64_t b = 0; b < x.B; ++b) {
      Item& it = items[size_t(b)];
      it.g = grams[size_t(b)];
      cpu_rows(it, n, D, k, m);
      const std::string def = definition ? check_definition(x, sums[size_t(b)], it, k, m, exact) : "";
      if (!def.empty()) fail(fmt("k%lld m%lld item %lld: ", (long long)k, (long long)m, (long long)b) + def);
      if (expect) {
        const std::string e = expect(it, b, k, m);
        if (!e.empty()) fail(fmt("k%lld m%lld item %lld: ", (long long)k, (long long)m, (long long)b) + e);
      }
    }
    failures += check_cuda(kname, x, k, m, items, ftz, q == 0);
  }
  return failures;
}

void add(Cases& out, std::string name, std::function<int()> fn, Size size = Size::kQuick) {
  out.push_back({std::move(name), std::move(fn), size});
}

enum class Data { kNormal, kClustered, kQuarters };
const char* data_name(Data d) { return d == Data::kNormal ? "normal" : d == Data::kClustered ? "clustered" : "quarters"; }

struct Spec {
  DType dt;
  int64_t B, n, D;
  Data data;
  Layout layout;
  KM km;
  uint64_t seed;
};

void add_random(Cases& out, const Spec& s, Size size) {
  std::string name = fmt("%s %s B%lld n%lld D%lld%s", data_name(s.data), dname(s.dt), (long long)s.B,
                         (long long)s.n, (long long)s.D, lname(s.layout));
  add(out, name, [s, name] {
    Rng g(s.seed);
    const int64_t count = s.B * s.n * s.D;
    const std::vector<float> v = s.data == Data::kNormal ? randn(g, count)
                                 : s.data == Data::kClustered ? clustered(g, s.B, s.n, s.D)
                                                              : quarters(g, count, 2);
    return check(name, make_points(s.dt, v, s.B, s.n, s.D, s.layout), s.km, s.data == Data::kQuarters, Ftz::kBoth);
  }, size);
}

}  // namespace

std::string dpc_knn_notes() {
  return fmt("definition checks: %lld exact (ties included), %lld separated from ties; skipped near a tie: "
             "%lld density orders, %lld m-th scores, %lld nearest centres",
             (long long)g_def_exact, (long long)g_def_separated, (long long)g_skip_density, (long long)g_skip_score,
             (long long)g_skip_centre);
}

void add_dpc_knn_cases(Cases& out) {
  const int64_t ns[] = {1, 2, 5, 63, 64, 65, 130, 200};
  const int64_t Ds[] = {1, 2, 3, 15, 16, 17, 33, 100};
  const Layout layouts[] = {Layout::kContiguous, Layout::kGapped, Layout::kBatchGapped, Layout::kPointMajor};
  // Every n x D for each dtype; the data kind, B, layout and the (k, m) pairs
  // rotate over the grid (every pair of all_km(n) comes up for some n x D).
  // Quick (what the other schedules and the sanitizers run; each launch
  // sequence costs ~1000 emulated threads, which ASan makes slow): f32 whole
  // and an eighth of bf16 / f16, one (k, m) each; full: the rest of bf16 /
  // f16, and another (k, m) pair for every n x D.
  int idx = 0;
  for (DType dt : kDTypes)
    for (int ni = 0; ni < 8; ++ni)
      for (int di = 0; di < 8; ++di, ++idx) {
        const int64_t n = ns[ni], D = Ds[di];
        const Data data = Data((ni + 2 * di + int(dt)) % 3);
        const int64_t B = (ni + di) % 3 == 0 ? 3 : 1;
        const Layout layout = layouts[(ni + 3 * di) % 4];
        const KM every = all_km(n);
        KM two;
        for (int q = 0; q < 2; ++q) {
          const auto p = every[size_t(idx * 5 + q * 7) % every.size()];
          if (std::find(two.begin(), two.end(), p) == two.end()) two.push_back(p);
        }
        const bool quick = dt == DType::kF32 || (ni + 3 * di + int(dt)) % 8 == 0;
        const uint64_t seed = uint64_t(1000 + idx);
        if (quick) add_random(out, {dt, B, n, D, data, layout, {two[0]}, seed}, Size::kQuick);
        const KM rest(two.begin() + (quick ? 1 : 0), two.end());
        if (!rest.empty()) add_random(out, {dt, B, n, D, data, layout, rest, seed}, Size::kFull);
      }
  // The longest neighbour lists (k = 64) over two row blocks, quick too.
  add_random(out, {DType::kBF16, 1, 200, 33, Data::kClustered, Layout::kContiguous, {{64, 17}}, 76}, Size::kQuick);
  // Broadcast layouts: sb = 0 (every item the same storage); sn = 0 below.
  for (DType dt : kDTypes)
    add_random(out, {dt, 3, 63, 33, Data::kClustered, Layout::kBatchBroadcast, {{7, 20}}, 78},
               dt == DType::kF16 ? Size::kQuick : Size::kFull);

  // Duplicate points: each point a copy of one of `distinct` random rows, at
  // random positions. Copies are at distance exactly 0 and tie in density; the
  // lower index is denser, so a later copy has delta 0 and score 0, and while
  // m <= distinct the centres are first copies, each joined by its copies.
  // Exact data (quarters: the definition in double, ties included) and normal.
  int rot = 0;  // which dtype of a special case is quick
  for (DType dt : kDTypes)
    for (const auto& [n, D, distinct, data] :
         {std::tuple<int64_t, int64_t, int64_t, Data>{40, 17, 15, Data::kQuarters}, {40, 3, 9, Data::kNormal},
          {130, 16, 40, Data::kQuarters}, {65, 100, 20, Data::kNormal}, {63, 1, 5, Data::kQuarters}}) {
      const std::string name = fmt("duplicates %s %s B2 n%lld D%lld distinct%lld", data_name(data), dname(dt),
                                   (long long)n, (long long)D, (long long)distinct);
      const bool quick = rot++ % 3 == 0;
      add(out, name, [=] {
        Rng g(uint64_t(n * 1000 + D));
        const int64_t B = 2;
        std::vector<float> v(static_cast<size_t>(B * n * D));
        std::vector<int64_t> first(static_cast<size_t>(B * n));  // the first copy of each point
        for (int64_t b = 0; b < B; ++b) {
          const std::vector<float> base = data == Data::kQuarters ? quarters(g, distinct * D, 8) : randn(g, distinct * D);
          std::vector<int64_t> seen(size_t(distinct), -1);
          for (int64_t i = 0; i < n; ++i) {
            const int64_t r = i < distinct ? (i * 7) % distinct : g.below(distinct);  // every row at least once
            std::copy(base.begin() + r * D, base.begin() + (r + 1) * D, v.begin() + (b * n + i) * D);
            if (seen[size_t(r)] < 0) seen[size_t(r)] = i;
            first[size_t(b * n + i)] = seen[size_t(r)];
          }
        }
        const Expect expect = [first, n, distinct](const Item& it, int64_t b, int64_t, int64_t m) -> std::string {
          if (m > distinct) return "";
          for (int64_t c : it.centres)
            if (first[size_t(b * n + c)] != c) return fmt("centre %lld is a later copy", (long long)c);
          for (int64_t i = 0; i < n; ++i) {
            const int64_t f = first[size_t(b * n + i)];
            if (std::binary_search(it.centres.begin(), it.centres.end(), f) && it.centres[size_t(it.assign[size_t(i)])] != f)
              return fmt("point %lld does not join its first copy %lld, a centre", (long long)i, (long long)f);
          }
          return "";
        };
        const KM km = {{3, distinct / 2}, {7, distinct}, {std::min<int64_t>(n, 64), n / 2}, {2, n}};
        return check(name, make_points(dt, v, B, n, D, Layout::kGapped), km, data == Data::kQuarters, Ftz::kBoth,
                     expect);
      }, quick ? Size::kQuick : Size::kFull);
    }

  // All points identical (stored n times, and as one broadcast row, sn = 0):
  // every distance 0 (g_ij == g_ii == g_jj bit for bit), every score 0, so
  // the centres are 0..m-1 and every other point joins centre 0.
  const Expect all_same = [](const Item& it, int64_t, int64_t, int64_t m) -> std::string {
    for (int64_t q = 0; q < m; ++q)
      if (it.centres[size_t(q)] != q) return "centres " + list(it.centres) + ", expected 0..m-1";
    for (size_t i = 0; i < it.assign.size(); ++i)
      if (it.assign[i] != (int64_t(i) < m ? int64_t(i) : 0)) return fmt("assign[%zu] = %lld", i, (long long)it.assign[i]);
    for (size_t i = 0; i < it.mean.size(); ++i)
      if (it.mean[i] != 0.0 || it.score[i] != 0.0) return fmt("point %zu: mean %.17g, score %.17g", i, it.mean[i],
                                                               it.score[i]);
    return "";
  };
  for (DType dt : kDTypes)
    for (Layout l : {Layout::kContiguous, Layout::kRowsBroadcast})
      for (const auto& [n, D] : {std::pair<int64_t, int64_t>{30, 16}, {130, 33}, {65, 1}}) {
        const std::string name = fmt("identical %s B2 n%lld D%lld%s", dname(dt), (long long)n, (long long)D, lname(l));
        add(out, name, [=] {
          Rng g(uint64_t(n + D));
          const int64_t B = 2;
          std::vector<float> v(static_cast<size_t>(B * n * D));
          for (int64_t b = 0; b < B; ++b) {
            const std::vector<float> row = randn(g, D);
            for (int64_t i = 0; i < n; ++i) std::copy(row.begin(), row.end(), v.begin() + (b * n + i) * D);
          }
          const KM km = {{std::min<int64_t>(n, 64), 3}, {7, n}};
          // normal values: not exact data; the definition has all ties, so
          // all_same states the result instead
          return check(name, make_points(dt, v, B, n, D, l), km, false, Ftz::kBoth, all_same, false);
        }, rot++ % 3 == 0 ? Size::kQuick : Size::kFull);
      }

  // Points on grids and lines: many exactly equal distances (coordinates on
  // the 1/4 grid: exact data), in shuffled order, padded with zero channels.
  // "far": a line at spacing 4, whose mean squared distances (up to ~20000)
  // make exp(-mean) subnormal or 0 in double: most scores tie at 0. Without
  // flush-to-zero only (the emulator's FTZ flushes doubles too; a GPU's does
  // not).
  struct GridSpec {
    const char* what;
    std::vector<int64_t> extent;  // grid size per used channel
    int64_t D;
    float step;
  };
  const GridSpec grids[] = {{"line", {9}, 4, 0.25f},          {"line", {65}, 1, 0.25f},  {"square", {8, 8}, 2, 0.25f},
                            {"square", {13, 10}, 17, 0.25f},  {"cube", {4, 4, 4}, 3, 0.25f},
                            {"cube", {5, 5, 5}, 33, 0.25f},   {"far line", {65}, 1, 4.f}};
  for (DType dt : kDTypes)
    for (const GridSpec& gs : grids)
      for (bool shuffled : {false, true}) {
        int64_t n = 1;
        for (int64_t e : gs.extent) n *= e;
        const std::string name = fmt("%s %s n%lld D%lld%s", gs.what, dname(dt), (long long)n, (long long)gs.D,
                                     shuffled ? " shuffled" : "");
        add(out, name, [=] {
          std::vector<int64_t> perm(static_cast<size_t>(n));
          std::iota(perm.begin(), perm.end(), int64_t(0));
          Rng g(uint64_t(n * 31 + gs.D));
          if (shuffled)
            for (int64_t i = n - 1; i > 0; --i) std::swap(perm[size_t(i)], perm[size_t(g.below(i + 1))]);
          std::vector<float> v(size_t(n * gs.D), 0.f);
          for (int64_t i = 0; i < n; ++i) {
            int64_t p = perm[size_t(i)];
            for (size_t c = 0; c < gs.extent.size(); ++c) {
              v[size_t(i * gs.D + int64_t(c) * (gs.D / int64_t(gs.extent.size())))] = float(p % gs.extent[c]) * gs.step;
              p /= gs.extent[c];
            }
          }
          KM km = {{1, 1}, {7, n / 2}, {std::min<int64_t>(n, 64), n}};
          return check(name, make_points(dt, v, 1, n, gs.D, Layout::kContiguous), km, true,
                       gs.step > 1 ? Ftz::kOff : Ftz::kBoth);
        }, rot++ % 3 == 0 ? Size::kQuick : Size::kFull);
      }

  // Subnormal products and sums (scale 1e-20, 1e-22; f32 and bf16): both
  // backends keep IEEE denormals (csrc/cuda/nvcc_flags.txt), so G is the same
  // bits without flush-to-zero; not checked with it.
  for (DType dt : {DType::kF32, DType::kBF16})
    for (float scale : {1e-20f, 1e-22f}) {
      const std::string name = fmt("tiny %s scale=%.0e n65 D33", dname(dt), scale);
      add(out, name, [=] {
        Rng g(5);
        const Points x = make_points(dt, randn(g, 2 * 65 * 33, scale), 2, 65, 33, Layout::kContiguous);
        return check(name, x, {{3, 5}, {64, 65}}, false, Ftz::kOff, nullptr, false);
      }, (dt == DType::kF32) == (scale > 1e-21f) ? Size::kQuick : Size::kFull);
    }

  // Squares that overflow fp32 (a few points scaled by 1e20, finite inputs):
  // G holds inf and NaN, distances inf (NaN is read as inf), means and
  // deltas inf; a zero density at an infinite distance must score 0, not
  // NaN (with NaN scores CUDA flagged more than m centres and wrote past
  // centres[m]; the CPU's nth_element had no strict weak order).
  const Expect no_nan = [](const Item& it, int64_t, int64_t, int64_t) -> std::string {
    for (size_t i = 0; i < it.score.size(); ++i)
      if (std::isnan(it.score[i])) return fmt("score[%zu] is NaN", i);
    return "";
  };
  for (DType dt : {DType::kF32, DType::kBF16}) {
    const std::string name = fmt("overflow %s n20 D4", dname(dt));
    add(out, name, [=] {
      Rng g(6);
      std::vector<float> v = randn(g, 20 * 4);
      for (int64_t i : {3, 11, 12})
        for (int64_t c = 0; c < 4; ++c) v[size_t(i * 4 + c)] *= 1e20f;
      return check(name, make_points(dt, v, 1, 20, 4, Layout::kContiguous), {{1, 4}, {2, 4}, {5, 1}, {5, 4}, {5, 20}},
                   false, Ftz::kBoth, no_nan, false);
    });
  }

  add(out, "B=0 launches nothing", [] {
    int f = 0;
    const uint64_t before = cudasim::stats().launches;
    for (DType dt : kDTypes) f += check(fmt("B=0 %s", dname(dt)), make_points(dt, {}, 0, 5, 8, Layout::kContiguous),
                                        {{3, 2}}, false, Ftz::kBoth);
    if (cudasim::stats().launches != before) std::printf("FAIL B=0: a kernel was launched\n"), ++f;
    return f;
  });

  add(out, "launch limit", [] {  // planning only: sizes no test could allocate
    int f = 0;
    vk::DpcKnnArgs a{};
    a.dtype = DType::kBF16, a.B = 1, a.D = 64, a.sn = 64, a.k = 1, a.m = 1;
    a.n = vk::kMaxGridYZ * 64;  // 65535 tiles of 64 rows
    if (const char* e = vk::dpc_knn_plan_error(a)) std::printf("FAIL launch limit: 65535 * 64 points refused: %s\n", e), ++f;
    a.n += 1;
    if (!vk::dpc_knn_plan_error(a)) std::printf("FAIL launch limit: 65535 * 64 + 1 points accepted\n"), ++f;
    a.n = (int64_t(1) << 31) - 1;
    if (!vk::dpc_knn_plan_error(a)) std::printf("FAIL launch limit: 2^31 - 1 points accepted\n"), ++f;
    a.n = 4096, a.B = int64_t(1) << 20;  // many items are fine (one launch sequence each)
    if (const char* e = vk::dpc_knn_plan_error(a)) std::printf("FAIL launch limit: %s\n", e), ++f;
    return f;
  });
}

}  // namespace harness
