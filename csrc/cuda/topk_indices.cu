// CUDA implementation of vlmkern::topk_indices: argument checks (shared with
// the CPU backend) and the launch. The kernel and its launch planning are in
// topk_indices_kernels.cuh.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "core/op_checks.h"
#include "core/torch_dtype.h"
#include "cuda/topk_indices_kernels.cuh"
#include "ops.h"

namespace vlmkern {

at::Tensor topk_indices_cuda(const at::Tensor& scores, const at::Tensor& keep_in, int64_t k_max) {
  TORCH_CHECK(scores.is_cuda(), "scores: expected a CUDA tensor, got ", describe(scores));
  const c10::cuda::CUDAGuard guard(scores.device());
  check_topk_args(scores, keep_in, k_max);
  const at::Tensor keep = keep_in.contiguous();
  const int64_t B = scores.size(0);
  at::Tensor out = at::empty({B, k_max}, scores.options().dtype(at::kLong));
  const cuda::TopkArgs a{to_dtype(scores.scalar_type(), "topk_indices"), scores.data_ptr(),
                         scores.stride(0), scores.stride(1), B, scores.size(1),
                         keep.data_ptr<int64_t>(), k_max, out.data_ptr<int64_t>()};
  const char* why = cuda::topk_indices_plan_error(a);
  TORCH_CHECK(why == nullptr, "topk_indices: ", why, ", got ", describe(scores));
  C10_CUDA_CHECK(cuda::topk_indices_launch(a, c10::cuda::getCurrentCUDAStream()));
  return out;
}

TORCH_LIBRARY_IMPL(vlmkern, CUDA, m) { m.impl("topk_indices", &topk_indices_cuda); }

}  // namespace vlmkern
