// W4A8: the CUDA quantizer, packer and both GEMM kernels
// (csrc/cuda/w4a8_kernels.cuh, run by the emulator through their launch
// planning) against the plain C++ CPU kernel (csrc/cpu/w4a8_kernel.cpp).
//   quantize   codes, scales and row sums bit-identical, including zero,
//              outlier, tie, subnormal, NaN and Inf rows and strided rows
//              (without flush-to-zero: with it, subnormal rows differ, which
//              a case shows, and is why the CUDA build has no fast math);
//   pack       the [N, K/8, 4] layout, derived here independently;
//   gemm_mma   bit-identical to the CPU (same fp32 operations in the same order);
//   gemm DP4A  within the bound of reassociating the fp32 sum (see
//              compare_gemm: a few units of fp32 rounding of the sum of the
//              magnitudes its lanes add, plus one unit of bf16 / fp16 output);
//   both       trust x_rowsums as given (a perturbed one changes both
//              backends alike), flag every bad weight scale they read, and
//              walk rows beyond the grid with their grid-stride loops.
// Cases: the shapes of tests/test_cuda_parity.py, every output dtype, with and
// without bias, both kernels on every shape they accept.
#include <algorithm>

#include "cpu/w4a8_kernel.h"
#include "cuda/w4a8_kernels.cuh"
#include "harness.h"

namespace harness {
namespace {

using vlmkern::DType;
namespace cuda = vlmkern::cuda;
namespace cpu = vlmkern::cpu;

const DType kDTypes[] = {DType::kF32, DType::kBF16, DType::kF16};
const char* dname(DType d) { return d == DType::kF32 ? "f32" : d == DType::kBF16 ? "bf16" : "f16"; }

struct Shape {
  int64_t M, N, K, G;
};
// tests/test_cuda_parity.py's W4A8 shapes.
const Shape kShapes[] = {{1, 16, 128, 128}, {1, 4096, 4096, 128}, {2, 17, 64, 32}, {3, 100, 384, 64},
                         {5, 33, 96, 96},   {7, 8, 40, 40},       {70, 130, 1024, 128}, {300, 64, 256, 32}};

// ---- activations -------------------------------------------------------------------------

enum Row { kRandom, kZero, kOutlier, kTies, kSubnormal, kNan, kInf, kNegZero };

// x [M, K] with row stride x_sm >= K, stored as dt; rows cycle through `kinds`.
struct Acts {
  DType dt;
  int64_t M, K, x_sm;
  std::vector<uint32_t> f32;
  std::vector<uint16_t> h;
  const void* data() const { return dt == DType::kF32 ? static_cast<const void*>(f32.data()) : h.data(); }
};

Acts make_acts(DType dt, Rng& g, int64_t M, int64_t K, int64_t x_sm, const std::vector<Row>& kinds) {
  Acts a{dt, M, K, x_sm, {}, {}};
  const size_t n = size_t(std::max<int64_t>(M * x_sm, 1));
  if (dt == DType::kF32) a.f32.assign(n, 0x7fc00000u);  // gaps: NaN (must not be read)
  else a.h.assign(n, 0x7e00u);
  for (int64_t m = 0; m < M; ++m) {
    const Row kind = kinds[size_t(m) % kinds.size()];
    for (int64_t k = 0; k < K; ++k) {
      float x = g.normal() * 3.f;
      switch (kind) {
        case kRandom: break;
        case kZero: x = 0.f; break;
        case kOutlier: x = k == 0 ? 1e4f : x; break;
        case kTies: x = k == 0 ? 127.f : float(g.below(255) - 127) + 0.5f; break;  // code = x: ties to even
        case kSubnormal:  // fp32 subnormals; for 16-bit types their smallest subnormals
          x = dt == DType::kF32 ? x * 1e-39f : x * (dt == DType::kF16 ? 3e-8f : 1e-39f);
          break;
        case kNan: x = k == K / 2 ? NAN : x; break;
        case kInf: x = k == 1 ? -INFINITY : x; break;
        case kNegZero: x = -0.f; break;
      }
      const size_t at = size_t(m * x_sm + k);
      if (dt == DType::kF32) a.f32[at] = bits(x);
      else a.h[at] = dt == DType::kBF16 ? to_bf16(x) : to_fp16(x);
    }
  }
  return a;
}

struct Quantized {
  std::vector<int8_t> codes;
  std::vector<float> scales;
  std::vector<int32_t> rowsums;
};

Quantized cpu_quantize(const Acts& x, int64_t G) {
  Quantized q{std::vector<int8_t>(size_t(x.M * x.K)), std::vector<float>(size_t(x.M)),
              std::vector<int32_t>(size_t(x.M * (x.K / G)))};
  const cpu::W4A8QuantArgs a{x.dt, x.data(), x.M, x.K, G, x.x_sm, q.codes.data(), q.scales.data(),
                             q.rowsums.data()};
  cpu::w4a8_quantize_rows(a, vlmkern::CpuIsa::kScalar, 0, x.M);
  return q;
}

std::string cuda_quantize(const Acts& x, int64_t G, Quantized& q) {
  q = {std::vector<int8_t>(size_t(x.M * x.K), int8_t(0x5a)), std::vector<float>(size_t(x.M), -1.f),
       std::vector<int32_t>(size_t(x.M * (x.K / G)), 0x5a5a5a5a)};
  const cuda::W4A8QuantProblem p{x.dt, x.data(), x.M, x.K, G, x.x_sm, q.codes.data(), q.scales.data(),
                                 q.rowsums.data()};
  if (const char* why = cuda::w4a8_quantize_plan_error(p)) return fmt("plan error: %s", why);
  const cudaError_t e = cuda::w4a8_quantize_launch(p, nullptr);
  return e == cudaSuccess ? "" : fmt("launch: %s", cudaGetErrorString(e));
}

std::string compare_quantized(const Quantized& got, const Quantized& want, int64_t K, int64_t G) {
  for (size_t i = 0; i < want.scales.size(); ++i)
    if (bits(got.scales[i]) != bits(want.scales[i]) && !(std::isnan(got.scales[i]) && std::isnan(want.scales[i])))
      return fmt("row %zu scale: CUDA %a, CPU %a", i, got.scales[i], want.scales[i]);
  for (size_t i = 0; i < want.codes.size(); ++i)
    if (got.codes[i] != want.codes[i])
      return fmt("row %lld k %lld code: CUDA %d, CPU %d", (long long)(int64_t(i) / K), (long long)(int64_t(i) % K),
                 got.codes[i], want.codes[i]);
  for (size_t i = 0; i < want.rowsums.size(); ++i)
    if (got.rowsums[i] != want.rowsums[i])
      return fmt("row %lld group %lld row sum: CUDA %d, CPU %d", (long long)(int64_t(i) / (K / G)),
                 (long long)(int64_t(i) % (K / G)), got.rowsums[i], want.rowsums[i]);
  return "";
}

int quantize_case(DType dt, Shape s, int64_t x_sm, const std::vector<Row>& kinds, Ftz ftz, uint64_t seed) {
  Rng g(seed);
  const Acts x = make_acts(dt, g, s.M, s.K, x_sm, kinds);
  const Quantized want = cpu_quantize(x, s.G);
  return each_schedule(fmt("quantize %s M%lld K%lld G%lld stride %lld", dname(dt), (long long)s.M,
                           (long long)s.K, (long long)s.G, (long long)x_sm),
                       ftz, [&]() -> std::string {
                         Quantized got;
                         const std::string e = cuda_quantize(x, s.G, got);
                         return e.empty() ? compare_quantized(got, want, s.K, s.G) : e;
                       });
}

// ---- weights and the GEMM ----------------------------------------------------------------

struct Weights {
  int64_t N, K, G;
  std::vector<uint8_t> nib;        // [N, K/2] logical
  std::vector<float> scales;       // [N, K/G]
  std::vector<uint8_t> cpu_packed;  // [ceil(N/16), K/8, 64]
  std::vector<uint8_t> cuda_packed;  // [N, K/8, 4], by the CUDA pack kernel
};

// The CUDA layout, derived from the format's definition (not math::pack_unit).
std::vector<uint8_t> expected_cuda_layout(const std::vector<uint8_t>& nib, int64_t N, int64_t K) {
  std::vector<uint8_t> out(size_t(N * K / 2));
  auto nibble = [&](int64_t n, int64_t k) { return (nib[size_t(n * (K / 2) + k / 2)] >> (4 * (k % 2))) & 0xF; };
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < K / 8; ++o)
      for (int j = 0; j < 4; ++j)
        out[size_t((n * (K / 8) + o) * 4 + j)] = uint8_t(nibble(n, 8 * o + j) | (nibble(n, 8 * o + 4 + j) << 4));
  return out;
}

std::string make_weights(Rng& g, int64_t N, int64_t K, int64_t G, Weights& w) {
  w.N = N, w.K = K, w.G = G;
  w.nib.resize(size_t(N * K / 2));
  for (uint8_t& b : w.nib) b = uint8_t(g.below(256));
  w.scales.resize(size_t(N * (K / G)));
  for (float& s : w.scales) s = std::fabs(g.normal()) * 0.01f + 1e-3f;
  const int64_t nb = (N + 15) / 16;
  w.cpu_packed.resize(size_t(nb * (K / 8) * 64));
  cpu::w4a8_pack_blocks(w.nib.data(), N, K, w.cpu_packed.data(), 0, nb);
  w.cuda_packed.assign(size_t(N * K / 2), 0x5a);
  const cudaError_t e = cuda::w4a8_pack_launch(w.nib.data(), N, K, w.cuda_packed.data(), nullptr);
  if (e != cudaSuccess) return fmt("pack launch: %s", cudaGetErrorString(e));
  if (w.cuda_packed != expected_cuda_layout(w.nib, N, K)) return "pack: the CUDA layout differs from the format";
  return "";
}

struct GemmInputs {
  const Quantized* q;
  const Weights* w;
  std::vector<float> bias;  // empty: none
  DType out_dt;
};

std::vector<float> as_floats(const std::vector<uint8_t>& raw, DType dt) {
  std::vector<float> v;
  if (dt == DType::kF32) {
    v.resize(raw.size() / 4);
    std::memcpy(v.data(), raw.data(), raw.size());
  } else {
    for (size_t i = 0; i < raw.size(); i += 2) {
      const uint16_t h = uint16_t(raw[i] | (raw[i + 1] << 8));
      v.push_back(dt == DType::kBF16 ? from_bf16(h) : from_fp16(h));
    }
  }
  return v;
}

// CPU output (plain C++ path) and whether it flagged a bad scale.
std::vector<float> cpu_gemm(const GemmInputs& in, int64_t M, bool* bad) {
  const Weights& w = *in.w;
  const int64_t es = in.out_dt == DType::kF32 ? 4 : 2;
  std::vector<uint8_t> raw(size_t(M * w.N * es));
  cpu::W4A8GemmArgs a{};
  a.codes = in.q->codes.data();
  a.ld_codes = w.K;
  a.x_scales = in.q->scales.data();
  a.rowsums = in.q->rowsums.data();
  a.packed = w.cpu_packed.data();
  a.w_scales = w.scales.data();
  a.bias = in.bias.empty() ? nullptr : in.bias.data();
  a.M = M, a.N = w.N, a.K = w.K, a.G = w.G;
  a.out = raw.data();
  a.out_dtype = in.out_dt;
  *bad = cpu::w4a8_gemm_blocks(a, vlmkern::CpuIsa::kScalar, 0, (w.N + 15) / 16);
  return as_floats(raw, in.out_dt);
}

std::string cuda_gemm(const GemmInputs& in, int64_t M, cuda::W4A8GemmPath path, int64_t max_grid_y,
                      std::vector<float>& out, bool* bad) {
  const Weights& w = *in.w;
  const int64_t es = in.out_dt == DType::kF32 ? 4 : 2;
  std::vector<uint8_t> raw(size_t(M * w.N * es), 0xff);  // NaN: every output must be written
  int flag = 0;
  const cuda::W4A8GemmProblem p{in.q->codes.data(), in.q->scales.data(), in.q->rowsums.data(),
                                w.cuda_packed.data(), w.scales.data(),
                                in.bias.empty() ? nullptr : in.bias.data(), M, w.N, w.K, w.G, raw.data(),
                                in.out_dt, &flag};
  const cudaError_t e = cuda::w4a8_gemm_launch(p, path, nullptr, max_grid_y);
  if (e != cudaSuccess) return fmt("launch: %s", cudaGetErrorString(e));
  out = as_floats(raw, in.out_dt);
  *bad = flag != 0;
  return "";
}

// The scale of the DP4A kernel's reassociation error per output: sx times
// the sum, over the pieces its lanes add in fp32 (each 32-k chunk of a group,
// and the group's -8 x row sum), of |piece x group scale|. In double.
std::vector<double> magnitudes(const GemmInputs& in, int64_t M) {
  const Weights& w = *in.w;
  const int64_t ng = w.K / w.G;
  std::vector<double> mag(size_t(M * w.N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < w.N; ++n) {
      double s = 0;
      for (int64_t g = 0; g < ng; ++g) {
        const double sw = w.scales[size_t(n * ng + g)];
        int64_t piece = 0;
        for (int64_t k = g * w.G; k < (g + 1) * w.G; ++k) {
          const int nib = (w.nib[size_t(n * (w.K / 2) + k / 2)] >> (4 * (k % 2))) & 0xF;
          piece += int64_t(in.q->codes[size_t(m * w.K + k)]) * nib;
          if (k % 32 == 31 || k == (g + 1) * w.G - 1) s += std::fabs(double(piece) * sw), piece = 0;
        }
        s += std::fabs(8.0 * double(in.q->rowsums[size_t(m * ng + g)]) * sw);
      }
      mag[size_t(m * w.N + n)] = s * std::fabs(double(in.q->scales[size_t(m)]));
    }
  return mag;
}

// The DP4A bound: both results are within (pieces + 2) roundings of the
// exact sum of pieces (CPU: groups + 2), then x scale, bias and the output
// dtype round once each.
std::string compare_gemm(const GemmInputs& in, const std::vector<float>& got, const std::vector<float>& want,
                         bool exact, const std::vector<double>& mag) {
  const Weights& w = *in.w;
  const int64_t N = w.N, pieces = w.K / 32 + w.K / w.G;
  const double u = 0x1p-24;
  // one unit in the last place of the output format, at most 2^-7 (bf16) or 2^-10 (fp16) of |c|
  const double ulp = in.out_dt == DType::kF32 ? 0 : (in.out_dt == DType::kBF16 ? 0x1p-7 : 0x1p-10);
  for (size_t i = 0; i < want.size(); ++i) {
    const float c = want[i], d = got[i];
    if (std::isnan(c) || std::isnan(d)) {
      if (std::isnan(c) != std::isnan(d)) return fmt("m %zu n %zu: CUDA %g, CPU %g", i / size_t(N), i % size_t(N), d, c);
      continue;
    }
    if (exact) {
      if (bits(c) != bits(d))
        return fmt("m %zu n %zu: CUDA %a, CPU %a (the tensor-core path must be bit-identical)", i / size_t(N),
                   i % size_t(N), d, c);
      continue;
    }
    const double bias = in.bias.empty() ? 0.0 : std::fabs(double(in.bias[i % size_t(N)]));
    const double bound = double(pieces + 2 * (w.K / w.G) + 4) * u * mag[i] + 4 * u * (std::fabs(double(c)) + bias) +
                         ulp * std::fabs(double(c)) + 1e-30;
    if (!(std::fabs(double(d) - double(c)) <= bound))
      return fmt("m %zu n %zu: CUDA %.9g, CPU %.9g (|diff| %.3g > %.3g)", i / size_t(N), i % size_t(N), d, c,
                 std::fabs(double(d) - double(c)), bound);
  }
  return "";
}

const char* path_name(cuda::W4A8GemmPath p) { return p == cuda::W4A8GemmPath::kMma ? "mma" : "dp4a"; }

// Runs every kernel the shape admits against the CPU.
int gemm_case(Shape s, DType out_dt, bool with_bias, uint64_t seed, const std::vector<Row>& kinds,
              int64_t max_grid_y = cuda::kMaxGridYZ, int rowsum_delta = 0) {
  Rng g(seed);
  Weights w;
  const std::string name = fmt("gemm M%lld N%lld K%lld G%lld out %s%s%s%s", (long long)s.M, (long long)s.N,
                               (long long)s.K, (long long)s.G, dname(out_dt), with_bias ? " bias" : "",
                               max_grid_y < cuda::kMaxGridYZ ? " grid-stride" : "",
                               rowsum_delta ? " perturbed-rowsums" : "");
  if (const std::string e = make_weights(g, s.N, s.K, s.G, w); !e.empty()) {
    std::printf("FAIL %s: %s\n", name.c_str(), e.c_str());
    return 1;
  }
  const Acts x = make_acts(DType::kF32, g, s.M, s.K, s.K, kinds);
  Quantized q = cpu_quantize(x, s.G);
  if (rowsum_delta)
    for (size_t i = 0; i < q.rowsums.size(); i += 3) q.rowsums[i] += rowsum_delta;
  GemmInputs in{&q, &w, {}, out_dt};
  if (with_bias) {
    in.bias.resize(size_t(s.N));
    for (float& b : in.bias) b = g.normal();
  }
  bool cpu_bad = false;
  const std::vector<float> want = cpu_gemm(in, s.M, &cpu_bad);
  const std::vector<double> mag = magnitudes(in, s.M);
  int failures = 0;
  for (auto path : {cuda::W4A8GemmPath::kDp4a, cuda::W4A8GemmPath::kMma}) {
    if (path == cuda::W4A8GemmPath::kMma && s.G % 32 != 0) continue;
    failures += each_schedule(name + " " + path_name(path), Ftz::kOff, [&]() -> std::string {
      std::vector<float> got;
      bool bad = true;
      if (std::string e = cuda_gemm(in, s.M, path, max_grid_y, got, &bad); !e.empty()) return e;
      if (bad || cpu_bad) return fmt("bad-scale flag set (CUDA %d, CPU %d) for valid scales", int(bad), int(cpu_bad));
      return compare_gemm(in, got, want, path == cuda::W4A8GemmPath::kMma, mag);
    });
  }
  return failures;
}

// Every kind of bad scale is flagged by both backends, on both CUDA kernels.
int bad_scale_case() {
  int failures = 0;
  const float bad_values[] = {0.f, -0.5f, NAN, INFINITY, -0.f};
  for (float v : bad_values) {
    Rng g(40);
    Weights w;
    if (!make_weights(g, 20, 128, 32, w).empty()) return 1;
    w.scales[size_t(19 * 4 + 3)] = v;  // the last channel's last group
    const Acts x = make_acts(DType::kF32, g, 17, 128, 128, {kRandom});
    const Quantized q = cpu_quantize(x, 32);
    const GemmInputs in{&q, &w, {}, DType::kF32};
    bool cpu_bad = false;
    cpu_gemm(in, 17, &cpu_bad);
    for (auto path : {cuda::W4A8GemmPath::kDp4a, cuda::W4A8GemmPath::kMma})
      failures += each_schedule(fmt("bad scale %g %s", double(v), path_name(path)), Ftz::kOff, [&]() -> std::string {
        std::vector<float> got;
        bool bad = false;
        if (std::string e = cuda_gemm(in, 17, path, cuda::kMaxGridYZ, got, &bad); !e.empty()) return e;
        if (!bad || !cpu_bad) return fmt("not flagged (CUDA %d, CPU %d)", int(bad), int(cpu_bad));
        return "";
      });
  }
  return failures;
}

// What flush-to-zero would do to the exact kernels: subnormal activations
// quantize differently, and a subnormal (valid) weight scale is read as 0 and
// flagged. This is why the CUDA build keeps IEEE denormals.
int ftz_difference_case() {
  Rng g(50);
  const Acts x = make_acts(DType::kF32, g, 4, 64, 64, {kSubnormal});
  const Quantized want = cpu_quantize(x, 32);
  Quantized got;
  cudasim::settings().ftz = true;
  const std::string e = cuda_quantize(x, 32, got);
  cudasim::settings().ftz = false;
  int failures = 0;
  if (!e.empty() || compare_quantized(got, want, 64, 32).empty()) {
    std::printf("FAIL ftz difference: subnormal rows quantize the same under flush-to-zero (%s)\n", e.c_str());
    ++failures;
  }
  Weights w;
  if (!make_weights(g, 8, 64, 32, w).empty()) return failures + 1;
  w.scales[0] = 1e-40f;
  const Acts x2 = make_acts(DType::kF32, g, 16, 64, 64, {kRandom});
  const Quantized q = cpu_quantize(x2, 32);
  const GemmInputs in{&q, &w, {}, DType::kF32};
  for (bool ftz : {false, true}) {
    std::vector<float> out;
    bool bad = false;
    cudasim::settings().ftz = ftz;
    const std::string err = cuda_gemm(in, 16, cuda::W4A8GemmPath::kMma, cuda::kMaxGridYZ, out, &bad);
    cudasim::settings().ftz = false;
    if (!err.empty() || bad != ftz) {
      std::printf("FAIL ftz difference: subnormal scale flagged=%d with ftz=%d\n", int(bad), int(ftz));
      ++failures;
    }
  }
  return failures;
}

void add(Cases& out, std::string name, std::function<int()> fn, Size size = Size::kQuick) {
  out.push_back({std::move(name), std::move(fn), size});
}

}  // namespace

void add_w4a8_cases(Cases& out) {
  const std::vector<Row> mixed = {kRandom, kZero, kOutlier, kTies, kRandom, kNegZero};
  for (DType dt : kDTypes)
    for (const Shape& s : kShapes)
      add(out, fmt("quantize %s M%lld K%lld", dname(dt), (long long)s.M, (long long)s.K),
          [dt, s, mixed] { return quantize_case(dt, s, s.K, mixed, Ftz::kBoth, uint64_t(s.M * 131 + s.K)); },
          s.N * s.K > (int64_t(1) << 20) ? Size::kFull : Size::kQuick);
  for (DType dt : kDTypes)
    add(out, fmt("quantize %s subnormal nan inf strided", dname(dt)), [dt] {
      return quantize_case(dt, {9, 0, 96, 32}, 104, {kSubnormal, kNan, kInf, kRandom, kSubnormal}, Ftz::kOff, 7);
    });
  add(out, "ftz difference on subnormals", ftz_difference_case);

  for (const Shape& s : kShapes)
    for (DType out_dt : kDTypes)
      add(out, fmt("gemm M%lld N%lld K%lld G%lld %s", (long long)s.M, (long long)s.N, (long long)s.K,
                   (long long)s.G, dname(out_dt)),
          [s, out_dt, mixed] { return gemm_case(s, out_dt, out_dt != DType::kBF16, uint64_t(s.N + s.K), mixed); },
          s.N * s.K > (int64_t(1) << 20) || (s.M * s.N * s.K > (int64_t(1) << 22) && out_dt != DType::kF32)
              ? Size::kFull
              : Size::kQuick);
  // The parity test's tensor-core shapes, and rows beyond the grid.
  for (const Shape& s : {Shape{16, 32, 128, 32}, Shape{17, 40, 256, 64}, Shape{300, 64, 256, 256}})
    add(out, fmt("gemm tensor-core M%lld N%lld K%lld G%lld", (long long)s.M, (long long)s.N, (long long)s.K,
                 (long long)s.G),
        [s] { return gemm_case(s, DType::kF32, true, 3, {kRandom}); });
  add(out, "gemm grid-stride rows", [] { return gemm_case({300, 40, 128, 32}, DType::kF32, true, 9, {kRandom}, 2); });
  add(out, "gemm trusts x_rowsums", [] {
    return gemm_case({33, 24, 128, 32}, DType::kF32, false, 10, {kRandom}, cuda::kMaxGridYZ, 3);
  });
  add(out, "gemm subnormal and nan rows", [] {
    return gemm_case({20, 24, 128, 64}, DType::kF32, true, 11, {kSubnormal, kNan, kRandom, kZero});
  });
  add(out, "bad weight scales", bad_scale_case);
  add(out, "launch limits", [] {  // planning only: sizes no test could allocate
    int f = 0;
    const cuda::W4A8QuantProblem q{DType::kF32, nullptr, int64_t(1) << 31, 64, 32, 64, nullptr, nullptr, nullptr};
    if (!cuda::w4a8_quantize_plan_error(q)) std::printf("FAIL launch limits: 2^31 rows accepted\n"), ++f;
    if (!cuda::w4a8_pack_plan_error(int64_t(1) << 32, 1024)) std::printf("FAIL launch limits: pack\n"), ++f;
    if (cuda::w4a8_pack_plan_error(16384, 16384)) std::printf("FAIL launch limits: 16384^2 refused\n"), ++f;
    // M beyond the 65535-tile grid is walked by the grid-stride loop: the grid is capped, not refused
    return f;
  });
}

}  // namespace harness
