// CPU implementation of vlmkern::temporal_select (see temporal_select_kernel.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "core/op_checks.h"
#include "core/torch_dtype.h"
#include "cpu/temporal_select_kernel.h"
#include "ops.h"

namespace vlmkern {

std::tuple<at::Tensor, at::Tensor, at::Tensor> temporal_select_cpu(const at::Tensor& x_in, at::IntArrayRef ref,
                                                                   c10::string_view mode, int64_t keep,
                                                                   int64_t H, int64_t W, double eps,
                                                                   bool features) {
  const TemporalSelectShape s = check_temporal_select_args(x_in, ref, std::string(mode), keep, H, W, eps);
  const at::Tensor x = last_dim_contiguous(x_in);
  const int64_t B = x.size(0), T = x.size(1), N = x.size(2), D = x.size(3), K = s.K;
  at::Tensor idx = at::empty({B, K}, x.options().dtype(at::kLong));
  at::Tensor thw = at::empty({B, K, 3}, x.options().dtype(at::kLong));
  at::Tensor feat = features ? at::empty({B, K, D}, x.options()) : at::empty({0}, x.options());
  if (B == 0 || K == 0) return {idx, thw, feat};
  at::Tensor scores = at::empty({B, T, N}, x.options().dtype(at::kFloat));
  at::Tensor row_keep = at::empty({s.global ? B : B * T}, x.options().dtype(at::kLong));
  at::Tensor sel = s.global ? at::Tensor() : at::empty({B * T, N}, x.options().dtype(at::kLong));
  const cpu::TemporalSelectArgs a{to_dtype(x.scalar_type(), "temporal_select"), x.data_ptr(), B, T, N, D,
                                  x.stride(0), x.stride(1), x.stride(2), ref.data(), s.global, keep, W, K,
                                  float(eps), scores.data_ptr<float>(), row_keep.data_ptr<int64_t>(),
                                  s.global ? nullptr : sel.data_ptr<int64_t>(), idx.data_ptr<int64_t>(),
                                  thw.data_ptr<int64_t>(), features ? feat.data_ptr() : nullptr};
  const CpuIsa isa = cpu_isa();
  at::parallel_for(0, cpu::temporal_select_score_tasks(a), 1, [&](int64_t t0, int64_t t1) {
    cpu::temporal_select_scores_run(a, isa, t0, t1);
  });
  at::parallel_for(0, cpu::temporal_select_rows(a), 1, [&](int64_t r0, int64_t r1) {
    cpu::temporal_select_select_run(a, r0, r1);
  });
  if (!s.global)
    at::parallel_for(0, B * T, 1, [&](int64_t r0, int64_t r1) { cpu::temporal_select_place_run(a, r0, r1); });
  at::parallel_for(0, B * K, 64, [&](int64_t i0, int64_t i1) { cpu::temporal_select_gather_run(a, i0, i1); });
  return {idx, thw, feat};
}

TORCH_LIBRARY_IMPL(vlmkern, CPU, m) { m.impl("temporal_select", &temporal_select_cpu); }

}  // namespace vlmkern
