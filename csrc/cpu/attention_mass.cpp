// CPU implementation of vlmkern::attention_mass: checks, workspace, threading.
// The kernel itself (raw pointers) is in attention_mass_kernel.cpp / _avx512.cpp.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "core/op_checks.h"
#include "cpu/attention_mass_kernel.h"
#include "cpu/torch_dtype.h"
#include "math/softmax.h"
#include "ops.h"

namespace vlmkern {
namespace {

}  // namespace

at::Tensor attention_mass_cpu(const at::Tensor& q_in, const at::Tensor& k_in, int64_t key_start,
                              int64_t key_end, bool causal, double scale,
                              const std::optional<at::Tensor>& key_padding_mask,
                              const std::optional<at::Tensor>& query_weights) {
  const AttentionMassShape s =
      check_attention_mass_args(q_in, k_in, key_start, key_end, key_padding_mask, query_weights);
  const at::Tensor q = last_dim_contiguous(q_in), k = last_dim_contiguous(k_in);
  at::Tensor mask, qw;
  if (key_padding_mask) mask = key_padding_mask->contiguous();
  if (query_weights) qw = query_weights->contiguous();

  const int64_t span = key_end - key_start;
  at::Tensor out = at::zeros({s.B, span}, q.options().dtype(at::kFloat));
  if (span == 0 || s.B == 0) return out;

  cpu::AttentionMassArgs a{};
  a.dtype = cpu::to_dtype(q.scalar_type(), "attention_mass");
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
  a.chunk = cpu::attention_mass_chunk(s.Lk, s.D);
  a.n_chunks = (s.Lk + a.chunk - 1) / a.chunk;

  const CpuIsa isa = cpu_isa();
  a.q_pitch = cpu::attention_mass_q_pitch(a.dtype, isa, s.D);
  a.rg_pad = cpu::attention_mass_rg_pad(s.Hq, s.Hkv, s.Lq);
  at::Tensor qprep = at::empty({s.B * s.Hkv * a.rg_pad * a.q_pitch}, q.options().dtype(at::kByte));
  a.qprep = qprep.data_ptr<uint8_t>();

  const int64_t R = s.Hq * s.Lq;
  at::Tensor ws = at::empty({2 * s.B * a.n_chunks * R + 2 * s.B * R}, out.options());
  float* w = ws.data_ptr<float>();
  a.part_m = w;
  a.part_l = w + s.B * a.n_chunks * R;
  a.row_m = w + 2 * s.B * a.n_chunks * R;
  a.row_coef = a.row_m + s.B * R;
  a.out = out.data_ptr<float>();

  at::parallel_for(0, s.B * s.Hkv, 1, [&](int64_t t0, int64_t t1) {
    cpu::attention_mass_prep(a, isa, t0, t1);
  });
  const int64_t tasks = s.B * a.n_chunks;
  at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
    cpu::attention_mass_stats(a, isa, t0, t1);
  });
  at::parallel_for(0, s.B * R, 64, [&](int64_t r0, int64_t r1) {
    cpu::attention_mass_combine(a, r0, r1);
  });
  at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
    cpu::attention_mass_accumulate(a, isa, t0, t1);
  });
  return out;
}

TORCH_LIBRARY_IMPL(vlmkern, CPU, m) { m.impl("attention_mass", &attention_mass_cpu); }

}  // namespace vlmkern
