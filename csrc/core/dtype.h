// Element types of the CPU and CUDA kernels and a scalar load of any of them as
// fp32. Torch-free, so ISA-flagged files and the CUDA emulator can include it.
#pragma once
#include <cstdint>

#include "core/host_device.h"
#include "math/convert.h"

namespace vlmkern {

enum class DType : int { kF32 = 0, kBF16 = 1, kF16 = 2 };

// p[i] as fp32, p an array of dt.
VLMKERN_INLINE float load_as_float(DType dt, const void* p, int64_t i) {
  switch (dt) {
    case DType::kF32: return static_cast<const float*>(p)[i];
    case DType::kBF16: return math::bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16: return math::fp16_to_float(static_cast<const uint16_t*>(p)[i]);
  }
  return 0.f;
}

// f(T{}) with T the element type of dt (float, math::Bf16, math::Fp16): one
// dispatch for every kernel templated on its element type.
template <class F>
auto with_element_type(DType dt, F&& f) {
  switch (dt) {
    case DType::kBF16: return f(math::Bf16{});
    case DType::kF16: return f(math::Fp16{});
    default: return f(float{});
  }
}

}  // namespace vlmkern
