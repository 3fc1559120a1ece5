// temporal_select on the CPU: raw pointers and sizes only (no torch here).
//
// From x [B, T, N, D] and one reference frame per frame (ref[t] in [-1, t)),
// select each video's kept tokens and return them compacted. Four phases, each
// a parallel loop in the op (csrc/cpu/temporal_select.cpp) and mirrored one to
// one by the CUDA kernels (csrc/cuda/temporal_select_kernels.cuh):
//   scores   per token the score -cos(x[b,t,n], x[b,ref[t],n]): the same
//            per-ISA fp32 sums (frame_dot3_*) and math/cosine.h as
//            frame_similarity, so the cosines are its bits exactly. A frame
//            without a reference scores +inf in global mode (forced: kept
//            first) and NaN in per_frame mode (not ranked: kept whole). The
//            task order (b, tile of token positions, frames in order) reads the
//            features from memory once, as frame_similarity does.
//   select   topk_indices_rows on the scores (math/topk.h's order: larger
//            first, NaN last, -0 == +0, ties toward the lower index). Global:
//            one row of T*N per video keeping `keep`, written straight into
//            idx. Per frame: one row of N per (video, frame) keeping `keep`
//            (N for frames without a reference) into the scratch `sel`.
//   place    (per frame only) frame t's kept positions go to idx at the offset
//            sum over t' < t of the frames' counts, as flat indices t * N + n.
//   gather   per kept token its (t, h, w) triple (raster order over H x W) and,
//            when asked, a copy of its feature row.
#pragma once
#include <cstdint>

#include "core/cpu_features.h"
#include "core/dtype.h"

namespace vlmkern::cpu {

struct TemporalSelectArgs {
  DType dtype;
  const void* x;         // [B, T, N, D], last dim contiguous
  int64_t B, T, N, D;
  int64_t sb, st, sn;    // element strides of x
  const int64_t* ref;    // [T]: ref[t] in [-1, t)
  bool global;           // true: one budget per video; false: one per anchored frame
  int64_t keep;          // global: in [0, T*N]; per frame: in [0, N]
  int64_t W;             // frame grid width (H * W == N)
  int64_t K;             // kept tokens per video (shapes only; see temporal_select_count)
  float eps;
  float* scores;         // scratch [B, T, N]
  int64_t* row_keep;     // scratch: global [B]; per frame [B * T]
  int64_t* sel;          // scratch [B * T, N] (per frame only; unused in global mode)
  int64_t* idx;          // [B, K] kept flat indices t * N + n, ascending
  int64_t* thw;          // [B, K, 3]
  void* feat;            // [B, K, D] contiguous, or nullptr (no compaction)
};

// K from the shapes and ref: global keep; per frame sum_t (ref[t] < 0 ? N : keep).
inline int64_t temporal_select_count(bool global, const int64_t* ref, int64_t T, int64_t N, int64_t keep) {
  if (global) return keep;
  int64_t k = 0;
  for (int64_t t = 0; t < T; ++t) k += ref[t] < 0 ? N : keep;
  return k;
}

constexpr int64_t kTemporalSelectTile = 8;

// Phase 1: tasks (b, tile of token positions).
inline int64_t temporal_select_score_tasks(const TemporalSelectArgs& a) {
  return a.B * ((a.N + kTemporalSelectTile - 1) / kTemporalSelectTile);
}
void temporal_select_scores_run(const TemporalSelectArgs& a, CpuIsa isa, int64_t t0, int64_t t1);

// Phase 2: selection rows (global: B; per frame: B * T). Fills row_keep too.
inline int64_t temporal_select_rows(const TemporalSelectArgs& a) { return a.global ? a.B : a.B * a.T; }
void temporal_select_select_run(const TemporalSelectArgs& a, int64_t r0, int64_t r1);

// Phase 3 (per frame only): rows (b, t) of sel placed into idx.
void temporal_select_place_run(const TemporalSelectArgs& a, int64_t r0, int64_t r1);

// Phase 4: kept tokens [i0, i1) of the flattened [B * K].
void temporal_select_gather_run(const TemporalSelectArgs& a, int64_t i0, int64_t i1);

}  // namespace vlmkern::cpu
