// Runs the AVX512-VNNI and AMX-INT8 W4A8 kernels (compiled against SIMDe and a
// software model of the tile instructions, see immintrin.h here) and the plain
// C++ kernel on the same random inputs and checks that the outputs are
// bit-identical. Built and run by tests/test_w4a8_simde.py.
#include <cstdint>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "cpu/w4a8_kernel.h"

namespace vlmkern {
// Stand-ins for csrc/core/cpu_features.cpp: claim AVX512-VNNI.
const CpuFeatures& cpu_features() {
  static CpuFeatures f = [] {
    CpuFeatures c;
    c.avx512f = c.avx512bw = c.avx512vl = c.avx512dq = c.avx512_vnni = c.os_avx512 = true;
    c.amx_tile = c.amx_int8 = c.amx_bf16 = c.os_amx = true;
    return c;
  }();
  return f;
}
namespace cpu {
// The VNNI table reuses the AVX2 quantizer; here the plain one stands in
// (quantization is covered by the Python tests on every real path).
const W4A8IsaOps* w4a8_ops_avx2(CpuIsa) { return nullptr; }
void w4a8_quantize_row_avx2(DType dt, const void* x, int64_t K, int64_t G, int8_t* codes,
                            float* scale, int32_t* rowsums) {
  W4A8QuantArgs q{dt, x, 1, K, G, K, codes, scale, rowsums};
  w4a8_quantize_rows(q, CpuIsa::kScalar, 0, 1);
}
}  // namespace cpu
}  // namespace vlmkern

using namespace vlmkern;

static int amx_cases = 0;

static int run_case(std::mt19937& rng, int64_t M, int64_t N, int64_t K, int64_t G, bool bias,
                    bool unit_scales) {
  std::uniform_int_distribution<int> byte(0, 255), code(-127, 127);
  std::uniform_real_distribution<float> pos(0.001f, 0.1f), uni(-1.f, 1.f);
  std::vector<uint8_t> w(N * K / 2);
  for (auto& b : w) b = uint8_t(byte(rng));
  std::vector<int8_t> codes(M * K);
  for (auto& c : codes) c = int8_t(code(rng));
  const int64_t ng = K / G;
  std::vector<int32_t> rs(M * ng, 0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) rs[m * ng + k / G] += codes[m * K + k];
  std::vector<float> xs(M), ws(N * ng), b(N);
  for (auto& v : xs) v = unit_scales ? 1.f : pos(rng);
  for (auto& v : ws) v = unit_scales ? 1.f : pos(rng);
  for (auto& v : b) v = uni(rng);
  const int64_t nblocks = (N + 15) / 16;
  std::vector<uint8_t> packed(nblocks * (K / 8) * 64);
  cpu::w4a8_pack_blocks(w.data(), N, K, packed.data(), 0, nblocks);
  std::vector<float> out_ref(M * N), out_vnni(M * N);
  cpu::W4A8GemmArgs a{};
  a.codes = codes.data(); a.ld_codes = K; a.x_scales = xs.data(); a.rowsums = rs.data();
  a.packed = packed.data(); a.w_scales = ws.data(); a.bias = bias ? b.data() : nullptr;
  a.M = M; a.N = N; a.K = K; a.G = G; a.out_dtype = DType::kF32;
  a.out = out_ref.data();
  cpu::w4a8_gemm_blocks(a, CpuIsa::kScalar, 0, nblocks);
  if (std::strcmp(cpu::w4a8_path_name(CpuIsa::kAvx512), "avx512_vnni") != 0 ||
      std::strcmp(cpu::w4a8_path_name(CpuIsa::kAmx), "amx") != 0) {
    std::printf("FAIL: the ISA caps do not pick the VNNI / AMX paths\n");
    return 1;
  }
  int fails = 0;
  for (CpuIsa isa : {CpuIsa::kAvx512, CpuIsa::kAmx}) {
    const char* name = isa == CpuIsa::kAmx ? (cpu::w4a8_amx_applies(a, isa) ? "AMX" : "AMX cap (VNNI)")
                                           : "VNNI";
    std::fill(out_vnni.begin(), out_vnni.end(), -1.f);
    a.out = out_vnni.data();
    cpu::w4a8_gemm_blocks(a, isa, 0, nblocks);
    if (std::memcmp(out_ref.data(), out_vnni.data(), out_ref.size() * 4) != 0) {
      int64_t i = 0;
      while (out_ref[i] == out_vnni[i]) ++i;
      std::printf("FAIL M=%ld N=%ld K=%ld G=%ld unit=%d: %s differs from plain C++ at m=%ld n=%ld: "
                  "%.9g vs %.9g\n", long(M), long(N), long(K), long(G), int(unit_scales), name,
                  long(i / N), long(i % N), out_ref[i], out_vnni[i]);
      ++fails;
    }
  }
  if (cpu::w4a8_amx_applies(a, CpuIsa::kAmx)) ++amx_cases;
  return fails;
}

int main() {
  std::mt19937 rng(1234);
  const int64_t shapes[][4] = {{1, 16, 128, 128}, {1, 100, 256, 64}, {2, 17, 64, 32},
                               {3, 33, 96, 96},   {4, 48, 40, 40},   {5, 130, 512, 128},
                               {9, 64, 256, 32},  {70, 40, 1024, 128}, {16, 48, 128, 64},
                               {33, 100, 256, 128}, {130, 17, 512, 512}, {20, 64, 192, 64},
                               {40, 32, 256, 32}};
  int fails = 0, cases = 0;
  for (auto& s : shapes)
    for (int v = 0; v < 3; ++v) {
      fails += run_case(rng, s[0], s[1], s[2], s[3], v == 1, v == 2);
      ++cases;
    }
  std::printf("%d cases (%d on AMX tiles), %d failures\n", cases, amx_cases, fails);
  return fails != 0;
}
