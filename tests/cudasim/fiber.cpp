// cudasim fibers: one per CUDA thread, a stack each (a guard page below), and
// the switch between a fiber and the scheduler (hand-written on x86-64, with
// MXCSR saved so a launch can run with flush-to-zero; ucontext elsewhere), with
// AddressSanitizer told about every switch.
#include <sys/mman.h>
#include <unistd.h>

#include "runtime.h"

#ifdef CUDASIM_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

extern "C" void cudasim_fiber_main(cudasim::detail::Fiber* f);

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

namespace cudasim::detail {

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

static void start_switch(void** save_fake, const void* bottom, size_t size) {
#ifdef CUDASIM_ASAN
  __sanitizer_start_switch_fiber(save_fake, bottom, size);
#else
  (void)save_fake, (void)bottom, (void)size;
#endif
}
static void finish_switch(void* fake, const void** old_bottom, size_t* old_size) {
#ifdef CUDASIM_ASAN
  __sanitizer_finish_switch_fiber(fake, old_bottom, old_size);
#else
  (void)fake, (void)old_bottom, (void)old_size;
#endif
}

#ifndef CUDASIM_X86
static void uc_entry(unsigned hi, unsigned lo) {
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

Runtime::~Runtime() {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  for (Fiber* f : pool) {
    munmap(f->stack - page, f->stack_size + page);
    delete f;
  }
}

}  // namespace cudasim::detail

extern "C" void cudasim_fiber_main(cudasim::detail::Fiber* f) {
  using namespace cudasim::detail;
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
