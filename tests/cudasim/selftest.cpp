// The emulator's own tests: warp collectives against their PTX definitions,
// barriers, the mma fragment layout against a plain matrix product, shared
// memory poisoning, flush-to-zero, the 16-bit conversions, launch checks, and
// kernels that break a rule on purpose (run one at a time with --error NAME:
// each must end with the emulator's report, never with a result).
#include <cstdlib>
#include <map>

#include "cuda/device.cuh"
#include "harness.h"

#define LAUNCH(kernel, grid, block) VLMKERN_LAUNCH(kernel, grid, block, 0, nullptr)

namespace harness {
namespace {

constexpr unsigned kFull = 0xffffffffu;

// out[t * 16 + i]: results of lane t.
__global__ void shuffle_kernel(int* out, int width, unsigned half_mask) {
  const int t = threadIdx.x, lane = t % 32;
  const int v = 1000 + t;
  int* o = out + t * 16;
  o[0] = __shfl_sync(kFull, v, (lane * 7 + 3) % 41, width);
  o[1] = __shfl_up_sync(kFull, v, 3, width);
  o[2] = __shfl_down_sync(kFull, v, 5, width);
  o[3] = __shfl_xor_sync(kFull, v, 6, width);
  o[4] = int(__ballot_sync(kFull, lane % 3 == 0));
  o[5] = __any_sync(kFull, lane == 17);
  o[6] = __all_sync(kFull, lane < 31);
  o[7] = int(__match_any_sync(kFull, lane % 5));
  int pred = -1;
  o[8] = int(__match_all_sync(kFull, 42, &pred));
  o[9] = pred;
  o[10] = __reduce_add_sync(kFull, lane);
  o[11] = __reduce_min_sync(kFull, lane - 20);
  o[12] = int(__reduce_max_sync(kFull, unsigned(lane) * 3u));
  o[13] = int(__reduce_xor_sync(kFull, unsigned(lane) * 5u));
  // A partial mask: each half of the warp shuffles among itself.
  const unsigned m = lane < 16 ? half_mask : ~half_mask;
  o[14] = __shfl_xor_sync(m, v, 1);
  long long big = (static_cast<long long>(t) << 40) | t;
  o[15] = int(__shfl_down_sync(kFull, big, 1) >> 40);
}

int expect_shuffles(int width) {
  const int n = 64;
  std::vector<int> out(size_t(n) * 16, -7);
  LAUNCH(shuffle_kernel, dim3(1), dim3(n))(out.data(), width, 0x0000ffffu);
  int failures = 0;
  for (int t = 0; t < n; ++t) {
    const int lane = t % 32, w0 = t - lane, base = lane & ~(width - 1);
    auto val = [&](int l) { return 1000 + w0 + l; };
    int want[16];
    want[0] = val(base + ((lane * 7 + 3) % 41) % width);
    want[1] = lane - 3 >= base ? val(lane - 3) : val(lane);
    want[2] = lane + 5 <= base + width - 1 ? val(lane + 5) : val(lane);
    want[3] = (lane ^ 6) <= base + width - 1 ? val(lane ^ 6) : val(lane);
    unsigned ballot = 0, match = 0;
    int sum = 0, xr = 0;
    for (int l = 0; l < 32; ++l) {
      ballot |= unsigned(l % 3 == 0) << l;
      match |= unsigned(l % 5 == lane % 5) << l;
      sum += l;
      xr ^= l * 5;
    }
    want[4] = int(ballot);
    want[5] = 1;
    want[6] = 0;
    want[7] = int(match);
    want[8] = int(kFull);
    want[9] = 1;
    want[10] = sum;
    want[11] = -20;
    want[12] = 93;
    want[13] = xr;
    want[14] = val(lane ^ 1);
    want[15] = lane < 31 ? t + 1 : t;
    for (int i = 0; i < 16; ++i)
      if (out[size_t(t * 16 + i)] != want[i]) {
        std::printf("FAIL selftest shuffles width=%d: thread %d result %d is %d, expected %d\n", width, t, i,
                    out[size_t(t * 16 + i)], want[i]);
        ++failures;
      }
  }
  return failures;
}

// Barriers with predicates, in a loop, with threads that exit early.
__global__ void barrier_kernel(int* out, int n_live) {
  const int t = threadIdx.x;
  if (t >= n_live) return;
  __shared__ int buf[256];
  int acc = 0;
  for (int it = 0; it < 3; ++it) {
    buf[t] = t * (it + 1);
    __syncthreads();
    acc += buf[(t + 1) % n_live];
    __syncthreads();
  }
  out[t * 4 + 0] = acc;
  out[t * 4 + 1] = __syncthreads_count(t % 4 == 0);
  out[t * 4 + 2] = __syncthreads_and(t < n_live);
  out[t * 4 + 3] = __syncthreads_or(t == 5);
}

int expect_barriers() {
  const int n = 256, live = 200;
  std::vector<int> out(size_t(n) * 4, -1);
  LAUNCH(barrier_kernel, dim3(1), dim3(n))(out.data(), live);
  int failures = 0;
  for (int t = 0; t < live; ++t) {
    const int nb = (t + 1) % live;
    const int want[4] = {nb * 6, 50, 1, 1};
    for (int i = 0; i < 4; ++i)
      if (out[size_t(t * 4 + i)] != want[i]) {
        std::printf("FAIL selftest barriers: thread %d result %d is %d, expected %d\n", t, i,
                    out[size_t(t * 4 + i)], want[i]);
        ++failures;
      }
  }
  return failures;
}

// One mma.sync of random 8-bit A, B and int32 C; d[lane * 4 + i].
__global__ void mma_kernel(const int8_t* A, const int8_t* B, const int* C, int* d) {
  const int lane = threadIdx.x, gid = lane >> 2, tig = lane & 3;
  auto pack = [](const int8_t* p, int stride) {
    unsigned u = 0;
    for (int i = 0; i < 4; ++i) u |= unsigned(uint8_t(p[i * stride])) << (8 * i);
    return int(u);
  };
  const int a[4] = {pack(A + gid * 32 + 4 * tig, 1), pack(A + (gid + 8) * 32 + 4 * tig, 1),
                    pack(A + gid * 32 + 4 * tig + 16, 1), pack(A + (gid + 8) * 32 + 4 * tig + 16, 1)};
  const int b0 = pack(B + (4 * tig) * 8 + gid, 8), b1 = pack(B + (4 * tig + 16) * 8 + gid, 8);
  int c[4] = {C[gid * 8 + 2 * tig], C[gid * 8 + 2 * tig + 1], C[(gid + 8) * 8 + 2 * tig],
              C[(gid + 8) * 8 + 2 * tig + 1]};
  vlmkern::cuda::mma_m16n8k32_s8(c, a, b0, b1);
  for (int i = 0; i < 4; ++i) d[lane * 4 + i] = c[i];
}

int expect_mma() {
  Rng g(5);
  int8_t A[16 * 32], B[32 * 8];  // A row-major [m][k], B [k][n]
  int C[16 * 8], d[32 * 4];
  for (auto& x : A) x = int8_t(g.below(256) - 128);
  for (auto& x : B) x = int8_t(g.below(256) - 128);
  for (auto& x : C) x = int(g.below(2000001)) - 1000000;
  LAUNCH(mma_kernel, dim3(1), dim3(32))(A, B, C, d);
  int failures = 0;
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) {
      const int m = (lane >> 2) + (i >= 2 ? 8 : 0), n = 2 * (lane & 3) + (i & 1);
      int want = C[m * 8 + n];
      for (int k = 0; k < 32; ++k) want += int(A[m * 32 + k]) * int(B[k * 8 + n]);
      if (d[lane * 4 + i] != want) {
        std::printf("FAIL selftest mma: D[%d][%d] is %d, expected %d\n", m, n, d[lane * 4 + i], want);
        ++failures;
      }
    }
  return failures;
}

// Shared memory a block did not write reads as 0xff bytes, every block.
__global__ void poison_kernel(unsigned* out) {
  __shared__ unsigned sh[64];
  if (threadIdx.x == 0) out[blockIdx.x] = sh[blockIdx.x % 64];
  __syncthreads();
  sh[threadIdx.x] = 7;  // what the next block must not see
}

int expect_poison() {
#ifdef CUDASIM_SHARED_STATIC
  return 0;  // sanitizer builds bounds-check shared memory instead of poisoning it
#else
  std::vector<unsigned> out(3, 0);
  LAUNCH(poison_kernel, dim3(3), dim3(64))(out.data());
  for (unsigned v : out)
    if (v != 0xffffffffu) {
      std::printf("FAIL selftest poison: unwritten shared memory read 0x%08x\n", v);
      return 1;
    }
  return 0;
#endif
}

// Flush-to-zero: a denormal product and a denormal input.
__global__ void ftz_kernel(const float* x, float* out) {
  out[0] = __fmul_rn(x[0], x[1]);
  out[1] = x[2] + 0.f;
  out[2] = x[2] > 0.f ? 1.f : 0.f;
}

int expect_ftz() {
  const float x[3] = {1e-20f, 1e-20f, 1e-40f};
  int failures = 0;
  for (bool ftz : {false, true}) {
    float out[3] = {-1.f, -1.f, -1.f};
    cudasim::settings().ftz = ftz;
    LAUNCH(ftz_kernel, dim3(1), dim3(1))(x, out);
    cudasim::settings().ftz = false;
    const bool flushed = out[0] == 0.f && out[1] == 0.f && out[2] == 0.f;
    const bool kept = out[0] == 1e-20f * 1e-20f && out[1] == 1e-40f && out[2] == 1.f;
    if (ftz ? !flushed : !kept) {
      std::printf("FAIL selftest ftz=%d: %g %g %g\n", int(ftz), out[0], out[1], out[2]);
      ++failures;
    }
  }
  return failures;
}

// The 16-bit conversions against the compiler's _Float16 (exhaustive for half
// to float; every float exponent with random mantissas the other way).
int expect_conversions() {
  int failures = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    _Float16 x;
    const uint16_t hb = uint16_t(h);
    std::memcpy(&x, &hb, 2);
    const float want = float(x), got = from_fp16(hb);
    if (bits(got) != bits(want) && !(got != got && want != want)) {
      if (failures++ < 5) std::printf("FAIL selftest half->float 0x%04x: %a, expected %a\n", h, got, want);
    }
  }
  Rng g(6);
  for (int e = 0; e < 256; ++e)
    for (int i = 0; i < 64; ++i) {
      const uint32_t u = (uint32_t(g.below(2)) << 31) | (uint32_t(e) << 23) | uint32_t(g.below(1 << 23));
      float f;
      std::memcpy(&f, &u, 4);
      const _Float16 want_h = static_cast<_Float16>(f);
      uint16_t want;
      std::memcpy(&want, &want_h, 2);
      const uint16_t got = to_fp16(f);
      const bool nan = f != f;
      if (nan ? got != 0x7fffu : got != want) {
        if (failures++ < 10) std::printf("FAIL selftest float->half %a: 0x%04x, expected 0x%04x\n", f, got, want);
      }
      const uint16_t gb = to_bf16(f);
      const uint32_t rb = nan ? 0x7fffu : ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
      if (gb != rb) {
        if (failures++ < 10) std::printf("FAIL selftest float->bf16 %a: 0x%04x, expected 0x%04x\n", f, gb, rb);
      }
    }
  return failures;
}

__global__ void empty_kernel() {}

int expect_launch_checks() {
  int failures = 0;
  const std::pair<dim3, dim3> bad[] = {{dim3(1), dim3(1025)}, {dim3(1), dim3(0)}, {dim3(0), dim3(32)},
                                       {dim3(1, 65536), dim3(32)}, {dim3(1), dim3(1, 1, 65)}};
  for (const auto& [grid, block] : bad) {
    LAUNCH(empty_kernel, grid, block)();
    if (cudaGetLastError() != cudaErrorInvalidConfiguration) {
      std::printf("FAIL selftest launch checks: grid (%u,%u,%u) block (%u,%u,%u) accepted\n", grid.x,
                  grid.y, grid.z, block.x, block.y, block.z);
      ++failures;
    }
  }
  VLMKERN_LAUNCH(empty_kernel, dim3(1), dim3(32), 64 * 1024, nullptr)();
  if (cudaGetLastError() != cudaErrorInvalidValue) {
    std::printf("FAIL selftest launch checks: 64 KB of dynamic shared memory accepted\n");
    ++failures;
  }
  if (cudaGetLastError() != cudaSuccess) ++failures;
  return failures;
}

// ---- kernels that break a rule (run with --error NAME) ------------------------------

__global__ void divergent_barrier_kernel() {
  if (threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
}
__global__ void exited_lane_kernel(int* out) {
  if (threadIdx.x == 7) return;
  out[threadIdx.x] = __shfl_xor_sync(kFull, int(threadIdx.x), 1);
}
__global__ void lane_at_barrier_kernel(int* out) {
  int v = int(threadIdx.x);
  if (threadIdx.x < 16) v = __shfl_xor_sync(kFull, v, 16);
  __syncthreads();
  out[threadIdx.x] = v;
}
__global__ void outside_mask_kernel(int* out) {
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_sync(0x0000ffffu, int(threadIdx.x), 20);
}
__global__ void own_mask_kernel(int* out) {
  out[threadIdx.x] = int(__ballot_sync(0x1u, 1));
}
__global__ void bad_width_kernel(int* out) {
  out[threadIdx.x] = __shfl_down_sync(kFull, int(threadIdx.x), 1, 12);
}
__global__ void partial_mma_kernel(int* out) {
  if (threadIdx.x >= 16) return;
  int c[4] = {0, 0, 0, 0};
  const int a[4] = {1, 1, 1, 1};
  vlmkern::cuda::mma_m16n8k32_s8(c, a, 1, 1);
  out[threadIdx.x] = c[0];
}

}  // namespace

void add_selftest_cases(Cases& out) {
  for (int width : {32, 16, 8, 4, 1})
    out.push_back({fmt("shuffles width=%d", width), [width] {
                     return each_schedule("shuffles", Ftz::kBoth, [width] {
                       return expect_shuffles(width) ? std::string("see above") : std::string();
                     });
                   }});
  out.push_back({"barriers", [] {
                   return each_schedule("barriers", Ftz::kBoth, [] {
                     return expect_barriers() ? std::string("see above") : std::string();
                   });
                 }});
  out.push_back({"mma fragments", [] { return expect_mma(); }});
  out.push_back({"shared memory poisoning", [] { return expect_poison(); }});
  out.push_back({"flush-to-zero", [] { return expect_ftz(); }});
  out.push_back({"16-bit conversions", [] { return expect_conversions(); }});
  out.push_back({"launch checks", [] { return expect_launch_checks(); }});
}

// The rule-breaking kernels, by name; each must not return.
int run_error_case(const std::string& name) {
  static int out[1024];
  const std::map<std::string, std::function<void()>> cases = {
      {"divergent-barrier", [] { LAUNCH(divergent_barrier_kernel, dim3(1), dim3(64))(); }},
      {"exited-lane", [] { LAUNCH(exited_lane_kernel, dim3(1), dim3(32))(out); }},
      {"lane-at-barrier", [] { LAUNCH(lane_at_barrier_kernel, dim3(1), dim3(32))(out); }},
      {"outside-mask", [] { LAUNCH(outside_mask_kernel, dim3(1), dim3(32))(out); }},
      {"own-mask", [] { LAUNCH(own_mask_kernel, dim3(1), dim3(32))(out); }},
      {"bad-width", [] { LAUNCH(bad_width_kernel, dim3(1), dim3(32))(out); }},
      {"partial-mma", [] { LAUNCH(partial_mma_kernel, dim3(1), dim3(32))(out); }},
  };
  const auto it = cases.find(name);
  if (it == cases.end()) {
    std::printf("unknown error case %s\n", name.c_str());
    return 2;
  }
  it->second();
  std::printf("error case %s ran to the end without a report\n", name.c_str());
  return 1;
}

}  // namespace harness
