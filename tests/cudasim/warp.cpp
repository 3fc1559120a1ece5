// cudasim warp collectives: each lane's part waits until every lane named in
// the mask arrives at the same kind of collective with the same mask, then all
// resolve at once with PTX's semantics (shuffles with width and segments,
// ballot, any/all, match, reduce, syncwarp, mma.sync m16n8k32 on the fragment
// layout); lanes that can never arrive are reported.
#include <algorithm>

#include "runtime.h"

namespace cudasim::detail {

Fiber* lane_fiber(int warp, int lane) {
  Runtime& r = rt();
  const int i = warp * kWarp + lane;
  return i < r.n_threads ? r.pool[size_t(i)] : nullptr;
}

static bool is_shuffle(Op op) {
  return op == Op::kShflIdx || op == Op::kShflUp || op == Op::kShflDown || op == Op::kShflXor;
}

// Source lane of a shuffle with PTX's shfl.sync rules; -1 = keep own value.
static int shuffle_source(Op op, int lane, int arg, int width) {
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

static void resolve(int warp, unsigned mask, Op op) {
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
static void try_resolve(Fiber* self) {
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

}  // namespace cudasim::detail

namespace cudasim {

using namespace detail;

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

void mma_m16n8k32_s8(int (&c)[4], const int (&a)[4], int b0, int b1, const Loc& loc) {
  Coll k{Op::kMma16832S8, kFull, 0, 32, {}, {}};
  for (int i = 0; i < 4; ++i) k.in[i] = uint32_t(a[i]), k.in[6 + i] = uint32_t(c[i]);
  k.in[4] = uint32_t(b0);
  k.in[5] = uint32_t(b1);
  warp_collective(k, loc);
  for (int i = 0; i < 4; ++i) c[i] = int(uint32_t(k.out[i]));
}

}  // namespace cudasim
