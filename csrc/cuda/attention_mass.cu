// CUDA implementation of vlmkern::attention_mass: argument checks (shared with
// the CPU backend), output and workspace, and the launch. The kernels and their
// launch planning are in attention_mass_kernels.cuh.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "core/op_checks.h"
#include "core/torch_dtype.h"
#include "cuda/attention_mass_kernels.cuh"
#include "ops.h"

namespace vlmkern {

at::Tensor attention_mass_cuda(const at::Tensor& q_in, const at::Tensor& k_in, int64_t key_start,
                               int64_t key_end, bool causal, double scale,
                               const std::optional<at::Tensor>& key_padding_mask,
                               const std::optional<at::Tensor>& query_weights) {
  TORCH_CHECK(q_in.is_cuda(), "q: expected a CUDA tensor, got ", describe(q_in));
  const c10::cuda::CUDAGuard guard(q_in.device());
  const AttentionMassShape s =
      check_attention_mass_args(q_in, k_in, key_start, key_end, scale, key_padding_mask,
                                query_weights);
  const at::Tensor q = last_dim_contiguous(q_in), k = last_dim_contiguous(k_in);
  at::Tensor mask, qw;
  if (key_padding_mask) mask = key_padding_mask->contiguous();
  if (query_weights) qw = query_weights->contiguous();
  at::Tensor out = at::empty({s.B, key_end - key_start}, q.options().dtype(at::kFloat));

  cuda::AttentionMassProblem pb{};
  pb.dtype = to_dtype(q.scalar_type(), "attention_mass");
  pb.q = q.data_ptr();
  pb.k = k.data_ptr();
  pb.B = s.B; pb.Hq = s.Hq; pb.Hkv = s.Hkv; pb.Lq = s.Lq; pb.Lk = s.Lk; pb.D = s.D;
  pb.q_sb = q.stride(0); pb.q_sh = q.stride(1); pb.q_sl = q.stride(2);
  pb.k_sb = k.stride(0); pb.k_sh = k.stride(1); pb.k_sl = k.stride(2);
  pb.key_valid = mask.defined() ? mask.data_ptr<bool>() : nullptr;
  pb.query_weights = qw.defined() ? qw.data_ptr<float>() : nullptr;
  pb.key_start = key_start;
  pb.key_end = key_end;
  pb.causal = causal;
  pb.scale = float(scale);
  pb.out = out.data_ptr<float>();
  if (out.numel() == 0) return out;
  const char* why = cuda::attention_mass_plan_error(pb);
  TORCH_CHECK(why == nullptr, "attention_mass: ", why, " (q ", describe(q_in), ", k ",
              describe(k_in), ")");
  const at::Tensor ws = at::empty({cuda::attention_mass_workspace_floats(pb)}, out.options());
  C10_CUDA_CHECK(cuda::attention_mass_launch(pb, ws.data_ptr<float>(),
                                             c10::cuda::getCurrentCUDAStream()));
  return out;
}

TORCH_LIBRARY_IMPL(vlmkern, CUDA, m) { m.impl("attention_mass", &attention_mass_cuda); }

}  // namespace vlmkern
