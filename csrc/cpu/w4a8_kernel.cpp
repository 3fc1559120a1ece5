// W4A8 CPU kernel: the plain C++ path, the ISA choice, packing and the shared
// driver (scale staging, row chunks, epilogue). See w4a8_kernel.h.
#include "cpu/w4a8_kernel.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <memory>

#include "math/convert.h"
#include "math/w4a8.h"

namespace vlmkern::cpu {
namespace {

constexpr int NB = math::kW4A8CpuBlock;

void scalar_quantize_row(DType dt, const void* x, int64_t K, int64_t G, int8_t* codes,
                         float* scale, int32_t* rowsums) {
  float amax = 0.f;
  bool finite = true;
  for (int64_t k = 0; k < K; ++k) {
    const float v = std::fabs(load_as_float(dt, x, k));
    finite &= v <= 3.4028234663852886e38f;  // false for inf and NaN
    amax = v > amax ? v : amax;
  }
  *scale = math::act_scale(amax, finite);
  const float inv = math::act_inv_scale(amax, finite);
  for (int64_t g = 0; g < K / G; ++g) {
    int32_t s = 0;
    for (int64_t k = g * G; k < (g + 1) * G; ++k) {
      const int32_t c = finite ? math::act_code(load_as_float(dt, x, k), inv) : 0;
      codes[k] = int8_t(c);
      s += c;
    }
    rowsums[g] = s;
  }
}

void scalar_block(const W4A8GemmArgs& a, int64_t m0, int mr, int64_t nb, const float* sw,
                  float* facc) {
  const int64_t K8 = a.K / 8, G8 = a.G / 8, n_groups = a.K / a.G;
  const uint32_t* blk = reinterpret_cast<const uint32_t*>(a.packed) + nb * K8 * NB;
  for (int r = 0; r < mr; ++r) {
    const int8_t* xr = a.codes + (m0 + r) * a.ld_codes;
    const int32_t* rs = a.rowsums + (m0 + r) * n_groups;
    float* fr = facc + r * NB;
    for (int j = 0; j < NB; ++j) fr[j] = 0.f;
    for (int64_t g = 0; g < n_groups; ++g) {
      int32_t acc[NB] = {};
      for (int64_t o = g * G8; o < (g + 1) * G8; ++o) {
        const int8_t* xo = xr + o * 8;
        const uint32_t* u = blk + o * NB;
        for (int j = 0; j < NB; ++j) {
          const uint32_t w = u[j];
          int32_t s = 0;
          for (int b = 0; b < 4; ++b) {
            s += int32_t((w >> (8 * b)) & 0xF) * xo[b];
            s += int32_t((w >> (8 * b + 4)) & 0xF) * xo[4 + b];
          }
          acc[j] += s;
        }
      }
      for (int j = 0; j < NB; ++j)
        fr[j] = std::fma(float(acc[j] - math::kW4A8Offset * rs[g]), sw[g * NB + j], fr[j]);
    }
  }
}

const W4A8IsaOps kScalarOps = {scalar_quantize_row, scalar_block};

void store_out(DType dt, void* out, int64_t i, float v) {
  switch (dt) {
    case DType::kF32: static_cast<float*>(out)[i] = v; return;
    case DType::kBF16: {
      // round to nearest even, NaN kept quiet
      uint32_t u = math::float_to_bits(v);
      uint16_t h = (u & 0x7fffffffu) > 0x7f800000u ? uint16_t((u >> 16) | 0x40)
                                                  : uint16_t((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
      static_cast<uint16_t*>(out)[i] = h;
      return;
    }
    case DType::kF16: {
      _Float16 h = static_cast<_Float16>(v);
      std::memcpy(static_cast<uint16_t*>(out) + i, &h, 2);
      return;
    }
  }
}

}  // namespace

// In this baseline file (not the AVX-512 one) because every CPU calls them.
bool w4a8_amx_available(CpuIsa isa) {
  const CpuFeatures& f = cpu_features();
  return static_cast<int>(isa) >= static_cast<int>(CpuIsa::kAmx) && f.amx_tile && f.amx_int8 &&
         f.os_amx && f.avx512_vnni;
}

bool w4a8_amx_applies(const W4A8GemmArgs& a, CpuIsa isa) {
  return a.M >= kW4A8AmxMinRows && a.K % 64 == 0 && a.G % 64 == 0 && w4a8_amx_available(isa);
}

const W4A8IsaOps& w4a8_pick_ops(CpuIsa isa) {
  if (const W4A8IsaOps* o = w4a8_ops_avx512(isa)) return *o;
  if (const W4A8IsaOps* o = w4a8_ops_avx2(isa)) return *o;
  return kScalarOps;
}

const char* w4a8_path_name(CpuIsa isa) {
  if (w4a8_amx_available(isa)) return "amx";
  if (w4a8_ops_avx512(isa)) return "avx512_vnni";
  if (w4a8_ops_avx2(isa)) return "avx2";
  return "scalar";
}

void w4a8_quantize_rows(const W4A8QuantArgs& a, CpuIsa isa, int64_t m0, int64_t m1) {
  const W4A8IsaOps& ops = w4a8_pick_ops(isa);
  const int64_t es = a.dtype == DType::kF32 ? 4 : 2;
  for (int64_t m = m0; m < m1; ++m)
    ops.quantize_row(a.dtype, static_cast<const uint8_t*>(a.x) + m * a.x_sm * es, a.K, a.G,
                     a.codes + m * a.K, a.scales + m, a.rowsums + m * (a.K / a.G));
}

void w4a8_pack_blocks(const uint8_t* w, int64_t N, int64_t K, uint8_t* packed, int64_t nb0,
                      int64_t nb1) {
  const int64_t K8 = K / 8;
  uint32_t* out = reinterpret_cast<uint32_t*>(packed);
  for (int64_t nb = nb0; nb < nb1; ++nb)
    for (int64_t o = 0; o < K8; ++o)
      for (int j = 0; j < NB; ++j) {
        const int64_t n = nb * NB + j;
        // channels past N get nibble 8 (weight 0) with scale 0
        out[(nb * K8 + o) * NB + j] = n < N ? math::pack_unit(w + n * (K / 2), o * 8) : 0x88888888u;
      }
}

bool w4a8_stage_scales(const W4A8GemmArgs& a, int64_t nb, int64_t nb_end, float* sw) {
  const int64_t n_groups = a.K / a.G;
  // The next block's scales are 16 rows of K/G floats, n_groups * 4 bytes
  // apart: a strided pattern the hardware prefetcher does not follow, so ask
  // for them one block ahead (decode is bound by these DRAM reads).
  if (nb + 1 < nb_end)
    for (int j = 0; j < NB; ++j) {
      const int64_t n = std::min(a.N - 1, (nb + 1) * NB + j);
      const char* p = reinterpret_cast<const char*>(a.w_scales + n * n_groups);
      for (int64_t off = 0; off < n_groups * 4; off += 64) __builtin_prefetch(p + off);
    }
  bool bad = false;
  for (int64_t g = 0; g < n_groups; ++g)
    for (int j = 0; j < NB; ++j) {
      const int64_t n = nb * NB + j;
      const float v = n < a.N ? a.w_scales[n * n_groups + g] : 1.f;
      bad |= !math::w4a8_scale_ok(v);
      sw[g * NB + j] = n < a.N ? v : 0.f;
    }
  return bad;
}

void w4a8_store_rows(const W4A8GemmArgs& a, int64_t m0, int mr, int64_t nb, const float* facc) {
  const int jn = int(std::min<int64_t>(NB, a.N - nb * NB));
  for (int r = 0; r < mr; ++r) {
    const float sx = a.x_scales[m0 + r];
    for (int j = 0; j < jn; ++j) {
      const int64_t n = nb * NB + j;
      float v = facc[r * NB + j] * sx;
      if (a.bias) v += a.bias[n];
      store_out(a.out_dtype, a.out, (m0 + r) * a.N + n, v);
    }
  }
}

bool w4a8_gemm_blocks(const W4A8GemmArgs& a, CpuIsa isa, int64_t nb0, int64_t nb1) {
  if (w4a8_amx_applies(a, isa)) return w4a8_gemm_blocks_amx(a, nb0, nb1);
  bool bad = false;
  const W4A8IsaOps& ops = w4a8_pick_ops(isa);
  const int64_t n_groups = a.K / a.G;
  std::unique_ptr<float[]> sw(new float[n_groups * NB]);
  alignas(64) float facc[kW4A8MR * NB];
  for (int64_t mc = 0; mc < a.M; mc += kW4A8MC) {
    const int64_t mc_end = std::min(a.M, mc + kW4A8MC);
    for (int64_t nb = nb0; nb < nb1; ++nb) {
      bad |= w4a8_stage_scales(a, nb, nb1, sw.get());
      for (int64_t m0 = mc; m0 < mc_end; m0 += kW4A8MR) {
        const int mr = int(std::min<int64_t>(kW4A8MR, mc_end - m0));
        ops.block(a, m0, mr, nb, sw.get(), facc);
        w4a8_store_rows(a, m0, mr, nb, facc);
      }
    }
  }
  return bad;
}

}  // namespace vlmkern::cpu
