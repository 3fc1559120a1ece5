// CUDA implementation of vlmkern::pixel_dedup: argument checks (shared with the
// CPU backend; they read the grid back, one sync) and the launch. The kernel
// and its launch planning are in pixel_dedup_kernels.cuh.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "core/op_checks.h"
#include "core/torch_dtype.h"
#include "cuda/pixel_dedup_kernels.cuh"
#include "ops.h"

namespace vlmkern {

at::Tensor pixel_dedup_cuda(const at::Tensor& pixels_in, const at::Tensor& grid_in, double tol) {
  TORCH_CHECK(pixels_in.is_cuda(), "pixel_values: expected a CUDA tensor, got ", describe(pixels_in));
  const c10::cuda::CUDAGuard guard(pixels_in.device());
  const at::Tensor host = check_pixel_dedup_args(pixels_in, grid_in, tol);
  const at::Tensor pixels = pixels_in.contiguous();
  const int64_t V = host.size(0);
  // Per video: first patch row and first global group index (exclusive prefix sums).
  at::Tensor offs = at::empty({2, V}, host.options());
  const int64_t* g = host.data_ptr<int64_t>();
  int64_t* o = offs.data_ptr<int64_t>();
  int64_t rows = 0, groups = 0;
  for (int64_t v = 0; v < V; ++v) {
    o[v] = rows;
    o[V + v] = groups;
    rows += g[3 * v] * g[3 * v + 1] * g[3 * v + 2];
    groups += g[3 * v];
  }
  at::Tensor source = at::empty({groups}, pixels.options().dtype(at::kLong));
  if (groups == 0) return source;
  const at::Tensor grid = host.to(pixels.device());
  const at::Tensor dev_offs = offs.to(pixels.device());
  const cuda::PixelDedupArgs a{to_dtype(pixels.scalar_type(), "pixel_dedup"), pixels.data_ptr(),
                               pixels.size(1), grid.data_ptr<int64_t>(), dev_offs[0].data_ptr<int64_t>(),
                               dev_offs[1].data_ptr<int64_t>(), V, tol, source.data_ptr<int64_t>()};
  const char* why = cuda::pixel_dedup_plan_error(a);
  TORCH_CHECK(why == nullptr, "pixel_dedup: ", why, ", got ", describe(grid_in));
  C10_CUDA_CHECK(cuda::pixel_dedup_launch(a, c10::cuda::getCurrentCUDAStream()));
  return source;
}

TORCH_LIBRARY_IMPL(vlmkern, CUDA, m) { m.impl("pixel_dedup", &pixel_dedup_cuda); }

}  // namespace vlmkern
