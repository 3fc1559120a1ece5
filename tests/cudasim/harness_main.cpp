// Main program of the CUDA emulator's harness.
//
//   cudasim_harness [--only SUBSTR] [--size quick|full] [--ftz off|both]
//                   [--schedules lockstep,reverse,warp-ahead,warp-ahead:W,random:SEED,...]
//   cudasim_harness --error NAME   (a selftest kernel that breaks a rule)
//
// Prints "FAIL <case> [<schedule>]: <what>" per failure and, per family,
// "SUMMARY <family>: <cases> cases, <runs> runs, <failures> failures", then
// the emulator's counters. Exit status 0 when nothing failed, 1 otherwise;
// an error the emulator reports (deadlock, divergent barrier, ...) ends the
// process with status 86 and its message.
#include <chrono>
#include <cstdarg>
#include <cstdlib>
#include <map>

#include "harness.h"

namespace harness {
namespace {
Options g_options;
}

const Options& options() { return g_options; }

std::string fmt(const char* f, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

int each_schedule(const std::string& case_name, Ftz ftz, const std::function<std::string()>& body) {
  const Options& o = options();
  int failures = 0;
  for (int mode = 0; mode < 2; ++mode) {
    const bool on = mode == 1;
    if (on ? !(o.ftz_on && ftz == Ftz::kBoth) : !o.ftz_off) continue;
    for (size_t i = 0; i < o.schedules.size(); ++i) {
      cudasim::Settings s = o.schedules[i];
      s.ftz = on;
      cudasim::settings() = s;
      const std::string err = body();
      cudasim::settings() = cudasim::Settings{};
      if (!err.empty()) {
        ++failures;
        std::printf("FAIL %s [%s%s]: %s\n", case_name.c_str(), o.schedule_names[i].c_str(),
                    on ? ", ftz" : "", err.c_str());
        std::fflush(stdout);
      }
    }
  }
  return failures;
}

}  // namespace harness

namespace {

void usage() {
  std::fprintf(stderr, "usage: cudasim_harness [--only SUBSTR] [--size quick|full] [--ftz off|both] "
                       "[--schedules lockstep,reverse,warp-ahead[:W],random:SEED,...] | --error NAME\n");
  std::exit(2);
}

void parse_schedules(const std::string& list, harness::Options& o) {
  size_t pos = 0;
  while (pos <= list.size()) {
    const size_t comma = list.find(',', pos);
    const std::string item = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    cudasim::Settings s;
    if (item == "lockstep") {
      s.schedule = cudasim::Schedule::kLockstep;
    } else if (item == "reverse") {
      s.schedule = cudasim::Schedule::kReverse;
    } else if (item.rfind("warp-ahead", 0) == 0) {
      s.schedule = cudasim::Schedule::kWarpAhead;
      if (item.size() > 10) {
        if (item[10] != ':') usage();
        s.ahead_warp = std::atoi(item.c_str() + 11);
      }
    } else if (item.rfind("random:", 0) == 0) {
      s.schedule = cudasim::Schedule::kRandom;
      s.seed = std::strtoull(item.c_str() + 7, nullptr, 10);
    } else {
      usage();
    }
    o.schedules.push_back(s);
    o.schedule_names.push_back(item);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  harness::Options& o = const_cast<harness::Options&>(harness::options());
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage();
    const std::string v = argv[++i];
    if (a == "--error") {
      return harness::run_error_case(v);
    } else if (a == "--only") {
      only = v;
    } else if (a == "--size") {
      if (v != "quick" && v != "full") usage();
      o.size = v == "full" ? harness::Size::kFull : harness::Size::kQuick;
    } else if (a == "--ftz") {
      if (v != "off" && v != "both") usage();
      o.ftz_on = v == "both";
    } else if (a == "--schedules") {
      parse_schedules(v, o);
    } else {
      usage();
    }
  }
  if (o.schedules.empty()) parse_schedules("lockstep", o);

  std::vector<std::pair<const char*, harness::Cases>> families(8);
  families[0].first = "selftest";
  harness::add_selftest_cases(families[0].second);
  families[1].first = "topk_indices";
  harness::add_topk_indices_cases(families[1].second);
  families[2].first = "attention_mass";
  harness::add_attention_mass_cases(families[2].second);
  families[3].first = "w4a8";
  harness::add_w4a8_cases(families[3].second);
  families[4].first = "frame_similarity";
  harness::add_frame_similarity_cases(families[4].second);
  families[5].first = "pixel_dedup";
  harness::add_pixel_dedup_cases(families[5].second);
  families[6].first = "dpc_knn";
  harness::add_dpc_knn_cases(families[6].second);
  families[7].first = "temporal_select";
  harness::add_temporal_select_cases(families[7].second);

  int total_failures = 0;
  for (auto& [family, cases] : families) {
    int n = 0, failures = 0;
    const uint64_t runs0 = cudasim::stats().launches;
    const auto t0 = std::chrono::steady_clock::now();
    for (const harness::Case& c : cases) {
      const std::string full = std::string(family) + "/" + c.name;
      if (!only.empty() && full.find(only) == std::string::npos) continue;
      if (c.min_size == harness::Size::kFull && o.size != harness::Size::kFull) continue;
      ++n;
      failures += c.run();
    }
    if (n == 0) continue;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("SUMMARY %s: %d cases, %llu launches, %d failures, %.1f s\n", family, n,
                (unsigned long long)(cudasim::stats().launches - runs0), failures, s);
    if (std::string(family) == "attention_mass")
      std::printf("MAXERR attention_mass: %.3g relative\n", harness::attention_mass_max_rel_error());
    if (std::string(family) == "frame_similarity")
      std::printf("MAXERR frame_similarity: %.3g absolute\n", harness::frame_similarity_max_abs_error());
    if (std::string(family) == "temporal_select")
      std::printf("MAXERR temporal_select: %.3g absolute\n", harness::temporal_select_max_abs_error());
    if (std::string(family) == "dpc_knn") std::printf("NOTES dpc_knn: %s\n", harness::dpc_knn_notes().c_str());
    std::fflush(stdout);
    total_failures += failures;
  }
  const cudasim::Stats& st = cudasim::stats();
  std::printf("EMULATED %llu launches, %llu blocks, %llu threads, %llu warp collectives, %llu barriers, "
              "%llu fiber switches\n",
              (unsigned long long)st.launches, (unsigned long long)st.blocks,
              (unsigned long long)st.threads, (unsigned long long)st.collectives,
              (unsigned long long)st.barriers, (unsigned long long)st.switches);
  return total_failures == 0 ? 0 : 1;
}
