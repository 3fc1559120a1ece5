// W4A8 on the CPU: raw pointers and sizes only (no torch here). Format and
// packed layout: csrc/math/w4a8.h.
//
// GEMM structure: a micro-tile is up to kW4A8MR activation rows x one packed
// block of 16 output channels. Inside a group the products are summed exactly
// in int32 (u8 nibble x s8 code, |pair| <= 3810 so the 16-bit stage of
// VPMADDUBSW cannot saturate); at each group end the -8 correction is applied
// in int32 and the group is folded into fp32 accumulators with one FMA per
// output. The epilogue (x scale, bias, output dtype, channel tail) is shared.
// Threads split the output-channel blocks; for M > kW4A8MR rows are walked in
// chunks of kW4A8MC so a chunk's codes stay in L2 while its weights stream.
#pragma once
#include <cstdint>

#include "core/cpu_features.h"
#include "core/dtype.h"

namespace vlmkern::cpu {

constexpr int kW4A8MR = 4;
constexpr int64_t kW4A8MC = 64;

struct W4A8QuantArgs {
  DType dtype;
  const void* x;       // [M, K], rows x_sm elements apart, last dim contiguous
  int64_t M, K, G, x_sm;
  int8_t* codes;       // [M, K] contiguous
  float* scales;       // [M]
  int32_t* rowsums;    // [M, K / G]
};

struct W4A8GemmArgs {
  const int8_t* codes;      // [M, K], row stride ld_codes bytes
  int64_t ld_codes;
  const float* x_scales;    // [M]
  const int32_t* rowsums;   // [M, K / G] contiguous
  const uint8_t* packed;    // [ceil(N/16), K/8, 64]
  const float* w_scales;    // [N, K / G] contiguous
  const float* bias;        // [N] fp32 or nullptr
  int64_t M, N, K, G;
  void* out;                // [M, N] contiguous, out_dtype
  DType out_dtype;
};

// Vector pieces, one table per instruction set.
struct W4A8IsaOps {
  // codes/scale/rowsums of one row (see math::act_*; K and G multiples of 8).
  void (*quantize_row)(DType dt, const void* x, int64_t K, int64_t G, int8_t* codes,
                       float* scale, int32_t* rowsums);
  // facc[r * 16 + j] = sum_g fma-chain of float(int_g) * sw[g * 16 + j] for rows
  // m0 + r (r < mr <= kW4A8MR) and channel j of block nb; sw = the block's
  // scales as [K/G, 16] (zeros past N).
  void (*block)(const W4A8GemmArgs& a, int64_t m0, int mr, int64_t nb, const float* sw,
                float* facc);
};

const W4A8IsaOps* w4a8_ops_avx2(CpuIsa isa);
// The AVX2 activation quantizer (also used by the AVX-512 table).
void w4a8_quantize_row_avx2(DType dt, const void* x, int64_t K, int64_t G, int8_t* codes,
                            float* scale, int32_t* rowsums);
const W4A8IsaOps* w4a8_ops_avx512(CpuIsa isa);  // AVX512-VNNI; nullptr without it
const W4A8IsaOps& w4a8_pick_ops(CpuIsa isa);
const char* w4a8_path_name(CpuIsa isa);

void w4a8_quantize_rows(const W4A8QuantArgs& a, CpuIsa isa, int64_t m0, int64_t m1);
// Pack logical nibbles [N, K/2] into the CPU layout, blocks [nb0, nb1).
void w4a8_pack_blocks(const uint8_t* w, int64_t N, int64_t K, uint8_t* packed, int64_t nb0,
                      int64_t nb1);
// Shared pieces of the drivers: the block's scales as [K/G, 16] (0 past N;
// true if one is not finite and positive), and the epilogue of mr rows
// (facc [mr, 16] -> out = facc * x_scale + bias, in out_dtype, channels < N).
bool w4a8_stage_scales(const W4A8GemmArgs& a, int64_t nb, int64_t nb_end, float* sw);
void w4a8_store_rows(const W4A8GemmArgs& a, int64_t m0, int mr, int64_t nb, const float* facc);

// AMX-INT8 (w4a8_amx.cpp): available = CPUID + OS tile permission + the cap;
// applies = available and M >= kW4A8AmxMinRows and K, G multiples of 64.
// Below kW4A8AmxMinRows rows the AVX512-VNNI path runs (a 16-row tile would
// be mostly padding; the issue requires AMX never to be slower at M <= 4).
constexpr int64_t kW4A8AmxMinRows = 16;
bool w4a8_amx_available(CpuIsa isa);
bool w4a8_amx_applies(const W4A8GemmArgs& a, CpuIsa isa);
bool w4a8_gemm_blocks_amx(const W4A8GemmArgs& a, int64_t nb0, int64_t nb1);

// Output channel blocks [nb0, nb1) for every row. Returns true if it met a weight
// scale that is not finite and positive (the caller raises).
bool w4a8_gemm_blocks(const W4A8GemmArgs& a, CpuIsa isa, int64_t nb0, int64_t nb1);

}  // namespace vlmkern::cpu
