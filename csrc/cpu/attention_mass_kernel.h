// attention_mass on the CPU: raw pointers and sizes only (no torch here).
//
// Algorithm (split softmax, two passes over K, no score matrix kept):
//   keys are cut into chunks of `chunk` keys; a task is one (batch row, chunk).
//   pass 1  for every task and every query row, the partial softmax stats (m, l)
//           of the chunk's scores (base-2 units, see math/softmax.h);
//   combine per row, merge the chunks' stats into (M, L) and fold the head mean,
//           the query weights and 1/L into one coefficient;
//   pass 2  for every task that overlaps [key_start, key_end), recompute the
//           chunk's scores and add coef * exp2(s - M) into the output.
// A task handles every KV head of its chunk, so it owns its output slice (no
// atomics) and its K chunk (all heads, at most a few hundred KB) stays in L2
// between the score tiles. Extra memory: the stats, O(B * Hq * Lq * n_chunks)
// floats, plus a per-thread tile of 32 rows x chunk scores.
#pragma once
#include <cstdint>

#include "core/cpu_features.h"
#include "core/dtype.h"

namespace vlmkern::cpu {

struct AttentionMassArgs {
  DType dtype;
  const void* q;  // [B, Hq, Lq, D], last dim contiguous
  const void* k;  // [B, Hkv, Lk, D], last dim contiguous
  int64_t B, Hq, Hkv, Lq, Lk, D;
  int64_t q_sb, q_sh, q_sl;  // element strides
  int64_t k_sb, k_sh, k_sl;
  const uint8_t* key_valid;    // [B, Lk] (1 = attend), contiguous, or nullptr
  const float* query_weights;  // [B, Lq], contiguous, or nullptr
  int64_t key_start, key_end;
  bool causal;
  float scale2;  // softmax scale * log2(e)
  int64_t chunk, n_chunks;
  float* part_m;  // [B, n_chunks, Hq * Lq]
  float* part_l;  // [B, n_chunks, Hq * Lq]
  float* row_m;   // [B, Hq * Lq]
  float* row_coef;  // [B, Hq * Lq]
  float* out;     // [B, key_end - key_start]
  // Query rows converted once to the layout the ISA's `scores` reads:
  // [B, Hkv, rg_pad, q_pitch bytes], rows of a KV group padded with zeros to
  // rg_pad (a multiple of 8).
  uint8_t* qprep;
  int64_t q_pitch, rg_pad;
};

// Sets a.chunk, a.n_chunks, a.q_pitch and a.rg_pad from the shape, dtype and
// ISA; returns the workspace a call needs.
struct AttentionMassWorkspace {
  int64_t qprep_bytes;  // prepared query rows
  int64_t floats;       // partial stats, row maxima and coefficients
};
AttentionMassWorkspace attention_mass_plan(AttentionMassArgs& a, CpuIsa isa);
// Points a.qprep, a.part_m, a.part_l, a.row_m and a.row_coef into the workspace.
void attention_mass_bind(AttentionMassArgs& a, uint8_t* qprep, float* ws);

// The whole computation. par(begin, end, grain, fn) runs fn(b0, b1) over
// subranges of [begin, end) (at::parallel_for in the op, a plain call in tests).
template <class ParallelFor>
void attention_mass_run(const AttentionMassArgs& a, CpuIsa isa, ParallelFor&& par);

// Keys per chunk used by the CPU kernel.
int64_t attention_mass_chunk(int64_t Lk, int64_t D);
// Bytes per prepared query row, and the prepared buffer size, for this ISA.
int64_t attention_mass_q_pitch(DType dt, CpuIsa isa, int64_t D);
int64_t attention_mass_rg_pad(int64_t Hq, int64_t Hkv, int64_t Lq);

// Convert query rows (b, g) for tasks [t0, t1), task = b * Hkv + g.
void attention_mass_prep(const AttentionMassArgs& a, CpuIsa isa, int64_t t0, int64_t t1);
void attention_mass_stats(const AttentionMassArgs& a, CpuIsa isa, int64_t t0, int64_t t1);
void attention_mass_combine(const AttentionMassArgs& a, int64_t r0, int64_t r1);
void attention_mass_accumulate(const AttentionMassArgs& a, CpuIsa isa, int64_t t0, int64_t t1);

template <class ParallelFor>
void attention_mass_run(const AttentionMassArgs& a, CpuIsa isa, ParallelFor&& par) {
  par(0, a.B * a.Hkv, 1, [&](int64_t t0, int64_t t1) { attention_mass_prep(a, isa, t0, t1); });
  const int64_t tasks = a.B * a.n_chunks;
  par(0, tasks, 1, [&](int64_t t0, int64_t t1) { attention_mass_stats(a, isa, t0, t1); });
  par(0, a.B * a.Hq * a.Lq, 64, [&](int64_t r0, int64_t r1) { attention_mass_combine(a, r0, r1); });
  par(0, tasks, 1, [&](int64_t t0, int64_t t1) { attention_mass_accumulate(a, isa, t0, t1); });
}

// Vector pieces of the kernel, one table per instruction set. The scalar table
// lives in attention_mass_kernel.cpp, the others in attention_mass_{avx2,avx512}.cpp.
struct AttentionMassIsaOps {
  // Bytes of one prepared query row (head_dim padded with zeros as `scores` needs).
  int64_t (*q_pitch)(DType dt, int D);
  // Write one query row into dst (q_pitch bytes) in the layout `scores` reads.
  void (*prep_q_row)(DType dt, const void* q_row, int D, void* dst);
  // S[r * ldS + j] = scale2 * (q_r . k_j) for r < rows, j < n; k_j = k + j * k_sl;
  // q_r = qbuf + r * q_pitch, with zero rows up to a multiple of 8 after `rows`.
  void (*scores)(DType dt, const uint8_t* qbuf, int64_t q_pitch, int rows, const void* k,
                 int64_t k_sl, int n, int D, float scale2, float* S, int ldS);
  // (m, l) = (max_j s[j], sum_j exp2(s[j] - m)) over j < n; (-inf, 0) if all -inf.
  void (*row_stats)(const float* s, int n, float* m, float* l);
  // acc[j] += coef * exp2(s[j] - m) for j < n (s[j] = -inf adds 0).
  void (*accumulate)(const float* s, int n, float m, float coef, float* acc);
};

// Tables of the vector translation units; nullptr when `isa` is below theirs.
const AttentionMassIsaOps* attention_mass_ops_avx512(CpuIsa isa);
const AttentionMassIsaOps* attention_mass_ops_avx2(CpuIsa isa);

}  // namespace vlmkern::cpu
