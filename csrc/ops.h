// Every C++ entry point of vlmkern, one line each. Schemas: torch_bindings.cpp.
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace vlmkern {

// Backend implementations; each registers itself with TORCH_LIBRARY_IMPL.
// [B, key_end - key_start] float32; see python/vlmkern/ops/attention_mass.py.
at::Tensor attention_mass_cpu(const at::Tensor& q, const at::Tensor& k, int64_t key_start,
                          int64_t key_end, bool causal, double scale,
                          const std::optional<at::Tensor>& key_padding_mask,
                          const std::optional<at::Tensor>& query_weights);

// [B, k_max] int64, kept indices ascending, -1 padded; see ops/topk_indices.py.
at::Tensor topk_indices_cpu(const at::Tensor& scores, const at::Tensor& keep, int64_t k_max);

// [B, T, N] float32 cosine to each frame's reference frame; see ops/frame_similarity.py.
at::Tensor frame_similarity_cpu(const at::Tensor& x, const at::Tensor& ref, double eps);

// (kept flat indices [B, K], their (t, h, w) [B, K, 3], features [B, K, D] or [0]);
// see ops/temporal_select.py.
std::tuple<at::Tensor, at::Tensor, at::Tensor> temporal_select_cpu(const at::Tensor& x, at::IntArrayRef ref,
                                                                   c10::string_view mode, int64_t keep,
                                                                   int64_t H, int64_t W, double eps,
                                                                   bool features);

// int64 [sum t]: the temporal group each group's encoder output comes from; see
// ops/pixel_dedup.py.
at::Tensor pixel_dedup_cpu(const at::Tensor& pixels, const at::Tensor& grid, double tol);

// ([B, m] centre indices ascending, [B, n] each point's centre position); see
// ops/dpc_knn.py.
std::tuple<at::Tensor, at::Tensor> dpc_knn_cpu(const at::Tensor& x, int64_t k, int64_t m);

// W4A8 (format: csrc/math/w4a8.h; docs: python/vlmkern/ops/w4a8.py).
std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_per_token_int8_cpu(const at::Tensor& x,
                                                                           int64_t group_size);
at::Tensor w4a8_pack_cpu(const at::Tensor& weight, const at::Tensor& scales, int64_t group_size);
at::Tensor w4a8_gemm_cpu(const at::Tensor& codes, const at::Tensor& x_scales,
                         const at::Tensor& x_rowsums, const at::Tensor& packed,
                         const at::Tensor& w_scales, int64_t group_size,
                         const std::optional<at::Tensor>& bias,
                         std::optional<at::ScalarType> out_dtype);
at::Tensor w4a8_linear_cpu(const at::Tensor& x, const at::Tensor& packed,
                           const at::Tensor& w_scales, int64_t group_size,
                           const std::optional<at::Tensor>& bias);
const char* w4a8_cpu_path();

#ifdef VLMKERN_WITH_CUDA
at::Tensor attention_mass_cuda(const at::Tensor& q, const at::Tensor& k, int64_t key_start,
                               int64_t key_end, bool causal, double scale,
                               const std::optional<at::Tensor>& key_padding_mask,
                               const std::optional<at::Tensor>& query_weights);
at::Tensor frame_similarity_cuda(const at::Tensor& x, const at::Tensor& ref, double eps);
std::tuple<at::Tensor, at::Tensor, at::Tensor> temporal_select_cuda(const at::Tensor& x, at::IntArrayRef ref,
                                                                    c10::string_view mode, int64_t keep,
                                                                    int64_t H, int64_t W, double eps,
                                                                    bool features);
std::tuple<at::Tensor, at::Tensor> dpc_knn_cuda(const at::Tensor& x, int64_t k, int64_t m);
at::Tensor pixel_dedup_cuda(const at::Tensor& pixels, const at::Tensor& grid, double tol);
at::Tensor topk_indices_cuda(const at::Tensor& scores, const at::Tensor& keep, int64_t k_max);
std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_per_token_int8_cuda(const at::Tensor& x,
                                                                            int64_t group_size);
at::Tensor w4a8_pack_cuda(const at::Tensor& weight, const at::Tensor& scales, int64_t group_size);
at::Tensor w4a8_gemm_cuda(const at::Tensor& codes, const at::Tensor& x_scales,
                          const at::Tensor& x_rowsums, const at::Tensor& packed,
                          const at::Tensor& w_scales, int64_t group_size,
                          const std::optional<at::Tensor>& bias,
                          std::optional<at::ScalarType> out_dtype);
at::Tensor w4a8_linear_cuda(const at::Tensor& x, const at::Tensor& packed,
                            const at::Tensor& w_scales, int64_t group_size,
                            const std::optional<at::Tensor>& bias);
#endif

}  // namespace vlmkern
