// CPU implementation of vlmkern::frame_similarity (see frame_similarity_kernel.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "core/op_checks.h"
#include "core/torch_dtype.h"
#include "cpu/frame_similarity_kernel.h"
#include "ops.h"

namespace vlmkern {

at::Tensor frame_similarity_cpu(const at::Tensor& x_in, const at::Tensor& ref_in, double eps) {
  check_frame_similarity_args(x_in, ref_in, eps);
  const at::Tensor x = last_dim_contiguous(x_in);
  const at::Tensor ref = ref_in.contiguous();
  const int64_t B = x.size(0), T = x.size(1), N = x.size(2), D = x.size(3);
  at::Tensor out = at::empty({B, T, N}, x.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  const cpu::FrameSimilarityArgs a{to_dtype(x.scalar_type(), "frame_similarity"), x.data_ptr(),
                                   B, T, N, D, x.stride(0), x.stride(1), x.stride(2),
                                   ref.data_ptr<int64_t>(), float(eps), out.data_ptr<float>()};
  const CpuIsa isa = cpu_isa();
  at::parallel_for(0, cpu::frame_similarity_tasks(a), 1, [&](int64_t t0, int64_t t1) {
    cpu::frame_similarity_tasks_run(a, isa, t0, t1);
  });
  return out;
}

TORCH_LIBRARY_IMPL(vlmkern, CPU, m) { m.impl("frame_similarity", &frame_similarity_cpu); }

}  // namespace vlmkern
