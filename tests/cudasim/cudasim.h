// cudasim: runs CUDA device code on the CPU, for vlmkern's tests.
//
// Include this instead of the CUDA headers (csrc/cuda/device.cuh does so when
// VLMKERN_CUDASIM is defined) and the kernel headers compile with the host
// compiler as they are. What it models:
//   - one fiber per CUDA thread, a block's fibers on one OS thread, blocks one
//     after another; a fiber runs until a synchronisation point (barrier,
//     warp collective, exit), then the scheduler picks the next one by the
//     chosen schedule (lock-step rounds, reversed, one warp running ahead,
//     random), so races that depend on ordering change the output;
//   - block barriers: every non-exited thread must reach the same one;
//   - warp collectives resolved per warp over 32 lanes, with PTX semantics
//     (shuffles with width and out-of-segment lanes, ballot, any/all, match,
//     reduce, syncwarp, mma.sync m16n8k32): every lane named in `mask` must
//     arrive at the same kind of collective with the same mask;
//   - errors a GPU shows as hangs or garbage are reported with file and line
//     and end the process: divergent barriers, deadlocks (a mask naming a lane
//     that exited or waits elsewhere), a lane missing from its own mask, a
//     shuffle reading a lane outside the mask, bad launch configurations;
//   - __shared__ memory: thread-local statics, filled with 0xff bytes (float
//     NaN, int -1) before each block, so a read of memory the block did not
//     write shows; in sanitizer builds (CUDASIM_SHARED_STATIC) plain statics,
//     which AddressSanitizer bounds-checks instead;
//   - flush-to-zero (FTZ and DAZ in MXCSR) per launch, as --use_fast_math or
//     -ftz=true builds run.
// Not modelled: speed, the memory model and fences, shared-memory capacity and
// bank conflicts, the device's transcendental approximations (exp2f here is
// the host's), and nvcc's FMA contraction (build with -ffp-contract=off; the
// kernels use explicit fmaf / __fmul_rn where the order matters).
#pragma once
#ifndef VLMKERN_CUDASIM
#define VLMKERN_CUDASIM 1
#endif
#ifndef __CUDA_ARCH__
#define __CUDA_ARCH__ 800  // device branches of the shared math headers
#endif

#include <cfloat>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#ifdef CUDASIM_SHARED_STATIC
#define __shared__ static
#else
#define __shared__ static thread_local
#endif

// ---- types of the CUDA runtime ------------------------------------------------------
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 { unsigned x, y, z; };
struct alignas(8) int2 { int x, y; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
struct __half { unsigned short x; };
struct __nv_bfloat16 { unsigned short x; };
typedef struct CUstream_st* cudaStream_t;
enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
};
#define warpSize 32

namespace cudasim {

struct ThreadCtx {
  uint3 tid, bid;
  dim3 bdim, gdim;
};
// The calling CUDA thread's indices (an error outside a kernel).
const ThreadCtx& ctx();

using Loc = std::source_location;

enum class Op : uint8_t {
  kShflIdx, kShflUp, kShflDown, kShflXor,
  kBallot, kAny, kAll, kMatchAny, kMatchAll, kSyncWarp,
  kReduceAddU, kReduceMinU, kReduceMaxU, kReduceMinS, kReduceMaxS,
  kReduceAnd, kReduceOr, kReduceXor,
  kMma16832S8,
};

// One lane's part in a warp collective: up to 10 input words, 4 outputs.
struct Coll {
  Op op;
  unsigned mask;
  int arg;    // srcLane / delta / laneMask
  int width;  // shuffles
  uint64_t in[10];
  uint64_t out[4];
};
void warp_collective(Coll& c, const Loc& loc);
enum class Bar : uint8_t { kSync, kCount, kAnd, kOr };
int block_barrier(Bar kind, int pred, const Loc& loc);
[[noreturn]] void fail(const Loc& loc, const char* fmt, ...);

// Kernel launch: the configuration is checked like the CUDA runtime does (a
// bad one sets the error cudaGetLastError returns and runs nothing).
struct LaunchConfig {
  const char* name;
  dim3 grid, block;
  size_t smem;
};
void run_kernel(const LaunchConfig& cfg, void (*thread_main)(void*), void* closure);
void* dynamic_shared();  // the block's dynamic shared memory (poisoned)

template <class... P>
struct Launch {
  void (*kernel)(P...);
  LaunchConfig cfg;
  Launch(void (*k)(P...), const char* name, dim3 grid, dim3 block, size_t smem, cudaStream_t)
      : kernel(k), cfg{name, grid, block, smem} {}
  template <class... A>
  void operator()(A&&... a) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    struct Closure {
      void (*kernel)(P...);
      std::tuple<std::decay_t<P>...> args;
    } c{kernel, std::tuple<std::decay_t<P>...>(static_cast<std::decay_t<P>>(a)...)};
    // Every thread gets its own copy of the parameters, as on a GPU.
    run_kernel(cfg, [](void* p) {
      const Closure& cl = *static_cast<const Closure*>(p);
      std::apply(cl.kernel, std::tuple<std::decay_t<P>...>(cl.args));
    }, &c);
  }
};

// Run-time settings of the emulator (the harness sets them).
enum class Schedule : uint8_t { kLockstep, kReverse, kWarpAhead, kRandom };
struct Settings {
  Schedule schedule = Schedule::kLockstep;
  int ahead_warp = -1;    // kWarpAhead: this warp (-1: the last warp of each block)
  uint64_t seed = 1;      // kRandom
  bool ftz = false;       // flush denormal inputs and results to zero (MXCSR FTZ + DAZ)
};
Settings& settings();
struct Stats {
  uint64_t launches, blocks, threads, collectives, barriers, switches;
};
const Stats& stats();

void mma_m16n8k32_s8(int (&c)[4], const int (&a)[4], int b0, int b1, const Loc& loc = Loc::current());

template <class T>
inline uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "32- or 64-bit values only");
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  return u;
}
template <class T>
inline T from_bits(uint64_t u) {
  T v;
  std::memcpy(&v, &u, sizeof(T));
  return v;
}
template <class T>
inline T shuffle(Op op, unsigned mask, T v, int arg, int width, const Loc& loc) {
  Coll c{op, mask, arg, width, {to_bits(v)}, {}};
  warp_collective(c, loc);
  return from_bits<T>(c.out[0]);
}
inline uint64_t simple(Op op, unsigned mask, uint64_t v, const Loc& loc) {
  Coll c{op, mask, 0, 32, {v}, {}};
  warp_collective(c, loc);
  return c.out[0];
}

}  // namespace cudasim

#define threadIdx (::cudasim::ctx().tid)
#define blockIdx (::cudasim::ctx().bid)
#define blockDim (::cudasim::ctx().bdim)
#define gridDim (::cudasim::ctx().gdim)

cudaError_t cudaGetLastError();
const char* cudaGetErrorString(cudaError_t e);

// ---- synchronisation ------------------------------------------------------------------
inline void __syncthreads(cudasim::Loc loc = cudasim::Loc::current()) {
  cudasim::block_barrier(cudasim::Bar::kSync, 0, loc);
}
inline int __syncthreads_count(int p, cudasim::Loc loc = cudasim::Loc::current()) {
  return cudasim::block_barrier(cudasim::Bar::kCount, p, loc);
}
inline int __syncthreads_and(int p, cudasim::Loc loc = cudasim::Loc::current()) {
  return cudasim::block_barrier(cudasim::Bar::kAnd, p, loc);
}
inline int __syncthreads_or(int p, cudasim::Loc loc = cudasim::Loc::current()) {
  return cudasim::block_barrier(cudasim::Bar::kOr, p, loc);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, cudasim::Loc loc = cudasim::Loc::current()) {
  cudasim::simple(cudasim::Op::kSyncWarp, mask, 0, loc);
}
inline void __threadfence() {}
inline void __threadfence_block() {}

template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32,
                     cudasim::Loc loc = cudasim::Loc::current()) {
  return cudasim::shuffle(cudasim::Op::kShflIdx, mask, v, src, width, loc);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32,
                        cudasim::Loc loc = cudasim::Loc::current()) {
  return cudasim::shuffle(cudasim::Op::kShflUp, mask, v, int(delta), width, loc);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32,
                          cudasim::Loc loc = cudasim::Loc::current()) {
  return cudasim::shuffle(cudasim::Op::kShflDown, mask, v, int(delta), width, loc);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32,
                         cudasim::Loc loc = cudasim::Loc::current()) {
  return cudasim::shuffle(cudasim::Op::kShflXor, mask, v, lane_mask, width, loc);
}
inline unsigned __ballot_sync(unsigned mask, int pred, cudasim::Loc loc = cudasim::Loc::current()) {
  return unsigned(cudasim::simple(cudasim::Op::kBallot, mask, pred != 0, loc));
}
inline int __any_sync(unsigned mask, int pred, cudasim::Loc loc = cudasim::Loc::current()) {
  return int(cudasim::simple(cudasim::Op::kAny, mask, pred != 0, loc));
}
inline int __all_sync(unsigned mask, int pred, cudasim::Loc loc = cudasim::Loc::current()) {
  return int(cudasim::simple(cudasim::Op::kAll, mask, pred != 0, loc));
}
template <class T>
inline unsigned __match_any_sync(unsigned mask, T v, cudasim::Loc loc = cudasim::Loc::current()) {
  static_assert(std::is_integral_v<T> || std::is_floating_point_v<T>, "match on a scalar");
  return unsigned(cudasim::simple(cudasim::Op::kMatchAny, mask, cudasim::to_bits(v), loc));
}
template <class T>
inline unsigned __match_all_sync(unsigned mask, T v, int* pred,
                                 cudasim::Loc loc = cudasim::Loc::current()) {
  cudasim::Coll c{cudasim::Op::kMatchAll, mask, 0, 32, {cudasim::to_bits(v)}, {}};
  cudasim::warp_collective(c, loc);
  *pred = int(c.out[1]);
  return unsigned(c.out[0]);
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned v, cudasim::Loc loc = cudasim::Loc::current()) {
  return unsigned(cudasim::simple(cudasim::Op::kReduceAddU, mask, v, loc));
}
inline int __reduce_add_sync(unsigned mask, int v, cudasim::Loc loc = cudasim::Loc::current()) {
  return int(unsigned(cudasim::simple(cudasim::Op::kReduceAddU, mask, unsigned(v), loc)));
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned v, cudasim::Loc loc = cudasim::Loc::current()) {
  return unsigned(cudasim::simple(cudasim::Op::kReduceMinU, mask, v, loc));
}
inline int __reduce_min_sync(unsigned mask, int v, cudasim::Loc loc = cudasim::Loc::current()) {
  return int(unsigned(cudasim::simple(cudasim::Op::kReduceMinS, mask, unsigned(v), loc)));
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned v, cudasim::Loc loc = cudasim::Loc::current()) {
  return unsigned(cudasim::simple(cudasim::Op::kReduceMaxU, mask, v, loc));
}
inline int __reduce_max_sync(unsigned mask, int v, cudasim::Loc loc = cudasim::Loc::current()) {
  return int(unsigned(cudasim::simple(cudasim::Op::kReduceMaxS, mask, unsigned(v), loc)));
}
inline unsigned __reduce_and_sync(unsigned mask, unsigned v, cudasim::Loc loc = cudasim::Loc::current()) {
  return unsigned(cudasim::simple(cudasim::Op::kReduceAnd, mask, v, loc));
}
inline unsigned __reduce_or_sync(unsigned mask, unsigned v, cudasim::Loc loc = cudasim::Loc::current()) {
  return unsigned(cudasim::simple(cudasim::Op::kReduceOr, mask, v, loc));
}
inline unsigned __reduce_xor_sync(unsigned mask, unsigned v, cudasim::Loc loc = cudasim::Loc::current()) {
  return unsigned(cudasim::simple(cudasim::Op::kReduceXor, mask, v, loc));
}

// ---- atomics (a block's threads share one OS thread, blocks run one at a time) -------
#define CUDASIM_ATOMIC(name, T, expr)            \
  inline T name(T* p, T v) {                     \
    const T old = *p;                            \
    *p = (expr);                                 \
    return old;                                  \
  }
#define CUDASIM_ATOMICS(T)                                       \
  CUDASIM_ATOMIC(atomicAdd, T, static_cast<T>(old + v))                       \
  CUDASIM_ATOMIC(atomicSub, T, static_cast<T>(old - v))                       \
  CUDASIM_ATOMIC(atomicExch, T, v)                               \
  CUDASIM_ATOMIC(atomicMax, T, old < v ? v : old)                \
  CUDASIM_ATOMIC(atomicMin, T, v < old ? v : old)                \
  inline T atomicCAS(T* p, T cmp, T v) {                         \
    const T old = *p;                                            \
    if (old == cmp) *p = v;                                      \
    return old;                                                  \
  }
#define CUDASIM_BIT_ATOMICS(T)                 \
  CUDASIM_ATOMIC(atomicAnd, T, static_cast<T>(old & v))     \
  CUDASIM_ATOMIC(atomicOr, T, static_cast<T>(old | v))      \
  CUDASIM_ATOMIC(atomicXor, T, static_cast<T>(old ^ v))
CUDASIM_ATOMICS(int)
CUDASIM_ATOMICS(unsigned)
CUDASIM_ATOMICS(unsigned long long)
CUDASIM_ATOMICS(long long)
CUDASIM_BIT_ATOMICS(int)
CUDASIM_BIT_ATOMICS(unsigned)
CUDASIM_BIT_ATOMICS(unsigned long long)
CUDASIM_ATOMIC(atomicAdd, float, old + v)
CUDASIM_ATOMIC(atomicAdd, double, old + v)
CUDASIM_ATOMIC(atomicExch, float, v)
#undef CUDASIM_ATOMIC
#undef CUDASIM_ATOMICS
#undef CUDASIM_BIT_ATOMICS

// ---- integer intrinsics ---------------------------------------------------------------
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(unsigned(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
// dp4a: four 8-bit products summed into c (signed x signed, or unsigned x unsigned).
inline int __dp4a(int a, int b, int c) {
  for (int i = 0; i < 4; ++i) c += int(int8_t(a >> (8 * i))) * int(int8_t(b >> (8 * i)));
  return c;
}
inline unsigned __dp4a(unsigned a, unsigned b, unsigned c) {
  for (int i = 0; i < 4; ++i) c += ((a >> (8 * i)) & 0xffu) * ((b >> (8 * i)) & 0xffu);
  return c;
}

// ---- min / max of the device runtime ----------------------------------------------------
template <class A, class B, class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
inline std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(a) < C(b) ? C(a) : C(b);
}
template <class A, class B, class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
inline std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(a) < C(b) ? C(b) : C(a);
}

// ---- float intrinsics (IEEE round-to-nearest; FTZ follows the launch's mode) ---------
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __uint_as_float(unsigned u) { return cudasim::from_bits<float>(u); }
inline unsigned __float_as_uint(float f) { return unsigned(cudasim::to_bits(f)); }
inline float __int_as_float(int i) { return cudasim::from_bits<float>(unsigned(i)); }
inline int __float_as_int(float f) { return int(unsigned(cudasim::to_bits(f))); }
inline float __saturatef(float x) { return x != x ? 0.f : (x < 0.f ? 0.f : (x > 1.f ? 1.f : x)); }

inline __half __ushort_as_half(unsigned short u) { return __half{u}; }
inline unsigned short __half_as_ushort(__half h) { return h.x; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16{u}; }
float __half2float(__half h);  // exact
__half __float2half_rn(float f);  // round to nearest even; NaN -> canonical 0x7fff
float __bfloat162float(__nv_bfloat16 h);
__nv_bfloat16 __float2bfloat16_rn(float f);  // round to nearest even; NaN -> canonical 0x7fff
