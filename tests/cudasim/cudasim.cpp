// cudasim runtime: fibers, the block scheduler, barriers, warp collectives,
// launches and error reports. See cudasim.h for what is modelled.
#include "cudasim.h"

#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CUDASIM_ASAN 1
#endif
#if defined(__x86_64__)
#define CUDASIM_X86 1
#else
#include <ucontext.h>
#endif

namespace cudasim {
struct Fiber;
}
extern "C" void cudasim_fiber_main(cudasim::Fiber* f);

#ifdef CUDASIM_X86
// cudasim_swap(save, to): push the callee-saved registers, MXCSR and the x87
// control word, store the stack pointer in *save, switch to `to` and pop the
// same from there. A new fiber's stack is laid out so that the first switch
// "returns" into cudasim_trampoline with the Fiber* in r12.
extern "C" void cudasim_swap(void** save, void* to);
extern "C" void cudasim_trampoline();
asm(R"(
  .text
  .globl cudasim_swap
  .type cudasim_swap, @function
cudasim_swap:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cudasim_swap, .-cudasim_swap

  .globl cudasim_trampoline
  .type cudasim_trampoline, @function
cudasim_trampoline:
  movq %r12, %rdi
  call cudasim_fiber_main
  ud2
  .size cudasim_trampoline, .-cudasim_trampoline
)");
#endif

namespace cudasim {

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

namespace {

constexpr int kWarp = 32;
constexpr unsigned kFull = 0xffffffffu;
#ifdef CUDASIM_ASAN
constexpr size_t kStackBytes = size_t(1) << 20;
#else
constexpr size_t kStackBytes = size_t(256) << 10;
#endif

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

  ~Runtime() {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    for (Fiber* f : pool) {
      munmap(f->stack - page, f->stack_size + page);
      delete f;
    }
  }
};
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

[[noreturn]] void vfail(const Loc* loc, const char* fmt, va_list ap) {
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

// ---- fibers ----------------------------------------------------------------------------

Fiber* new_fiber() {
  Fiber* f = new Fiber();
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  void* m = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) fail_at(nullptr, "cannot map a fiber stack");
  mprotect(m, page, PROT_NONE);  // a stack overflow faults instead of corrupting
  f->stack = static_cast<char*>(m) + page;
  f->stack_size = kStackBytes;
  return f;
}

void start_switch(void** save_fake, const void* bottom, size_t size) {
#ifdef CUDASIM_ASAN
  __sanitizer_start_switch_fiber(save_fake, bottom, size);
#else
  (void)save_fake, (void)bottom, (void)size;
#endif
}
void finish_switch(void* fake, const void** old_bottom, size_t* old_size) {
#ifdef CUDASIM_ASAN
  __sanitizer_finish_switch_fiber(fake, old_bottom, old_size);
#else
  (void)fake, (void)old_bottom, (void)old_size;
#endif
}

#ifndef CUDASIM_X86
void uc_entry(unsigned hi, unsigned lo) {
  cudasim_fiber_main(reinterpret_cast<Fiber*>((uintptr_t(hi) << 32) | uintptr_t(lo)));
}
#endif

void init_context(Fiber* f) {
#ifdef CUDASIM_ASAN
  __asan_unpoison_memory_region(f->stack, f->stack_size);
#endif
#ifdef CUDASIM_X86
  uintptr_t top = (reinterpret_cast<uintptr_t>(f->stack) + f->stack_size) & ~uintptr_t(15);
  uint64_t* sp = reinterpret_cast<uint64_t*>(top - 80);
  const uint32_t mxcsr = 0x1f80u | (rt().settings.ftz ? 0x8040u : 0u);
  sp[0] = uint64_t(mxcsr) | (uint64_t(0x037f) << 32);
  for (int i = 1; i <= 6; ++i) sp[i] = 0;                  // r15 r14 r13 r12 rbx rbp
  sp[4] = reinterpret_cast<uint64_t>(f);                   // r12
  sp[7] = reinterpret_cast<uint64_t>(&cudasim_trampoline);  // return address
  f->sp = sp;
#else
  if (rt().settings.ftz) fail_at(nullptr, "flush-to-zero is modelled on x86-64 only");
  getcontext(&f->uc);
  f->uc.uc_stack.ss_sp = f->stack;
  f->uc.uc_stack.ss_size = f->stack_size;
  f->uc.uc_link = nullptr;
  const uintptr_t p = reinterpret_cast<uintptr_t>(f);
  makecontext(&f->uc, reinterpret_cast<void (*)()>(uc_entry), 2, unsigned(p >> 32), unsigned(p));
#endif
}

// host -> fiber f, until f yields or exits
void resume(Fiber* f) {
  Runtime& r = rt();
  r.cur = f;
  ++r.stats.switches;
  start_switch(&r.host_fake, f->stack, f->stack_size);
#ifdef CUDASIM_X86
  cudasim_swap(&r.host_sp, f->sp);
#else
  swapcontext(&r.host_uc, &f->uc);
#endif
  finish_switch(r.host_fake, nullptr, nullptr);
  r.cur = nullptr;
}

// fiber -> host
void yield() {
  Runtime& r = rt();
  Fiber* f = r.cur;
  start_switch(&f->fake_stack, r.host_stack_bottom, r.host_stack_size);
#ifdef CUDASIM_X86
  cudasim_swap(&f->sp, r.host_sp);
#else
  swapcontext(&f->uc, &r.host_uc);
#endif
  finish_switch(f->fake_stack, &r.host_stack_bottom, &r.host_stack_size);
}

// ---- warp collectives --------------------------------------------------------------------

Fiber* lane_fiber(int warp, int lane) {
  Runtime& r = rt();
  const int i = warp * kWarp + lane;
  return i < r.n_threads ? r.pool[size_t(i)] : nullptr;
}

bool is_shuffle(Op op) {
  return op == Op::kShflIdx || op == Op::kShflUp || op == Op::kShflDown || op == Op::kShflXor;
}

// Source lane of a shuffle with PTX's shfl.sync rules; -1 = keep own value.
int shuffle_source(Op op, int lane, int arg, int width) {
  const int segmask = (kWarp - width) & 0x1f;
  const int clamp = op == Op::kShflUp ? 0 : 0x1f;
  const int max_lane = (lane & segmask) | (clamp & ~segmask);
  const int min_lane = lane & segmask;
  int64_t j = 0;
  bool ok = false;
  switch (op) {
    case Op::kShflUp: j = int64_t(lane) - int64_t(unsigned(arg)); ok = j >= max_lane; break;
    case Op::kShflDown: j = int64_t(lane) + int64_t(unsigned(arg)); ok = j <= max_lane; break;
    case Op::kShflXor: j = int64_t(unsigned(lane) ^ unsigned(arg)); ok = j <= max_lane; break;
    default: j = min_lane | (arg & 0x1f & ~segmask); ok = j <= max_lane; break;
  }
  return ok ? int(j) : -1;
}

void resolve(int warp, unsigned mask, Op op) {
  Runtime& r = rt();
  Fiber* f[kWarp] = {};
  for (int l = 0; l < kWarp; ++l)
    if (mask >> l & 1u) f[l] = lane_fiber(warp, l);
  auto each = [&](auto fn) {
    for (int l = 0; l < kWarp; ++l)
      if (mask >> l & 1u) fn(l, *f[l]->coll);
  };
  switch (op) {
    case Op::kShflIdx: case Op::kShflUp: case Op::kShflDown: case Op::kShflXor: {
      uint64_t in[kWarp];
      each([&](int l, Coll& c) { in[l] = c.in[0]; });
      each([&](int l, Coll& c) {
        const int j = shuffle_source(op, l, c.arg, c.width);
        if (j >= 0 && !(mask >> j & 1u)) {
          r.cur = f[l];
          fail_at(&f[l]->loc, "%s: lane %d reads lane %d, which is not in the mask 0x%08x "
                  "(undefined on a GPU)", op_name(op), l, j, mask);
        }
        c.out[0] = j < 0 ? in[l] : in[j];
      });
      break;
    }
    case Op::kBallot: case Op::kAny: case Op::kAll: {
      unsigned bits = 0;
      each([&](int l, Coll& c) { bits |= unsigned(c.in[0] != 0) << l; });
      const uint64_t v = op == Op::kBallot ? bits : op == Op::kAny ? bits != 0 : bits == mask;
      each([&](int, Coll& c) { c.out[0] = v; });
      break;
    }
    case Op::kMatchAny:
      each([&](int l, Coll& c) {
        unsigned m = 0;
        for (int k = 0; k < kWarp; ++k)
          if ((mask >> k & 1u) && f[k]->coll->in[0] == f[l]->coll->in[0]) m |= 1u << k;
        c.out[0] = m;
      });
      break;
    case Op::kMatchAll: {
      bool all = true;
      const uint64_t v0 = f[__builtin_ctz(mask)]->coll->in[0];
      each([&](int, Coll& c) { all &= c.in[0] == v0; });
      each([&](int, Coll& c) { c.out[0] = all ? mask : 0u, c.out[1] = all; });
      break;
    }
    case Op::kSyncWarp: break;
    case Op::kReduceAddU: case Op::kReduceMinU: case Op::kReduceMaxU: case Op::kReduceMinS:
    case Op::kReduceMaxS: case Op::kReduceAnd: case Op::kReduceOr: case Op::kReduceXor: {
      bool first = true;
      uint32_t acc = 0;
      each([&](int, Coll& c) {
        const uint32_t v = uint32_t(c.in[0]);
        if (first) { acc = v; first = false; return; }
        switch (op) {
          case Op::kReduceAddU: acc += v; break;
          case Op::kReduceMinU: acc = std::min(acc, v); break;
          case Op::kReduceMaxU: acc = std::max(acc, v); break;
          case Op::kReduceMinS: acc = uint32_t(std::min(int32_t(acc), int32_t(v))); break;
          case Op::kReduceMaxS: acc = uint32_t(std::max(int32_t(acc), int32_t(v))); break;
          case Op::kReduceAnd: acc &= v; break;
          case Op::kReduceOr: acc |= v; break;
          default: acc ^= v; break;
        }
      });
      each([&](int, Coll& c) { c.out[0] = acc; });
      break;
    }
    case Op::kMma16832S8: {
      // Gather A [16][32], B [32][8] (k, n) and C [16][8] from the fragments.
      int8_t A[16][32], B[32][8];
      int32_t C[16][8];
      each([&](int l, Coll& c) {
        const int gid = l >> 2, tig = l & 3;
        for (int byte = 0; byte < 4; ++byte) {
          const int k = 4 * tig + byte;
          A[gid][k] = int8_t(c.in[0] >> (8 * byte));
          A[gid + 8][k] = int8_t(c.in[1] >> (8 * byte));
          A[gid][k + 16] = int8_t(c.in[2] >> (8 * byte));
          A[gid + 8][k + 16] = int8_t(c.in[3] >> (8 * byte));
          B[k][gid] = int8_t(c.in[4] >> (8 * byte));
          B[k + 16][gid] = int8_t(c.in[5] >> (8 * byte));
        }
        C[gid][2 * tig] = int32_t(c.in[6]);
        C[gid][2 * tig + 1] = int32_t(c.in[7]);
        C[gid + 8][2 * tig] = int32_t(c.in[8]);
        C[gid + 8][2 * tig + 1] = int32_t(c.in[9]);
      });
      each([&](int l, Coll& c) {
        const int gid = l >> 2, tig = l & 3;
        const int rows[4] = {gid, gid, gid + 8, gid + 8}, cols[4] = {2 * tig, 2 * tig + 1, 2 * tig, 2 * tig + 1};
        for (int i = 0; i < 4; ++i) {
          int32_t d = C[rows[i]][cols[i]];
          for (int k = 0; k < 32; ++k) d += int32_t(A[rows[i]][k]) * int32_t(B[k][cols[i]]);
          c.out[i] = uint32_t(d);
        }
      });
      break;
    }
  }
  for (int l = 0; l < kWarp; ++l)
    if (mask >> l & 1u) f[l]->state = St::kReady;
  ++r.stats.collectives;
}

// After lane `self` arrived at collective (op, mask): resolve it when every lane
// of the mask waits at the same kind with the same mask; report lanes that can
// never arrive.
void try_resolve(Fiber* self) {
  const Coll& c = *self->coll;
  for (int l = 0; l < kWarp; ++l) {
    if (!(c.mask >> l & 1u)) continue;
    Fiber* g = lane_fiber(self->warp, l);
    if (g == nullptr)
      fail_at(&self->loc, "%s: mask 0x%08x names lane %d, which does not exist (the block has %d "
              "threads)", op_name(c.op), c.mask, l, rt().n_threads);
    if (g->state == St::kDone)
      fail_at(&self->loc, "%s: mask 0x%08x names lane %d, which has exited (a deadlock on a GPU)",
              op_name(c.op), c.mask, l);
    if (g->state != St::kColl || g->coll->op != c.op || g->coll->mask != c.mask) return;
  }
  resolve(self->warp, c.mask, c.op);
}

// A fiber exited: a collective of its warp that names it can never complete.
void check_exit(Fiber* self) {
  for (int l = 0; l < kWarp; ++l) {
    Fiber* g = lane_fiber(self->warp, l);
    if (g && g->state == St::kColl && (g->coll->mask >> self->lane & 1u)) {
      rt().cur = g;
      fail_at(&g->loc, "%s: mask 0x%08x names lane %d, which has exited (a deadlock on a GPU)",
              op_name(g->coll->op), g->coll->mask, self->lane);
    }
  }
}

// ---- barriers and the scheduler ------------------------------------------------------

bool release_barrier() {
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

[[noreturn]] void deadlock() {
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

void run_block() {
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
int find_tls(dl_phdr_info* info, size_t, void* data) {
  Runtime& r = *static_cast<Runtime*>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i)
    if (info->dlpi_phdr[i].p_type == PT_TLS) {
      r.tls = info->dlpi_tls_data;
      r.tls_size = info->dlpi_phdr[i].p_memsz;
    }
  return 1;  // the first object is the executable
}

void poison_shared() {
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

}  // namespace

// ---- API -------------------------------------------------------------------------------

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

void warp_collective(Coll& c, const Loc& loc) {
  Runtime& r = rt();
  Fiber* f = r.cur;
  if (f == nullptr) fail_at(&loc, "%s called outside a kernel", op_name(c.op));
  if (!(c.mask >> f->lane & 1u))
    fail_at(&loc, "%s: lane %d is not in its own mask 0x%08x", op_name(c.op), f->lane, c.mask);
  if (is_shuffle(c.op) && (c.width < 1 || c.width > kWarp || (c.width & (c.width - 1)) != 0))
    fail_at(&loc, "%s: width %d is not a power of two in [1, 32]", op_name(c.op), c.width);
  if (c.op == Op::kMma16832S8 && c.mask != kFull)
    fail_at(&loc, "%s: every lane of the warp must execute it together", op_name(c.op));
  f->state = St::kColl;
  f->coll = &c;
  f->loc = loc;
  try_resolve(f);
  yield();
  f->coll = nullptr;
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

void mma_m16n8k32_s8(int (&c)[4], const int (&a)[4], int b0, int b1, const Loc& loc) {
  Coll k{Op::kMma16832S8, kFull, 0, 32, {}, {}};
  for (int i = 0; i < 4; ++i) k.in[i] = uint32_t(a[i]), k.in[6 + i] = uint32_t(c[i]);
  k.in[4] = uint32_t(b0);
  k.in[5] = uint32_t(b1);
  warp_collective(k, loc);
  for (int i = 0; i < 4; ++i) c[i] = int(uint32_t(k.out[i]));
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

extern "C" void cudasim_fiber_main(cudasim::Fiber* f) {
  using namespace cudasim;
  Runtime& r = rt();
  finish_switch(nullptr, &r.host_stack_bottom, &r.host_stack_size);
  r.thread_main(r.closure);
  f->state = St::kDone;
  ++r.n_done;
  check_exit(f);
  start_switch(nullptr, r.host_stack_bottom, r.host_stack_size);
#ifdef CUDASIM_X86
  void* dead = nullptr;
  cudasim_swap(&dead, r.host_sp);
#else
  setcontext(&r.host_uc);
#endif
  __builtin_unreachable();
}

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

// ---- 16-bit floats (integer arithmetic: exact, independent of MXCSR) -------------------

float __half2float(__half h) {
  const uint32_t sign = uint32_t(h.x & 0x8000u) << 16;
  uint32_t exp = (h.x >> 10) & 0x1fu, mant = h.x & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    int e = -1;
    do { mant <<= 1; ++e; } while (!(mant & 0x400u));
    bits = sign | (uint32_t(112 - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  return cudasim::from_bits<float>(bits);
}

namespace {
// Round the magnitude bits `m` right by `shift` to nearest, ties to even.
uint32_t round_shift(uint64_t m, int shift) {
  if (shift <= 0) return uint32_t(m << -shift);
  if (shift >= 64) return 0;
  const uint64_t q = m >> shift, rem = m & ((uint64_t(1) << shift) - 1), half = uint64_t(1) << (shift - 1);
  return uint32_t(q + (rem > half || (rem == half && (q & 1))));
}
}  // namespace

__half __float2half_rn(float f) {
  const uint32_t u = uint32_t(cudasim::to_bits(f));
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t exp = (u >> 23) & 0xffu, mant = u & 0x7fffffu;
  if (exp == 0xff) return __half{uint16_t(mant ? 0x7fffu : (sign | 0x7c00u))};
  if (exp == 0) return __half{sign};  // f32 subnormals are far below half's range
  const int e = int(exp) - 127;       // value = 1.mant * 2^e
  const uint64_t m = (uint64_t(1) << 23) | mant;
  if (e >= 16) return __half{uint16_t(sign | 0x7c00u)};
  if (e >= -14) {  // normal half: 10 mantissa bits; a carry may round up into the exponent
    const uint32_t r = round_shift(m, 13) + (uint32_t(e + 14) << 10);  // (1.m)(2^10) + (e+14)<<10
    return __half{uint16_t(sign | (r >= 0x7c00u ? 0x7c00u : r))};
  }
  // subnormal half: value / 2^-24 = m * 2^(e - 23 + 24)
  return __half{uint16_t(sign | round_shift(m, -(e + 1)))};
}

float __bfloat162float(__nv_bfloat16 h) { return cudasim::from_bits<float>(uint32_t(h.x) << 16); }

__nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u = uint32_t(cudasim::to_bits(f));
  if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{0x7fffu};
  if (cudasim::settings().ftz && (u & 0x7f800000u) == 0) u &= 0x80000000u;
  return __nv_bfloat16{uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}
