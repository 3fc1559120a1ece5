// AMX-INT8 driver of the W4A8 CPU GEMM, for M >= kW4A8AmxMinRows (prefill).
//
// TDPBUSD multiplies u8 rows of its first source by s8 columns of its second,
// so here the roles are the reverse of the vector paths: the activations are
// the u8 operand (code + 128, i.e. code XOR 0x80) and the weights the s8 one
// (nibble - 8). A B tile (16 rows x 64 bytes) holds 64 k of a 16-channel block
// in VNNI order, which is exactly the packed unit: row 2i = low nibbles of
// k-octet i (k 8i..8i+3 of 16 channels), row 2i+1 = high nibbles, minus 8.
// C[m][n] = sum (x + 128) * q = sum x * q + 128 * sum_k q, so the group's
// integer partial is C - 128 * wsum[n, g] (wsum = the weights' group sums,
// found while unpacking). That is the same exact integer as the vector paths'
// dot - 8 * rowsum, and the float steps are the same FMA per group, so the
// result is bit-identical to them.
//
// Loop nest per thread: rows in chunks of kAmxMC (the chunk's activation
// codes, flipped to u8 once, stay in L2: 128 x K bytes); per channel block,
// its weights are unpacked once per chunk into a K x 16 int8 buffer; then per
// pair of 16-row tiles and per group: zero two C tiles, one B and two A loads
// and two TDPBUSD per 64 k, store C, and fold the group into the fp32
// accumulators with AVX-512 (the per-group float step is the price of fp32
// group scales). Tile configuration (LDTILECFG) is per thread: loaded at the
// start of each call on each OpenMP thread, released at the end.
//
// Not measurable on the development machines (AMD Zen 3, no AMX): tested in
// CI through a software model of the tile instructions (tests/simde/).
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/cpu_features.h"
#include "cpu/w4a8_kernel.h"
#include "math/w4a8.h"

#ifdef VLMKERN_EMULATED_ISA
#define VLMKERN_AMX
#else
#define VLMKERN_AMX \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,amx-tile,amx-int8")))
#endif

namespace vlmkern::cpu {
namespace {

constexpr int NB = math::kW4A8CpuBlock;
constexpr int64_t kAmxMC = 128;  // rows per chunk (a multiple of 32)

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64);

// tmm0, tmm1: C of row tiles 0 and 1; tmm2, tmm3: their A; tmm4: B.
VLMKERN_AMX void load_tile_config() {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.palette_id = 1;
  for (int t = 0; t < 5; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
}

// B tiles of block nb: [K/64][16 rows][64 bytes] int8, and the weights' group sums [K/G][16].
VLMKERN_AMX void unpack_block(const W4A8GemmArgs& a, int64_t nb, int8_t* bbuf, int32_t* wsum) {
  const int64_t K8 = a.K / 8, G8 = a.G / 8;
  const uint8_t* blk = a.packed + nb * K8 * (NB * 4);
  const __m512i mask = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8),
                ones = _mm512_set1_epi8(1);
  for (int64_t g = 0; g < a.K / a.G; ++g) {
    __m512i s = _mm512_setzero_si512();
    for (int64_t o = g * G8; o < (g + 1) * G8; ++o) {
      const __m512i w = _mm512_loadu_si512(blk + o * 64);
      const __m512i lo = _mm512_sub_epi8(_mm512_and_si512(w, mask), eight);
      const __m512i hi = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(w, 4), mask), eight);
      _mm512_storeu_si512(bbuf + o * 128, lo);       // row 2*(o%8) of tile o/8
      _mm512_storeu_si512(bbuf + o * 128 + 64, hi);  // row 2*(o%8)+1
      s = _mm512_dpbusd_epi32(s, ones, lo);
      s = _mm512_dpbusd_epi32(s, ones, hi);
    }
    _mm512_storeu_si512(wsum + g * NB, s);
  }
}

}  // namespace

VLMKERN_AMX bool w4a8_gemm_blocks_amx(const W4A8GemmArgs& a, int64_t nb0, int64_t nb1) {
  const int64_t K = a.K, n_groups = K / a.G, steps = a.G / 64;
  std::vector<int8_t> bbuf(K * NB);
  std::vector<int32_t> wsum(n_groups * NB);
  std::vector<float> sw(n_groups * NB);
  std::vector<uint8_t> xu(kAmxMC * K);
  alignas(64) int32_t cbuf[2][16 * NB];
  alignas(64) float facc[32 * NB];
  const __m512i flip = _mm512_set1_epi8(char(0x80));
  bool bad = false;
  load_tile_config();
  for (int64_t mc = 0; mc < a.M; mc += kAmxMC) {
    const int64_t rows = std::min<int64_t>(kAmxMC, a.M - mc), rows_pad = (rows + 31) / 32 * 32;
    for (int64_t r = 0; r < rows_pad; ++r) {
      uint8_t* dst = xu.data() + r * K;
      if (r >= rows) {  // padding rows: code 0
        std::memset(dst, 0x80, K);
        continue;
      }
      const int8_t* src = a.codes + (mc + r) * a.ld_codes;
      for (int64_t k = 0; k < K; k += 64)
        _mm512_storeu_si512(dst + k, _mm512_xor_si512(_mm512_loadu_si512(src + k), flip));
    }
    for (int64_t nb = nb0; nb < nb1; ++nb) {
      bad |= w4a8_stage_scales(a, nb, nb1, sw.data());
      unpack_block(a, nb, bbuf.data(), wsum.data());
      for (int64_t mp = 0; mp < rows_pad; mp += 32) {
        std::memset(facc, 0, sizeof(facc));
        const uint8_t* x0 = xu.data() + mp * K;
        const uint8_t* x1 = x0 + 16 * K;
        for (int64_t g = 0; g < n_groups; ++g) {
          _tile_zero(0);
          _tile_zero(1);
          for (int64_t s = g * steps; s < (g + 1) * steps; ++s) {
            _tile_loadd(4, bbuf.data() + s * 1024, 64);
            _tile_loadd(2, x0 + s * 64, K);
            _tile_loadd(3, x1 + s * 64, K);
            _tile_dpbusd(0, 2, 4);
            _tile_dpbusd(1, 3, 4);
          }
          _tile_stored(0, cbuf[0], 64);
          _tile_stored(1, cbuf[1], 64);
          const __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512(wsum.data() + g * NB), 7);
          const __m512 scale = _mm512_loadu_ps(sw.data() + g * NB);
          for (int r = 0; r < 32; ++r) {
            const __m512i c = _mm512_loadu_si512(cbuf[r / 16] + (r % 16) * NB);
            const __m512 part = _mm512_cvtepi32_ps(_mm512_sub_epi32(c, corr));
            _mm512_storeu_ps(facc + r * NB,
                             _mm512_fmadd_ps(part, scale, _mm512_loadu_ps(facc + r * NB)));
          }
        }
        const int mr = int(std::min<int64_t>(32, rows - mp));
        if (mr > 0) w4a8_store_rows(a, mc + mp, mr, nb, facc);
      }
    }
  }
  _tile_release();
  return bad;
}

}  // namespace vlmkern::cpu
