// CUDA implementation of vlmkern::frame_similarity: argument checks (shared
// with the CPU backend) and the launch. The kernel and its launch planning are
// in frame_similarity_kernels.cuh.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "core/op_checks.h"
#include "core/torch_dtype.h"
#include "cuda/frame_similarity_kernels.cuh"
#include "ops.h"

namespace vlmkern {

at::Tensor frame_similarity_cuda(const at::Tensor& x_in, const at::Tensor& ref_in, double eps) {
  TORCH_CHECK(x_in.is_cuda(), "x: expected a CUDA tensor, got ", describe(x_in));
  const c10::cuda::CUDAGuard guard(x_in.device());
  check_frame_similarity_args(x_in, ref_in, eps);
  const at::Tensor x = last_dim_contiguous(x_in);
  const at::Tensor ref = ref_in.contiguous();
  at::Tensor out = at::empty({x.size(0), x.size(1), x.size(2)}, x.options().dtype(at::kFloat));
  const cuda::FrameSimilarityArgs a{to_dtype(x.scalar_type(), "frame_similarity"), x.data_ptr(),
                                    x.size(0), x.size(1), x.size(2), x.size(3), x.stride(0),
                                    x.stride(1), x.stride(2), ref.data_ptr<int64_t>(), float(eps),
                                    out.data_ptr<float>()};
  const char* why = cuda::frame_similarity_plan_error(a);
  TORCH_CHECK(why == nullptr, "frame_similarity: ", why, ", got ", describe(x));
  C10_CUDA_CHECK(cuda::frame_similarity_launch(a, c10::cuda::getCurrentCUDAStream()));
  return out;
}

TORCH_LIBRARY_IMPL(vlmkern, CUDA, m) { m.impl("frame_similarity", &frame_similarity_cuda); }

}  // namespace vlmkern
