// cudasim runtime: launches, the block scheduler, barriers, shared-memory
// poisoning and error reports. See cudasim.h for what is modelled; fibers live
// in fiber.cpp, warp collectives in warp.cpp, 16-bit floats in half.cpp.
#include <link.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>

#include "runtime.h"

namespace cudasim::detail {

Runtime& rt() {
  static Runtime r;
  return r;
}

const char* op_name(Op op) {
  switch (op) {
    case Op::kShflIdx: return "__shfl_sync";
    case Op::kShflUp: return "__shfl_up_sync";
    case Op::kShflDown: return "__shfl_down_sync";
    case Op::kShflXor: return "__shfl_xor_sync";
    case Op::kBallot: return "__ballot_sync";
    case Op::kAny: return "__any_sync";
    case Op::kAll: return "__all_sync";
    case Op::kMatchAny: return "__match_any_sync";
    case Op::kMatchAll: return "__match_all_sync";
    case Op::kSyncWarp: return "__syncwarp";
    case Op::kReduceAddU: return "__reduce_add_sync";
    case Op::kReduceMinU: case Op::kReduceMinS: return "__reduce_min_sync";
    case Op::kReduceMaxU: case Op::kReduceMaxS: return "__reduce_max_sync";
    case Op::kReduceAnd: return "__reduce_and_sync";
    case Op::kReduceOr: return "__reduce_or_sync";
    case Op::kReduceXor: return "__reduce_xor_sync";
    case Op::kMma16832S8: return "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32";
  }
  return "?";
}
const char* bar_name(Bar b) {
  switch (b) {
    case Bar::kSync: return "__syncthreads";
    case Bar::kCount: return "__syncthreads_count";
    case Bar::kAnd: return "__syncthreads_and";
    case Bar::kOr: return "__syncthreads_or";
  }
  return "?";
}

std::string where(const Loc& l) {
  const char* f = l.file_name();
  const char* s = std::strrchr(f, '/');
  return std::string(s ? s + 1 : f) + ":" + std::to_string(l.line());
}
bool same_site(const Loc& a, const Loc& b) {
  return a.line() == b.line() && a.column() == b.column() && std::strcmp(a.file_name(), b.file_name()) == 0;
}

std::string describe(const Fiber& f) {
  switch (f.state) {
    case St::kReady: return "is running";
    case St::kDone: return "has exited";
    case St::kBar: return std::string("waits at ") + bar_name(f.bar) + " (" + where(f.loc) + ")";
    case St::kColl: {
      char buf[64];
      std::snprintf(buf, sizeof buf, " mask 0x%08x", f.coll->mask);
      return std::string("waits at ") + op_name(f.coll->op) + buf + " (" + where(f.loc) + ")";
    }
  }
  return "?";
}

[[noreturn]] static void vfail(const Loc* loc, const char* fmt, va_list ap) {
  Runtime& r = rt();
  std::fprintf(stderr, "cudasim: error: ");
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  if (loc) std::fprintf(stderr, "  at %s\n", where(*loc).c_str());
  if (r.cfg) {
    std::fprintf(stderr, "  in kernel %s", r.cfg->name);
    if (r.cur) {
      const ThreadCtx& c = r.cur->ctx;
      std::fprintf(stderr, ", block (%u,%u,%u), thread (%u,%u,%u) (warp %d, lane %d)", c.bid.x,
                   c.bid.y, c.bid.z, c.tid.x, c.tid.y, c.tid.z, r.cur->warp, r.cur->lane);
    }
    std::fprintf(stderr, "\n");
  }
  std::fflush(stderr);
  std::fflush(stdout);
  std::_Exit(86);
}

[[noreturn]] void fail_at(const Loc* loc, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(loc, fmt, ap);
}

static bool release_barrier() {
  Runtime& r = rt();
  Fiber* first = nullptr;
  int count = 0, all = 1, any = 0;
  for (int i = 0; i < r.n_threads; ++i) {
    Fiber* f = r.pool[size_t(i)];
    if (f->state == St::kDone) continue;
    if (f->state != St::kBar) return false;
    if (first == nullptr) {
      first = f;
    } else if (!same_site(f->loc, first->loc) || f->bar != first->bar) {
      r.cur = f;
      fail_at(&f->loc, "divergent barrier: thread %d waits at %s (%s) while thread %d waits at %s "
              "(%s); every thread of the block must reach the same barrier",
              f->index, bar_name(f->bar), where(f->loc).c_str(), first->index, bar_name(first->bar),
              where(first->loc).c_str());
    }
    count += f->pred != 0;
    all &= f->pred != 0;
    any |= f->pred != 0;
  }
  if (first == nullptr) return false;
  const int result = first->bar == Bar::kCount ? count : first->bar == Bar::kAnd ? all : any;
  for (int i = 0; i < r.n_threads; ++i) {
    Fiber* f = r.pool[size_t(i)];
    if (f->state == St::kBar) f->state = St::kReady, f->bar_result = result;
  }
  ++r.stats.barriers;
  return true;
}

[[noreturn]] static void deadlock() {
  Runtime& r = rt();
  // Name the first collective that waits for a lane that is elsewhere.
  for (int i = 0; i < r.n_threads; ++i) {
    Fiber* f = r.pool[size_t(i)];
    if (f->state != St::kColl) continue;
    for (int l = 0; l < kWarp; ++l) {
      if (!(f->coll->mask >> l & 1u)) continue;
      Fiber* g = lane_fiber(f->warp, l);
      if (g->state == St::kColl && g->coll->op == f->coll->op && g->coll->mask == f->coll->mask)
        continue;
      r.cur = f;
      fail_at(&f->loc, "deadlock: %s with mask 0x%08x in warp %d waits for lane %d, which %s (a "
              "divergence deadlock on a GPU)", op_name(f->coll->op), f->coll->mask, f->warp, l,
              describe(*g).c_str());
    }
  }
  fail_at(nullptr, "deadlock: no thread of the block can proceed");
}

static void run_block() {
  Runtime& r = rt();
  const int n = r.n_threads, n_warps = (n + kWarp - 1) / kWarp;
  const Settings& s = r.settings;
  std::vector<int> order(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) order[size_t(i)] = i;
  if (s.schedule == Schedule::kReverse) std::reverse(order.begin(), order.end());
  const int ahead = s.schedule != Schedule::kWarpAhead ? -1
                    : (s.ahead_warp < 0 ? n_warps - 1 : std::min(s.ahead_warp, n_warps - 1));
  while (r.n_done < n) {
    bool ran = false;
    if (ahead >= 0) {
      // The chosen warp runs until all its threads wait, before any other moves.
      for (bool again = true; again;) {
        again = false;
        for (int l = 0; l < kWarp; ++l) {
          Fiber* f = lane_fiber(ahead, l);
          if (f && f->state == St::kReady) resume(f), again = ran = true;
        }
      }
    }
    if (s.schedule == Schedule::kRandom) std::shuffle(order.begin(), order.end(), r.rng);
    for (int i : order) {
      Fiber* f = r.pool[size_t(i)];
      if (f->warp == ahead) continue;
      if (f->state == St::kReady) resume(f), ran = true;
    }
    if (r.n_done == n) break;
    if (!ran && !release_barrier()) deadlock();
  }
}

// The executable's static TLS block: with __shared__ = static thread_local it
// holds the kernels' shared variables, and nothing else (the emulator keeps no
// thread-local state; libraries have their own blocks).
static int find_tls(dl_phdr_info* info, size_t, void* data) {
  Runtime& r = *static_cast<Runtime*>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i)
    if (info->dlpi_phdr[i].p_type == PT_TLS) {
      r.tls = info->dlpi_tls_data;
      r.tls_size = info->dlpi_phdr[i].p_memsz;
    }
  return 1;  // the first object is the executable
}

static void poison_shared() {
  Runtime& r = rt();
#ifndef CUDASIM_SHARED_STATIC
  if (!r.tls_found) {
    dl_iterate_phdr(find_tls, &r);
    r.tls_found = true;
  }
  if (r.tls && r.tls_size) std::memset(r.tls, 0xff, r.tls_size);
#endif
  if (!r.dyn_smem.empty()) std::memset(r.dyn_smem.data(), 0xff, r.dyn_smem.size());
}

}  // namespace cudasim::detail

namespace cudasim {

using namespace detail;

const ThreadCtx& ctx() {
  Fiber* f = rt().cur;
  if (f == nullptr) fail_at(nullptr, "a CUDA built-in variable was read outside a kernel");
  return f->ctx;
}

Settings& settings() { return rt().settings; }
const Stats& stats() { return rt().stats; }

void fail(const Loc& loc, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(&loc, fmt, ap);
}

int block_barrier(Bar kind, int pred, const Loc& loc) {
  Fiber* f = rt().cur;
  if (f == nullptr) fail_at(&loc, "%s called outside a kernel", bar_name(kind));
  f->state = St::kBar;
  f->bar = kind;
  f->pred = pred;
  f->loc = loc;
  yield();
  return f->bar_result;
}

void* dynamic_shared() {
  Runtime& r = rt();
  if (r.cur == nullptr) fail_at(nullptr, "dynamic shared memory used outside a kernel");
  return r.dyn_smem.empty() ? nullptr : r.dyn_smem.data();
}

void run_kernel(const LaunchConfig& cfg, void (*thread_main)(void*), void* closure) {
  Runtime& r = rt();
  if (r.cur != nullptr) fail_at(nullptr, "kernel %s launched from device code", cfg.name);
  const dim3 g = cfg.grid, b = cfg.block;
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  if (threads == 0 || threads > 1024 || b.z > 64 || g.x == 0 || g.y == 0 || g.z == 0 ||
      g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) {
    r.last_error = cudaErrorInvalidConfiguration;
    return;
  }
  if (cfg.smem > 48 * 1024) {
    r.last_error = cudaErrorInvalidValue;
    return;
  }
  r.cfg = &cfg;
  r.thread_main = thread_main;
  r.closure = closure;
  r.n_threads = int(threads);
  r.dyn_smem.assign(cfg.smem, 0);
  r.rng.seed(r.settings.seed);
  while (r.pool.size() < threads) r.pool.push_back(new_fiber());
  ++r.stats.launches;

  const uint64_t n_blocks = uint64_t(g.x) * g.y * g.z;
  std::vector<uint64_t> order;
  if (r.settings.schedule == Schedule::kReverse || r.settings.schedule == Schedule::kRandom) {
    order.resize(n_blocks);
    for (uint64_t i = 0; i < n_blocks; ++i) order[i] = i;
    if (r.settings.schedule == Schedule::kReverse) std::reverse(order.begin(), order.end());
    else std::shuffle(order.begin(), order.end(), r.rng);
  }
  for (uint64_t bi = 0; bi < n_blocks; ++bi) {
    const uint64_t lin = order.empty() ? bi : order[bi];
    const uint3 bid{unsigned(lin % g.x), unsigned((lin / g.x) % g.y), unsigned(lin / (uint64_t(g.x) * g.y))};
    poison_shared();
    for (int i = 0; i < r.n_threads; ++i) {
      Fiber* f = r.pool[size_t(i)];
      f->ctx = ThreadCtx{{unsigned(i % b.x), unsigned((i / b.x) % b.y), unsigned(i / (b.x * b.y))},
                         bid, b, g};
      f->index = i;
      f->lane = i % kWarp;
      f->warp = i / kWarp;
      f->state = St::kReady;
      f->coll = nullptr;
      init_context(f);
    }
    r.n_done = 0;
    run_block();
    ++r.stats.blocks;
    r.stats.threads += threads;
  }
  r.cfg = nullptr;
}

}  // namespace cudasim

cudaError_t cudaGetLastError() {
  const cudaError_t e = cudasim::rt().last_error;
  cudasim::rt().last_error = cudaSuccess;
  return e;
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
  }
  return "unknown error";
}
