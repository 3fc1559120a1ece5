// CPU implementation of vlmkern::topk_indices (see topk_indices_kernel.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "core/op_checks.h"
#include "core/torch_dtype.h"
#include "cpu/topk_indices_kernel.h"
#include "ops.h"

namespace vlmkern {

at::Tensor topk_indices_cpu(const at::Tensor& scores, const at::Tensor& keep_in, int64_t k_max) {
  check_topk_args(scores, keep_in, k_max);
  const at::Tensor keep = keep_in.contiguous();
  const int64_t B = scores.size(0), N = scores.size(1);
  const int64_t* kp = keep.data_ptr<int64_t>();
  at::Tensor out = at::empty({B, k_max}, scores.options().dtype(at::kLong));
  if (B == 0 || k_max == 0) return out;
  const DType dt = to_dtype(scores.scalar_type(), "topk_indices");
  int64_t* op = out.data_ptr<int64_t>();
  const void* sp = scores.data_ptr();
  const int64_t sb = scores.stride(0), sn = scores.stride(1);
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    cpu::topk_indices_rows(dt, sp, sb, sn, N, kp, k_max, op, b0, b1);
  });
  return out;
}

TORCH_LIBRARY_IMPL(vlmkern, CPU, m) { m.impl("topk_indices", &topk_indices_cpu); }

}  // namespace vlmkern
