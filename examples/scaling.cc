// scaling: strong and weak scaling sweeps of the main job over rank counts and mesh shapes.
//
// For every rank count N of --ranks and every mesh dp x sp x tp = N over the axes of --axes that
// the shape allows, it launches `mpirun -np N decode --mesh=... --json=...` (one process tree per
// configuration, so each run starts clean), reads the figures back from the JSON, and writes
//   OUT/scaling.csv   one row per run: mode, ranks, mesh, shape, time, bandwidth, speedup,
//                     efficiency, largest error, verified
//   OUT/scaling.gp    the gnuplot script, and OUT/scaling.png (speedup and efficiency vs ranks)
// Strong scaling keeps the global problem fixed: speedup = T(1) / T(N), efficiency = speedup / N.
// Weak scaling grows the problem with the mesh (batch x dp, heads x tp, capacity x sp), so every
// rank's share stays that of the 1-rank run: efficiency = T(1) / T(N), speedup = N x efficiency.
// A progress bar on stderr shows the run in flight. Any failed run (or failed verification) is
// reported with its log and makes the exit status non-zero.
//
//   build/examples/scaling --ranks=1,2,4 --axes=dp,tp,sp --mode=both --out=/tmp/scaling
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "runtime/status.h"

extern char** environ;

ABSL_FLAG(std::string, ranks, "1,2,4", "Rank counts to sweep.");
ABSL_FLAG(std::string, axes, "dp,tp,sp", "Mesh axes to combine (any of dp, tp, sp).");
ABSL_FLAG(std::string, mode, "both", "strong, weak or both.");
ABSL_FLAG(int64_t, batch, 8, "Batch of the 1-rank problem.");
ABSL_FLAG(int64_t, capacity, 1024, "KV capacity S of the 1-rank problem.");
ABSL_FLAG(int64_t, q_heads, 16, "Query heads of the 1-rank problem.");
ABSL_FLAG(int64_t, kv_heads, 4, "KV heads of the 1-rank problem.");
ABSL_FLAG(int64_t, head_dim, 128, "Head dimension.");
ABSL_FLAG(std::string, dtype, "bf16", "f32, f16 or bf16.");
ABSL_FLAG(std::string, lengths, "full", "full, uniform or offset (decode's --lengths).");
ABSL_FLAG(std::string, platform, "cpu", "decode's --platform.");
ABSL_FLAG(std::string, out_spec, "sharded", "decode's --out_spec: sharded or gathered.");
ABSL_FLAG(int32_t, iterations, 5, "Timed steps per run.");
ABSL_FLAG(int32_t, threads, 0, "decode's --threads (0: the host's cores shared by its ranks).");
ABSL_FLAG(std::string, out, "scaling-out", "Output directory (CSV, gnuplot script, PNG).");
ABSL_FLAG(std::string, decode, "", "The decode binary (default: next to this one).");
ABSL_FLAG(std::string, mpirun, "mpirun", "The MPI launcher.");
ABSL_FLAG(std::string, mpirun_args, "--oversubscribe --allow-run-as-root --mca btl self,vader,tcp",
          "Extra launcher arguments, split on spaces.");
ABSL_FLAG(bool, plot, true, "Run gnuplot to draw OUT/scaling.png.");
ABSL_FLAG(int32_t, timeout_s, 600, "Wall-clock limit of one run, in seconds.");

namespace ragged::examples {
namespace {

struct Shape {
  int64_t batch, capacity, q_heads, kv_heads, head_dim;
};

struct Run {
  std::string mode;  // "strong" or "weak"
  int ranks = 1, dp = 1, tp = 1, sp = 1;
  Shape shape{};
  std::string mesh() const { return absl::StrFormat("dp=%d,sp=%d,tp=%d", dp, sp, tp); }
  // Results.
  bool ok = false;
  double time_ms = 0, bandwidth_gbps = 0, max_error = 0, speedup = 0, efficiency = 0;
  double kernel_ms = 0, merge_ms = 0, gather_ms = 0;
  bool passed = false;
  std::string error;
};

// True when the sharding rules (SPEC.md section 3) allow this mesh for this shape.
bool Allowed(const Shape& s, int dp, int tp, int sp) {
  if (s.batch % dp != 0 || s.capacity % sp != 0 || s.q_heads % tp != 0) return false;
  return s.kv_heads % tp == 0 || (tp > s.kv_heads && tp % s.kv_heads == 0);
}

std::vector<Run> Plan(const std::vector<int>& ranks, const std::vector<std::string>& axes,
                      const std::vector<std::string>& modes, const Shape& base, int* skipped) {
  auto has = [&](const char* a) { return std::find(axes.begin(), axes.end(), a) != axes.end(); };
  std::vector<Run> runs;
  for (const std::string& mode : modes) {
    for (int n : ranks) {
      for (int dp = 1; dp <= n; ++dp) {
        for (int sp = 1; sp <= n / dp; ++sp) {
          if (n % dp != 0 || (n / dp) % sp != 0) continue;
          const int tp = n / dp / sp;
          if ((dp > 1 && !has("dp")) || (sp > 1 && !has("sp")) || (tp > 1 && !has("tp"))) continue;
          Run r;
          r.mode = mode;
          r.ranks = n;
          r.dp = dp;
          r.tp = tp;
          r.sp = sp;
          r.shape = base;
          if (mode == "weak") {
            r.shape.batch *= dp;
            r.shape.q_heads *= tp;
            r.shape.kv_heads *= tp;
            r.shape.capacity *= sp;
          }
          if (!Allowed(r.shape, dp, tp, sp)) {
            ++*skipped;
            continue;
          }
          runs.push_back(r);
        }
      }
    }
  }
  return runs;
}

// Runs argv with stdout and stderr into `log`; returns the exit status (124 on timeout).
absl::StatusOr<int> Spawn(const std::vector<std::string>& argv, const std::string& log,
                          int timeout_s) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Its own process group, so that a timeout can stop mpirun and every rank it started.
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  pid_t pid;
  const int err = posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) {
    return absl::UnavailableError(absl::StrCat("cannot start ", argv[0], ": ", strerror(err)));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  int status = 0;
  while (true) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0) return absl::InternalError(absl::StrCat("waitpid: ", strerror(errno)));
    if (std::chrono::steady_clock::now() > deadline) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      return 124;
    }
    usleep(20000);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string Tail(const std::string& path, int lines) {
  std::ifstream f(path);
  std::vector<std::string> all;
  std::string line;
  while (std::getline(f, line)) all.push_back(line);
  const size_t from = all.size() > static_cast<size_t>(lines) ? all.size() - lines : 0;
  std::string out;
  for (size_t i = from; i < all.size(); ++i) absl::StrAppend(&out, "    ", all[i], "\n");
  return out;
}

class ProgressBar {
 public:
  explicit ProgressBar(int total) : total_(total), tty_(isatty(2)) {}
  void Show(int done, const std::string& what) {
    constexpr int kWidth = 30;
    const int filled = total_ ? done * kWidth / total_ : kWidth;
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::string bar =
        absl::StrCat("[", std::string(filled, '#'), std::string(kWidth - filled, '.'), "] ", done,
                     "/", total_, absl::StrFormat(" %5.1fs  ", elapsed), what);
    if (tty_) {
      std::fprintf(stderr, "\r%-110s", bar.c_str());
      if (done == total_) std::fprintf(stderr, "\n");
    } else {
      std::fprintf(stderr, "%s\n", bar.c_str());
    }
    std::fflush(stderr);
  }

 private:
  int total_;
  bool tty_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

absl::Status WritePlotScript(const std::string& dir, const std::string& title) {
  std::ofstream gp(dir + "/scaling.gp");
  gp << "# gnuplot script written by examples/scaling; run: gnuplot scaling.gp\n"
     << "set terminal pngcairo size 1280,520 font 'sans,10'\n"
     << "set output 'scaling.png'\n"
     << "set datafile separator ','\n"
     << "set key top left\n"
     << "set grid\n"
     << "set xtics 1\n"
     << "set xrange [0.8:*]\n"
     << "set xlabel 'ranks'\n"
     << "set multiplot layout 1,2 title '" << title << "'\n"
     << "col(m, c) = (strcol(1) eq m ? column(c) : 1/0)\n"
     << "set ylabel 'speedup (weak: scaled speedup)'\n"
     << "plot x with lines dashtype 2 lc 'gray' title 'ideal', \\\n"
     << "  'scaling.csv' skip 1 using 2:(col('strong', 16)) with points pt 7 lc 1 "
        "title 'strong, every mesh', \\\n"
     << "  'best.csv' skip 1 using 2:(col('strong', 3)) with linespoints lc 1 lw 2 "
        "title 'strong, best mesh', \\\n"
     << "  'scaling.csv' skip 1 using 2:(col('weak', 16)) with points pt 5 lc 2 "
        "title 'weak, every mesh', \\\n"
     << "  'best.csv' skip 1 using 2:(col('weak', 3)) with linespoints lc 2 lw 2 "
        "title 'weak, best mesh'\n"
     << "set ylabel 'parallel efficiency'\n"
     << "set yrange [0:*]\n"
     << "set offsets 0, 0, 0.1, 0\n"
     << "set key top right\n"
     << "plot 1 with lines dashtype 2 lc 'gray' title 'ideal', \\\n"
     << "  'scaling.csv' skip 1 using 2:(col('strong', 17)) with points pt 7 lc 1 "
        "title 'strong, every mesh', \\\n"
     << "  'best.csv' skip 1 using 2:(col('strong', 4)) with linespoints lc 1 lw 2 "
        "title 'strong, best mesh', \\\n"
     << "  'scaling.csv' skip 1 using 2:(col('weak', 17)) with points pt 5 lc 2 "
        "title 'weak, every mesh', \\\n"
     << "  'best.csv' skip 1 using 2:(col('weak', 4)) with linespoints lc 2 lw 2 "
        "title 'weak, best mesh'\n"
     << "unset multiplot\n";
  if (!gp) return absl::UnavailableError(absl::StrCat(dir, "/scaling.gp: cannot write"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int>> ParseInts(const std::string& text, const char* flag) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": expected positive integers like 1,2,4, got \"", text, "\""));
    }
    out.push_back(v);
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, " is empty"));
  return out;
}

absl::Status Main(const std::string& self) {
  RAGGED_ASSIGN_OR_RETURN(std::vector<int> ranks, ParseInts(absl::GetFlag(FLAGS_ranks), "ranks"));
  if (std::find(ranks.begin(), ranks.end(), 1) == ranks.end()) ranks.insert(ranks.begin(), 1);
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  std::vector<std::string> axes = absl::StrSplit(absl::GetFlag(FLAGS_axes), ',', absl::SkipEmpty());
  for (const std::string& a : axes) {
    if (a != "dp" && a != "tp" && a != "sp") {
      return absl::InvalidArgumentError(
          absl::StrCat("--axes: unknown axis \"", a, "\" (expected dp, tp, sp)"));
    }
  }
  const std::string mode = absl::GetFlag(FLAGS_mode);
  std::vector<std::string> modes;
  if (mode == "strong" || mode == "both") modes.push_back("strong");
  if (mode == "weak" || mode == "both") modes.push_back("weak");
  if (modes.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--mode: expected strong, weak or both, got \"", mode, "\""));
  }
  const Shape base{absl::GetFlag(FLAGS_batch), absl::GetFlag(FLAGS_capacity),
                   absl::GetFlag(FLAGS_q_heads), absl::GetFlag(FLAGS_kv_heads),
                   absl::GetFlag(FLAGS_head_dim)};
  if (base.batch < 1 || base.capacity < 1 || base.q_heads < 1 || base.kv_heads < 1 ||
      base.head_dim < 1 || base.q_heads % base.kv_heads != 0) {
    return absl::InvalidArgumentError(
        "the base shape needs sizes >= 1 and q_heads % kv_heads == 0");
  }
  std::string decode = absl::GetFlag(FLAGS_decode);
  if (decode.empty()) {
    decode = (std::filesystem::path(self).parent_path() / "decode").string();
  }
  if (access(decode.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("--decode: ", decode, " is not an executable"));
  }
  const std::string out = absl::GetFlag(FLAGS_out);
  std::error_code ec;
  std::filesystem::create_directories(out + "/runs", ec);
  if (ec) return absl::UnavailableError(absl::StrCat(out, ": cannot create: ", ec.message()));

  int skipped = 0;
  std::vector<Run> runs = Plan(ranks, axes, modes, base, &skipped);
  ProgressBar bar(static_cast<int>(runs.size()));
  int failures = 0;
  for (size_t i = 0; i < runs.size(); ++i) {
    Run& r = runs[i];
    const std::string name =
        absl::StrFormat("%s_n%d_dp%d_sp%d_tp%d", r.mode, r.ranks, r.dp, r.sp, r.tp);
    bar.Show(static_cast<int>(i), absl::StrCat(r.mode, " ", r.mesh()));
    std::vector<std::string> argv = {absl::GetFlag(FLAGS_mpirun), "-np", absl::StrCat(r.ranks)};
    for (absl::string_view a :
         absl::StrSplit(absl::GetFlag(FLAGS_mpirun_args), ' ', absl::SkipEmpty())) {
      argv.emplace_back(a);
    }
    const std::string json = absl::StrCat(out, "/runs/", name, ".json");
    const std::string log = absl::StrCat(out, "/runs/", name, ".log");
    std::filesystem::remove(json, ec);
    for (std::string a : std::vector<std::string>{
             decode, absl::StrCat("--mesh=", r.mesh()), absl::StrCat("--batch=", r.shape.batch),
             absl::StrCat("--capacity=", r.shape.capacity),
             absl::StrCat("--q_heads=", r.shape.q_heads),
             absl::StrCat("--kv_heads=", r.shape.kv_heads),
             absl::StrCat("--head_dim=", r.shape.head_dim),
             absl::StrCat("--dtype=", absl::GetFlag(FLAGS_dtype)),
             absl::StrCat("--lengths=", absl::GetFlag(FLAGS_lengths)),
             absl::StrCat("--platform=", absl::GetFlag(FLAGS_platform)),
             absl::StrCat("--out_spec=", absl::GetFlag(FLAGS_out_spec)),
             absl::StrCat("--iterations=", absl::GetFlag(FLAGS_iterations)),
             absl::StrCat("--threads=", absl::GetFlag(FLAGS_threads)), "--verify=sampled",
             absl::StrCat("--json=", json)}) {
      argv.push_back(a);
    }
    RAGGED_ASSIGN_OR_RETURN(int rc, Spawn(argv, log, absl::GetFlag(FLAGS_timeout_s)));
    std::ifstream jf(json);
    nlohmann::json j;
    if (jf) j = nlohmann::json::parse(jf, nullptr, /*allow_exceptions=*/false);
    if (rc != 0 || j.is_discarded() || !j.contains("time_ms")) {
      r.error = rc == 124 ? "timed out" : absl::StrCat("exit status ", rc);
      std::fprintf(stderr, "\nscaling: %s %s failed (%s); the end of %s:\n%s", r.mode.c_str(),
                   r.mesh().c_str(), r.error.c_str(), log.c_str(), Tail(log, 8).c_str());
      ++failures;
      continue;
    }
    r.ok = true;
    r.time_ms = j["time_ms"]["median"].get<double>();
    r.bandwidth_gbps = j["effective_bandwidth_gbps"].get<double>();
    if (j.contains("phase_ms")) {
      r.kernel_ms = j["phase_ms"]["kernel"].get<double>();
      r.merge_ms = j["phase_ms"]["merge"].get<double>();
      r.gather_ms = j["phase_ms"]["gather"].get<double>();
    }
    if (j.contains("verify")) {
      r.max_error = j["verify"]["max_error"].get<double>();
      r.passed = j["verify"]["passed"].get<bool>();
    }
    if (!r.passed) ++failures;
  }
  bar.Show(static_cast<int>(runs.size()), "done");

  // Speedup and efficiency against the 1-rank run of the same mode.
  for (Run& r : runs) {
    const Run* one = nullptr;
    for (const Run& b : runs) {
      if (b.mode == r.mode && b.ranks == 1 && b.ok) one = &b;
    }
    if (!r.ok || one == nullptr) continue;
    if (r.mode == "strong") {
      r.speedup = one->time_ms / r.time_ms;
      r.efficiency = r.speedup / r.ranks;
    } else {
      r.efficiency = one->time_ms / r.time_ms;
      r.speedup = r.efficiency * r.ranks;
    }
  }
  std::ofstream csv(out + "/scaling.csv");
  csv << "mode,ranks,mesh,dp,sp,tp,batch,capacity,q_heads,kv_heads,head_dim,time_ms,kernel_ms,"
         "merge_ms,gather_ms,speedup,efficiency,bandwidth_gbps,max_error,verified\n";
  for (const Run& r : runs) {
    if (!r.ok) continue;
    csv << absl::StrFormat(
        "%s,%d,%s,%d,%d,%d,%d,%d,%d,%d,%d,%.5f,%.5f,%.5f,%.5f,%.4f,%.4f,"
        "%.4f,%.3e,%s\n",
        r.mode, r.ranks, absl::StrReplaceAll(r.mesh(), {{",", " "}}), r.dp, r.sp, r.tp,
        r.shape.batch, r.shape.capacity, r.shape.q_heads, r.shape.kv_heads, r.shape.head_dim,
        r.time_ms, r.kernel_ms, r.merge_ms, r.gather_ms, r.speedup, r.efficiency, r.bandwidth_gbps,
        r.max_error, r.passed ? "pass" : "FAIL");
  }
  csv.close();
  // The best mesh of each rank count, for the lines of the plot.
  std::ofstream best(out + "/best.csv");
  best << "mode,ranks,speedup,efficiency,mesh\n";
  for (const std::string& m : modes) {
    for (int n : ranks) {
      const Run* top = nullptr;
      for (const Run& r : runs) {
        if (r.ok && r.mode == m && r.ranks == n && (top == nullptr || r.time_ms < top->time_ms)) {
          top = &r;
        }
      }
      if (top != nullptr) {
        best << absl::StrFormat("%s,%d,%.4f,%.4f,%s\n", m, n, top->speedup, top->efficiency,
                                absl::StrReplaceAll(top->mesh(), {{",", " "}}));
      }
    }
  }
  best.close();

  // A summary on stdout.
  std::printf("%-7s %5s  %-18s %10s %9s %9s %8s %9s  %s\n", "mode", "ranks", "mesh", "time ms",
              "gather ms", "merge ms", "speedup", "effic.", "check");
  for (const Run& r : runs) {
    if (!r.ok) {
      std::printf("%-7s %5d  %-18s %s\n", r.mode.c_str(), r.ranks, r.mesh().c_str(),
                  r.error.c_str());
      continue;
    }
    std::printf("%-7s %5d  %-18s %10.3f %9.3f %9.3f %8.2f %8.0f%%  %s (%.1e)\n", r.mode.c_str(),
                r.ranks, r.mesh().c_str(), r.time_ms, r.gather_ms, r.merge_ms, r.speedup,
                100 * r.efficiency, r.passed ? "pass" : "FAIL", r.max_error);
  }
  std::printf("%zu runs (%d meshes skipped: the shape does not divide), CSV: %s/scaling.csv\n",
              runs.size(), skipped, out.c_str());

  const std::string title =
      absl::StrFormat("ragged decode on %s, %s, B=%d S=%d HQ=%d HKV=%d D=%d (1-rank shape)",
                      absl::GetFlag(FLAGS_platform), absl::GetFlag(FLAGS_dtype), base.batch,
                      base.capacity, base.q_heads, base.kv_heads, base.head_dim);
  RAGGED_RETURN_IF_ERROR(WritePlotScript(out, title));
  if (absl::GetFlag(FLAGS_plot)) {
    RAGGED_ASSIGN_OR_RETURN(
        int rc, Spawn({"sh", "-c", absl::StrCat("cd '", out, "' && gnuplot scaling.gp")},
                      out + "/gnuplot.log", 120));
    if (rc != 0) {
      return absl::UnavailableError(
          absl::StrCat("gnuplot failed (exit ", rc, "): ", Tail(out + "/gnuplot.log", 5)));
    }
    std::printf("plot: %s/scaling.png\n", out.c_str());
  }
  if (failures > 0) {
    return absl::InternalError(
        absl::StrCat(failures, " of ", runs.size(), " runs failed or did not verify (see above)"));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace ragged::examples

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "strong and weak scaling sweeps of examples/decode over rank counts and meshes.\n"
      "  scaling --ranks=1,2,4 --axes=dp,tp,sp --mode=both --out=/tmp/scaling");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "scaling: error: unexpected argument \"%s\"\n", rest[1]);
    return 2;
  }
  const absl::Status s = ragged::examples::Main(argv[0]);
  if (!s.ok()) {
    std::fprintf(stderr, "scaling: error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
