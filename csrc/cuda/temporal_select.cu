// CUDA implementation of vlmkern::temporal_select: argument checks (shared
// with the CPU backend), outputs and scratch, and the launch. The kernels and
// their launch planning are in temporal_select_kernels.cuh.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "core/op_checks.h"
#include "core/torch_dtype.h"
#include "cuda/temporal_select_kernels.cuh"
#include "ops.h"

namespace vlmkern {

std::tuple<at::Tensor, at::Tensor, at::Tensor> temporal_select_cuda(const at::Tensor& x_in, at::IntArrayRef ref,
                                                                    c10::string_view mode, int64_t keep,
                                                                    int64_t H, int64_t W, double eps,
                                                                    bool features) {
  TORCH_CHECK(x_in.is_cuda(), "x: expected a CUDA tensor, got ", describe(x_in));
  const c10::cuda::CUDAGuard guard(x_in.device());
  const TemporalSelectShape s = check_temporal_select_args(x_in, ref, std::string(mode), keep, H, W, eps);
  const at::Tensor x = last_dim_contiguous(x_in);
  const int64_t B = x.size(0), T = x.size(1), N = x.size(2), D = x.size(3), K = s.K;
  at::Tensor idx = at::empty({B, K}, x.options().dtype(at::kLong));
  at::Tensor thw = at::empty({B, K, 3}, x.options().dtype(at::kLong));
  at::Tensor feat = features ? at::empty({B, K, D}, x.options()) : at::empty({0}, x.options());
  if (B == 0 || K == 0) return {idx, thw, feat};
  const at::Tensor ref_d = at::tensor(ref, at::TensorOptions().dtype(at::kLong)).to(x.device());
  at::Tensor scores = at::empty({B, T, N}, x.options().dtype(at::kFloat));
  at::Tensor row_keep = at::empty({s.global ? B : B * T}, x.options().dtype(at::kLong));
  at::Tensor sel = s.global ? at::Tensor() : at::empty({B * T, N}, x.options().dtype(at::kLong));
  const cuda::TemporalSelectArgs a{to_dtype(x.scalar_type(), "temporal_select"), x.data_ptr(), B, T, N, D,
                                   x.stride(0), x.stride(1), x.stride(2), ref_d.data_ptr<int64_t>(), s.global,
                                   keep, W, K, float(eps), scores.data_ptr<float>(),
                                   row_keep.data_ptr<int64_t>(), s.global ? nullptr : sel.data_ptr<int64_t>(),
                                   idx.data_ptr<int64_t>(), thw.data_ptr<int64_t>(),
                                   features ? feat.data_ptr() : nullptr};
  const char* why = cuda::temporal_select_plan_error(a);
  TORCH_CHECK(why == nullptr, "temporal_select: ", why, ", got ", describe(x));
  C10_CUDA_CHECK(cuda::temporal_select_launch(a, c10::cuda::getCurrentCUDAStream()));
  return {idx, thw, feat};
}

TORCH_LIBRARY_IMPL(vlmkern, CUDA, m) { m.impl("temporal_select", &temporal_select_cuda); }

}  // namespace vlmkern
