// Argument validation shared by the CPU and CUDA implementations of each op, so
// both backends reject the same inputs with the same messages.
#pragma once
#include <cmath>

#include "core/checks.h"

namespace vlmkern {

// The kernels need only the last dimension contiguous; anything else is copied once.
inline at::Tensor last_dim_contiguous(const at::Tensor& t) {
  return t.stride(-1) == 1 ? t : t.contiguous();
}

struct AttentionMassShape {
  int64_t B, Hq, Hkv, Lq, Lk, D;
};

inline AttentionMassShape check_attention_mass_args(
    const at::Tensor& q, const at::Tensor& k, int64_t key_start, int64_t key_end, double scale,
    const std::optional<at::Tensor>& key_padding_mask,
    const std::optional<at::Tensor>& query_weights) {
  TORCH_CHECK(std::isfinite(scale) && scale > 0, "scale: expected a finite value > 0, got ", scale);
  VLMKERN_CHECK_DIM(q, "q", 4, "[B, Hq, Lq, D]");
  VLMKERN_CHECK_DIM(k, "k", 4, "[B, Hkv, Lk, D]");
  VLMKERN_CHECK_FLOATING(q, "q");
  TORCH_CHECK(k.scalar_type() == q.scalar_type(), "k: expected the dtype of q (",
              q.scalar_type(), "), got ", describe(k));
  VLMKERN_CHECK_SAME_DEVICE(q, "q", k, "k");
  AttentionMassShape s{q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3)};
  TORCH_CHECK(k.size(0) == s.B && k.size(3) == s.D, "k: expected shape [", s.B, ", Hkv, Lk, ",
              s.D, "] to match q ", describe(q), ", got ", describe(k));
  TORCH_CHECK(s.Hq > 0, "q: expected at least one query head, got ", describe(q));
  TORCH_CHECK(s.Hkv > 0 && s.Hq % s.Hkv == 0, "k: the number of KV heads (", s.Hkv,
              ") must divide the number of query heads (", s.Hq, ")");
  TORCH_CHECK(s.Lq >= 1 && s.Lq <= s.Lk, "q: expected 1 <= Lq <= Lk (queries are the last Lq of ",
              "the Lk positions), got Lq=", s.Lq, ", Lk=", s.Lk);
  TORCH_CHECK(s.D >= 1 && s.D <= 1024, "q: head dim must be in [1, 1024], got ", s.D);
  TORCH_CHECK(0 <= key_start && key_start <= key_end && key_end <= s.Lk,
              "key_start/key_end: expected 0 <= key_start <= key_end <= Lk=", s.Lk, ", got ",
              key_start, ", ", key_end);
  if (key_padding_mask) {
    const at::Tensor& m = *key_padding_mask;
    TORCH_CHECK(m.dim() == 2 && m.size(0) == s.B && m.size(1) == s.Lk,
                "key_padding_mask: expected shape [B, Lk] = [", s.B, ", ", s.Lk, "], got ",
                describe(m));
    TORCH_CHECK(m.scalar_type() == at::kBool, "key_padding_mask: expected a bool tensor, got ",
                describe(m));
    VLMKERN_CHECK_SAME_DEVICE(m, "key_padding_mask", q, "q");
  }
  if (query_weights) {
    const at::Tensor& w = *query_weights;
    TORCH_CHECK(w.dim() == 2 && w.size(0) == s.B && w.size(1) == s.Lq,
                "query_weights: expected shape [B, Lq] = [", s.B, ", ", s.Lq, "], got ",
                describe(w));
    TORCH_CHECK(w.scalar_type() == at::kFloat, "query_weights: expected float32, got ",
                describe(w));
    VLMKERN_CHECK_SAME_DEVICE(w, "query_weights", q, "q");
    // Values too (a NaN or negative weight would give NaN or negative masses);
    // on CUDA this reads one bool back.
    TORCH_CHECK(w.numel() == 0 || at::logical_and(w >= 0, w.isfinite()).all().item<bool>(),
                "query_weights: expected finite values >= 0");
  }
  return s;
}

inline void check_topk_args(const at::Tensor& scores, const at::Tensor& keep, int64_t k_max) {
  VLMKERN_CHECK_DIM(scores, "scores", 2, "[B, N]");
  VLMKERN_CHECK_FLOATING(scores, "scores");
  TORCH_CHECK(scores.size(1) < (int64_t(1) << 31), "scores: N must be < 2^31, got ",
              scores.size(1));
  TORCH_CHECK(keep.dim() == 1 && keep.size(0) == scores.size(0),
              "keep: expected an int64 tensor of shape [B] = [", scores.size(0), "], got ",
              describe(keep));
  TORCH_CHECK(keep.scalar_type() == at::kLong, "keep: expected int64, got ", describe(keep));
  VLMKERN_CHECK_SAME_DEVICE(keep, "keep", scores, "scores");
  TORCH_CHECK(0 <= k_max && k_max <= scores.size(1), "k_max: expected 0 <= k_max <= N=",
              scores.size(1), ", got ", k_max);
  // The values too, on every backend (on CUDA this reads two numbers back: a
  // device sync, the price of raising here rather than clamping silently).
  if (keep.numel() > 0) {
    const auto [lo, hi] = at::aminmax(keep);
    if (lo.item<int64_t>() < 0 || hi.item<int64_t>() > k_max) {
      const at::Tensor bad = at::logical_or(keep < 0, keep > k_max).nonzero().cpu();
      const int64_t b = bad[0][0].item<int64_t>();
      TORCH_CHECK(false, "keep: expected values in [0, k_max=", k_max, "], got keep[", b,
                  "]=", keep[b].item<int64_t>());
    }
  }
}


// ---- frame_similarity ---------------------------------------------------------

// x [B, T, N, D] floating; ref int64 [T] with values in [-1, T) and ref[t] != t
// (on CUDA reading the values back is one device sync).
inline void check_frame_similarity_args(const at::Tensor& x, const at::Tensor& ref, double eps) {
  VLMKERN_CHECK_DIM(x, "x", 4, "[B, T, N, D]");
  VLMKERN_CHECK_FLOATING(x, "x");
  TORCH_CHECK(std::isfinite(eps) && eps > 0, "eps: expected a finite value > 0, got ", eps);
  const int64_t T = x.size(1);
  TORCH_CHECK(ref.dim() == 1 && ref.size(0) == T, "ref: expected an int64 tensor of shape [T] = [",
              T, "], got ", describe(ref));
  TORCH_CHECK(ref.scalar_type() == at::kLong, "ref: expected int64, got ", describe(ref));
  VLMKERN_CHECK_SAME_DEVICE(ref, "ref", x, "x");
  if (T > 0) {
    const at::Tensor t = at::arange(T, ref.options());
    const at::Tensor bad = at::logical_or(at::logical_or(ref < -1, ref >= T), ref == t);
    if (bad.any().item<bool>()) {
      const int64_t i = bad.nonzero().cpu()[0][0].item<int64_t>();
      TORCH_CHECK(false, "ref: expected -1 (no reference) or a frame index in [0, T=", T,
                  ") other than the frame itself, got ref[", i, "]=", ref[i].item<int64_t>());
    }
  }
}

// ---- temporal_select ------------------------------------------------------------

struct TemporalSelectShape {
  bool global;  // mode "global" (else "per_frame")
  int64_t K;    // kept tokens per video
};

// x [B, T, N, D] floating; ref: T values, ref[t] in [-1, t); mode "global" or
// "per_frame"; H * W == N; keep in [0, T * N] (global) or [0, N] (per frame);
// eps finite > 0. Every check is on the host (ref is an int list): no sync.
inline TemporalSelectShape check_temporal_select_args(const at::Tensor& x, at::IntArrayRef ref,
                                                      const std::string& mode, int64_t keep, int64_t H,
                                                      int64_t W, double eps) {
  VLMKERN_CHECK_DIM(x, "x", 4, "[B, T, N, D]");
  VLMKERN_CHECK_FLOATING(x, "x");
  TORCH_CHECK(mode == "global" || mode == "per_frame",
              "mode: expected 'global' or 'per_frame', got '", mode, "'");
  TORCH_CHECK(std::isfinite(eps) && eps > 0, "eps: expected a finite value > 0, got ", eps);
  const int64_t T = x.size(1), N = x.size(2);
  TORCH_CHECK(H >= 0 && W >= 0 && H * W == N, "H, W: expected the frame grid of the N=", N,
              " tokens per frame (H * W == N), got H=", H, ", W=", W);
  TORCH_CHECK(T * N < (int64_t(1) << 31), "x: T * N must be < 2^31, got ", describe(x));
  TORCH_CHECK(int64_t(ref.size()) == T, "ref: expected T=", T, " entries (one per frame), got ",
              ref.size());
  for (int64_t t = 0; t < T; ++t)
    TORCH_CHECK(ref[t] >= -1 && ref[t] < t, "ref: expected -1 (no reference) or an earlier frame in "
                "[0, t) for every frame t, got ref[", t, "]=", ref[t]);
  const bool global = mode == "global";
  const int64_t hi = global ? T * N : N;
  TORCH_CHECK(keep >= 0 && keep <= hi, "keep: expected 0 <= keep <= ", global ? "T * N=" : "N=", hi,
              " in mode '", mode, "', got ", keep);
  int64_t K = keep;
  if (!global) {
    K = 0;
    for (int64_t t = 0; t < T; ++t) K += ref[t] < 0 ? N : keep;
  }
  return {global, K};
}

// ---- dpc_knn --------------------------------------------------------------------

// x [B, n, D] floating, n >= 1, D >= 1; 1 <= k <= min(n, 64); 1 <= m <= n.
inline void check_dpc_knn_args(const at::Tensor& x, int64_t k, int64_t m) {
  VLMKERN_CHECK_DIM(x, "x", 3, "[B, n, D]");
  VLMKERN_CHECK_FLOATING(x, "x");
  const int64_t n = x.size(1), D = x.size(2);
  TORCH_CHECK(n >= 1 && D >= 1, "x: expected at least one point and one channel, got ", describe(x));
  TORCH_CHECK(n < (int64_t(1) << 31), "x: n must be < 2^31, got ", n);
  TORCH_CHECK(k >= 1 && k <= n && k <= 64, "k: expected 1 <= k <= min(n=", n,
              ", 64) (neighbours per density, the point itself included), got ", k);
  TORCH_CHECK(m >= 1 && m <= n, "m: expected 1 <= m <= n=", n, " (the number of centres), got ", m);
}
// The values must be finite too: the CPU checks its fp32 copy of each item as
// it makes it, CUDA calls this (one bool read back).
constexpr const char* kDpcKnnNotFinite = "x: expected finite values (NaN or inf has no distance)";
inline void check_dpc_knn_finite(const at::Tensor& x) {
  TORCH_CHECK(x.numel() == 0 || x.isfinite().all().item<bool>(), kDpcKnnNotFinite);
}

// ---- pixel_dedup ----------------------------------------------------------------

// pixels [P, F] floating; grid int64 [V, 3] (t, h, w >= 0) with sum(t*h*w) == P;
// tol finite >= 0. Returns the grid on the host (on CUDA a copy: one sync).
inline at::Tensor check_pixel_dedup_args(const at::Tensor& pixels, const at::Tensor& grid, double tol) {
  VLMKERN_CHECK_DIM(pixels, "pixel_values", 2, "[patches, values per patch]");
  VLMKERN_CHECK_FLOATING(pixels, "pixel_values");
  TORCH_CHECK(std::isfinite(tol) && tol >= 0, "tol: expected a finite value >= 0, got ", tol);
  TORCH_CHECK(grid.dim() == 2 && grid.size(1) == 3, "grid: expected an int64 tensor of shape ",
              "[videos, 3] (t, h, w), got ", describe(grid));
  TORCH_CHECK(grid.scalar_type() == at::kLong, "grid: expected int64, got ", describe(grid));
  VLMKERN_CHECK_SAME_DEVICE(grid, "grid", pixels, "pixel_values");
  const at::Tensor g = grid.to(at::kCPU).contiguous();
  const int64_t* p = g.data_ptr<int64_t>();
  int64_t rows = 0;
  for (int64_t v = 0; v < g.size(0); ++v) {
    TORCH_CHECK(p[3 * v] >= 0 && p[3 * v + 1] >= 0 && p[3 * v + 2] >= 0,
                "grid: expected t, h, w >= 0, got grid[", v, "] = (", p[3 * v], ", ", p[3 * v + 1],
                ", ", p[3 * v + 2], ")");
    rows += p[3 * v] * p[3 * v + 1] * p[3 * v + 2];
  }
  TORCH_CHECK(rows == pixels.size(0), "pixel_values: expected sum(t * h * w) = ", rows,
              " patch rows for this grid, got ", describe(pixels));
  return g;
}

// ---- W4A8 -------------------------------------------------------------------------

inline void check_w4a8_group(int64_t K, int64_t group_size, const char* k_name) {
  TORCH_CHECK(group_size >= 8 && group_size % 8 == 0, "group_size: expected a positive ",
              "multiple of 8 (32, 64, 128 or K), got ", group_size);
  TORCH_CHECK(K > 0 && K % group_size == 0, k_name, ": K=", K,
              " is not divisible by group_size=", group_size,
              " (W4A8Linear pads such layers; the ops need K % group_size == 0)");
}

// weight: logical nibbles [N, K/2] uint8; scales [N, K/G] float.
inline void check_w4a8_weight(const at::Tensor& weight, const at::Tensor& scales,
                              int64_t group_size) {
  VLMKERN_CHECK_DIM(weight, "weight", 2, "[N, K/2]");
  TORCH_CHECK(weight.scalar_type() == at::kByte,
              "weight: expected uint8 nibbles (q + 8, low nibble = even k), got ", describe(weight));
  const int64_t N = weight.size(0), K = weight.size(1) * 2;
  TORCH_CHECK(N > 0, "weight: expected at least one output channel, got ", describe(weight));
  check_w4a8_group(K, group_size, "weight");
  VLMKERN_CHECK_DIM(scales, "scales", 2, "[N, K/group_size]");
  VLMKERN_CHECK_FLOATING(scales, "scales");
  TORCH_CHECK(scales.size(0) == N && scales.size(1) == K / group_size,
              "scales: expected shape [N, K/group_size] = [", N, ", ", K / group_size, "], got ",
              describe(scales));
  VLMKERN_CHECK_SAME_DEVICE(scales, "scales", weight, "weight");
}

struct W4A8GemmShape {
  int64_t M, N, K, n_groups;
};

// codes [M, K] int8, x_scales [M] fp32, x_rowsums [M, K/G] int32, w_scales [N, K/G] fp32,
// bias [N] or none. `packed` is checked by each backend (its layout is theirs).
inline W4A8GemmShape check_w4a8_gemm_args(const at::Tensor& codes, const at::Tensor& x_scales,
                                          const at::Tensor& x_rowsums, const at::Tensor& packed,
                                          const at::Tensor& w_scales, int64_t group_size,
                                          const std::optional<at::Tensor>& bias) {
  VLMKERN_CHECK_DIM(codes, "codes", 2, "[M, K]");
  TORCH_CHECK(codes.scalar_type() == at::kChar, "codes: expected int8, got ", describe(codes));
  const int64_t M = codes.size(0), K = codes.size(1);
  check_w4a8_group(K, group_size, "codes");
  const int64_t G = K / group_size;
  TORCH_CHECK(x_scales.dim() == 1 && x_scales.size(0) == M && x_scales.scalar_type() == at::kFloat,
              "x_scales: expected float32 [M] = [", M, "], got ", describe(x_scales));
  TORCH_CHECK(x_rowsums.dim() == 2 && x_rowsums.size(0) == M && x_rowsums.size(1) == G &&
                  x_rowsums.scalar_type() == at::kInt,
              "x_rowsums: expected int32 [M, K/group_size] = [", M, ", ", G, "], got ",
              describe(x_rowsums));
  VLMKERN_CHECK_DIM(w_scales, "w_scales", 2, "[N, K/group_size]");
  TORCH_CHECK(w_scales.scalar_type() == at::kFloat, "w_scales: expected float32, got ",
              describe(w_scales));
  TORCH_CHECK(w_scales.size(1) == G, "w_scales: expected K/group_size = ", G,
              " columns, got ", describe(w_scales));
  const int64_t N = w_scales.size(0);
  TORCH_CHECK(N > 0, "w_scales: expected at least one output channel, got ", describe(w_scales));
  TORCH_CHECK(packed.scalar_type() == at::kByte, "packed: expected uint8 from w4a8_pack, got ",
              describe(packed));
  VLMKERN_CHECK_SAME_DEVICE(x_scales, "x_scales", codes, "codes");
  VLMKERN_CHECK_SAME_DEVICE(x_rowsums, "x_rowsums", codes, "codes");
  VLMKERN_CHECK_SAME_DEVICE(packed, "packed", codes, "codes");
  VLMKERN_CHECK_SAME_DEVICE(w_scales, "w_scales", codes, "codes");
  if (bias) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == N, "bias: expected shape [N] = [", N,
                "], got ", describe(*bias));
    VLMKERN_CHECK_FLOATING(*bias, "bias");
    VLMKERN_CHECK_SAME_DEVICE(*bias, "bias", codes, "codes");
  }
  return {M, N, K, G};
}

// w4a8_linear: everything on x's device (checked before dispatching work, so
// the message names the user's arguments, not internal ones).
inline void check_w4a8_linear_devices(const at::Tensor& x, const at::Tensor& packed,
                                      const at::Tensor& w_scales,
                                      const std::optional<at::Tensor>& bias) {
  VLMKERN_CHECK_SAME_DEVICE(packed, "packed", x, "x");
  VLMKERN_CHECK_SAME_DEVICE(w_scales, "w_scales", x, "x");
  if (bias) VLMKERN_CHECK_SAME_DEVICE(*bias, "bias", x, "x");
}

inline at::ScalarType check_w4a8_out_dtype(std::optional<at::ScalarType> out_dtype) {
  const at::ScalarType t = out_dtype.value_or(at::kFloat);
  TORCH_CHECK(t == at::kFloat || t == at::kBFloat16 || t == at::kHalf,
              "out_dtype: expected float32, bfloat16 or float16, got ", t);
  return t;
}

}  // namespace vlmkern
