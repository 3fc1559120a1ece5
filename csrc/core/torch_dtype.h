// The kernels' DType of a torch dtype (the op files' side of core/dtype.h).
#pragma once
#include <ATen/ATen.h>

#include "core/dtype.h"

namespace vlmkern {

inline DType to_dtype(at::ScalarType t, const char* op) {
  switch (t) {
    case at::kFloat: return DType::kF32;
    case at::kBFloat16: return DType::kBF16;
    case at::kHalf: return DType::kF16;
    default: TORCH_CHECK_NOT_IMPLEMENTED(false, op, ": unsupported dtype ", t);
  }
}

}  // namespace vlmkern
