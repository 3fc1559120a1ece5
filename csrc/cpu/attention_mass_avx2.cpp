// AVX2 + FMA + F16C pieces of the CPU attention_mass kernel (built with those
// target flags only; chosen at run time from CPUID). Same structure as the
// AVX-512 file: tiles of 8 dot products (8 query rows x 1 key for GQA groups,
// down to 1 row x 8 keys for MHA) accumulate 8-lane partial sums over head_dim, then a
// hadd tree reduces the 8 vectors to one (7 ops per 8 dots). K is converted to
// fp32 on load (bf16: shift, fp16: VCVTPH2PS). A head_dim tail (D % 8) is done
// in scalar code.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "cpu/attention_mass_kernel.h"
#include "math/convert.h"
#include "math/exp2_avx2.h"

namespace vlmkern::cpu {
namespace {

using math::exp2_avx2;

// out lane i = sum of the 8 lanes of v[i].
inline __m256 reduce8(const __m256* v) {
  const __m256 t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]);
  const __m256 t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

template <DType dt>
inline __attribute__((always_inline)) __m256 load8(const uint8_t* p) {
  switch (dt) {
    case DType::kF32: return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
    case DType::kBF16:
      return _mm256_castsi256_ps(_mm256_slli_epi32(
          _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
    case DType::kF16: return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  return _mm256_setzero_ps();
}

float load1(DType dt, const uint8_t* p) {
  switch (dt) {
    case DType::kF32: return *reinterpret_cast<const float*>(p);
    case DType::kBF16: return math::bf16_to_float(*reinterpret_cast<const uint16_t*>(p));
    case DType::kF16: return math::fp16_to_float(*reinterpret_cast<const uint16_t*>(p));
  }
  return 0.f;
}

int64_t q_pitch(DType, int D) { return int64_t((D + 7) & ~7) * 4; }

// One query row as fp32, head_dim padded with zeros to a multiple of 8.
void prep_q_row(DType dt, const void* q_row, int D, void* dst) {
  float* out = static_cast<float*>(dst);
  const int64_t es = dt == DType::kF32 ? 4 : 2;
  const int ld = (D + 7) & ~7;
  for (int d = 0; d < ld; ++d)
    out[d] = d < D ? load1(dt, static_cast<const uint8_t*>(q_row) + d * es) : 0.f;
}

// Tiles of RB query rows x KB = 8 / RB keys. With RB = 8 every key row is read
// once per row block (GQA groups of 5-8 rows); RB = 1 serves MHA decoding.
template <DType dt, int RB>
void scores_tiles(const uint8_t* qbuf, int64_t q_pitch, int rows, const void* k, int64_t k_sl,
                  int n, int D, float scale2, float* S, int ldS) {
  constexpr int KB = 8 / RB;
  constexpr int64_t es = dt == DType::kF32 ? 4 : 2;
  const int D8 = D & ~7;
  alignas(32) float t[8];
  for (int r0 = 0; r0 < rows; r0 += RB) {
    const float* q[RB];
    for (int r = 0; r < RB; ++r) q[r] = reinterpret_cast<const float*>(qbuf + (r0 + r) * q_pitch);
    for (int j0 = 0; j0 < n; j0 += KB) {
      const uint8_t* kp[KB];
      for (int kk = 0; kk < KB; ++kk) {
        const int j = j0 + kk < n ? j0 + kk : n - 1;  // tail keys: recompute, dropped
        kp[kk] = static_cast<const uint8_t*>(k) + int64_t(j) * k_sl * es;
      }
      __m256 acc[8];
#pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) acc[v] = _mm256_setzero_ps();
      for (int d = 0; d < D8; d += 8) {
        __m256 kv[KB];
#pragma GCC unroll 8
        for (int kk = 0; kk < KB; ++kk) kv[kk] = load8<dt>(kp[kk] + d * es);
#pragma GCC unroll 8
        for (int r = 0; r < RB; ++r) {
          const __m256 qv = _mm256_loadu_ps(q[r] + d);
#pragma GCC unroll 8
          for (int kk = 0; kk < KB; ++kk) acc[r * KB + kk] = _mm256_fmadd_ps(qv, kv[kk], acc[r * KB + kk]);
        }
      }
      _mm256_store_ps(t, reduce8(acc));
      for (int r = 0; r < RB && r0 + r < rows; ++r)
        for (int kk = 0; kk < KB; ++kk) {
          if (j0 + kk >= n) break;
          float s = t[r * KB + kk];
          for (int d = D8; d < D; ++d) s += q[r][d] * load1(dt, kp[kk] + d * es);
          S[(r0 + r) * ldS + j0 + kk] = s * scale2;
        }
    }
  }
}

// In-register transpose of an 8x8 fp32 tile held in r[0..7].
inline void transpose8(__m256* r) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20); r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20); r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20); r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20); r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// GQA groups of R = 5..8 query rows: every key row is loaded once and multiplied
// by exactly R rows (no padding row), the R dot products of a key reduced to one
// vector, and blocks of 8 keys transposed in registers so S is written with one
// vector store per row per 8 keys instead of 8 scalar stores per key.
template <DType dt, int R>
void scores_rows(const uint8_t* qbuf, int64_t q_pitch, int rows, const void* k, int64_t k_sl,
                 int n, int D, float scale2, float* S, int ldS) {
  constexpr int64_t es = dt == DType::kF32 ? 4 : 2;
  const int D8 = D & ~7;
  const __m256 vs = _mm256_set1_ps(scale2);
  alignas(32) float T[8][8];
  for (int r0 = 0; r0 < rows; r0 += R) {
    const int nr = rows - r0 < R ? rows - r0 : R;
    const float* q[R];
    for (int r = 0; r < R; ++r) q[r] = reinterpret_cast<const float*>(qbuf + (r0 + r) * q_pitch);
    for (int j0 = 0; j0 < n; j0 += 8) {
      for (int kk = 0; kk < 8; ++kk) {
        const int j = j0 + kk < n ? j0 + kk : n - 1;  // tail keys: recompute, dropped
        const uint8_t* kp = static_cast<const uint8_t*>(k) + int64_t(j) * k_sl * es;
        // Two accumulators per row (even / odd 8-wide steps of head_dim) halve
        // the FMA dependency chains: 7 chains of 16 FMAs (latency 4) were
        // latency- rather than throughput-bound.
        __m256 acc[8], acc2[8];
#pragma GCC unroll 8
        for (int v = 0; v < 8; ++v) acc[v] = acc2[v] = _mm256_setzero_ps();
        int d = 0;
        for (; d + 16 <= D8; d += 16) {
          const __m256 kv = load8<dt>(kp + d * es);
          const __m256 kv2 = load8<dt>(kp + (d + 8) * es);
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) {
            acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q[r] + d), kv, acc[r]);
            acc2[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q[r] + d + 8), kv2, acc2[r]);
          }
        }
        for (; d < D8; d += 8) {
          const __m256 kv = load8<dt>(kp + d * es);
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q[r] + d), kv, acc[r]);
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[r] = _mm256_add_ps(acc[r], acc2[r]);
        _mm256_store_ps(T[kk], reduce8(acc));
        for (int d = D8; d < D; ++d) {
          const float kd = load1(dt, kp + d * es);
          for (int r = 0; r < R; ++r) T[kk][r] += q[r][d] * kd;
        }
      }
      __m256 t[8];
#pragma GCC unroll 8
      for (int kk = 0; kk < 8; ++kk) t[kk] = _mm256_load_ps(T[kk]);
      transpose8(t);
      const int nk = n - j0 < 8 ? n - j0 : 8;
      for (int r = 0; r < nr; ++r) {
        const __m256 v = _mm256_mul_ps(t[r], vs);
        if (nk == 8) {
          _mm256_storeu_ps(S + (r0 + r) * ldS + j0, v);
        } else {
          alignas(32) float tmp[8];
          _mm256_store_ps(tmp, v);
          for (int kk = 0; kk < nk; ++kk) S[(r0 + r) * ldS + j0 + kk] = tmp[kk];
        }
      }
    }
  }
}

template <DType dt>
void scores_dt(const uint8_t* qbuf, int64_t q_pitch, int rows, const void* k, int64_t k_sl, int n,
               int D, float scale2, float* S, int ldS) {
  if (rows == 1) scores_tiles<dt, 1>(qbuf, q_pitch, rows, k, k_sl, n, D, scale2, S, ldS);
  else if (rows == 2) scores_tiles<dt, 2>(qbuf, q_pitch, rows, k, k_sl, n, D, scale2, S, ldS);
  else if (rows <= 4) scores_tiles<dt, 4>(qbuf, q_pitch, rows, k, k_sl, n, D, scale2, S, ldS);
  else if (rows == 5) scores_rows<dt, 5>(qbuf, q_pitch, rows, k, k_sl, n, D, scale2, S, ldS);
  else if (rows == 6) scores_rows<dt, 6>(qbuf, q_pitch, rows, k, k_sl, n, D, scale2, S, ldS);
  else if (rows == 7) scores_rows<dt, 7>(qbuf, q_pitch, rows, k, k_sl, n, D, scale2, S, ldS);
  else scores_rows<dt, 8>(qbuf, q_pitch, rows, k, k_sl, n, D, scale2, S, ldS);
}

void scores(DType dt, const uint8_t* qbuf, int64_t q_pitch, int rows, const void* k, int64_t k_sl,
            int n, int D, float scale2, float* S, int ldS) {
  switch (dt) {
    case DType::kF32: return scores_dt<DType::kF32>(qbuf, q_pitch, rows, k, k_sl, n, D, scale2, S, ldS);
    case DType::kBF16: return scores_dt<DType::kBF16>(qbuf, q_pitch, rows, k, k_sl, n, D, scale2, S, ldS);
    case DType::kF16: return scores_dt<DType::kF16>(qbuf, q_pitch, rows, k, k_sl, n, D, scale2, S, ldS);
  }
}

void row_stats(const float* s, int n, float* m_out, float* l_out) {
  // NaN scores are tracked apart: MAXPS returns its second operand when either
  // is NaN and exp2_avx2 maps NaN to 0, so a NaN would otherwise vanish. A row
  // with a NaN score gets (NaN, NaN): its mass is NaN, as in eager attention
  // (a +inf score is the driver's business: math::softmax_poison_inf).
  __m256 vm = _mm256_set1_ps(-INFINITY), vnan = _mm256_setzero_ps();
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 x = _mm256_loadu_ps(s + j);
    vm = _mm256_max_ps(vm, x);
    vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, vm);
  float m = -INFINITY;
  bool nan = _mm256_movemask_ps(vnan) != 0;
  for (int i = 0; i < 8; ++i) m = t[i] > m ? t[i] : m;
  for (int jj = j; jj < n; ++jj) m = s[jj] > m ? s[jj] : m, nan |= s[jj] != s[jj];
  if (nan) {
    *m_out = *l_out = NAN;
    return;
  }
  *m_out = m;
  if (m == -INFINITY) {
    *l_out = 0.f;
    return;
  }
  const __m256 mv = _mm256_set1_ps(m);
  __m256 vl = _mm256_setzero_ps();
  for (j = 0; j + 8 <= n; j += 8) vl = _mm256_add_ps(vl, exp2_avx2(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv)));
  _mm256_store_ps(t, vl);
  float l = 0.f;
  for (int i = 0; i < 8; ++i) l += t[i];
  for (int jj = j; jj < n; ++jj) l += exp2f(s[jj] - m);
  *l_out = l;
}

void accumulate(const float* s, int n, float m, float coef, float* acc) {
  const __m256 mv = _mm256_set1_ps(m), cv = _mm256_set1_ps(coef);
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 e = exp2_avx2(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
    _mm256_storeu_ps(acc + j, _mm256_fmadd_ps(cv, e, _mm256_loadu_ps(acc + j)));
  }
  for (; j < n; ++j) acc[j] += coef * exp2f(s[j] - m);
}

const AttentionMassIsaOps kAvx2Ops = {q_pitch, prep_q_row, scores, row_stats, accumulate};

}  // namespace

const AttentionMassIsaOps* attention_mass_ops_avx2(CpuIsa isa) {
  return static_cast<int>(isa) >= static_cast<int>(CpuIsa::kAvx2) ? &kAvx2Ops : nullptr;
}

}  // namespace vlmkern::cpu
