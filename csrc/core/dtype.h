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

}  // namespace vlmkern
