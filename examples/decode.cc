// decode: the main job. Runs ragged decode attention steps on generated or loaded inputs, times
// them, checks the output against the double-precision reference and prints one table.
//
//   build/examples/decode --batch=8 --capacity=4096 --lengths=uniform --dtype=bf16
//   build/examples/decode --load=/tmp/step --save=/tmp/out --verify=all --json=/tmp/out/run.json
//   mpirun -np 4 build/examples/decode --mesh=dp=2,tp=2 --out_spec=gathered
//
// Without a launcher (and without --mesh) it is one process that calls RaggedDecodeAttention on
// the CPU or on GPU 0. Under mpirun it is an SPMD job over a Mesh: rank 0 makes or loads the
// global inputs and scatters every rank's shard (over MPI, host memory), each rank runs
// ShardedAttention on its shard (CPU with MPI, or its GPU with an NCCL world), rank 0 gathers
// the output, checks it and reports; its status reaches every rank. Every error is one line on
// stderr ("decode: error: ..." or "decode (rank N): error: ...") and a non-zero exit status, on
// every rank.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "examples/example_util.h"
#include "examples/npy.h"
#include "kernels/ragged_decode_attention.h"
#include "nlohmann/json.hpp"
#include "runtime/buffer.h"
#include "runtime/status.h"
#include "runtime/stream.h"

#if RAGGED_WITH_CUDA
#include <cuda_runtime_api.h>
#endif
#if RAGGED_WITH_MPI
#include "runtime/bootstrap.h"
#include "runtime/mpi_communicator.h"
#include "sharding/mesh.h"
#include "sharding/scatter.h"
#include "sharding/shard_plan.h"
#include "sharding/sharded_attention.h"
#endif

ABSL_FLAG(int64_t, batch, 8, "Batch size B (sequences, one query token each).");
ABSL_FLAG(int64_t, capacity, 1024, "KV cache capacity S (padded length of every sequence).");
ABSL_FLAG(int64_t, q_heads, 32, "Query heads HQ.");
ABSL_FLAG(int64_t, kv_heads, 8, "KV heads HKV (HQ % HKV == 0; 1 is MQA).");
ABSL_FLAG(int64_t, head_dim, 128, "Head dimension D.");
ABSL_FLAG(std::string, dtype, "bf16", "Element type of query, key, value: f32, f16 or bf16.");
ABSL_FLAG(std::string, platform, "auto", "cpu, cuda, or auto (cuda when a GPU is visible).");
ABSL_FLAG(std::string, window, "none", "Sliding window \"LEFT,RIGHT\" (e.g. 1024,0), or none.");
ABSL_FLAG(double, soft_cap, 0.0, "Logit soft cap c > 0 (0: none).");
ABSL_FLAG(double, scale, 0.0, "Softmax scale (0: 1/sqrt(D)).");
ABSL_FLAG(std::string, sinks, "none",
          "Attention sinks: none, shared ([NS]), kv_head ([HKV, NS]) or q_head ([HQ, NS]).");
ABSL_FLAG(int64_t, num_sinks, 1, "Sinks per row of the sinks table (NS).");
ABSL_FLAG(std::string, lengths, "full",
          "Valid ranges: full ([0, S)), uniform (end in [1, S]), offset (random start), or "
          "file:PATH (one row per line: \"end\" or \"start end\").");
ABSL_FLAG(int32_t, iterations, 10, "Timed steps.");
ABSL_FLAG(int32_t, warmup, 2, "Untimed steps before timing.");
ABSL_FLAG(std::string, verify, "sampled",
          "Check against the double-precision reference: sampled (--verify_rows rows), all, or "
          "none.");
ABSL_FLAG(int64_t, verify_rows, 4, "Rows checked by --verify=sampled (first, last, longest, ...).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the generated inputs and lengths.");
ABSL_FLAG(bool, lse, false, "Also compute (verify, save) the log-sum-exp output lse [B, HQ].");
ABSL_FLAG(int32_t, threads, 0, "CPU threads (0: OpenMP's default).");
ABSL_FLAG(std::string, load, "",
          "Load the inputs from DIR: query.npy key.npy value.npy sequence_start.npy "
          "sequence_end.npy [softmax_aux.npy], as np.save writes them.");
ABSL_FLAG(std::string, save, "", "Write DIR/output.npy (and lse.npy with --lse).");
ABSL_FLAG(std::string, save_inputs, "",
          "Write the step's inputs to DIR in --load's layout (to replay it later).");
ABSL_FLAG(bool, testonly_corrupt_output, false,
          "Testing only: add 0.5 to one output element before the checks, to show they fail.");
ABSL_FLAG(std::string, expect, "",
          "Compare the output with this .npy (e.g. the engine's own output for a --load step).");
ABSL_FLAG(std::string, expect_lse, "", "Compare lse with this .npy (needs --lse).");
ABSL_FLAG(std::string, mesh, "",
          "Mesh of the MPI ranks, e.g. dp=2,tp=2 (axes dp: batch, tp: heads, sp: KV sequence; "
          "the product must equal the number of ranks). Default: dp=<ranks> under mpirun.");
ABSL_FLAG(std::string, out_spec, "sharded",
          "Output layout with a mesh: sharded (like the query: (dp, tp)) or gathered "
          "(replicated on every rank, all-gathered by the library).");
ABSL_FLAG(std::string, json, "", "Write the figures of the run to this JSON file.");

namespace ragged::examples {
namespace {

enum class VerifyMode { kSampled, kAll, kNone };

struct Config {
  InputSpec spec;
  std::optional<SlidingWindow> window;
  std::optional<float> soft_cap;
  std::optional<float> scale;
  Platform platform = Platform::kAuto;
  int iterations = 10;
  int warmup = 2;
  VerifyMode verify = VerifyMode::kSampled;
  int64_t verify_rows = 4;
  bool lse = false;
  int threads = 0;
  std::string load, save, save_inputs, json, expect, expect_lse;
  bool corrupt = false;
  std::string mesh;
  bool gather_output = false;
};

// True when --name was given a value other than its default.
bool FlagChanged(const char* name) {
  const absl::CommandLineFlag* f = absl::FindCommandLineFlag(name);
  return f != nullptr && f->CurrentValue() != f->DefaultValue();
}

absl::StatusOr<Config> ConfigFromFlags() {
  Config c;
  c.spec.batch = absl::GetFlag(FLAGS_batch);
  c.spec.capacity = absl::GetFlag(FLAGS_capacity);
  c.spec.num_q_heads = absl::GetFlag(FLAGS_q_heads);
  c.spec.num_kv_heads = absl::GetFlag(FLAGS_kv_heads);
  c.spec.head_dim = absl::GetFlag(FLAGS_head_dim);
  auto dtype = ParseDType(absl::GetFlag(FLAGS_dtype));
  if (!dtype.ok() || *dtype == DType::kI32) {
    return absl::InvalidArgumentError(absl::StrCat("--dtype: expected f32, f16 or bf16, got \"",
                                                   absl::GetFlag(FLAGS_dtype), "\""));
  }
  c.spec.dtype = *dtype;
  auto platform = ParsePlatform(absl::GetFlag(FLAGS_platform));
  if (!platform.ok() || *platform == Platform::kReference) {
    return absl::InvalidArgumentError(absl::StrCat("--platform: expected cpu, cuda or auto, got \"",
                                                   absl::GetFlag(FLAGS_platform), "\""));
  }
  c.platform = *platform;
  RAGGED_ASSIGN_OR_RETURN(c.window, ParseWindow(absl::GetFlag(FLAGS_window)));
  const double cap = absl::GetFlag(FLAGS_soft_cap);
  if (cap < 0.0 || !std::isfinite(cap)) {
    return absl::InvalidArgumentError(absl::StrCat("--soft_cap must be >= 0, got ", cap));
  }
  if (cap > 0.0) c.soft_cap = static_cast<float>(cap);
  const double scale = absl::GetFlag(FLAGS_scale);
  if (scale < 0.0 || !std::isfinite(scale)) {
    return absl::InvalidArgumentError(absl::StrCat("--scale must be >= 0, got ", scale));
  }
  if (scale > 0.0) c.scale = static_cast<float>(scale);
  RAGGED_ASSIGN_OR_RETURN(c.spec.sinks, ParseSinks(absl::GetFlag(FLAGS_sinks)));
  c.spec.num_sinks = absl::GetFlag(FLAGS_num_sinks);
  RAGGED_ASSIGN_OR_RETURN(c.spec.lengths, ParseLengths(absl::GetFlag(FLAGS_lengths)));
  c.iterations = absl::GetFlag(FLAGS_iterations);
  c.warmup = absl::GetFlag(FLAGS_warmup);
  if (c.iterations < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--iterations must be >= 1, got ", c.iterations));
  }
  if (c.warmup < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--warmup must be >= 0, got ", c.warmup));
  }
  const std::string verify = absl::GetFlag(FLAGS_verify);
  if (verify == "sampled") {
    c.verify = VerifyMode::kSampled;
  } else if (verify == "all") {
    c.verify = VerifyMode::kAll;
  } else if (verify == "none") {
    c.verify = VerifyMode::kNone;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--verify: expected sampled, all or none, got \"", verify, "\""));
  }
  c.verify_rows = absl::GetFlag(FLAGS_verify_rows);
  if (c.verify_rows < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--verify_rows must be >= 1, got ", c.verify_rows));
  }
  c.spec.seed = absl::GetFlag(FLAGS_seed);
  c.lse = absl::GetFlag(FLAGS_lse);
  c.threads = absl::GetFlag(FLAGS_threads);
  if (c.threads < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--threads must be >= 0, got ", c.threads));
  }
  c.load = absl::GetFlag(FLAGS_load);
  c.save = absl::GetFlag(FLAGS_save);
  c.save_inputs = absl::GetFlag(FLAGS_save_inputs);
  c.corrupt = absl::GetFlag(FLAGS_testonly_corrupt_output);
  c.json = absl::GetFlag(FLAGS_json);
  c.mesh = absl::GetFlag(FLAGS_mesh);
  const std::string out_spec = absl::GetFlag(FLAGS_out_spec);
  if (out_spec != "sharded" && out_spec != "gathered") {
    return absl::InvalidArgumentError(
        absl::StrCat("--out_spec: expected sharded or gathered, got \"", out_spec, "\""));
  }
  c.gather_output = out_spec == "gathered";
  c.expect = absl::GetFlag(FLAGS_expect);
  c.expect_lse = absl::GetFlag(FLAGS_expect_lse);
  if (!c.expect_lse.empty() && !c.lse) {
    return absl::InvalidArgumentError("--expect_lse needs --lse");
  }
  if (!c.load.empty()) {
    // The files say what the inputs are; a flag that describes them too would be ignored.
    for (const char* name : {"batch", "capacity", "q_heads", "kv_heads", "head_dim", "dtype",
                             "sinks", "num_sinks", "lengths"}) {
      if (FlagChanged(name)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", name, " cannot be combined with --load (the .npy files give the inputs)"));
      }
    }
  }
  return c;
}

RaggedDecodeAttentionOptions StepOptions(const Config& c, Platform platform) {
  RaggedDecodeAttentionOptions o;
  o.platform = platform;
  o.softmax_scale = c.scale;
  o.sliding_window = c.window;
  o.logits_soft_cap = c.soft_cap;
  o.num_threads = c.threads;
  return o;
}

std::string LengthsSummary(const DecodeInputs& in, const Config& c) {
  const int32_t* s = in.start.data_as<int32_t>();
  const int32_t* e = in.end.data_as<int32_t>();
  int64_t lo = INT64_MAX, hi = 0, sum = 0;
  for (int64_t b = 0; b < in.batch(); ++b) {
    const int64_t len = std::max<int64_t>(0, static_cast<int64_t>(e[b]) - s[b]);
    lo = std::min(lo, len);
    hi = std::max(hi, len);
    sum += len;
  }
  std::string how = "loaded";
  if (c.load.empty()) {
    switch (c.spec.lengths.mode) {
      case LengthMode::kFull:
        how = "full";
        break;
      case LengthMode::kUniform:
        how = "uniform";
        break;
      case LengthMode::kOffset:
        how = "offset";
        break;
      case LengthMode::kFile:
        how = absl::StrCat("file ", c.spec.lengths.path);
        break;
    }
  }
  return absl::StrFormat("%s: min %d, mean %.1f, max %d", how, lo,
                         static_cast<double>(sum) / static_cast<double>(in.batch()), hi);
}

std::string OptionsSummary(const DecodeInputs& in, const Config& c) {
  const double scale = c.scale ? *c.scale : 1.0 / std::sqrt(static_cast<double>(in.head_dim()));
  std::string sinks = "none";
  if (in.aux) sinks = absl::StrCat(DTypeName(in.aux->dtype()), ShapeToString(in.aux->shape()));
  return absl::StrFormat(
      "scale %.4g%s, window %s, soft cap %s, sinks %s", scale, c.scale ? "" : " (1/sqrt(D))",
      c.window ? absl::StrFormat("(%d, %d)", c.window->left, c.window->right) : "none",
      c.soft_cap ? absl::StrFormat("%g", *c.soft_cap) : "none", sinks);
}

// Largest |got - want| / max(1, max |want|) between two host tensors of the same element count.
absl::StatusOr<double> CompareWithFile(const TensorView& got, const std::string& path) {
  RAGGED_ASSIGN_OR_RETURN(NpyArray want, ReadNpy(path));
  if (want.data.num_elements() != got.num_elements() || want.dtype() == DType::kI32) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": expected a floating tensor of ", got.num_elements(),
                     " elements like ", ShapeToString(got.shape()), ", got ",
                     DTypeName(want.dtype()), ShapeToString(want.shape())));
  }
  double max_want = 0.0, max_err = 0.0;
  const int64_t n = got.num_elements();
  for (int64_t i = 0; i < n; ++i) {
    const double w = LoadAsFloat(want.data.data(), want.dtype(), i);
    if (std::isfinite(w)) max_want = std::max(max_want, std::abs(w));
  }
  for (int64_t i = 0; i < n; ++i) {
    const double w = LoadAsFloat(want.data.data(), want.dtype(), i);
    const double g = LoadAsFloat(got.data(), got.dtype(), i);
    if (w == g) continue;  // also equal infinities
    const double err = std::abs(g - w) / std::max(1.0, max_want);
    max_err = std::max(max_err, std::isnan(err) ? INFINITY : err);
  }
  return max_err;
}

// Adds 0.5 to element (row B-1, head 0, dim 0) of an output (--testonly_corrupt_output).
void CorruptOutput(HostBuffer& out) {
  const int64_t i = out.num_elements() / out.shape()[0] * (out.shape()[0] - 1);
  StoreFromFloat(out.data(), out.dtype(), i, LoadAsFloat(out.data(), out.dtype(), i) + 0.5f);
}

// Creates `dir` (and its parents) when missing.
absl::Status MakeDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat(dir, ": cannot create: ", ec.message()));
  return absl::OkStatus();
}

absl::Status SaveInputs(const DecodeInputs& in, const std::string& dir) {
  RAGGED_RETURN_IF_ERROR(MakeDir(dir));
  RAGGED_RETURN_IF_ERROR(WriteNpy(absl::StrCat(dir, "/query.npy"), in.query.view()));
  RAGGED_RETURN_IF_ERROR(WriteNpy(absl::StrCat(dir, "/key.npy"), in.key.view()));
  RAGGED_RETURN_IF_ERROR(WriteNpy(absl::StrCat(dir, "/value.npy"), in.value.view()));
  RAGGED_RETURN_IF_ERROR(WriteNpy(absl::StrCat(dir, "/sequence_start.npy"), in.start.view()));
  RAGGED_RETURN_IF_ERROR(WriteNpy(absl::StrCat(dir, "/sequence_end.npy"), in.end.view()));
  if (in.aux)
    RAGGED_RETURN_IF_ERROR(WriteNpy(absl::StrCat(dir, "/softmax_aux.npy"), in.aux->view()));
  return absl::OkStatus();
}

// The step's tensors where the platform wants them, and the timing of steps.
class StepRunner {
 public:
  static absl::StatusOr<StepRunner> Create(const DecodeInputs& in, Platform platform, bool lse) {
    StepRunner r;
    r.platform_ = platform;
    r.host_output_ = in.AllocateOutput();
    if (lse) r.host_lse_ = in.AllocateLse();
    if (platform == Platform::kCpu) {
      r.args_ = in.Args(r.host_output_.view(),
                        lse ? std::optional<TensorView>(r.host_lse_.view()) : std::nullopt);
      return r;
    }
#if RAGGED_WITH_CUDA
    RAGGED_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(
        reinterpret_cast<cudaStream_t*>(&r.stream_), cudaStreamNonBlocking));
    auto to_device = [&](const HostBuffer& h) -> absl::StatusOr<TensorView> {
      RAGGED_ASSIGN_OR_RETURN(DeviceBuffer d, DeviceBuffer::Allocate(h.dtype(), h.shape(), 0));
      RAGGED_RETURN_IF_ERROR(d.CopyFromHost(h.view(), r.stream_));
      TensorView v = d.view();
      r.device_.push_back(std::move(d));
      return v;
    };
    RAGGED_ASSIGN_OR_RETURN(r.args_.query, to_device(in.query));
    RAGGED_ASSIGN_OR_RETURN(r.args_.key, to_device(in.key));
    RAGGED_ASSIGN_OR_RETURN(r.args_.value, to_device(in.value));
    RAGGED_ASSIGN_OR_RETURN(r.args_.sequence_start, to_device(in.start));
    RAGGED_ASSIGN_OR_RETURN(r.args_.sequence_end, to_device(in.end));
    if (in.aux) {
      RAGGED_ASSIGN_OR_RETURN(r.args_.softmax_aux, to_device(*in.aux));
    }
    RAGGED_ASSIGN_OR_RETURN(r.args_.output, to_device(r.host_output_));
    if (lse) {
      RAGGED_ASSIGN_OR_RETURN(r.args_.lse, to_device(r.host_lse_));
    }
    return r;
#else
    return absl::FailedPreconditionError(
        "--platform=cuda: this build of ragged has no CUDA support");
#endif
  }

  // Runs `warmup` untimed and `iterations` timed steps; returns the time of each in ms.
  absl::StatusOr<std::vector<double>> Run(const RaggedDecodeAttentionOptions& options, int warmup,
                                          int iterations) {
    if (platform_ == Platform::kCuda) {
      RAGGED_ASSIGN_OR_RETURN(int64_t ws, RaggedDecodeAttentionWorkspaceSize(args_, options));
      if (ws > 0) {
        RAGGED_ASSIGN_OR_RETURN(workspace_, DeviceBuffer::AllocateBytes(ws, 0));
        args_.workspace = workspace_.data();
        args_.workspace_bytes = ws;
      }
    }
    for (int i = 0; i < warmup; ++i) {
      RAGGED_RETURN_IF_ERROR(RaggedDecodeAttention(args_, options, stream_));
    }
    RAGGED_RETURN_IF_ERROR(SynchronizeStream(stream_));
    std::vector<double> ms;
    for (int i = 0; i < iterations; ++i) {
      if (platform_ == Platform::kCuda) {
#if RAGGED_WITH_CUDA
        // CUDA events time the work on the stream, not the launch.
        cudaEvent_t begin, end;
        RAGGED_CUDA_RETURN_IF_ERROR(cudaEventCreate(&begin));
        RAGGED_CUDA_RETURN_IF_ERROR(cudaEventCreate(&end));
        const auto stream = static_cast<cudaStream_t>(stream_);
        RAGGED_CUDA_RETURN_IF_ERROR(cudaEventRecord(begin, stream));
        RAGGED_RETURN_IF_ERROR(RaggedDecodeAttention(args_, options, stream_));
        RAGGED_CUDA_RETURN_IF_ERROR(cudaEventRecord(end, stream));
        RAGGED_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(end));
        float elapsed = 0.0f;
        RAGGED_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&elapsed, begin, end));
        cudaEventDestroy(begin);
        cudaEventDestroy(end);
        ms.push_back(elapsed);
#endif
      } else {
        const auto t0 = std::chrono::steady_clock::now();
        RAGGED_RETURN_IF_ERROR(RaggedDecodeAttention(args_, options, stream_));
        const auto t1 = std::chrono::steady_clock::now();
        ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
    }
    // The outputs back on the host.
    if (platform_ == Platform::kCuda) {
      RAGGED_RETURN_IF_ERROR(CopyBack(args_.output, host_output_));
      if (args_.lse) RAGGED_RETURN_IF_ERROR(CopyBack(*args_.lse, host_lse_));
      RAGGED_RETURN_IF_ERROR(SynchronizeStream(stream_));
    }
    return ms;
  }

  HostBuffer& output() { return host_output_; }
  // Perturbs element (row B-1, head 0, dim 0) of the host output (--testonly_corrupt_output).
  void CorruptOutput() {
    const int64_t i =
        host_output_.num_elements() / host_output_.shape()[0] * (host_output_.shape()[0] - 1);
    StoreFromFloat(host_output_.data(), host_output_.dtype(), i,
                   LoadAsFloat(host_output_.data(), host_output_.dtype(), i) + 0.5f);
  }
  const HostBuffer* lse() const {
    return host_lse_.nbytes() > 0 && args_.lse ? &host_lse_ : nullptr;
  }

 private:
  absl::Status CopyBack(const TensorView& device, const HostBuffer& host) {
    for (const DeviceBuffer& d : device_) {
      if (d.data() == device.data()) return d.CopyToHost(host.view(), stream_);
    }
    return absl::InternalError("decode: output buffer not found");
  }

  Platform platform_ = Platform::kCpu;
  RaggedDecodeAttentionArgs args_;
  HostBuffer host_output_, host_lse_;
  std::vector<DeviceBuffer> device_;
  DeviceBuffer workspace_;
  Stream stream_ = nullptr;
};

// What a run measured, reported by rank 0.
struct Outcome {
  std::string title;                                        // first line of the table
  std::vector<std::pair<std::string, std::string>> layout;  // mesh and per-rank rows
  Platform platform = Platform::kCpu;
  int ranks = 1;
  TimeStats time;
  // Medians over the steps of the slowest rank's phases (sharded runs).
  std::optional<TimeStats> kernel, merge, gather;
  nlohmann::json json;  // extra fields
  bool window = false;  // time is the mean of back-to-back steps (no per-step min/max)
};

absl::StatusOr<DecodeInputs> PrepareInputs(const Config& c) {
  if (!c.load.empty()) return LoadInputs(c.load);
  return GenerateInputs(c.spec);
}

absl::StatusOr<Platform> ResolvePlatform(Platform requested) {
  Platform platform = requested;
  if (platform == Platform::kAuto) {
    platform = BuiltWithCuda() && CudaDeviceCount() > 0 ? Platform::kCuda : Platform::kCpu;
  }
  if (platform == Platform::kCuda && CudaDeviceCount() == 0) {
    return absl::FailedPreconditionError(
        BuiltWithCuda() ? "--platform=cuda: no CUDA device is visible"
                        : "--platform=cuda: this build of ragged has no CUDA support");
  }
  return platform;
}

// Verification, comparisons, saving, the table and the JSON (rank 0, global tensors).
absl::Status Finish(const Config& c, const DecodeInputs& in, HostBuffer& output,
                    const HostBuffer* lse, const RaggedDecodeAttentionOptions& options,
                    const Outcome& o) {
  const TimeStats& t = o.time;
  const int64_t valid_bytes = ValidKvBytes(in, c.window);
  const double bandwidth = static_cast<double>(valid_bytes) / (t.median_ms * 1e-3);
  TensorView lse_view;
  if (lse != nullptr) lse_view = lse->view();

  std::optional<VerifyResult> verified;
  if (c.verify != VerifyMode::kNone) {
    const std::vector<int64_t> rows =
        SampleRows(in, c.verify == VerifyMode::kAll ? 0 : c.verify_rows, c.spec.seed);
    RAGGED_ASSIGN_OR_RETURN(verified,
                            Verify(in, output.view(), lse ? &lse_view : nullptr, options, rows));
  }
  std::optional<double> expect_error, expect_lse_error;
  if (!c.expect.empty()) {
    RAGGED_ASSIGN_OR_RETURN(expect_error, CompareWithFile(output.view(), c.expect));
  }
  if (!c.expect_lse.empty() && lse != nullptr) {
    RAGGED_ASSIGN_OR_RETURN(expect_lse_error, CompareWithFile(lse_view, c.expect_lse));
  }
  const double tolerance = ExampleTolerance(in.dtype());
  const bool expect_passed = (!expect_error || *expect_error <= tolerance) &&
                             (!expect_lse_error || *expect_lse_error <= tolerance);

  if (!c.save_inputs.empty()) RAGGED_RETURN_IF_ERROR(SaveInputs(in, c.save_inputs));
  if (!c.save.empty()) {
    RAGGED_RETURN_IF_ERROR(MakeDir(c.save));
    RAGGED_RETURN_IF_ERROR(WriteNpy(absl::StrCat(c.save, "/output.npy"), output.view()));
    if (lse != nullptr) {
      RAGGED_RETURN_IF_ERROR(WriteNpy(absl::StrCat(c.save, "/lse.npy"), lse->view()));
    }
  }

  Table table(o.title);
  for (const auto& [k, v] : o.layout) table.Add(k, v);
  table.Add("query", absl::StrCat(DTypeName(in.dtype()), ShapeToString(in.query.shape())));
  table.Add("key, value",
            absl::StrCat(DTypeName(in.dtype()), ShapeToString(in.key.shape()), " each"));
  table.Add("lengths", LengthsSummary(in, c));
  table.Add("options", OptionsSummary(in, c));
  table.Rule();
  table.Add("valid K/V", absl::StrCat(FormatBytes(valid_bytes), " (padded ",
                                      FormatBytes(in.key.nbytes() * 2.0), ")"));
  if (o.window) {
    table.Add("time per step",
              absl::StrFormat("%.4f ms (%d steps back to back, from a barrier until every rank "
                              "is done)",
                              t.median_ms, t.count));
  } else {
    table.Add("time per step", absl::StrFormat("%.4f ms (median of %d; min %.4f, max %.4f)",
                                               t.median_ms, t.count, t.min_ms, t.max_ms));
  }
  if (o.kernel) {
    table.Add("  kernel",
              absl::StrFormat("%.4f ms (median step, slowest rank)", o.kernel->median_ms));
    table.Add("  merges (sp)", o.merge ? absl::StrFormat("%.4f ms", o.merge->median_ms)
                                       : std::string("none (sequence not split)"));
    table.Add("  gathers", o.gather ? absl::StrFormat("%.4f ms", o.gather->median_ms)
                                    : std::string("none (no axis to gather)"));
  }
  table.Add("effective bw",
            absl::StrCat(FormatRate(bandwidth), " (valid K/V bytes / time per step)"));
  if (verified) {
    std::string what = c.verify == VerifyMode::kAll ? absl::StrCat("all ", verified->rows, " rows")
                                                    : absl::StrCat(verified->rows, " sampled rows");
    table.Add(
        "largest error",
        absl::StrFormat("%.3e%s vs the f64 reference (%s; tolerance %.0e): %s", verified->max_error,
                        lse ? absl::StrFormat(", lse %.3e", verified->max_lse_error) : "", what,
                        verified->tolerance, verified->passed ? "PASS" : "FAIL"));
  } else {
    table.Add("largest error", "not checked (--verify=none)");
  }
  if (expect_error) {
    table.Add(
        "vs --expect",
        absl::StrFormat("%.3e%s (tolerance %.0e): %s", *expect_error,
                        expect_lse_error ? absl::StrFormat(", lse %.3e", *expect_lse_error) : "",
                        tolerance, expect_passed ? "PASS" : "FAIL"));
  }
  if (!c.save_inputs.empty()) table.Add("saved inputs", c.save_inputs);
  if (!c.save.empty()) {
    table.Add("saved", absl::StrCat(c.save, "/output.npy", lse ? ", lse.npy" : ""));
  }
  table.Print(stdout);

  if (!c.json.empty()) {
    nlohmann::json j = o.json;
    j["ranks"] = o.ranks;
    j["platform"] = std::string(PlatformName(o.platform));
    j["dtype"] = std::string(DTypeName(in.dtype()));
    j["query_shape"] = std::vector<int64_t>(in.query.shape().begin(), in.query.shape().end());
    j["kv_shape"] = std::vector<int64_t>(in.key.shape().begin(), in.key.shape().end());
    j["valid_kv_bytes"] = valid_bytes;
    j["time_ms"] = {{"median", t.median_ms},
                    {"min", t.min_ms},
                    {"mean", t.mean_ms},
                    {"max", t.max_ms},
                    {"count", t.count}};
    if (o.kernel) {
      j["phase_ms"] = {{"kernel", o.kernel->median_ms},
                       {"merge", o.merge ? o.merge->median_ms : 0.0},
                       {"gather", o.gather ? o.gather->median_ms : 0.0}};
    }
    j["effective_bandwidth_gbps"] = bandwidth / 1e9;
    if (verified) {
      j["verify"] = {{"rows", verified->rows},
                     {"max_error", verified->max_error},
                     {"max_lse_error", verified->max_lse_error},
                     {"tolerance", verified->tolerance},
                     {"passed", verified->passed}};
    }
    if (expect_error) j["expect_max_error"] = *expect_error;
    if (expect_lse_error) j["expect_max_lse_error"] = *expect_lse_error;
    std::ofstream f(c.json);
    f << j.dump(2) << "\n";
    if (!f) return absl::UnavailableError(absl::StrCat("--json: cannot write ", c.json));
  }
  if (!expect_passed) {
    return absl::InternalError(
        absl::StrCat("the output differs from --expect: largest error ", expect_error.value_or(0.0),
                     ", lse ", expect_lse_error.value_or(0.0), " > tolerance ", tolerance));
  }
  if (verified && !verified->passed) {
    return absl::InternalError(absl::StrCat("verification failed: largest error ",
                                            verified->max_error, " > tolerance ",
                                            verified->tolerance, " at ", verified->detail));
  }
  return absl::OkStatus();
}

// One process, no MPI: the op called directly.
absl::Status RunSingle(const Config& c) {
  RAGGED_ASSIGN_OR_RETURN(DecodeInputs in, PrepareInputs(c));
  RAGGED_ASSIGN_OR_RETURN(Platform platform, ResolvePlatform(c.platform));
  const RaggedDecodeAttentionOptions options = StepOptions(c, platform);
  RAGGED_ASSIGN_OR_RETURN(StepRunner runner, StepRunner::Create(in, platform, c.lse));
  RAGGED_ASSIGN_OR_RETURN(std::vector<double> samples, runner.Run(options, c.warmup, c.iterations));
  if (c.corrupt) CorruptOutput(runner.output());
  Outcome o;
  o.title = absl::StrCat("ragged decode: 1 process, platform ",
                         platform == Platform::kCpu
                             ? absl::StrCat("cpu (", HostThreads(c.threads), " threads)")
                             : std::string("cuda:0"));
  o.platform = platform;
  o.time = Summarize(samples);
  return Finish(c, in, runner.output(), runner.lse(), options, o);
}

// A CUDA stream owned for the run (none, nullptr, on the CPU).
class DeviceStream {
 public:
  static absl::StatusOr<DeviceStream> Create(bool cuda) {
    DeviceStream s;
#if RAGGED_WITH_CUDA
    if (cuda) {
      cudaStream_t st = nullptr;
      RAGGED_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
      s.stream_ = st;
    }
#else
    if (cuda) return absl::FailedPreconditionError("this build of ragged has no CUDA support");
#endif
    return s;
  }
  DeviceStream() = default;
  DeviceStream(DeviceStream&& o) noexcept : stream_(o.stream_) { o.stream_ = nullptr; }
  DeviceStream& operator=(DeviceStream&& o) noexcept {
    std::swap(stream_, o.stream_);
    return *this;
  }
  ~DeviceStream() {
#if RAGGED_WITH_CUDA
    if (stream_ != nullptr) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
#endif
  }
  Stream get() const { return stream_; }

 private:
  Stream stream_ = nullptr;
};

#if RAGGED_WITH_MPI
// The inputs' global description, sent from rank 0 to every rank.
struct Header {
  int32_t ok = 0, batch = 0, capacity = 0, q_heads = 0, kv_heads = 0, head_dim = 0, dtype = 0,
          sinks = 0, num_sinks = 0, aux_dtype = 0, query_tokens = 0;
  char message[400] = {0};  // rank 0's error when !ok
};

// Rank 0's status reaches every rank: OK everywhere, or rank 0's message everywhere.
absl::Status ShareStatus(Communicator& world, absl::Status status) {
  struct {
    int32_t code = 0;
    char message[400] = {0};
  } wire;
  if (world.rank() == 0 && !status.ok()) {
    wire.code = static_cast<int32_t>(status.code());
    std::snprintf(wire.message, sizeof(wire.message), "%s", std::string(status.message()).c_str());
  }
  RAGGED_RETURN_IF_ERROR(world.Broadcast(&wire, sizeof(wire) / 4, DType::kI32, 0, nullptr));
  if (wire.code == 0) return absl::OkStatus();
  if (world.rank() == 0) return status;
  return absl::Status(static_cast<absl::StatusCode>(wire.code),
                      absl::StrCat("rank 0 failed: ", wire.message));
}

// A 4-D query [B, T, HQ, D] becomes its last token [B, HQ, D] (what the op reads of it).
void KeepLastToken(DecodeInputs& in) {
  if (in.query.shape().size() != 4) return;
  const Shape& q = in.query.shape();
  const int64_t B = q[0], T = q[1], row = q[2] * q[3], esize = DTypeSize(in.query.dtype());
  HostBuffer last = HostBuffer::Allocate(in.query.dtype(), {B, q[2], q[3]});
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(static_cast<char*>(last.data()) + b * row * esize,
                static_cast<const char*>(in.query.data()) + (b * T + T - 1) * row * esize,
                row * esize);
  }
  in.query = std::move(last);
}

// Sum of one step's phases over ranks: the slowest rank per phase.
absl::StatusOr<std::vector<float>> MaxOverRanks(Communicator& world, std::vector<float> v) {
  RAGGED_RETURN_IF_ERROR(world.AllReduce(v.data(), v.data(), static_cast<int64_t>(v.size()),
                                         DType::kF32, ReduceOp::kMax, nullptr));
  return v;
}

std::string AxesText(const Mesh& mesh, const std::vector<std::string>& axes) {
  if (axes.empty()) return "-";
  std::vector<std::string> parts;
  for (const std::string& a : axes) parts.push_back(absl::StrCat(a, "=", mesh.AxisSize(a)));
  return absl::StrJoin(parts, ",");
}

// The job over a mesh of MPI ranks: rank 0 makes or loads the inputs and scatters the shards,
// every rank runs the sharded op, rank 0 gathers the output, checks it and reports.
absl::Status RunSharded(const Config& c, Process& process) {
  MpiCommunicator& world = process.world();
  const int rank = world.rank(), size = world.size();
  const std::string mesh_text = c.mesh.empty() ? absl::StrCat("dp=", size) : c.mesh;
  auto parsed = Mesh::Parse(mesh_text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--mesh: ", parsed.status().message()));
  }
  const Mesh mesh = *parsed;
  if (mesh.size() != size) {
    return absl::InvalidArgumentError(absl::StrCat("--mesh=", mesh_text, " has ", mesh.size(),
                                                   " ranks, but the job has ", size,
                                                   " (mpirun -np ", size, ")"));
  }
  // The platform: CUDA when this rank has a GPU (auto), with an NCCL world for the op.
  Platform platform = c.platform;
  if (platform == Platform::kAuto) {
    platform = process.device() >= 0 ? Platform::kCuda : Platform::kCpu;
  }
  const bool cuda = platform == Platform::kCuda;
  std::unique_ptr<Communicator> nccl_world;
  if (cuda) {
    RAGGED_ASSIGN_OR_RETURN(nccl_world, process.CreateWorldCommunicator(CommBackend::kNccl));
  }
  RAGGED_ASSIGN_OR_RETURN(DeviceStream stream, DeviceStream::Create(cuda));

  // Inputs on rank 0; their description to everyone.
  DecodeInputs in;
  Header h;
  absl::Status prepared = absl::OkStatus();
  if (rank == 0) {
    auto made = PrepareInputs(c);
    prepared = made.status();
    if (made.ok()) {
      in = std::move(*made);
      h.query_tokens = in.query.shape().size() == 4 ? static_cast<int32_t>(in.query.shape()[1]) : 0;
      KeepLastToken(in);
      h.batch = static_cast<int32_t>(in.batch());
      h.capacity = static_cast<int32_t>(in.capacity());
      h.q_heads = static_cast<int32_t>(in.num_q_heads());
      h.kv_heads = static_cast<int32_t>(in.num_kv_heads());
      h.head_dim = static_cast<int32_t>(in.head_dim());
      h.dtype = static_cast<int32_t>(in.dtype());
      if (in.aux) {
        const Shape& a = in.aux->shape();
        h.num_sinks = static_cast<int32_t>(a.back());
        h.aux_dtype = static_cast<int32_t>(in.aux->dtype());
        if (a.size() == 1) {
          h.sinks = static_cast<int32_t>(SinkLayout::kShared);
        } else if (a.size() == 2 && a[0] == in.num_kv_heads() && a[0] != in.num_q_heads()) {
          h.sinks = static_cast<int32_t>(SinkLayout::kPerKvHead);
        } else {
          h.sinks = static_cast<int32_t>(SinkLayout::kPerQueryHead);
        }
      }
    }
  }
  RAGGED_RETURN_IF_ERROR(ShareStatus(world, prepared));
  RAGGED_RETURN_IF_ERROR(world.Broadcast(&h, sizeof(h) / 4, DType::kI32, 0, nullptr));

  AttentionShape shape;
  shape.batch = h.batch;
  shape.capacity = h.capacity;
  shape.num_q_heads = h.q_heads;
  shape.num_kv_heads = h.kv_heads;
  shape.head_dim = h.head_dim;
  shape.dtype = static_cast<DType>(h.dtype);
  shape.sinks = static_cast<SinkLayout>(h.sinks);
  shape.num_sinks = h.num_sinks;
  shape.aux_dtype = static_cast<DType>(h.aux_dtype);
  shape.with_lse = c.lse;

  // Threads: the cores of this host shared among its ranks, unless --threads says otherwise.
  const int host_threads = std::max<int>(
      1, static_cast<int>(std::thread::hardware_concurrency()) / std::max(1, process.local_size()));
  const int threads = c.threads > 0 ? c.threads : host_threads;
  Config step_config = c;
  step_config.threads = threads;
  ShardedAttentionConfig cfg;
  cfg.shape = shape;
  cfg.specs = ShardedAttentionSpecs::Typical(mesh, shape.sinks, c.gather_output);
  cfg.options = StepOptions(step_config, platform);
  cfg.device = std::max(0, process.device());
  cfg.stream = stream.get();
  // On the CPU the phases cost two clock reads; on CUDA timing them synchronizes the stream, so a
  // second op, used after the timed window, measures them.
  cfg.time_phases = !cuda;
  RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<MeshCommunicators> comms,
                          MeshCommunicators::Borrow(mesh, cuda ? nccl_world.get() : &world));
  RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<ShardedAttention> op,
                          ShardedAttention::Create(comms.get(), cfg));
  std::unique_ptr<ShardedAttention> phase_op;
  if (cuda) {
    ShardedAttentionConfig phase_cfg = cfg;
    phase_cfg.time_phases = true;
    RAGGED_ASSIGN_OR_RETURN(phase_op, ShardedAttention::Create(comms.get(), phase_cfg));
  }
  const ShardPlan& plan = op->plan();

  // Scatter the shards.
  auto local = [&](ShardedTensor t, DType dtype) {
    return HostBuffer::Allocate(dtype, op->LocalShape(t));
  };
  HostBuffer q = local(ShardedTensor::kQuery, shape.dtype);
  HostBuffer k = local(ShardedTensor::kKey, shape.dtype);
  HostBuffer v = local(ShardedTensor::kValue, shape.dtype);
  HostBuffer s = local(ShardedTensor::kSequenceStart, DType::kI32);
  HostBuffer e = local(ShardedTensor::kSequenceEnd, DType::kI32);
  HostBuffer aux;
  auto scatter = [&](ShardedTensor t, const HostBuffer* global, HostBuffer& dst) {
    return ScatterFromRoot(world, 0, rank == 0 ? global->view() : TensorView(), BoxesOf(plan, t),
                           dst.view());
  };
  RAGGED_RETURN_IF_ERROR(scatter(ShardedTensor::kQuery, &in.query, q));
  RAGGED_RETURN_IF_ERROR(scatter(ShardedTensor::kKey, &in.key, k));
  RAGGED_RETURN_IF_ERROR(scatter(ShardedTensor::kValue, &in.value, v));
  RAGGED_RETURN_IF_ERROR(scatter(ShardedTensor::kSequenceStart, &in.start, s));
  RAGGED_RETURN_IF_ERROR(scatter(ShardedTensor::kSequenceEnd, &in.end, e));
  if (shape.sinks != SinkLayout::kNone) {
    aux = local(ShardedTensor::kSoftmaxAux, shape.aux_dtype);
    RAGGED_RETURN_IF_ERROR(scatter(ShardedTensor::kSoftmaxAux, in.aux ? &*in.aux : nullptr, aux));
  }
  HostBuffer out = local(ShardedTensor::kOutput, shape.out_dtype());
  HostBuffer lse;
  if (c.lse) lse = local(ShardedTensor::kLse, DType::kF32);
  // The views the op reads: the host shards, or their copies on this rank's GPU.
  std::vector<DeviceBuffer> on_device;
  auto place = [&](const HostBuffer& h) -> absl::StatusOr<TensorView> {
    if (!cuda) return h.view();
    RAGGED_ASSIGN_OR_RETURN(DeviceBuffer d,
                            DeviceBuffer::Allocate(h.dtype(), h.shape(), cfg.device));
    RAGGED_RETURN_IF_ERROR(d.CopyFromHost(h.view(), stream.get()));
    on_device.push_back(std::move(d));
    return on_device.back().view();
  };
  on_device.reserve(8);
  RaggedDecodeAttentionArgs args;
  RAGGED_ASSIGN_OR_RETURN(args.query, place(q));
  RAGGED_ASSIGN_OR_RETURN(args.key, place(k));
  RAGGED_ASSIGN_OR_RETURN(args.value, place(v));
  RAGGED_ASSIGN_OR_RETURN(args.sequence_start, place(s));
  RAGGED_ASSIGN_OR_RETURN(args.sequence_end, place(e));
  if (shape.sinks != SinkLayout::kNone) {
    RAGGED_ASSIGN_OR_RETURN(args.softmax_aux, place(aux));
  }
  RAGGED_ASSIGN_OR_RETURN(args.output, place(out));
  if (c.lse) {
    RAGGED_ASSIGN_OR_RETURN(args.lse, place(lse));
  }
  RAGGED_RETURN_IF_ERROR(SynchronizeStream(stream.get()));

  // Steps: back to back between two barriers, so that the time per step is the window's length
  // over the steps (from a common start until every rank is done, as a decode loop runs them)
  // and a barrier's latency is paid once, not per step. The phases are timed per step and rank.
  for (int i = 0; i < c.warmup; ++i) RAGGED_RETURN_IF_ERROR(op->Run(args, stream.get()));
  RAGGED_RETURN_IF_ERROR(SynchronizeStream(stream.get()));
  std::vector<float> local_ms;  // per step: kernel, merge, gather; then the window
  auto record_phases = [&](const ShardedAttention& timed) {
    const ShardedAttentionTimings& pt = timed.last_timings();
    local_ms.push_back(static_cast<float>(pt.kernel_s * 1e3));
    local_ms.push_back(static_cast<float>(pt.merge_s * 1e3));
    local_ms.push_back(static_cast<float>(pt.gather_s * 1e3));
  };
  RAGGED_RETURN_IF_ERROR(world.Barrier());
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < c.iterations; ++i) {
    RAGGED_RETURN_IF_ERROR(op->Run(args, stream.get()));
    if (!cuda) record_phases(*op);
  }
  RAGGED_RETURN_IF_ERROR(SynchronizeStream(stream.get()));
  RAGGED_RETURN_IF_ERROR(world.Barrier());
  const double window_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (cuda) {
    for (int i = 0; i < c.iterations; ++i) {
      RAGGED_RETURN_IF_ERROR(phase_op->Run(args, stream.get()));
      record_phases(*phase_op);
    }
    // The output of the timed op, as the one checked.
    RAGGED_RETURN_IF_ERROR(op->Run(args, stream.get()));
    RAGGED_RETURN_IF_ERROR(
        on_device[on_device.size() - (c.lse ? 2 : 1)].CopyToHost(out.view(), stream.get()));
    if (c.lse) RAGGED_RETURN_IF_ERROR(on_device.back().CopyToHost(lse.view(), stream.get()));
    RAGGED_RETURN_IF_ERROR(SynchronizeStream(stream.get()));
  }
  local_ms.push_back(static_cast<float>(window_ms));
  RAGGED_ASSIGN_OR_RETURN(std::vector<float> ms, MaxOverRanks(world, local_ms));

  // The global output on rank 0.
  HostBuffer global_out, global_lse;
  if (rank == 0) {
    global_out =
        HostBuffer::Allocate(shape.out_dtype(), {shape.batch, shape.num_q_heads, shape.head_dim});
    if (c.lse) global_lse = HostBuffer::Allocate(DType::kF32, {shape.batch, shape.num_q_heads});
  }
  RAGGED_RETURN_IF_ERROR(GatherToRoot(world, 0, out.view(), BoxesOf(plan, ShardedTensor::kOutput),
                                      rank == 0 ? global_out.view() : TensorView()));
  if (c.lse) {
    RAGGED_RETURN_IF_ERROR(GatherToRoot(world, 0, lse.view(), BoxesOf(plan, ShardedTensor::kLse),
                                        rank == 0 ? global_lse.view() : TensorView()));
  }

  // Where the ranks run: "host (ranks a-b), ...", from every rank's host name.
  struct alignas(4) Name {
    char text[64] = {0};
  };
  std::vector<Name> names(size);
  Name mine;
  std::snprintf(mine.text, sizeof(mine.text), "%s", HostName().c_str());
  RAGGED_RETURN_IF_ERROR(
      world.AllGather(&mine, names.data(), sizeof(Name) / 4, DType::kI32, nullptr));

  absl::Status finished = absl::OkStatus();
  if (rank == 0) {
    if (c.corrupt) CorruptOutput(global_out);
    Outcome o;
    o.title = absl::StrCat("ragged decode: ", size, " ranks, mesh ", mesh.ToString(),
                           cuda ? ", platform cuda (one GPU per rank, NCCL)"
                                : absl::StrCat(", platform cpu (", threads, " threads per rank)"));
    o.platform = platform;
    o.ranks = size;
    std::vector<double> kernel, merge, gather;
    for (int i = 0; i < c.iterations; ++i) {
      kernel.push_back(ms[3 * i]);
      merge.push_back(ms[3 * i + 1]);
      gather.push_back(ms[3 * i + 2]);
    }
    const double per_step = ms.back() / c.iterations;
    o.time = TimeStats{c.iterations, per_step, per_step, per_step, per_step};
    o.window = true;
    o.kernel = Summarize(kernel);
    if (plan.seq_shards > 1) o.merge = Summarize(merge);
    if (!plan.gather_axes().empty()) o.gather = Summarize(gather);
    o.layout.push_back({"mesh", absl::StrCat(mesh.ToString(), " (", size, " ranks; batch over ",
                                             AxesText(mesh, plan.batch_axes), ", heads over ",
                                             AxesText(mesh, plan.head_axes), ", sequence over ",
                                             AxesText(mesh, plan.seq_axes), ")")});
    std::string hosts;
    int distinct = 0;
    for (int r = 0; r < size;) {
      int last = r;
      while (last + 1 < size && std::strcmp(names[last + 1].text, names[r].text) == 0) ++last;
      absl::StrAppend(&hosts, hosts.empty() ? "" : ", ", names[r].text,
                      last == r ? absl::StrCat(" (rank ", r, ")")
                                : absl::StrCat(" (ranks ", r, "-", last, ")"));
      ++distinct;
      r = last + 1;
    }
    o.layout.push_back({"hosts", hosts});
    o.json["hosts"] = distinct;
    o.layout.push_back({"out_spec", absl::StrCat(c.gather_output ? "gathered " : "sharded ",
                                                 plan.specs.output.ToString(), ", gathers over ",
                                                 AxesText(mesh, plan.gather_axes()))});
    auto local_text = [&](ShardedTensor t, DType dtype) {
      return absl::StrCat(DTypeName(dtype), ShapeToString(op->LocalShape(t)));
    };
    o.layout.push_back(
        {"per rank",
         absl::StrCat("query ", local_text(ShardedTensor::kQuery, shape.dtype), ", key/value ",
                      local_text(ShardedTensor::kKey, shape.dtype),
                      plan.kv_heads_replicated ? " (KV heads replicated)" : "", ", output ",
                      local_text(ShardedTensor::kOutput, shape.out_dtype()))});
    if (h.query_tokens > 0) {
      o.layout.push_back({"note", absl::StrCat("query.npy has ", h.query_tokens,
                                               " tokens: the last one is used")});
    }
    o.json["mesh"] = mesh.ToString();
    o.json["out_spec"] = c.gather_output ? "gathered" : "sharded";
    o.json["threads_per_rank"] = threads;
    const Shape local_query = op->LocalShape(ShardedTensor::kQuery);
    const Shape local_kv = op->LocalShape(ShardedTensor::kKey);
    o.json["local_query_shape"] = std::vector<int64_t>(local_query.begin(), local_query.end());
    o.json["local_kv_shape"] = std::vector<int64_t>(local_kv.begin(), local_kv.end());
    finished = Finish(c, in, global_out, c.lse ? &global_lse : nullptr, cfg.options, o);
  }
  return ShareStatus(world, finished);
}
#endif  // RAGGED_WITH_MPI

}  // namespace
}  // namespace ragged::examples

namespace ragged::examples {
namespace {

// True when a launcher (mpirun, srun with PMI/PMIx) started this process.
bool LaunchedByMpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"}) {
    if (std::getenv(v) != nullptr) return true;
  }
  return false;
}

// The launcher's rank of this process before MPI starts, for error lines (-1: unknown).
int LauncherRank() {
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"}) {
    if (const char* r = std::getenv(v)) return std::atoi(r);
  }
  return -1;
}

void PrintError(int rank, int size, absl::string_view message) {
  if (size > 1 || rank > 0) {
    std::fprintf(stderr, "decode (rank %d): error: %s\n", rank, std::string(message).c_str());
  } else {
    std::fprintf(stderr, "decode: error: %s\n", std::string(message).c_str());
  }
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "ragged decode attention: runs decode steps, times them and checks them against the "
      "reference.\n"
      "  decode --batch=8 --capacity=4096 --lengths=uniform --dtype=bf16\n"
      "  decode --load=DIR --save=DIR --verify=all\n"
      "  mpirun -np 4 decode --mesh=dp=2,tp=2 --out_spec=gathered");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  const int launcher_rank = LauncherRank();
  if (rest.size() > 1) {
    PrintError(launcher_rank, 1,
               absl::StrCat("unexpected argument \"", rest[1], "\" (flags are --name=value)"));
    return 2;
  }
  auto config = ConfigFromFlags();
  if (!config.ok()) {
    PrintError(launcher_rank, 1, config.status().message());
    return 2;
  }
  if (!LaunchedByMpi() && config->mesh.empty()) {
    const absl::Status s = RunSingle(*config);
    if (!s.ok()) PrintError(0, 1, s.message());
    return s.ok() ? 0 : 1;
  }
#if RAGGED_WITH_MPI
  auto process = Process::Init(&argc, &argv);
  if (!process.ok()) {
    PrintError(launcher_rank, 1, process.status().message());
    return 1;
  }
  const int rank = (*process)->rank(), size = (*process)->size();
  const absl::Status s = RunSharded(*config, **process);
  if (!s.ok()) PrintError(rank, size, s.message());
  return s.ok() ? 0 : 1;
#else
  PrintError(launcher_rank, 1, "--mesh and mpirun need a build of ragged with MPI");
  return 2;
#endif
}

}  // namespace
}  // namespace ragged::examples

int main(int argc, char** argv) { return ragged::examples::Main(argc, argv); }
