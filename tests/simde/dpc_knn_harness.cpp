// dpc_knn's Gram tiles: the AVX2 and AVX-512 tiles (csrc/cpu/dpc_knn_avx2.cpp,
// dpc_knn_avx512.cpp, compiled against SIMDe, whose FMAs tests/simde/immintrin.h
// makes single-rounding like the hardware's) against the scalar tile, BIT FOR
// BIT: every accumulator is one fp32 FMA chain over the channels in
// math::dpc_channel's order on every path. The scalar tile (with
// dpc_pack_f32's panel) is itself held to that chain written out here from
// the unpacked rows.
//
// Cases: D in {1, 2, 3, 4, 15, 16, 17, 31, 32, 33, 255, 256, 257}; panels of
// 32, 7 and 1 columns (the rest zero); the 12 rows as pointers with repeats
// (as a short last tile repeats one row) and rows equal to panel columns;
// the channels in one call and split into chunks [c0, c1) at even boundaries
// (the contract: c0 even, c1 == D or even), down to 2 channels per call, and
// a lone last channel of an odd D; accumulators from zero and continued from
// nonzero values; normal values, values whose products are subnormal, values
// whose products overflow (inf, NaN) and signed zeros. Every row and panel
// is its own allocation of exactly its size, so AddressSanitizer sees a read
// past one. Prints "<cases> cases x 3 paths, <failures> failures".
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "cpu/dpc_knn_kernel.h"
#include "math/dpc_knn.h"

using vlmkern::cpu::kDpcCols;
using vlmkern::cpu::kDpcRows;

namespace {

uint64_t g_state = 20240917;
uint64_t next_u64() {
  g_state = g_state * 6364136223846793005ull + 1442695040888963407ull;
  return g_state;
}
int next_int(int n) { return int((next_u64() >> 33) % uint64_t(n)); }
float next_normal() {
  const double u1 = (double((next_u64() >> 11)) + 1.0) * 0x1.0p-53, u2 = double(next_u64() >> 11) * 0x1.0p-53;
  return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

enum class Values { kNormal, kTiny, kHuge, kZeros };
const char* vname(Values v) {
  return v == Values::kNormal ? "normal" : v == Values::kTiny ? "tiny" : v == Values::kHuge ? "huge" : "zeros";
}

float value(Values kind) {
  switch (kind) {
    case Values::kNormal: return next_normal();
    case Values::kTiny: return next_normal() * 1e-21f;  // products ~1e-42: subnormal
    case Values::kHuge: return next_normal() * (next_int(4) == 0 ? 3e19f : 1.f);  // some products overflow
    case Values::kZeros: {
      const int r = next_int(4);
      return r == 0 ? 0.f : r == 1 ? -0.f : next_normal();
    }
  }
  return 0.f;
}

using Tile = void (*)(const float* const*, const float*, int64_t, int64_t, int64_t, float*);
const Tile kTiles[3] = {vlmkern::cpu::dpc_tile_scalar, vlmkern::cpu::dpc_tile_avx2, vlmkern::cpu::dpc_tile_avx512};
const char* kPathNames[3] = {"scalar", "avx2", "avx512"};

int g_cases = 0, g_failures = 0;

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Chunk boundaries of [0, D): c0 even, c1 == D or even. `style` 0: one call;
// 1: 2 channels per call; 2: random even cuts; 3: everything but the last
// channel of an odd D, then that channel alone (D even: halves).
std::vector<int64_t> cuts(int64_t D, int style) {
  std::vector<int64_t> c = {0};
  if (style == 1) {
    for (int64_t p = 2; p < D; p += 2) c.push_back(p);
  } else if (style == 2) {
    for (int64_t p = 2; p < D; p += 2)
      if (next_int(3) == 0) c.push_back(p);
  } else if (style == 3) {
    const int64_t p = (D & 1) ? D - 1 : (D / 2) & ~int64_t(1);
    if (p > 0 && p < D) c.push_back(p);
  }
  c.push_back(D);
  return c;
}

void run_case(int64_t D, int64_t cols, Values kind, int chunk_style, bool continue_acc) {
  ++g_cases;
  // A pool of 9 rows, each its own exact allocation; the panel's columns are
  // rows too (some of them the pool's, so a tile holds G entries of a row
  // with itself).
  const int kPool = 9;
  std::vector<std::unique_ptr<float[]>> pool;
  for (int i = 0; i < kPool; ++i) {
    pool.emplace_back(new float[size_t(D)]);
    for (int64_t c = 0; c < D; ++c) pool.back()[size_t(c)] = value(kind);
  }
  std::vector<float> x(size_t(cols * D));  // the panel's source rows, stride D
  for (int64_t j = 0; j < cols; ++j) {
    const bool from_pool = next_int(3) == 0;
    const int p = next_int(kPool);
    for (int64_t c = 0; c < D; ++c) x[size_t(j * D + c)] = from_pool ? pool[size_t(p)][size_t(c)] : value(kind);
  }
  std::unique_ptr<float[]> panel(new float[size_t(D * kDpcCols)]);
  vlmkern::cpu::dpc_pack_f32(x.data(), D, 0, cols, D, panel.get());

  const float* rows[kDpcRows];
  for (int r = 0; r < kDpcRows; ++r) rows[r] = pool[size_t(r < 8 ? next_int(kPool) : next_int(2))].get();  // repeats
  if (next_int(2)) for (int r = 7; r < kDpcRows; ++r) rows[r] = rows[6];  // a short tile: the last row repeated

  std::vector<float> acc0(size_t(kDpcRows * kDpcCols), 0.f);
  if (continue_acc)
    for (float& a : acc0) a = next_int(5) == 0 ? -0.f : value(kind == Values::kZeros ? Values::kNormal : kind) * 4.f;

  // The chain written out: acc = fma(row[ch], col[ch], acc) for ch in the order.
  std::vector<float> want = acc0;
  for (int r = 0; r < kDpcRows; ++r)
    for (int64_t j = 0; j < kDpcCols; ++j) {
      float a = want[size_t(r * kDpcCols + j)];
      for (int64_t c = 0; c < D; ++c) {
        const int64_t ch = vlmkern::math::dpc_channel(c, D);
        a = std::fma(rows[r][ch], j < cols ? x[size_t(j * D + ch)] : 0.f, a);
      }
      want[size_t(r * kDpcCols + j)] = a;
    }

  const std::vector<int64_t> cut = cuts(D, chunk_style);
  for (int path = 0; path < 3; ++path) {
    std::vector<float> acc = acc0;
    for (size_t q = 0; q + 1 < cut.size(); ++q) kTiles[path](rows, panel.get(), cut[q], cut[q + 1], D, acc.data());
    for (size_t e = 0; e < acc.size(); ++e)
      if (bits(acc[e]) != bits(want[e])) {
        ++g_failures;
        std::printf("FAIL %s D=%lld cols=%lld %s chunks=%d (%zu calls)%s: acc[%zu][%zu] = %.9g (0x%08x), "
                    "the chain gives %.9g (0x%08x)\n",
                    kPathNames[path], (long long)D, (long long)cols, vname(kind), chunk_style, cut.size() - 1,
                    continue_acc ? " continued" : "", e / size_t(kDpcCols), e % size_t(kDpcCols), double(acc[e]),
                    bits(acc[e]), double(want[e]), bits(want[e]));
        break;
      }
  }
}

}  // namespace

int main() {
  for (int64_t D : {1, 2, 3, 4, 15, 16, 17, 31, 32, 33, 255, 256, 257})
    for (int64_t cols : {32, 7, 1})
      for (int style = 0; style < 4; ++style) {
        run_case(D, cols, Values::kNormal, style, style % 2 == 1);
        if (cols == 32) run_case(D, cols, Values::kZeros, style, style >= 2);
      }
  for (Values kind : {Values::kTiny, Values::kHuge})
    for (int64_t D : {3, 16, 17, 257})
      for (int style = 0; style < 4; ++style) run_case(D, 32, kind, style, style == 2);
  std::printf("%d cases x 3 paths, %d failures\n", g_cases, g_failures);
  return g_failures == 0 ? 0 : 1;
}
