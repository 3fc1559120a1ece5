// Every C++ entry point of vlmkern, one line each. Schemas: torch_bindings.cpp.
#pragma once
#include <ATen/ATen.h>

#include <optional>

namespace vlmkern {

// Backend implementations; each registers itself with TORCH_LIBRARY_IMPL.
// [B, key_end - key_start] float32; see python/vlmkern/ops/attention_mass.py.
at::Tensor attention_mass_cpu(const at::Tensor& q, const at::Tensor& k, int64_t key_start,
                          int64_t key_end, bool causal, double scale,
                          const std::optional<at::Tensor>& key_padding_mask,
                          const std::optional<at::Tensor>& query_weights);

// [B, k_max] int64, kept indices ascending, -1 padded; see ops/topk_indices.py.
at::Tensor topk_indices_cpu(const at::Tensor& scores, const at::Tensor& keep, int64_t k_max);

#ifdef VLMKERN_WITH_CUDA
at::Tensor attention_mass_cuda(const at::Tensor& q, const at::Tensor& k, int64_t key_start,
                               int64_t key_end, bool causal, double scale,
                               const std::optional<at::Tensor>& key_padding_mask,
                               const std::optional<at::Tensor>& query_weights);
at::Tensor topk_indices_cuda(const at::Tensor& scores, const at::Tensor& keep, int64_t k_max);
#endif

}  // namespace vlmkern
