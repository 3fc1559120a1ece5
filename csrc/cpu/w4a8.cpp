// CPU implementation of the W4A8 ops: checks, workspace, threading. The kernel
// (raw pointers) is in w4a8_kernel.cpp / w4a8_avx2.cpp / w4a8_avx512.cpp.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>

#include "core/op_checks.h"
#include "core/w4a8_host.h"
#include "core/torch_dtype.h"
#include "cpu/w4a8_kernel.h"
#include "math/w4a8.h"
#include "ops.h"

namespace vlmkern {
namespace {

constexpr int64_t NB = math::kW4A8CpuBlock;

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_per_token_int8_cpu(const at::Tensor& x_in,
                                                                           int64_t group_size) {
  W4A8QuantSetup q = w4a8_quant_setup(x_in, group_size);
  const at::Tensor& x = q.x;
  const int64_t M = q.M, K = q.K;
  at::Tensor codes = q.codes, scales = q.scales, rowsums = q.rowsums;
  if (M == 0) return {codes, scales, rowsums};
  cpu::W4A8QuantArgs a{to_dtype(x.scalar_type(), "quantize_per_token_int8"),
                       x.data_ptr(), M, K, group_size, x.stride(0), codes.data_ptr<int8_t>(),
                       scales.data_ptr<float>(), rowsums.data_ptr<int32_t>()};
  const CpuIsa isa = cpu_isa();
  const int64_t grain = std::max<int64_t>(1, 16384 / K);
  at::parallel_for(0, M, grain, [&](int64_t m0, int64_t m1) { cpu::w4a8_quantize_rows(a, isa, m0, m1); });
  return {codes, scales, rowsums};
}

at::Tensor w4a8_pack_cpu(const at::Tensor& weight_in, const at::Tensor& scales, int64_t group_size) {
  check_w4a8_weight(weight_in, scales, group_size);
  const int64_t N = weight_in.size(0), K = weight_in.size(1) * 2;
  check_w4a8_scale_values(scales, "scales");
  const at::Tensor weight = weight_in.contiguous();
  const int64_t nblocks = (N + NB - 1) / NB;
  at::Tensor packed = at::empty({nblocks, K / 8, NB * 4}, weight.options());
  const uint8_t* w = weight.data_ptr<uint8_t>();
  uint8_t* p = packed.data_ptr<uint8_t>();
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) { cpu::w4a8_pack_blocks(w, N, K, p, b0, b1); });
  return packed;
}

namespace {

at::Tensor gemm_impl(const at::Tensor& codes_in, const at::Tensor& x_scales_in,
                     const at::Tensor& x_rowsums_in, const at::Tensor& packed,
                     const at::Tensor& w_scales_in, int64_t group_size,
                     const std::optional<at::Tensor>& bias, at::ScalarType out_dtype) {
  const W4A8GemmShape s = check_w4a8_gemm_args(codes_in, x_scales_in, x_rowsums_in, packed,
                                                w_scales_in, group_size, bias);
  const int64_t nblocks = (s.N + NB - 1) / NB;
  TORCH_CHECK(packed.dim() == 3 && packed.size(0) == nblocks && packed.size(1) == s.K / 8 &&
                  packed.size(2) == NB * 4 && packed.is_contiguous(),
              "packed: expected the CPU layout [ceil(N/16), K/8, 64] = [", nblocks, ", ", s.K / 8,
              ", 64] made by w4a8_pack on the CPU, got ", describe(packed));
  const at::Tensor codes = last_dim_contiguous(codes_in);
  const at::Tensor x_scales = x_scales_in.contiguous(), x_rowsums = x_rowsums_in.contiguous();
  const at::Tensor w_scales = w_scales_in.contiguous();
  at::Tensor b32;
  if (bias) b32 = bias->to(at::kFloat).contiguous();
  at::Tensor out = at::empty({s.M, s.N}, codes.options().dtype(out_dtype));
  if (s.M == 0) return out;

  cpu::W4A8GemmArgs a{};
  a.codes = codes.data_ptr<int8_t>();
  a.ld_codes = codes.stride(0);
  a.x_scales = x_scales.data_ptr<float>();
  a.rowsums = x_rowsums.data_ptr<int32_t>();
  a.packed = packed.data_ptr<uint8_t>();
  a.w_scales = w_scales.data_ptr<float>();
  a.bias = b32.defined() ? b32.data_ptr<float>() : nullptr;
  a.M = s.M; a.N = s.N; a.K = s.K; a.G = group_size;
  a.out = out.data_ptr();
  a.out_dtype = to_dtype(out_dtype, "w4a8_gemm");

  // The kernel reads every weight scale while staging a block; it flags bad
  // ones instead of a separate pass (zero cost, error after the fact).
  std::atomic<bool> bad_scale{false};
  const CpuIsa isa = cpu_isa();
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
    if (cpu::w4a8_gemm_blocks(a, isa, b0, b1)) bad_scale.store(true, std::memory_order_relaxed);
  });
  if (bad_scale.load()) check_w4a8_scale_values(w_scales, "w_scales");
  return out;
}

}  // namespace

at::Tensor w4a8_gemm_cpu(const at::Tensor& codes, const at::Tensor& x_scales,
                         const at::Tensor& x_rowsums, const at::Tensor& packed,
                         const at::Tensor& w_scales, int64_t group_size,
                         const std::optional<at::Tensor>& bias,
                         std::optional<at::ScalarType> out_dtype) {
  return gemm_impl(codes, x_scales, x_rowsums, packed, w_scales, group_size, bias,
                   check_w4a8_out_dtype(out_dtype));
}

at::Tensor w4a8_linear_cpu(const at::Tensor& x, const at::Tensor& packed,
                           const at::Tensor& w_scales, int64_t group_size,
                           const std::optional<at::Tensor>& bias) {
  return w4a8_linear_with(x, packed, w_scales, group_size, bias, quantize_per_token_int8_cpu,
                          gemm_impl);
}

const char* w4a8_cpu_path() { return cpu::w4a8_path_name(cpu_isa()); }

TORCH_LIBRARY_IMPL(vlmkern, CPU, m) {
  m.impl("quantize_per_token_int8", &quantize_per_token_int8_cpu);
  m.impl("w4a8_pack", &w4a8_pack_cpu);
  m.impl("w4a8_gemm", &w4a8_gemm_cpu);
  m.impl("w4a8_linear", &w4a8_linear_cpu);
}

}  // namespace vlmkern
