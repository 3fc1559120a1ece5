// CPU implementation of vlmkern::pixel_dedup (see pixel_dedup_kernel.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "core/op_checks.h"
#include "core/torch_dtype.h"
#include "cpu/pixel_dedup_kernel.h"
#include "ops.h"

namespace vlmkern {

at::Tensor pixel_dedup_cpu(const at::Tensor& pixels_in, const at::Tensor& grid_in, double tol) {
  const at::Tensor grid = check_pixel_dedup_args(pixels_in, grid_in, tol);  // host copy
  const at::Tensor pixels = pixels_in.contiguous();
  const int64_t G = grid.size(0) ? grid.select(1, 0).sum().item<int64_t>() : 0;
  at::Tensor source = at::empty({G}, pixels.options().dtype(at::kLong));
  if (G == 0) return source;
  const cpu::PixelDedupArgs a{to_dtype(pixels.scalar_type(), "pixel_dedup"), pixels.data_ptr(),
                              pixels.size(1), grid.data_ptr<int64_t>(), grid.size(0), tol,
                              source.data_ptr<int64_t>()};
  std::vector<double> partial(size_t(cpu::pixel_dedup_max_chunks(a)) + 1);
  cpu::pixel_dedup_run(a, partial.data(), [](int64_t b, int64_t e, int64_t grain, auto&& fn) {
    at::parallel_for(b, e, grain, fn);
  });
  return source;
}

TORCH_LIBRARY_IMPL(vlmkern, CPU, m) { m.impl("pixel_dedup", &pixel_dedup_cpu); }

}  // namespace vlmkern
