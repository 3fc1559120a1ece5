// Test harness of the CUDA emulator: each kernel family adds its cases; the
// main program (harness_main.cpp) runs the selected ones under each chosen
// schedule and flush-to-zero mode, and prints one line per failure and a
// summary per family, which tests/test_cudasim.py reads.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "cudasim.h"

namespace harness {

enum class Size { kQuick, kFull };

struct Options {
  Size size = Size::kQuick;
  std::vector<cudasim::Settings> schedules;
  std::vector<std::string> schedule_names;
  bool ftz_off = true, ftz_on = false;
};
const Options& options();

// Flush-to-zero modes a case's result must hold under.
enum class Ftz {
  kOff,   // exact / within tolerance without FTZ only (the kernel needs IEEE denormals)
  kBoth,  // the same result with and without FTZ
};

// Runs `body` once per selected schedule (and FTZ mode, for Ftz::kBoth);
// `body` returns "" or what went wrong. Returns the number of failures.
int each_schedule(const std::string& case_name, Ftz ftz, const std::function<std::string()>& body);

struct Case {
  std::string name;
  std::function<int()> run;  // number of failures
  Size min_size = Size::kQuick;  // kFull: only with --size full
};
using Cases = std::vector<Case>;

// Each kernel family's cases (one file each).
void add_selftest_cases(Cases& out);
void add_topk_indices_cases(Cases& out);
void add_attention_mass_cases(Cases& out);
void add_w4a8_cases(Cases& out);
void add_frame_similarity_cases(Cases& out);
void add_pixel_dedup_cases(Cases& out);
void add_dpc_knn_cases(Cases& out);
void add_temporal_select_cases(Cases& out);
// Largest |cuda - cpu| of attention_mass relative to |cpu| so far.
double attention_mass_max_rel_error();
// Largest |cuda - cpu| of frame_similarity (a cosine) so far.
double frame_similarity_max_abs_error();
// Largest |cuda - cpu| of temporal_select's scores (a negated cosine) so far.
double temporal_select_max_abs_error();
// How many of dpc_knn's definition checks ran (exact, separated from ties) or
// were skipped near a tie.
std::string dpc_knn_notes();
// A selftest kernel that breaks a rule on purpose; returns only if the
// emulator failed to report it.
int run_error_case(const std::string& name);

// ---- inputs -------------------------------------------------------------------------

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull) {}
  uint64_t next() {  // splitmix64
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  float normal() {
    const double u1 = uniform() + 0x1.0p-60, u2 = uniform();
    return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  int64_t below(int64_t n) { return int64_t(next() % uint64_t(n)); }
};

// A float as the bits of a 16-bit type (round to nearest even), and back.
inline uint16_t to_bf16(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }
inline uint16_t to_fp16(float f) { return __half_as_ushort(__float2half_rn(f)); }
inline float from_bf16(uint16_t h) { return __bfloat162float(__ushort_as_bfloat16(h)); }
inline float from_fp16(uint16_t h) { return __half2float(__ushort_as_half(h)); }

inline uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));

}  // namespace harness

