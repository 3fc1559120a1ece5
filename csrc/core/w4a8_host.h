// Host-side pieces of the W4A8 ops shared by the CPU and CUDA backends: the
// argument checks and output allocation of the activation quantizer, and the
// fused linear as quantize + GEMM on the caller's backend.
#pragma once
#include <tuple>
#include <vector>

#include "core/op_checks.h"

namespace vlmkern {

// Every scale finite and > 0, else an error naming the argument and counting the
// bad values. One pass over N * K/G floats (a device sync on CUDA): done when
// weights are packed, and by the CPU GEMM only after its kernel flagged one.
inline void check_w4a8_scale_values(const at::Tensor& scales, const char* name) {
  const at::Tensor s = scales.to(at::kFloat);
  const bool ok = s.numel() == 0 || at::logical_and(s > 0, s.isfinite()).all().item<bool>();
  TORCH_CHECK(ok, name, ": expected finite, strictly positive scales (fold a sign into the ",
              "nibbles), found ", (s <= 0).sum().item<int64_t>(), " non-positive and ",
              (~s.isfinite()).sum().item<int64_t>(), " non-finite values");
}

// x [..., K] viewed as [M, K] rows with a contiguous last dim, and the
// quantizer's outputs allocated with x's leading shape.
struct W4A8QuantSetup {
  at::Tensor x;  // [M, K]
  int64_t M, K;
  at::Tensor codes, scales, rowsums;  // [..., K] int8, [...] fp32, [..., K/G] int32
};

inline W4A8QuantSetup w4a8_quant_setup(const at::Tensor& x_in, int64_t group_size) {
  TORCH_CHECK(x_in.dim() >= 1, "x: expected a tensor [..., K], got ", describe(x_in));
  VLMKERN_CHECK_FLOATING(x_in, "x");
  const int64_t K = x_in.size(-1);
  check_w4a8_group(K, group_size, "x");
  W4A8QuantSetup s;
  s.x = last_dim_contiguous(x_in.dim() == 2 ? x_in : x_in.reshape({-1, K}));
  s.M = s.x.size(0);
  s.K = K;
  std::vector<int64_t> lead(x_in.sizes().begin(), x_in.sizes().end() - 1);
  std::vector<int64_t> cs = lead, rs = lead;
  cs.push_back(K);
  rs.push_back(K / group_size);
  s.codes = at::empty(cs, s.x.options().dtype(at::kChar));
  s.scales = at::empty(lead, s.x.options().dtype(at::kFloat));
  s.rowsums = at::empty(rs, s.x.options().dtype(at::kInt));
  return s;
}

// w4a8_linear = quantize(x) then gemm(...) with out dtype = x's, shaped [..., N].
template <class Quantize, class Gemm>
at::Tensor w4a8_linear_with(const at::Tensor& x, const at::Tensor& packed,
                            const at::Tensor& w_scales, int64_t group_size,
                            const std::optional<at::Tensor>& bias, Quantize quantize, Gemm gemm) {
  check_w4a8_linear_devices(x, packed, w_scales, bias);
  auto [codes, xs, rs] = quantize(x, group_size);
  const int64_t K = x.size(-1);
  const at::Tensor out = gemm(codes.view({-1, K}), xs.view({-1}), rs.view({-1, K / group_size}),
                              packed, w_scales, group_size, bias, x.scalar_type());
  std::vector<int64_t> os(x.sizes().begin(), x.sizes().end() - 1);
  os.push_back(w_scales.size(0));
  return out.view(os);
}

}  // namespace vlmkern
