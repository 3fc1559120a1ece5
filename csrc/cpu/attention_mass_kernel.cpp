// Driver of the CPU attention_mass kernel and its scalar (plain C++) pieces.
// See attention_mass_kernel.h for the algorithm.
#include "cpu/attention_mass_kernel.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "math/convert.h"
#include "math/softmax.h"

namespace vlmkern::cpu {
namespace {


constexpr int kRowBlock = 32;   // query rows scored per tile (a multiple of 8)
constexpr int kMaxDPad = 1024;  // head_dim limit of the CPU kernel (checked by the op)

// ---- scalar pieces -----------------------------------------------------------------
int64_t scalar_q_pitch(DType, int D) { return int64_t(D) * 4; }

void scalar_prep_q_row(DType dt, const void* q_row, int D, void* dst) {
  float* out = static_cast<float*>(dst);
  for (int d = 0; d < D; ++d) out[d] = load_as_float(dt, q_row, d);
}

void scalar_scores(DType dt, const uint8_t* qbuf, int64_t q_pitch, int rows, const void* k,
                   int64_t k_sl, int n, int D, float scale2, float* S, int ldS) {
  float kf[kMaxDPad];
  for (int j = 0; j < n; ++j) {
    for (int d = 0; d < D; ++d) kf[d] = load_as_float(dt, k, int64_t(j) * k_sl + d);
    for (int r = 0; r < rows; ++r) {
      const float* q = reinterpret_cast<const float*>(qbuf + r * q_pitch);
      float acc = 0.f;
      for (int d = 0; d < D; ++d) acc += q[d] * kf[d];
      S[r * ldS + j] = acc * scale2;
    }
  }
}

void scalar_row_stats(const float* s, int n, float* m_out, float* l_out) {
  // A NaN score makes the row's max NaN (std::max would skip it, and a row of
  // NaN scores would pass as a row without valid keys): the row's mass is NaN,
  // as on the vector paths and in eager attention.
  float m = -INFINITY;
  for (int j = 0; j < n; ++j) m = (s[j] > m || s[j] != s[j]) ? s[j] : m;
  float l = 0.f;
  if (m != -INFINITY)
    for (int j = 0; j < n; ++j) l += exp2f(s[j] - m);
  *m_out = m;
  *l_out = l;
}

void scalar_accumulate(const float* s, int n, float m, float coef, float* acc) {
  for (int j = 0; j < n; ++j) acc[j] += coef * exp2f(s[j] - m);
}

const AttentionMassIsaOps kScalarOps = {scalar_q_pitch, scalar_prep_q_row, scalar_scores,
                                        scalar_row_stats, scalar_accumulate};

const AttentionMassIsaOps& pick_ops(CpuIsa isa) {
  if (const AttentionMassIsaOps* o = attention_mass_ops_avx512(isa)) return *o;
  if (const AttentionMassIsaOps* o = attention_mass_ops_avx2(isa)) return *o;
  return kScalarOps;
}

// Scratch of one task, reused across its KV heads and row blocks.
struct TaskScratch {
  std::vector<float> S, bias, acc;
  TaskScratch(int64_t chunk) {
    S.resize(size_t(kRowBlock) * chunk);
    bias.resize(chunk);
    acc.resize(chunk);
  }
};

const uint8_t* bytes(const void* p) { return static_cast<const uint8_t*>(p); }

int64_t elem_size(DType dt) { return dt == DType::kF32 ? 4 : 2; }

// Scores of rows [rr0, rr0 + rows) of KV group g (row rr = head_in_group * Lq + i)
// against keys [c0, c0 + n), masked: padding through `bias`, causality per row.
// Leaves the masked tile in sc.S (row stride n).
void masked_scores(const AttentionMassArgs& a, const AttentionMassIsaOps& ops, TaskScratch& sc,
                   int64_t b, int64_t g, int64_t rr0, int rows, int64_t c0, int n) {
  const uint8_t* qg = a.qprep + ((b * a.Hkv + g) * a.rg_pad + rr0) * a.q_pitch;
  const void* kp = bytes(a.k) + (b * a.k_sb + g * a.k_sh + c0 * a.k_sl) * elem_size(a.dtype);
  ops.scores(a.dtype, qg, a.q_pitch, rows, kp, a.k_sl, n, int(a.D), a.scale2, sc.S.data(), n);
  for (int r = 0; r < rows; ++r) {
    float* s = sc.S.data() + int64_t(r) * n;
    const int64_t i = (rr0 + r) % a.Lq;
    const int64_t lim = math::causal_limit(a.Lk, a.Lq, i, a.causal) - c0;
    for (int64_t j = std::max<int64_t>(lim, 0); j < n; ++j) s[j] = -INFINITY;
    if (a.key_valid)
      for (int j = 0; j < n; ++j) s[j] += sc.bias[j];
  }
}

void fill_bias(const AttentionMassArgs& a, TaskScratch& sc, int64_t b, int64_t c0, int n) {
  if (!a.key_valid) return;
  const uint8_t* v = a.key_valid + b * a.Lk + c0;
  for (int j = 0; j < n; ++j) sc.bias[j] = v[j] ? 0.f : -INFINITY;
}

}  // namespace

AttentionMassWorkspace attention_mass_plan(AttentionMassArgs& a, CpuIsa isa) {
  a.chunk = attention_mass_chunk(a.Lk, a.D);
  a.n_chunks = (a.Lk + a.chunk - 1) / a.chunk;
  a.q_pitch = attention_mass_q_pitch(a.dtype, isa, a.D);
  a.rg_pad = attention_mass_rg_pad(a.Hq, a.Hkv, a.Lq);
  const int64_t R = a.Hq * a.Lq;
  return {a.B * a.Hkv * a.rg_pad * a.q_pitch, 2 * a.B * a.n_chunks * R + 2 * a.B * R};
}

void attention_mass_bind(AttentionMassArgs& a, uint8_t* qprep, float* ws) {
  const int64_t R = a.Hq * a.Lq, part = a.B * a.n_chunks * R;
  a.qprep = qprep;
  a.part_m = ws;
  a.part_l = ws + part;
  a.row_m = ws + 2 * part;
  a.row_coef = a.row_m + a.B * R;
}

int64_t attention_mass_q_pitch(DType dt, CpuIsa isa, int64_t D) {
  return pick_ops(isa).q_pitch(dt, int(D));
}

int64_t attention_mass_rg_pad(int64_t Hq, int64_t Hkv, int64_t Lq) {
  return ((Hq / Hkv) * Lq + 7) & ~int64_t(7);
}

void attention_mass_prep(const AttentionMassArgs& a, CpuIsa isa, int64_t t0, int64_t t1) {
  const AttentionMassIsaOps& ops = pick_ops(isa);
  const int64_t n_rep = a.Hq / a.Hkv, Rg = n_rep * a.Lq, es = elem_size(a.dtype);
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t b = t / a.Hkv, g = t % a.Hkv;
    uint8_t* dst = a.qprep + t * a.rg_pad * a.q_pitch;
    std::fill(dst, dst + a.rg_pad * a.q_pitch, uint8_t(0));
    for (int64_t rr = 0; rr < Rg; ++rr) {
      const int64_t h = g * n_rep + rr / a.Lq, i = rr % a.Lq;
      ops.prep_q_row(a.dtype, bytes(a.q) + (b * a.q_sb + h * a.q_sh + i * a.q_sl) * es, int(a.D),
                     dst + rr * a.q_pitch);
    }
  }
}

int64_t attention_mass_chunk(int64_t Lk, int64_t D) {
  // ~64 KB of K per head per chunk: the chunk's keys of all KV heads stay in L2
  // between the row tiles. A multiple of 16 keeps the vector tails short.
  int64_t c = std::max<int64_t>(16, (32768 / std::max<int64_t>(D, 1)) & ~int64_t(15));
  return std::min<int64_t>(c, std::max<int64_t>(Lk, 1));
}

void attention_mass_stats(const AttentionMassArgs& a, CpuIsa isa, int64_t t0, int64_t t1) {
  const AttentionMassIsaOps& ops = pick_ops(isa);
  TaskScratch sc(a.chunk);
  const int64_t R = a.Hq * a.Lq, Rg = R / a.Hkv;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t b = t / a.n_chunks, c = t % a.n_chunks;
    const int64_t c0 = c * a.chunk;
    const int n = int(std::min(a.chunk, a.Lk - c0));
    float* pm = a.part_m + t * R;
    float* pl = a.part_l + t * R;
    fill_bias(a, sc, b, c0, n);
    for (int64_t g = 0; g < a.Hkv; ++g) {
      for (int64_t rr0 = 0; rr0 < Rg; rr0 += kRowBlock) {
        const int rows = int(std::min<int64_t>(kRowBlock, Rg - rr0));
        masked_scores(a, ops, sc, b, g, rr0, rows, c0, n);
        for (int r = 0; r < rows; ++r) {
          const int64_t row = g * Rg + rr0 + r;
          ops.row_stats(sc.S.data() + int64_t(r) * n, n, pm + row, pl + row);
          math::softmax_poison_inf(pm[row], pl[row]);  // as the CUDA kernel does
        }
      }
    }
  }
}

void attention_mass_combine(const AttentionMassArgs& a, int64_t r0, int64_t r1) {
  const int64_t R = a.Hq * a.Lq;
  for (int64_t br = r0; br < r1; ++br) {
    const int64_t b = br / R, row = br % R, i = row % a.Lq;
    float m = -INFINITY, l = 0.f;
    for (int64_t c = 0; c < a.n_chunks; ++c) {
      const int64_t t = b * a.n_chunks + c;
      math::softmax_merge(m, l, a.part_m[t * R + row], a.part_l[t * R + row]);
    }
    float w = 1.f, wsum = float(a.Lq);
    if (a.query_weights) {
      const float* qw = a.query_weights + b * a.Lq;
      w = qw[i];
      wsum = 0.f;
      for (int64_t ii = 0; ii < a.Lq; ++ii) wsum += qw[ii];
    }
    a.row_m[br] = m;
    a.row_coef[br] = math::row_coef(w, wsum, float(a.Hq), l);
  }
}

void attention_mass_accumulate(const AttentionMassArgs& a, CpuIsa isa, int64_t t0, int64_t t1) {
  const AttentionMassIsaOps& ops = pick_ops(isa);
  TaskScratch sc(a.chunk);
  const int64_t R = a.Hq * a.Lq, Rg = R / a.Hkv, span = a.key_end - a.key_start;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t b = t / a.n_chunks, c = t % a.n_chunks;
    const int64_t c0 = c * a.chunk;
    const int n = int(std::min(a.chunk, a.Lk - c0));
    const int64_t lo = std::max(c0, a.key_start), hi = std::min(c0 + n, a.key_end);
    if (lo >= hi) continue;
    // Only the part of the chunk inside the span is scored again.
    const int m = int(hi - lo);
    fill_bias(a, sc, b, lo, m);
    std::fill(sc.acc.begin(), sc.acc.begin() + m, 0.f);
    for (int64_t g = 0; g < a.Hkv; ++g) {
      for (int64_t rr0 = 0; rr0 < Rg; rr0 += kRowBlock) {
        const int rows = int(std::min<int64_t>(kRowBlock, Rg - rr0));
        // Rows whose coefficient is 0 (no valid key, zero weight) add nothing.
        bool any = false;
        for (int r = 0; r < rows && !any; ++r) any = a.row_coef[b * R + g * Rg + rr0 + r] != 0.f;
        if (!any) continue;
        masked_scores(a, ops, sc, b, g, rr0, rows, lo, m);
        for (int r = 0; r < rows; ++r) {
          const int64_t br = b * R + g * Rg + rr0 + r;
          if (a.row_coef[br] == 0.f) continue;
          ops.accumulate(sc.S.data() + int64_t(r) * m, m, a.row_m[br], a.row_coef[br],
                         sc.acc.data());
        }
      }
    }
    std::copy(sc.acc.begin(), sc.acc.begin() + m, a.out + b * span + (lo - a.key_start));
  }
}

}  // namespace vlmkern::cpu
