// Internals of the cudasim runtime, shared by its translation units
// (cudasim.cpp: launches, the block scheduler, barriers and reports; fiber.cpp:
// fibers and the context switch; warp.cpp: warp collectives; half.cpp: 16-bit
// floats). Kernels include cudasim.h only.
#pragma once
#include <random>
#include <string>
#include <vector>

#include "cudasim.h"

#if defined(__SANITIZE_ADDRESS__)
#define CUDASIM_ASAN 1
#endif
#if defined(__x86_64__)
#define CUDASIM_X86 1
#else
#include <ucontext.h>
#endif

namespace cudasim::detail {

constexpr int kWarp = 32;
constexpr unsigned kFull = 0xffffffffu;
#ifdef CUDASIM_ASAN
constexpr size_t kStackBytes = size_t(1) << 20;
#else
constexpr size_t kStackBytes = size_t(256) << 10;
#endif

enum class St : uint8_t { kReady, kColl, kBar, kDone };

struct Fiber {
  ThreadCtx ctx{};
  int index = 0, lane = 0, warp = 0;
  St state = St::kDone;
  Loc loc;
  Coll* coll = nullptr;
  Bar bar = Bar::kSync;
  int pred = 0, bar_result = 0;
  char* stack = nullptr;  // lowest usable byte (a guard page lies below)
  size_t stack_size = 0;
#ifdef CUDASIM_X86
  void* sp = nullptr;
#else
  ucontext_t uc;
#endif
  void* fake_stack = nullptr;  // ASan's bookkeeping across switches
};

struct Runtime {
  Settings settings;
  Stats stats{};
  cudaError_t last_error = cudaSuccess;
  std::vector<Fiber*> pool;
  Fiber* cur = nullptr;
  // the launch being run
  const LaunchConfig* cfg = nullptr;
  void (*thread_main)(void*) = nullptr;
  void* closure = nullptr;
  std::vector<char> dyn_smem;
  int n_threads = 0, n_done = 0;
  std::mt19937_64 rng;
  // the scheduler's own context
#ifdef CUDASIM_X86
  void* host_sp = nullptr;
#else
  ucontext_t host_uc;
#endif
  void* host_fake = nullptr;
  const void* host_stack_bottom = nullptr;
  size_t host_stack_size = 0;
  // this executable's thread-local block (the __shared__ variables)
  bool tls_found = false;
  void* tls = nullptr;
  size_t tls_size = 0;

  ~Runtime();  // frees the fibers (fiber.cpp)
};
Runtime& rt();

const char* op_name(Op op);
const char* bar_name(Bar b);
std::string where(const Loc& l);
bool same_site(const Loc& a, const Loc& b);
std::string describe(const Fiber& f);  // what a fiber is doing, for reports
[[noreturn]] void fail_at(const Loc* loc, const char* fmt, ...);

// fiber.cpp
Fiber* new_fiber();
void init_context(Fiber* f);  // fresh stack entering the launch's thread_main
void resume(Fiber* f);        // host -> f, until f yields or exits
void yield();                 // the current fiber -> host

// warp.cpp
Fiber* lane_fiber(int warp, int lane);  // nullptr past the block's threads
void check_exit(Fiber* self);           // a collective naming an exited lane is an error

}  // namespace cudasim::detail
