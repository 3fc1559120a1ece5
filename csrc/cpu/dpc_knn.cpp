// CPU implementation of vlmkern::dpc_knn (see dpc_knn_kernel.h): checks,
// scratch, and the per-item phases with at::parallel_for.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "core/op_checks.h"
#include "core/torch_dtype.h"
#include "cpu/dpc_knn_kernel.h"
#include "ops.h"

namespace vlmkern {

std::tuple<at::Tensor, at::Tensor> dpc_knn_cpu(const at::Tensor& x_in, int64_t k, int64_t m) {
  check_dpc_knn_args(x_in, k, m);
  const at::Tensor x = last_dim_contiguous(x_in);
  const int64_t B = x.size(0), n = x.size(1), D = x.size(2);
  at::Tensor centres = at::empty({B, m}, x.options().dtype(at::kLong));
  at::Tensor assign = at::empty({B, n}, x.options().dtype(at::kLong));
  if (B == 0) return {centres, assign};
  (void)to_dtype(x.scalar_type(), "dpc_knn");
  const cpu::DpcTileFn tile = cpu::dpc_tile_fn(cpu::dpc_gram_path(cpu_isa()));
  at::Tensor g = at::empty({n, n}, x.options().dtype(at::kFloat));
  // Uninitialized scratch (a std::vector would zero 22 MB at PruneVid's shape first).
  at::Tensor packed = at::empty({cpu::dpc_packed_floats(n, D)}, x.options().dtype(at::kFloat));
  const size_t un = static_cast<size_t>(n);
  std::vector<float> diag(un);
  std::vector<double> f64(4 * un);
  std::vector<int64_t> rank(un);
  const cpu::DpcRowScratch s{diag.data(), f64.data(), f64.data() + n, f64.data() + 2 * n,
                             f64.data() + 3 * n, rank.data()};
  auto par = [](int64_t b, int64_t e, int64_t grain, auto&& fn) { at::parallel_for(b, e, grain, fn); };
  // Each item's rows as contiguous fp32 (16-bit rows widened once: the fp32
  // tiles beat a VDPBF16PS tile on the Xeon measured), checked for NaN / inf.
  at::Tensor rows = at::empty({n, D}, x.options().dtype(at::kFloat));
  for (int64_t b = 0; b < B; ++b) {
    rows.copy_(x[b]);
    TORCH_CHECK(cpu::dpc_rows_finite(rows.data_ptr<float>(), D, n, D, par), kDpcKnnNotFinite);
    cpu::dpc_gram_run(rows.data_ptr<float>(), D, n, D, tile, cpu::kDpcChunk, packed.data_ptr<float>(),
                      g.data_ptr<float>(), par);
    cpu::dpc_rows_run(g.data_ptr<float>(), n, D, k, m, s, centres.data_ptr<int64_t>() + b * m,
                      assign.data_ptr<int64_t>() + b * n, par);
  }
  return {centres, assign};
}

TORCH_LIBRARY_IMPL(vlmkern, CPU, m) { m.impl("dpc_knn", &dpc_knn_cpu); }

}  // namespace vlmkern
