// decode: the main job. Runs ragged decode attention steps on generated or loaded inputs, times
// them, checks the output against the double-precision reference and prints one table.
//
//   build/examples/decode --batch=8 --capacity=4096 --lengths=uniform --dtype=bf16
//   build/examples/decode --load=/tmp/step --save=/tmp/out --verify=all --json=/tmp/out/run.json
//
// Every error is one line on stderr ("decode: error: ...") and a non-zero exit status.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
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
    if (in.aux) RAGGED_ASSIGN_OR_RETURN(r.args_.softmax_aux, to_device(*in.aux));
    RAGGED_ASSIGN_OR_RETURN(r.args_.output, to_device(r.host_output_));
    if (lse) RAGGED_ASSIGN_OR_RETURN(r.args_.lse, to_device(r.host_lse_));
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

  const HostBuffer& output() const { return host_output_; }
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

absl::Status Run(const Config& c) {
  // Inputs.
  DecodeInputs in;
  if (!c.load.empty()) {
    RAGGED_ASSIGN_OR_RETURN(in, LoadInputs(c.load));
  } else {
    RAGGED_ASSIGN_OR_RETURN(in, GenerateInputs(c.spec));
  }
  Platform platform = c.platform;
  if (platform == Platform::kAuto) {
    platform = BuiltWithCuda() && CudaDeviceCount() > 0 ? Platform::kCuda : Platform::kCpu;
  }
  if (platform == Platform::kCuda && CudaDeviceCount() == 0) {
    return absl::FailedPreconditionError(
        BuiltWithCuda() ? "--platform=cuda: no CUDA device is visible"
                        : "--platform=cuda: this build of ragged has no CUDA support");
  }
  const RaggedDecodeAttentionOptions options = StepOptions(c, platform);

  // Steps.
  RAGGED_ASSIGN_OR_RETURN(StepRunner runner, StepRunner::Create(in, platform, c.lse));
  RAGGED_ASSIGN_OR_RETURN(std::vector<double> samples, runner.Run(options, c.warmup, c.iterations));
  if (c.corrupt) runner.CorruptOutput();
  const TimeStats t = Summarize(samples);
  const int64_t valid_bytes = ValidKvBytes(in, c.window);
  const double bandwidth = static_cast<double>(valid_bytes) / (t.median_ms * 1e-3);

  // Verification.
  std::optional<VerifyResult> verified;
  if (c.verify != VerifyMode::kNone) {
    const std::vector<int64_t> rows =
        SampleRows(in, c.verify == VerifyMode::kAll ? 0 : c.verify_rows, c.spec.seed);
    const HostBuffer* lse = runner.lse();
    TensorView lse_view;
    if (lse != nullptr) lse_view = lse->view();
    RAGGED_ASSIGN_OR_RETURN(
        verified, Verify(in, runner.output().view(), lse ? &lse_view : nullptr, options, rows));
  }

  std::optional<double> expect_error, expect_lse_error;
  if (!c.expect.empty()) {
    RAGGED_ASSIGN_OR_RETURN(expect_error, CompareWithFile(runner.output().view(), c.expect));
  }
  if (!c.expect_lse.empty()) {
    RAGGED_ASSIGN_OR_RETURN(expect_lse_error, CompareWithFile(runner.lse()->view(), c.expect_lse));
  }
  const double tolerance = ExampleTolerance(in.dtype());
  const bool expect_passed = (!expect_error || *expect_error <= tolerance) &&
                             (!expect_lse_error || *expect_lse_error <= tolerance);

  // Outputs.
  if (!c.save_inputs.empty()) RAGGED_RETURN_IF_ERROR(SaveInputs(in, c.save_inputs));
  if (!c.save.empty()) {
    RAGGED_RETURN_IF_ERROR(MakeDir(c.save));
    RAGGED_RETURN_IF_ERROR(WriteNpy(absl::StrCat(c.save, "/output.npy"), runner.output().view()));
    if (runner.lse() != nullptr) {
      RAGGED_RETURN_IF_ERROR(WriteNpy(absl::StrCat(c.save, "/lse.npy"), runner.lse()->view()));
    }
  }

  const std::string device = platform == Platform::kCpu
                                 ? absl::StrCat("cpu (", HostThreads(c.threads), " threads)")
                                 : "cuda:0";
  Table table(absl::StrCat("ragged decode: 1 process, platform ", device));
  table.Add("query", absl::StrCat(DTypeName(in.dtype()), ShapeToString(in.query.shape())));
  table.Add("key, value",
            absl::StrCat(DTypeName(in.dtype()), ShapeToString(in.key.shape()), " each"));
  table.Add("lengths", LengthsSummary(in, c));
  table.Add("options", OptionsSummary(in, c));
  table.Rule();
  table.Add("valid K/V", absl::StrCat(FormatBytes(valid_bytes), " (padded ",
                                      FormatBytes(in.key.nbytes() * 2.0), ")"));
  table.Add("time per step", absl::StrFormat("%.4f ms (median of %d; min %.4f, max %.4f)",
                                             t.median_ms, t.count, t.min_ms, t.max_ms));
  table.Add("effective bw", absl::StrCat(FormatRate(bandwidth), " (valid K/V bytes / median)"));
  if (verified) {
    std::string what = c.verify == VerifyMode::kAll ? absl::StrCat("all ", verified->rows, " rows")
                                                    : absl::StrCat(verified->rows, " sampled rows");
    table.Add(
        "largest error",
        absl::StrFormat("%.3e%s vs the f64 reference (%s; tolerance %.0e): %s", verified->max_error,
                        runner.lse() ? absl::StrFormat(", lse %.3e", verified->max_lse_error) : "",
                        what, verified->tolerance, verified->passed ? "PASS" : "FAIL"));
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
  if (!c.save.empty())
    table.Add("saved", absl::StrCat(c.save, "/output.npy", runner.lse() ? ", lse.npy" : ""));
  table.Print(stdout);

  if (!c.json.empty()) {
    nlohmann::json j;
    j["ranks"] = 1;
    j["platform"] = std::string(PlatformName(platform));
    j["dtype"] = std::string(DTypeName(in.dtype()));
    j["query_shape"] = std::vector<int64_t>(in.query.shape().begin(), in.query.shape().end());
    j["kv_shape"] = std::vector<int64_t>(in.key.shape().begin(), in.key.shape().end());
    j["valid_kv_bytes"] = valid_bytes;
    j["time_ms"] = {{"median", t.median_ms},
                    {"min", t.min_ms},
                    {"mean", t.mean_ms},
                    {"max", t.max_ms},
                    {"count", t.count}};
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

}  // namespace
}  // namespace ragged::examples

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "ragged decode attention: runs decode steps, times them and checks them against the "
      "reference.\n  decode --batch=8 --capacity=4096 --lengths=uniform --dtype=bf16\n"
      "  decode --load=DIR --save=DIR --verify=all");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "decode: error: unexpected argument \"%s\" (flags are --name=value)\n",
                 rest[1]);
    return 2;
  }
  auto config = ragged::examples::ConfigFromFlags();
  if (!config.ok()) {
    std::fprintf(stderr, "decode: error: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  const absl::Status s = ragged::examples::Run(*config);
  if (!s.ok()) {
    std::fprintf(stderr, "decode: error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
