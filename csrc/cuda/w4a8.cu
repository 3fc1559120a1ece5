// CUDA implementation of the W4A8 ops: argument checks (shared with the CPU
// backend), outputs, and the launches. The kernels and their launch planning
// are in w4a8_kernels.cuh.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>

#include "core/op_checks.h"
#include "core/torch_dtype.h"
#include "core/w4a8_host.h"
#include "cuda/w4a8_kernels.cuh"
#include "ops.h"

namespace vlmkern {

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_per_token_int8_cuda(const at::Tensor& x_in,
                                                                            int64_t group_size) {
  const c10::cuda::CUDAGuard guard(x_in.device());
  W4A8QuantSetup q = w4a8_quant_setup(x_in, group_size);
  const cuda::W4A8QuantProblem p{to_dtype(q.x.scalar_type(), "quantize_per_token_int8"),
                                 q.x.data_ptr(), q.M, q.K, group_size, q.x.stride(0),
                                 q.codes.data_ptr<int8_t>(), q.scales.data_ptr<float>(),
                                 q.rowsums.data_ptr<int32_t>()};
  const char* why = cuda::w4a8_quantize_plan_error(p);
  TORCH_CHECK(why == nullptr, why, ", got ", describe(x_in));
  C10_CUDA_CHECK(cuda::w4a8_quantize_launch(p, c10::cuda::getCurrentCUDAStream()));
  return {q.codes, q.scales, q.rowsums};
}

at::Tensor w4a8_pack_cuda(const at::Tensor& weight_in, const at::Tensor& scales,
                          int64_t group_size) {
  const c10::cuda::CUDAGuard guard(weight_in.device());
  check_w4a8_weight(weight_in, scales, group_size);
  check_w4a8_scale_values(scales, "scales");
  const int64_t N = weight_in.size(0), K = weight_in.size(1) * 2;
  const at::Tensor weight = weight_in.contiguous();
  at::Tensor packed = at::empty({N, K / 8, 4}, weight.options());
  const char* why = cuda::w4a8_pack_plan_error(N, K);
  TORCH_CHECK(why == nullptr, why, ", got ", describe(weight_in));
  C10_CUDA_CHECK(cuda::w4a8_pack_launch(weight.data_ptr<uint8_t>(), N, K,
                                        packed.data_ptr<uint8_t>(),
                                        c10::cuda::getCurrentCUDAStream()));
  return packed;
}

namespace {

at::Tensor gemm_impl(const at::Tensor& codes_in, const at::Tensor& x_scales_in,
                     const at::Tensor& x_rowsums, const at::Tensor& packed,
                     const at::Tensor& w_scales_in, int64_t group_size,
                     const std::optional<at::Tensor>& bias, at::ScalarType out_dtype) {
  const c10::cuda::CUDAGuard guard(codes_in.device());
  const W4A8GemmShape s = check_w4a8_gemm_args(codes_in, x_scales_in, x_rowsums, packed,
                                                w_scales_in, group_size, bias);
  TORCH_CHECK(packed.dim() == 3 && packed.size(0) == s.N && packed.size(1) == s.K / 8 &&
                  packed.size(2) == 4 && packed.is_contiguous() &&
                  reinterpret_cast<uintptr_t>(packed.data_ptr()) % 16 == 0,
              "packed: expected the CUDA layout [N, K/8, 4] = [", s.N, ", ", s.K / 8,
              ", 4], contiguous and 16-byte aligned, made by w4a8_pack on a CUDA device, got ",
              describe(packed));
  at::Tensor codes = codes_in.contiguous();
  if (reinterpret_cast<uintptr_t>(codes.data_ptr()) % 4 != 0) codes = codes.clone();  // int loads
  const at::Tensor x_scales = x_scales_in.contiguous();
  const at::Tensor rowsums = x_rowsums.contiguous();
  const at::Tensor w_scales = w_scales_in.contiguous();
  at::Tensor b32;
  if (bias) b32 = bias->to(at::kFloat).contiguous();
  at::Tensor out = at::empty({s.M, s.N}, codes.options().dtype(out_dtype));
  if (s.M == 0) return out;
  at::Tensor bad = at::zeros({1}, codes.options().dtype(at::kInt));
  const cuda::W4A8GemmProblem p{codes.data_ptr<int8_t>(), x_scales.data_ptr<float>(),
                                rowsums.data_ptr<int32_t>(), packed.data_ptr<uint8_t>(),
                                w_scales.data_ptr<float>(),
                                b32.defined() ? b32.data_ptr<float>() : nullptr,
                                s.M, s.N, s.K, group_size, out.data_ptr(),
                                to_dtype(out_dtype, "w4a8_gemm"), bad.data_ptr<int>()};
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  C10_CUDA_CHECK(cuda::w4a8_gemm_launch(p, cuda::w4a8_gemm_path(s.M, group_size), stream));
  // The kernels flag a bad weight scale as they read it, as the CPU kernel
  // does; reading the flag back is a device sync. Inside CUDA graph capture a
  // sync is not allowed: there the scales are trusted (w4a8_pack checked the
  // ones it packed with).
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  C10_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture == cudaStreamCaptureStatusNone && bad.item<int>() != 0)
    check_w4a8_scale_values(w_scales, "w_scales");
  return out;
}

}  // namespace

at::Tensor w4a8_gemm_cuda(const at::Tensor& codes, const at::Tensor& x_scales,
                          const at::Tensor& x_rowsums, const at::Tensor& packed,
                          const at::Tensor& w_scales, int64_t group_size,
                          const std::optional<at::Tensor>& bias,
                          std::optional<at::ScalarType> out_dtype) {
  return gemm_impl(codes, x_scales, x_rowsums, packed, w_scales, group_size, bias,
                   check_w4a8_out_dtype(out_dtype));
}

at::Tensor w4a8_linear_cuda(const at::Tensor& x, const at::Tensor& packed,
                            const at::Tensor& w_scales, int64_t group_size,
                            const std::optional<at::Tensor>& bias) {
  return w4a8_linear_with(x, packed, w_scales, group_size, bias, quantize_per_token_int8_cuda,
                          gemm_impl);
}

TORCH_LIBRARY_IMPL(vlmkern, CUDA, m) {
  m.impl("quantize_per_token_int8", &quantize_per_token_int8_cuda);
  m.impl("w4a8_pack", &w4a8_pack_cuda);
  m.impl("w4a8_gemm", &w4a8_gemm_cuda);
  m.impl("w4a8_linear", &w4a8_linear_cuda);
}

}  // namespace vlmkern
