// CPU implementation of vlmkern::attention_mass: checks, workspace, threading.
// The kernel itself (raw pointers) is in attention_mass_kernel.cpp / _avx512.cpp.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "core/op_checks.h"
#include "cpu/attention_mass_kernel.h"
#include "core/torch_dtype.h"
#include "math/softmax.h"
#include "ops.h"

namespace vlmkern {

at::Tensor attention_mass_cpu(const at::Tensor& q_in, const at::Tensor& k_in, int64_t key_start,
                              int64_t key_end, bool causal, double scale,
                              const std::optional<at::Tensor>& key_padding_mask,
                              const std::optional<at::Tensor>& query_weights) {
  const AttentionMassShape s =
      check_attention_mass_args(q_in, k_in, key_start, key_end, scale, key_padding_mask,
                                query_weights);
  const at::Tensor q = last_dim_contiguous(q_in), k = last_dim_contiguous(k_in);
  at::Tensor mask, qw;
  if (key_padding_mask) mask = key_padding_mask->contiguous();
  if (query_weights) qw = query_weights->contiguous();

  const int64_t span = key_end - key_start;
  at::Tensor out = at::zeros({s.B, span}, q.options().dtype(at::kFloat));
  if (span == 0 || s.B == 0) return out;

  cpu::AttentionMassArgs a{};
  a.dtype = to_dtype(q.scalar_type(), "attention_mass");
  a.q = q.data_ptr();
  a.k = k.data_ptr();
  a.B = s.B; a.Hq = s.Hq; a.Hkv = s.Hkv; a.Lq = s.Lq; a.Lk = s.Lk; a.D = s.D;
  a.q_sb = q.stride(0); a.q_sh = q.stride(1); a.q_sl = q.stride(2);
  a.k_sb = k.stride(0); a.k_sh = k.stride(1); a.k_sl = k.stride(2);
  a.key_valid = mask.defined() ? reinterpret_cast<const uint8_t*>(mask.data_ptr<bool>()) : nullptr;
  a.query_weights = qw.defined() ? qw.data_ptr<float>() : nullptr;
  a.key_start = key_start;
  a.key_end = key_end;
  a.causal = causal;
  a.scale2 = float(scale) * math::kLog2e;
  a.out = out.data_ptr<float>();

  const CpuIsa isa = cpu_isa();
  const cpu::AttentionMassWorkspace wsz = cpu::attention_mass_plan(a, isa);
  const at::Tensor qprep = at::empty({wsz.qprep_bytes}, q.options().dtype(at::kByte));
  const at::Tensor ws = at::empty({wsz.floats}, out.options());
  cpu::attention_mass_bind(a, qprep.data_ptr<uint8_t>(), ws.data_ptr<float>());
  cpu::attention_mass_run(a, isa, [](int64_t b0, int64_t b1, int64_t grain, const auto& fn) {
    at::parallel_for(b0, b1, grain, fn);
  });
  return out;
}

TORCH_LIBRARY_IMPL(vlmkern, CPU, m) { m.impl("attention_mass", &attention_mass_cpu); }

}  // namespace vlmkern
