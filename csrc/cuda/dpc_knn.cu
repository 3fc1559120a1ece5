// CUDA implementation of vlmkern::dpc_knn: argument checks (shared with the CPU
// backend; the finiteness check reads one bool back), scratch, and the launch.
// The kernels and their launch planning are in dpc_knn_kernels.cuh.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "core/op_checks.h"
#include "core/torch_dtype.h"
#include "cuda/dpc_knn_kernels.cuh"
#include "ops.h"

namespace vlmkern {

std::tuple<at::Tensor, at::Tensor> dpc_knn_cuda(const at::Tensor& x_in, int64_t k, int64_t m) {
  TORCH_CHECK(x_in.is_cuda(), "x: expected a CUDA tensor, got ", describe(x_in));
  const c10::cuda::CUDAGuard guard(x_in.device());
  check_dpc_knn_args(x_in, k, m);
  check_dpc_knn_finite(x_in);
  const at::Tensor x = last_dim_contiguous(x_in);
  const int64_t B = x.size(0), n = x.size(1), D = x.size(2);
  at::Tensor centres = at::empty({B, m}, x.options().dtype(at::kLong));
  at::Tensor assign = at::empty({B, n}, x.options().dtype(at::kLong));
  if (B == 0) return {centres, assign};
  at::Tensor g = at::empty({n * n + n}, x.options().dtype(at::kFloat));
  at::Tensor f64 = at::empty({4, n}, x.options().dtype(at::kDouble));
  at::Tensor i64 = at::empty({2, n}, x.options().dtype(at::kLong));
  float* gp = g.data_ptr<float>();
  double* dp = f64.data_ptr<double>();
  int64_t* ip = i64.data_ptr<int64_t>();
  const cuda::DpcKnnArgs a{to_dtype(x.scalar_type(), "dpc_knn"), x.data_ptr(), B, n, D,
                           x.stride(0), x.stride(1), k, m, gp, gp + n * n,
                           dp, dp + n, dp + 2 * n, dp + 3 * n, ip, ip + n,
                           centres.data_ptr<int64_t>(), assign.data_ptr<int64_t>()};
  const char* why = cuda::dpc_knn_plan_error(a);
  TORCH_CHECK(why == nullptr, "dpc_knn: ", why, ", got ", describe(x));
  C10_CUDA_CHECK(cuda::dpc_knn_launch(a, c10::cuda::getCurrentCUDAStream()));
  return {centres, assign};
}

TORCH_LIBRARY_IMPL(vlmkern, CUDA, m) { m.impl("dpc_knn", &dpc_knn_cuda); }

}  // namespace vlmkern
