// Argument checks whose messages name the argument and say what was expected.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <sstream>
#include <string>

namespace vlmkern {

inline std::string describe(const at::Tensor& t) {
  std::ostringstream os;
  os << t.scalar_type() << " " << t.device().type() << " " << t.sizes();
  return os.str();
}

}  // namespace vlmkern

// VLMKERN_CHECK_ARG(cond, "k", "expected ..., got " << x)
#define VLMKERN_CHECK_ARG(cond, name, ...) \
  TORCH_CHECK((cond), name, ": ", __VA_ARGS__)

#define VLMKERN_CHECK_DIM(t, name, ndim, shape_doc)                                  \
  TORCH_CHECK((t).dim() == (ndim), name, ": expected a ", ndim, "-d tensor of shape ", \
              shape_doc, ", got ", ::vlmkern::describe(t))

#define VLMKERN_CHECK_FLOATING(t, name)                                                   \
  TORCH_CHECK_NOT_IMPLEMENTED(                                                            \
      (t).scalar_type() == at::kFloat || (t).scalar_type() == at::kBFloat16 ||            \
          (t).scalar_type() == at::kHalf,                                                 \
      name, ": expected a float32, bfloat16 or float16 tensor, got ", ::vlmkern::describe(t))

#define VLMKERN_CHECK_SAME_DEVICE(a, an, b, bn)                                          \
  TORCH_CHECK((a).device() == (b).device(), an, " and ", bn,                           \
              " must be on the same device, got ", (a).device(), " and ", (b).device())
