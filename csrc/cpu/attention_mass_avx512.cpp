// AVX-512 pieces of the CPU attention_mass kernel (this file is built with the
// AVX-512 F/BW/VL/DQ flags, its VDPBF16PS functions with an avx512bf16 target
// attribute; each table is used only after CPUID reported what it needs).
// Tested natively on CPUs that have AVX-512 (and AVX512-BF16), and on every
// machine under SIMDe emulation against an fp64 reference
// (tests/test_attention_mass_simde.py).
//
// Scores: tiles of 16 dot products (8 query rows x 2 keys for GQA groups, down
// to 1 row x 16 keys when a KV head has a single query row, as in MHA decoding) accumulate 16-lane partial
// sums over head_dim, then one transpose-add tree reduces the 16 vectors to one
// (45 shuffles/adds per 16 dots). bf16 inputs on CPUs with AVX512-BF16 use
// VDPBF16PS (32 multiply-adds per instruction, fp32 accumulation); fp32 and fp16
// inputs (and bf16 elsewhere) convert K on load and use FMA.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/attention_mass_kernel.h"
#include "math/exp2_avx512.h"

namespace vlmkern::cpu {
namespace {

using math::exp2_avx512;

// out lane v = sum of the 16 lanes of v[v].
inline __m512 reduce16(const __m512* v) {
  __m512 w[8], x[4];
  for (int i = 0; i < 8; ++i)
    w[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                         _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; ++i)
    x[i] = _mm512_add_ps(_mm512_shuffle_ps(w[2 * i], w[2 * i + 1], 0x44),
                         _mm512_shuffle_ps(w[2 * i], w[2 * i + 1], 0xEE));
  const __m512 y0 = _mm512_add_ps(_mm512_shuffle_f32x4(x[0], x[1], 0x44),
                                  _mm512_shuffle_f32x4(x[0], x[1], 0xEE));
  const __m512 y1 = _mm512_add_ps(_mm512_shuffle_f32x4(x[2], x[3], 0x44),
                                  _mm512_shuffle_f32x4(x[2], x[3], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_f32x4(y0, y1, 0x88), _mm512_shuffle_f32x4(y0, y1, 0xDD));
}

// 16 consecutive elements of a key row as fp32 (masked tail reads zeros).
inline __m512 load16(DType dt, const void* p, __mmask16 m) {
  switch (dt) {
    case DType::kF32: return _mm512_maskz_loadu_ps(m, p);
    case DType::kBF16:
      return _mm512_castsi512_ps(
          _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
    case DType::kF16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }
  return _mm512_setzero_ps();
}

inline const uint8_t* key_ptr(const void* k, int64_t k_sl, int j, int n, int64_t es) {
  if (j >= n) j = n - 1;  // tail keys: recompute the last one, results dropped
  return static_cast<const uint8_t*>(k) + int64_t(j) * k_sl * es;
}

inline void store_tile(const float* t, int RB, int KB, int r0, int rows, int j0, int n,
                       float* S, int ldS) {
  for (int r = 0; r < RB; ++r) {
    if (r0 + r >= rows) break;
    for (int kk = 0; kk < KB; ++kk)
      if (j0 + kk < n) S[(r0 + r) * ldS + j0 + kk] = t[r * KB + kk];
  }
}

// ---- fp32-math path (all dtypes) ----------------------------------------------------
int64_t q_pitch_f32(DType, int D) { return int64_t((D + 15) & ~15) * 4; }

void prep_q_row_f32(DType dt, const void* q_row, int D, void* dst) {
  const int64_t es = dt == DType::kF32 ? 4 : 2;
  float* out = static_cast<float*>(dst);
  for (int d = 0; d < D; d += 16) {
    const int left = D - d;
    const __mmask16 m = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
    _mm512_storeu_ps(out + d, load16(dt, static_cast<const uint8_t*>(q_row) + d * es, m));
  }
}

// Tiles of RB query rows x KB = 16 / RB keys (RB = 8 for GQA groups of 5-8 rows,
// so each key row is read once per row block; RB = 1 for MHA).
template <int RB>
void scores_f32_tiles(DType dt, const uint8_t* qbuf, int64_t q_pitch, int rows, const void* k,
                      int64_t k_sl, int n, int D, float scale2, float* S, int ldS) {
  constexpr int KB = 16 / RB;
  const int64_t es = dt == DType::kF32 ? 4 : 2;
  const __m512 vs = _mm512_set1_ps(scale2);
  alignas(64) float t[16];
  for (int r0 = 0; r0 < rows; r0 += RB) {
    for (int j0 = 0; j0 < n; j0 += KB) {
      const uint8_t* kp[KB];
      for (int kk = 0; kk < KB; ++kk) kp[kk] = key_ptr(k, k_sl, j0 + kk, n, es);
      __m512 acc[16];
      for (int v = 0; v < 16; ++v) acc[v] = _mm512_setzero_ps();
      for (int d = 0; d < D; d += 16) {
        const int left = D - d;
        const __mmask16 m = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
        __m512 kv[KB];
        for (int kk = 0; kk < KB; ++kk) kv[kk] = load16(dt, kp[kk] + d * es, m);
        for (int r = 0; r < RB; ++r) {
          const __m512 qv = _mm512_loadu_ps(reinterpret_cast<const float*>(qbuf + (r0 + r) * q_pitch) + d);
          for (int kk = 0; kk < KB; ++kk) acc[r * KB + kk] = _mm512_fmadd_ps(qv, kv[kk], acc[r * KB + kk]);
        }
      }
      _mm512_store_ps(t, _mm512_mul_ps(reduce16(acc), vs));
      store_tile(t, RB, KB, r0, rows, j0, n, S, ldS);
    }
  }
}

template <template <int> class F, typename... A>
void by_rows(int rows, A... args) {
  if (rows == 1) F<1>::run(args...);
  else if (rows == 2) F<2>::run(args...);
  else if (rows <= 4) F<4>::run(args...);
  else F<8>::run(args...);
}

template <int RB>
struct ScoresF32 {
  template <typename... A>
  static void run(A... args) { scores_f32_tiles<RB>(args...); }
};

void scores_f32(DType dt, const uint8_t* qbuf, int64_t q_pitch, int rows, const void* k,
                int64_t k_sl, int n, int D, float scale2, float* S, int ldS) {
  by_rows<ScoresF32>(rows, dt, qbuf, q_pitch, rows, k, k_sl, n, D, scale2, S, ldS);
}

// ---- bf16 dot-product path (VDPBF16PS) -----------------------------------------------
int64_t q_pitch_bf16(DType dt, int D) {
  return dt == DType::kBF16 ? int64_t((D + 31) & ~31) * 2 : q_pitch_f32(dt, D);
}

void prep_q_row_bf16(DType dt, const void* q_row, int D, void* dst) {
  if (dt != DType::kBF16) return prep_q_row_f32(dt, q_row, D, dst);
  std::memcpy(dst, q_row, size_t(D) * 2);  // padding stays zero (buffer cleared)
}

#ifdef VLMKERN_EMULATED_ISA  // tests/test_attention_mass_simde.py: no AVX-512 code generation
#define VLMKERN_TARGET_BF16
#else
#define VLMKERN_TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#endif

template <int RB>
VLMKERN_TARGET_BF16 void scores_bf16_tiles(const uint8_t* qbuf, int64_t q_pitch, int rows, const void* k, int64_t k_sl,
                       int n, int D, float scale2, float* S, int ldS) {
  constexpr int KB = 16 / RB;
  const __m512 vs = _mm512_set1_ps(scale2);
  alignas(64) float t[16];
  for (int r0 = 0; r0 < rows; r0 += RB) {
    for (int j0 = 0; j0 < n; j0 += KB) {
      const uint8_t* kp[KB];
      for (int kk = 0; kk < KB; ++kk) kp[kk] = key_ptr(k, k_sl, j0 + kk, n, 2);
      __m512 acc[16];
      for (int v = 0; v < 16; ++v) acc[v] = _mm512_setzero_ps();
      for (int d = 0; d < D; d += 32) {
        const int left = D - d;
        const __mmask32 m = left >= 32 ? __mmask32(0xffffffffu) : __mmask32((1u << left) - 1);
        __m512i kv[KB];
        for (int kk = 0; kk < KB; ++kk) kv[kk] = _mm512_maskz_loadu_epi16(m, kp[kk] + d * 2);
        for (int r = 0; r < RB; ++r) {
          const __m512i qv = _mm512_loadu_si512(qbuf + (r0 + r) * q_pitch + d * 2);
          for (int kk = 0; kk < KB; ++kk)
            acc[r * KB + kk] = _mm512_dpbf16_ps(acc[r * KB + kk], (__m512bh)qv, (__m512bh)kv[kk]);
        }
      }
      _mm512_store_ps(t, _mm512_mul_ps(reduce16(acc), vs));
      store_tile(t, RB, KB, r0, rows, j0, n, S, ldS);
    }
  }
}

template <int RB>
struct ScoresBf16 {
  template <typename... A>
  VLMKERN_TARGET_BF16 static void run(A... args) { scores_bf16_tiles<RB>(args...); }
};

// Called only through kAvx512Bf16Ops, i.e. after CPUID reported AVX512-BF16.
VLMKERN_TARGET_BF16 void scores_bf16(DType dt, const uint8_t* qbuf, int64_t q_pitch, int rows, const void* k,
                 int64_t k_sl, int n, int D, float scale2, float* S, int ldS) {
  if (dt != DType::kBF16) return scores_f32(dt, qbuf, q_pitch, rows, k, k_sl, n, D, scale2, S, ldS);
  by_rows<ScoresBf16>(rows, qbuf, q_pitch, rows, k, k_sl, n, D, scale2, S, ldS);
}

// ---- softmax pieces -------------------------------------------------------------------
inline __mmask16 tail_mask(int left) {
  return left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
}

void row_stats(const float* s, int n, float* m_out, float* l_out) {
  // NaN scores are tracked apart (VMAXPS returns its second operand when either
  // is NaN, and exp2_avx512 clamps NaN away): a row with a NaN score gets
  // (NaN, NaN), so its mass is NaN, as in eager attention (a +inf score is the
  // driver's business: math::softmax_poison_inf).
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  __m512 vm = ninf;
  __mmask16 nan = 0;
  for (int j = 0; j < n; j += 16) {
    const __m512 x = _mm512_mask_loadu_ps(ninf, tail_mask(n - j), s + j);
    vm = _mm512_max_ps(vm, x);
    nan |= _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  }
  const float m = _mm512_reduce_max_ps(vm);
  if (nan) {
    *m_out = *l_out = NAN;
    return;
  }
  if (m == -INFINITY) {
    *m_out = m;
    *l_out = 0.f;
    return;
  }
  const __m512 mv = _mm512_set1_ps(m);
  __m512 vl = _mm512_setzero_ps();
  for (int j = 0; j < n; j += 16) {
    const __m512 x = _mm512_mask_loadu_ps(ninf, tail_mask(n - j), s + j);
    vl = _mm512_add_ps(vl, exp2_avx512(_mm512_sub_ps(x, mv)));
  }
  *m_out = m;
  *l_out = _mm512_reduce_add_ps(vl);
}

void accumulate(const float* s, int n, float m, float coef, float* acc) {
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  const __m512 mv = _mm512_set1_ps(m), cv = _mm512_set1_ps(coef);
  for (int j = 0; j < n; j += 16) {
    const __mmask16 t = tail_mask(n - j);
    const __m512 x = _mm512_mask_loadu_ps(ninf, t, s + j);
    const __m512 a = _mm512_maskz_loadu_ps(t, acc + j);
    _mm512_mask_storeu_ps(acc + j, t, _mm512_fmadd_ps(cv, exp2_avx512(_mm512_sub_ps(x, mv)), a));
  }
}

const AttentionMassIsaOps kAvx512Ops = {q_pitch_f32, prep_q_row_f32, scores_f32, row_stats,
                                        accumulate};
const AttentionMassIsaOps kAvx512Bf16Ops = {q_pitch_bf16, prep_q_row_bf16, scores_bf16, row_stats,
                                            accumulate};

}  // namespace

const AttentionMassIsaOps* attention_mass_ops_avx512(CpuIsa isa) {
  if (static_cast<int>(isa) >= static_cast<int>(CpuIsa::kAvx512Bf16)) return &kAvx512Bf16Ops;
  if (isa == CpuIsa::kAvx512) return &kAvx512Ops;
  return nullptr;
}

}  // namespace vlmkern::cpu
