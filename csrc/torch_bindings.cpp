// Every op schema of vlmkern, in one place, and the Python module vlmkern._C
// (module init + build information). Implementations register themselves in
// csrc/cpu/*.cpp and csrc/cuda/*.cu; fake (meta) kernels live in
// python/vlmkern/ops/ next to each op's Python wrapper.
#include <pybind11/pybind11.h>
#include <torch/library.h>

#include "core/cpu_features.h"
#include "ops.h"

#ifndef VLMKERN_CUDA_ARCHS_STR
#define VLMKERN_CUDA_ARCHS_STR ""
#endif
#ifndef VLMKERN_TORCH_VERSION_STR
#define VLMKERN_TORCH_VERSION_STR ""
#endif

TORCH_LIBRARY(vlmkern, m) {
  m.def(
      "attention_mass(Tensor q, Tensor k, int key_start, int key_end, bool causal, float scale, "
      "Tensor? key_padding_mask=None, Tensor? query_weights=None) -> Tensor");
  m.def("topk_indices(Tensor scores, Tensor keep, SymInt k_max) -> Tensor");
  m.def("frame_similarity(Tensor x, Tensor ref, float eps) -> Tensor");
  m.def(
      "temporal_select(Tensor x, int[] ref, str mode, int keep, int H, int W, float eps, "
      "bool features=True) -> (Tensor, Tensor, Tensor)");
  m.def("dpc_knn(Tensor x, int k, int m) -> (Tensor, Tensor)");
  m.def("pixel_dedup(Tensor pixel_values, Tensor grid, float tol) -> Tensor");
  m.def("quantize_per_token_int8(Tensor x, int group_size) -> (Tensor, Tensor, Tensor)");
  m.def("w4a8_pack(Tensor weight, Tensor scales, int group_size) -> Tensor");
  m.def(
      "w4a8_gemm(Tensor codes, Tensor x_scales, Tensor x_rowsums, Tensor packed, Tensor w_scales, "
      "int group_size, Tensor? bias=None, ScalarType? out_dtype=None) -> Tensor");
  m.def(
      "w4a8_linear(Tensor x, Tensor packed, Tensor w_scales, int group_size, Tensor? bias=None) "
      "-> Tensor");
}

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "vlmkern compiled kernels (ops are registered under torch.ops.vlmkern)";
  if (const std::string why = vlmkern::cpu_isa_env_error(); !why.empty()) throw py::value_error(why);
  m.def("cpu_features", &vlmkern::cpu_features_string, "CPU features found by CPUID");
  m.def("cpu_isa", [] { return std::string(vlmkern::cpu_isa_name(vlmkern::cpu_isa())); },
        "instruction set the CPU kernels use now");
  m.def("cpu_isa_supported",
        [] { return std::string(vlmkern::cpu_isa_name(vlmkern::cpu_isa_supported())); },
        "best instruction set this machine supports");
  m.def(
      "set_cpu_isa_cap",
      [](const std::string& name) {
        vlmkern::CpuIsa isa;
        if (vlmkern::cpu_isa_from_name(name, &isa)) return vlmkern::set_cpu_isa_cap(isa);
        throw py::value_error("set_cpu_isa_cap: expected one of scalar, avx2, avx512, "
                              "avx512_bf16, amx; got '" + name + "'");
      },
      "cap the CPU instruction set (for tests and benchmarks)");
  m.def("w4a8_cpu_path", [] { return std::string(vlmkern::w4a8_cpu_path()); },
        "which W4A8 CPU kernel runs now (scalar, avx2, avx512_vnni)");
  m.attr("cuda_archs") = std::string(VLMKERN_CUDA_ARCHS_STR);
#ifdef VLMKERN_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.attr("torch_version") = std::string(VLMKERN_TORCH_VERSION_STR);
}
