// Argument validation shared by the CPU and CUDA implementations of each op, so
// both backends reject the same inputs with the same messages.
#pragma once
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
    const at::Tensor& q, const at::Tensor& k, int64_t key_start, int64_t key_end,
    const std::optional<at::Tensor>& key_padding_mask,
    const std::optional<at::Tensor>& query_weights) {
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
}

}  // namespace vlmkern
