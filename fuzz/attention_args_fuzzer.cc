// Fuzz target: RaggedDecodeAttention's validation and host backends (platforms cpu and reference).
//
// Each input describes one call: shapes, dtypes, ranks, strides, devices, null pointers, ranges,
// options and the sinks' shape, as a mostly valid call with a few corruptions (FuzzInput: all-zero
// bytes are the plain valid call). The harness then owns, for every tensor it declares, storage of
// exactly the bytes that the declared shape and strides can address (negative strides included),
// so that any out-of-bounds access AddressSanitizer reports is a bug of the library, never of
// the harness. Values are drawn from a seeded generator, with a few specials (NaN, +-Inf, huge)
// placed where the input asks.
//
// What must hold, or the target aborts:
// - Never a crash, a sanitizer report, or a status other than OK or InvalidArgument (with a
//   message).
// - An error writes nothing: output and lse storage unchanged.
// - Inputs are never written; output/lse bytes that the declared view does not address are never
//   written (no stray writes into padding).
// - OK implies every row had 0 <= start <= end <= the KV capacity (host platforms check them).
// - OK with finite inputs and logits in f32 range: output finite, lse finite (or -inf for an
//   empty row without sinks).
// - OK with finite inputs, logits of moderate size and a non-overlapping output: output and lse
//   match an independent double-precision oracle written here from SPEC.md section 1 (global
//   positions in 128-bit integers, so it cannot share an overflow with the library).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "kernels/ragged_decode_attention.h"
#include "runtime/dtype.h"
#include "runtime/tensor.h"

namespace ragged::fuzz {
namespace {

using i128 = __int128;
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kI32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kI32Min = std::numeric_limits<int32_t>::min();
// The most bytes the harness allocates for one tensor; larger declarations are skipped.
constexpr i128 kMaxTensorBytes = 4 << 20;
// The most elements a tensor may declare. Stride-0 (broadcast) storage makes a legal call of any
// batch size out of a few bytes; such calls are valid but slow, so they are skipped.
constexpr i128 kMaxLogicalElements = 1 << 20;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "attention_args_fuzzer: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// splitmix64: the value generator (independent of the fuzzer's bytes once seeded).
struct Rng {
  uint64_t state;
  uint64_t Next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }  // [0, 1)
};

enum Slot { kQuery, kKey, kValue, kStart, kEnd, kAux, kOutput, kLse, kNumSlots };
constexpr const char* kSlotNames[kNumSlots] = {"query", "key", "value",  "start",
                                               "end",   "aux", "output", "lse"};

// One declared tensor and the storage behind it.
struct Decl {
  bool present = true;
  DType dtype = DType::kF32;
  Shape shape;
  Shape strides;
  Device device = Device::Cpu();
  bool null_data = false;
  // Storage: exactly the addressable bytes; `origin` is the element index of the view's element 0.
  std::unique_ptr<uint8_t[]> storage;
  int64_t storage_elems = 0;
  int64_t origin = 0;
  bool addressable = false;  // false: no element can be addressed (a dim is 0 or negative)

  int64_t esize() const { return DTypeSize(dtype); }
  void* data() const {
    if (null_data) return nullptr;
    return storage.get() + origin * esize();
  }
  TensorView view() const { return TensorView(data(), dtype, shape, strides, device); }
  float Load(int64_t offset) const { return LoadAsFloat(storage.get(), dtype, origin + offset); }
  int32_t LoadI32(int64_t offset) const {
    int32_t v;
    std::memcpy(&v, storage.get() + (origin + offset) * 4, 4);
    return v;
  }
};

// Calls fn(offset) for every index tuple of shape (offset = sum index_i * stride_i).
template <typename Fn>
void ForEachOffset(const Shape& shape, const Shape& strides, Fn fn) {
  for (int64_t d : shape) {
    if (d <= 0) return;
  }
  const int r = static_cast<int>(shape.size());
  std::vector<int64_t> idx(r, 0);
  int64_t offset = 0;
  while (true) {
    fn(offset);
    int i = r - 1;
    for (; i >= 0; --i) {
      if (++idx[i] < shape[i]) {
        offset += strides[i];
        break;
      }
      offset -= (shape[i] - 1) * strides[i];
      idx[i] = 0;
    }
    if (i < 0) return;
  }
}

// Row-major strides over `shape` in the physical order `order` (outermost first, innermost last),
// with `pad` extra elements added to each stride above the innermost.
Shape StridesInOrder(const Shape& shape, const std::vector<int>& order, int64_t pad) {
  Shape strides(shape.size(), 0);
  int64_t s = 1;
  for (int j = static_cast<int>(order.size()) - 1; j >= 0; --j) {
    const int i = order[j];
    strides[i] = s;
    const i128 next = static_cast<i128>(s) * std::max<int64_t>(shape[i], 1) +
                      (j < static_cast<int>(order.size()) - 1 ? pad : 0);
    // Saturates: the allocation bound rejects such a declaration anyway.
    s = next > (i128{1} << 40) ? int64_t{1} << 40 : static_cast<int64_t>(next);
  }
  return strides;
}

// Picks a layout: contiguous, padded, permuted (innermost fixed), broadcast (a stride 0), or
// arbitrary non-negative strides. The innermost stride is 1.
Shape PickStrides(FuzzInput& in, const Shape& shape) {
  const int r = static_cast<int>(shape.size());
  std::vector<int> order(r);
  for (int i = 0; i < r; ++i) order[i] = i;
  switch (in.Byte() % 6) {
    default:  // 0, 5: contiguous (twice as likely)
      return StridesInOrder(shape, order, 0);
    case 1:
      return StridesInOrder(shape, order, in.IntInRange(1, 5));
    case 2: {
      if (r > 2) {
        for (int i = r - 2; i > 0; --i) std::swap(order[i], order[in.IntInRange(0, i)]);
      }
      return StridesInOrder(shape, order, in.IntInRange(0, 1));
    }
    case 3: {
      Shape s = StridesInOrder(shape, order, 0);
      if (r > 1) s[in.IntInRange(0, r - 2)] = 0;
      return s;
    }
    case 4: {
      Shape s(r, 1);
      for (int i = 0; i + 1 < r; ++i) {
        s[i] = shape[i] == 1 && in.OneIn(3) ? in.Pick<int64_t>({kI64Max, int64_t{1} << 40, -7})
                                            : in.IntInRange(0, 64);
      }
      return s;
    }
  }
}

// Allocates the storage that the declaration can address. False when it would be too large.
bool Allocate(Decl& t) {
  t.addressable = true;
  for (int64_t d : t.shape) {
    if (d <= 0) t.addressable = false;
  }
  i128 lo = 0, hi = 0;
  if (t.addressable) {
    for (size_t i = 0; i < t.shape.size(); ++i) {
      const i128 reach = static_cast<i128>(t.shape[i] - 1) * t.strides[i];
      if (reach > kMaxTensorBytes || reach < -kMaxTensorBytes) return false;
      (reach < 0 ? lo : hi) += reach;
    }
  }
  const i128 elems = t.addressable ? hi - lo + 1 : 0;
  if (elems * t.esize() > kMaxTensorBytes) return false;
  t.storage_elems = static_cast<int64_t>(elems);
  t.origin = static_cast<int64_t>(-lo);
  // new[0] is a valid, unique pointer that ASan reports on any access.
  t.storage.reset(new uint8_t[static_cast<size_t>(elems * t.esize())]);
  return true;
}

int64_t SatAdd(int64_t a, int64_t b) {
  const i128 s = static_cast<i128>(a) + b;
  return s > kI64Max ? kI64Max : (s < kI64Min ? kI64Min : static_cast<int64_t>(s));
}

int64_t InterestingDim(FuzzInput& in) {
  return in.Pick<int64_t>({0, 1, 2, 3, 5, 7, 16, 33, 64, -1, kI32Max, int64_t{1} << 31,
                           (int64_t{1} << 32) + 1, int64_t{1} << 62, kI64Max, kI64Min});
}

float InterestingFloat(FuzzInput& in, std::initializer_list<float> usual) {
  constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const uint8_t k = in.Byte();
  if (k < 192) return *(usual.begin() + k % usual.size());
  switch (k % 8) {
    case 0:
      return 0.0f;
    case 1:
      return -1.0f;
    case 2:
      return kNaN;
    case 3:
      return kInf;
    case 4:
      return -kInf;
    case 5:
      return 1e-40f;  // subnormal
    case 6:
      return std::numeric_limits<float>::max();
    default:
      return in.RawFloat();
  }
}

// The oracle: SPEC.md section 1 in double, positions in 128-bit integers.
struct Oracle {
  std::vector<double> out;  // [B, HQ, D]
  std::vector<double> lse;  // [B, HQ]
  double max_abs_logit = 0.0;
  double max_abs_value = 0.0;
};

struct Call {
  std::array<Decl, kNumSlots> t;
  RaggedDecodeAttentionOptions options;
};

Oracle ComputeOracle(const Call& c) {
  const Decl& q = c.t[kQuery];
  const Decl& k = c.t[kKey];
  const Decl& v = c.t[kValue];
  const Decl& aux = c.t[kAux];
  const bool q4 = q.shape.size() == 4;
  const int64_t B = q.shape[0], HQ = q.shape[q4 ? 2 : 1], D = q.shape[q4 ? 3 : 2];
  const int64_t S = k.shape[1], HKV = k.shape[2], group = HQ / HKV;
  const int64_t q_token = q4 ? (q.shape[1] - 1) * q.strides[1] : 0;
  const int64_t qs_h = q.strides[q4 ? 2 : 1], qs_d = q.strides[q4 ? 3 : 2];
  const double scale = c.options.softmax_scale.has_value()
                           ? static_cast<double>(*c.options.softmax_scale)
                           : static_cast<double>(static_cast<float>(1.0 / std::sqrt(double(D))));
  const double cap = c.options.logits_soft_cap.value_or(0.0f);
  const i128 kv_offset = c.options.kv_offset;
  const i128 left = c.options.sliding_window ? c.options.sliding_window->left : -1;
  const i128 right = c.options.sliding_window ? c.options.sliding_window->right : -1;
  Oracle o;
  o.out.assign(B * HQ * D, 0.0);
  o.lse.assign(B * HQ, -std::numeric_limits<double>::infinity());
  std::vector<double> logits;
  std::vector<int64_t> positions;
  for (int64_t b = 0; b < B; ++b) {
    const i128 s = c.t[kStart].LoadI32(b * c.t[kStart].strides[0]);
    const i128 e = c.t[kEnd].LoadI32(b * c.t[kEnd].strides[0]);
    for (int64_t h = 0; h < HQ; ++h) {
      const int64_t g = h / group;
      logits.clear();
      positions.clear();
      if (e > s) {
        const i128 qpos = e - 1;
        for (int64_t t = 0; t < S; ++t) {
          const i128 pos = kv_offset + t;
          if (pos < s || pos >= e) continue;
          if (left >= 0 && pos < qpos - left) continue;
          if (right >= 0 && pos > qpos + right) continue;
          double dot = 0.0;
          for (int64_t d = 0; d < D; ++d) {
            dot +=
                static_cast<double>(q.Load(b * q.strides[0] + q_token + h * qs_h + d * qs_d)) *
                k.Load(b * k.strides[0] + t * k.strides[1] + g * k.strides[2] + d * k.strides[3]);
          }
          double x = scale * dot;
          o.max_abs_logit = std::max(o.max_abs_logit, std::abs(x));
          if (cap > 0.0) x = cap * std::tanh(x / cap);
          logits.push_back(x);
          positions.push_back(t);
        }
      }
      std::vector<double> sinks;
      if (aux.present) {
        const bool rank1 = aux.shape.size() == 1;
        const int64_t ns = rank1 ? aux.shape[0] : aux.shape[1];
        const int64_t row = rank1 ? 0 : (aux.shape[0] == HQ ? h : g);
        const int64_t row_stride = rank1 ? 0 : aux.strides[0];
        const int64_t sink_stride = rank1 ? aux.strides[0] : aux.strides[1];
        for (int64_t j = 0; j < ns; ++j)
          sinks.push_back(aux.Load(row * row_stride + j * sink_stride));
      }
      double m = -std::numeric_limits<double>::infinity();
      for (double x : logits) m = std::max(m, x);
      for (double a : sinks) m = std::max(m, a);
      double denom = 0.0;
      for (double a : sinks) denom += std::exp(a - m);
      double* out = &o.out[(b * HQ + h) * D];
      for (size_t i = 0; i < logits.size(); ++i) {
        const double w = std::exp(logits[i] - m);
        denom += w;
        for (int64_t d = 0; d < D; ++d) {
          const double val = v.Load(b * v.strides[0] + positions[i] * v.strides[1] +
                                    g * v.strides[2] + d * v.strides[3]);
          o.max_abs_value = std::max(o.max_abs_value, std::abs(val));
          out[d] += w * val;
        }
      }
      if (!logits.empty()) {
        for (int64_t d = 0; d < D; ++d) out[d] /= denom;
      }
      if (!logits.empty() || !sinks.empty()) o.lse[b * HQ + h] = m + std::log(denom);
    }
  }
  return o;
}

double OutputTolerance(DType t) {
  switch (t) {
    case DType::kF16:
      return 2e-3;
    case DType::kBF16:
      return 1.6e-2;
    default:
      return 1e-4;
  }
}

// Whether every element the view addresses is distinct (an output that overlaps itself has no
// single right answer).
std::vector<uint8_t> AddressedMask(const Decl& t, bool* overlaps) {
  std::vector<uint8_t> mask(t.storage_elems, 0);
  *overlaps = false;
  if (!t.addressable) return mask;
  ForEachOffset(t.shape, t.strides, [&](int64_t off) {
    uint8_t& m = mask[t.origin + off];
    if (m) *overlaps = true;
    m = 1;
  });
  return mask;
}

std::string Bytes(const Decl& t) {
  return std::string(reinterpret_cast<const char*>(t.storage.get()), t.storage_elems * t.esize());
}

// Fills a floating tensor with values of magnitude up to `magnitude`, then `specials` of them
// with non-finite or huge values.
void FillFloating(FuzzInput& in, Decl& t, Rng& rng, double magnitude, int specials) {
  for (int64_t i = 0; i < t.storage_elems; ++i) {
    StoreFromFloat(t.storage.get(), t.dtype, i,
                   static_cast<float>((rng.Uniform() * 2.0 - 1.0) * magnitude));
  }
  for (int j = 0; j < specials && t.storage_elems > 0; ++j) {
    const int64_t i = static_cast<int64_t>(in.U32() % static_cast<uint64_t>(t.storage_elems));
    const float special = in.Pick<float>(
        {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
         -std::numeric_limits<float>::infinity(), 1e30f, -1e30f, 65504.0f, 1e-40f, -0.0f});
    StoreFromFloat(t.storage.get(), t.dtype, i, special);
  }
}

// Writes per-row start/end values (i32 storage) for the chosen range mode.
void FillRanges(FuzzInput& in, Call& c, Rng& rng, int64_t batch, int64_t capacity) {
  Decl& st = c.t[kStart];
  Decl& en = c.t[kEnd];
  capacity = std::clamp<int64_t>(capacity, 0, kI32Max);
  const int64_t kv_offset = std::max<int64_t>(c.options.kv_offset, 0);
  const int64_t local_end = SatAdd(kv_offset, capacity);
  const int64_t total = std::min<int64_t>(
      c.options.kv_total_capacity > 0 ? c.options.kv_total_capacity : local_end, kI32Max);
  const uint8_t mode = in.Byte() % 6;
  auto random_in = [&](int64_t lo, int64_t hi) {  // [lo, hi], hi >= lo
    return lo + static_cast<int64_t>(rng.Next() % static_cast<uint64_t>(hi - lo + 1));
  };
  auto put = [&](Decl& t, int64_t b, int64_t value) {
    if (t.dtype != DType::kI32 || !t.addressable || t.shape.empty() || b >= t.shape[0]) return;
    reinterpret_cast<int32_t*>(t.storage.get())[t.origin + b * t.strides[0]] =
        static_cast<int32_t>(value);
  };
  for (Decl* t : {&st, &en}) {
    if (t->dtype == DType::kI32) {
      std::memset(t->storage.get(), 0, t->storage_elems * 4);
    } else if (IsFloating(t->dtype)) {
      FillFloating(in, *t, rng, 4.0, 0);
    }
  }
  for (int64_t b = 0; b < batch; ++b) {
    int64_t s = 0, e = total;
    switch (mode) {
      case 0:  // every row full
        break;
      case 1:  // random valid
      case 5:
        e = random_in(0, std::max<int64_t>(total, 0));
        s = random_in(0, e);
        break;
      case 2: {  // around this tensor's slice of the cache
        const int64_t lo = std::min<int64_t>(kv_offset, total);
        const int64_t hi = std::min<int64_t>(local_end, total);
        e = random_in(lo, std::max(lo, hi));
        s = random_in(lo, e);
        break;
      }
      case 3:  // empty rows
        s = e = random_in(0, std::max<int64_t>(total, 0));
        break;
      case 4: {  // anything
        auto pick = [&] {
          return in.Pick<int64_t>({0, 1, -1, capacity, capacity + 1, total, total + 1, kI32Max,
                                   kI32Min, random_in(0, 2 * capacity + 2)});
        };
        s = pick();
        e = pick();
        break;
      }
    }
    put(st, b, s);
    put(en, b, e);
  }
}

// Builds the call from the input. False when the input declares more memory than allowed.
bool BuildCall(FuzzInput& in, Call& c, int* specials_out, double* magnitude_out) {
  // The plain problem.
  const int64_t B = in.IntInRange(1, 4) - (in.OneIn(8) ? 1 : 0);  // sometimes 0
  const int64_t HKV = in.IntInRange(1, 3);
  const int64_t HQ = HKV * in.Pick<int64_t>({1, 2, 4, 3});
  const int64_t D = in.Pick<int64_t>({8, 16, 1, 2, 3, 4, 5, 32, 64, 7});
  const int64_t S = in.Pick<int64_t>({16, 1, 2, 5, 8, 31, 64, 0, 130, 300});
  const int64_t T = in.Pick<int64_t>({0, 0, 1, 3});  // 0: a 3-D query
  const DType dtype = in.Pick<DType>({DType::kF32, DType::kBF16, DType::kF16});
  const int sinks = in.Byte() % 4;  // none, [NS], [HKV, NS], [HQ, NS]
  const int64_t NS = in.IntInRange(1, 3);
  const bool out_f32 = in.Bool();
  const bool out_4d = in.OneIn(4);
  const bool with_lse = !in.OneIn(4);

  Decl* t = c.t.data();
  t[kQuery].shape = T > 0 ? Shape{B, T, HQ, D} : Shape{B, HQ, D};
  t[kKey].shape = t[kValue].shape = Shape{B, S, HKV, D};
  t[kStart].shape = t[kEnd].shape = Shape{B};
  t[kAux].present = sinks != 0;
  t[kAux].shape = sinks == 1 ? Shape{NS} : Shape{sinks == 2 ? HKV : HQ, NS};
  t[kOutput].shape = out_4d ? Shape{B, 1, HQ, D} : Shape{B, HQ, D};
  t[kLse].present = with_lse;
  t[kLse].shape = Shape{B, HQ};
  for (Slot s : {kQuery, kKey, kValue, kOutput}) t[s].dtype = dtype;
  if (out_f32) t[kOutput].dtype = DType::kF32;
  t[kStart].dtype = t[kEnd].dtype = DType::kI32;
  t[kAux].dtype = in.Bool() ? dtype : DType::kF32;
  t[kLse].dtype = DType::kF32;

  // Corruptions of shapes, ranks, dtypes and presence (most inputs have none).
  auto count = [&] {
    const uint8_t n = in.Byte();
    return n < 160 ? 0 : (n < 224 ? 1 : (n < 248 ? 2 : 3));
  };
  for (int n = count(); n > 0; --n) {
    Decl& d = t[in.Byte() % kNumSlots];
    switch (in.Byte() % 5) {
      case 0:
        if (!d.shape.empty()) d.shape[in.Byte() % d.shape.size()] = InterestingDim(in);
        break;
      case 1:
        if (in.Bool() && !d.shape.empty()) {
          d.shape.erase(d.shape.begin() + in.Byte() % d.shape.size());
        } else {
          d.shape.insert(d.shape.begin() + in.Byte() % (d.shape.size() + 1), in.IntInRange(0, 3));
        }
        break;
      case 2:
        d.dtype = in.Pick<DType>({DType::kF32, DType::kF16, DType::kBF16, DType::kI32});
        break;
      case 3:  // only the optional tensors may be left out
        if (&d == &t[kAux] || &d == &t[kLse]) d.present = !d.present;
        break;
      case 4:
        d.shape = Shape{};  // a scalar
        break;
    }
  }
  for (Decl& d : c.t) d.strides = PickStrides(in, d.shape);
  // Corruptions of strides, devices and pointers.
  for (int n = count(); n > 0; --n) {
    Decl& d = t[in.Byte() % kNumSlots];
    switch (in.Byte() % 3) {
      case 0:
        if (!d.strides.empty()) {
          d.strides[in.Byte() % d.strides.size()] = in.Pick<int64_t>(
              {0, 2, -1, -8, int64_t{1} << 31, int64_t{1} << 40, kI64Max / 2, kI64Min, 3});
        }
        break;
      case 1:
        d.device = Device::Cuda(in.IntInRange(0, 1));
        break;
      case 2:
        d.null_data = true;
        break;
    }
  }
  for (Decl& d : c.t) {
    if (!Allocate(d)) return false;
    i128 elements = 1;
    for (int64_t x : d.shape) {
      elements *= std::max<int64_t>(x, 0);
      if (elements > kMaxLogicalElements) return false;
    }
  }

  // Options.
  RaggedDecodeAttentionOptions& o = c.options;
  o.platform = in.Pick<Platform>({Platform::kCpu, Platform::kReference});
  const uint8_t flags = in.Byte();
  if (flags & 1) o.softmax_scale = InterestingFloat(in, {0.125f, 1.0f, 1e-3f, 10.0f, 100.0f, 1e4f});
  if (flags & 2) o.logits_soft_cap = InterestingFloat(in, {30.0f, 50.0f, 1.0f, 1e-3f, 1e4f});
  if (flags & 4) {
    auto side = [&] {
      return in.Pick<int64_t>({-1, 0, 1, 2, 7, 100, -2, kI64Max, kI64Min, int64_t{1} << 31,
                               kI64Max - 1, in.IntInRange(0, 40)});
    };
    o.sliding_window = SlidingWindow{side(), side()};
  }
  if (flags & 8) {
    o.kv_offset = in.Pick<int64_t>({1, 7, S, kI32Max, int64_t{1} << 31, int64_t{1} << 40, kI64Max,
                                    kI64Max - S, -1, in.IntInRange(0, 64)});
  }
  if (flags & 16) {
    const int64_t local_end = SatAdd(o.kv_offset, S);
    o.kv_total_capacity = in.Pick<int64_t>({local_end, SatAdd(local_end, 1), SatAdd(local_end, 100),
                                            kI32Max, int64_t{1} << 31, kI64Max, 5, -1});
  }
  if (flags & 32) o.num_threads = in.Pick<int>({1, 2, 3, -1});
  o.validate_ranges = (flags & 64) != 0;

  // Values.
  Rng rng{in.U64()};
  const double magnitude = in.Pick<double>({2.0, 2.0, 1.0, 0.01, 100.0, 1e4});
  const int specials = in.OneIn(4) ? in.IntInRange(1, 3) : 0;
  for (Slot s : {kQuery, kKey, kValue, kAux}) {
    if (IsFloating(t[s].dtype)) {
      FillFloating(in, t[s], rng, magnitude, specials);
    } else {
      for (int64_t i = 0; i < t[s].storage_elems; ++i) {
        reinterpret_cast<int32_t*>(t[s].storage.get())[i] = static_cast<int32_t>(rng.Next());
      }
    }
  }
  FillRanges(in, c, rng, t[kStart].shape.empty() ? 0 : t[kStart].shape[0],
             t[kKey].shape.size() > 1 ? t[kKey].shape[1] : 0);
  for (Slot s : {kOutput, kLse}) {
    std::memset(t[s].storage.get(), 0x7f, t[s].storage_elems * t[s].esize());
  }
  *specials_out = specials;
  *magnitude_out = magnitude;
  return true;
}

bool AllFinite(const Decl& t) {
  if (!t.present || !IsFloating(t.dtype)) return true;
  for (int64_t i = 0; i < t.storage_elems; ++i) {
    if (!std::isfinite(LoadAsFloat(t.storage.get(), t.dtype, i))) return false;
  }
  return true;
}

// How far CheckResult could check a call (printed with RAGGED_FUZZ_VERBOSE=1).
enum class Checked { kError, kNoCrashOnly, kFinite, kOracle };
constexpr const char* kCheckedNames[] = {"error path", "no crash (non-finite inputs or overlap)",
                                         "finiteness", "oracle"};

Checked CheckResult(const Call& c, const absl::Status& status,
                    const std::string (&before)[kNumSlots]) {
  const Decl* t = c.t.data();
  // Inputs are never written.
  for (Slot s : {kQuery, kKey, kValue, kStart, kEnd, kAux}) {
    if (Bytes(t[s]) != before[s]) Fail(std::string("the call wrote into input ") + kSlotNames[s]);
  }
  if (!status.ok()) {
    if (status.code() != absl::StatusCode::kInvalidArgument) {
      Fail("unexpected status code: " + status.ToString());
    }
    if (status.message().empty()) Fail("an error without a message");
    for (Slot s : {kOutput, kLse}) {
      if (Bytes(t[s]) != before[s]) {
        Fail(std::string("an error (") + std::string(status.message()) + ") still wrote " +
             kSlotNames[s]);
      }
    }
    return Checked::kError;
  }
  // OK: the call was valid, so the declared shapes are the ones SPEC.md allows.
  const bool q4 = t[kQuery].shape.size() == 4;
  const int64_t B = t[kQuery].shape[0], HQ = t[kQuery].shape[q4 ? 2 : 1],
                D = t[kQuery].shape[q4 ? 3 : 2];
  const bool o4 = t[kOutput].shape.size() == 4;
  const int64_t S = t[kKey].shape[1];
  const int64_t total = c.options.kv_total_capacity > 0 ? c.options.kv_total_capacity
                                                        : SatAdd(c.options.kv_offset, S);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t s = t[kStart].LoadI32(b * t[kStart].strides[0]);
    const int64_t e = t[kEnd].LoadI32(b * t[kEnd].strides[0]);
    if (s < 0 || e < s || e > total) {
      Fail("OK for row " + std::to_string(b) + " with [start, end) = [" + std::to_string(s) + ", " +
           std::to_string(e) + ") and capacity " + std::to_string(total));
    }
  }
  // No stray writes into bytes the output views do not address.
  bool overlaps = false;
  for (Slot s : {kOutput, kLse}) {
    if (!t[s].present) continue;
    bool this_overlaps = false;
    const std::vector<uint8_t> mask = AddressedMask(t[s], &this_overlaps);
    overlaps |= this_overlaps;
    const int64_t es = t[s].esize();
    for (int64_t i = 0; i < t[s].storage_elems; ++i) {
      if (!mask[i] && std::memcmp(t[s].storage.get() + i * es, before[s].data() + i * es, es)) {
        Fail(std::string("wrote element ") + std::to_string(i) + " of " + kSlotNames[s] +
             "'s storage, which the view does not address");
      }
    }
  }
  for (Slot s : {kQuery, kKey, kValue, kAux}) {
    if (!AllFinite(t[s])) return Checked::kNoCrashOnly;  // only "no crash" is promised
  }
  if (overlaps) return Checked::kNoCrashOnly;
  const Oracle want = ComputeOracle(c);
  // An f32 backend may scale the query before the dot product: keep the scale moderate too.
  const double scale = c.options.softmax_scale.value_or(1.0f);
  const bool logits_in_range = want.max_abs_logit < 1e30 && scale <= 1e6;
  const bool compare = want.max_abs_logit < 100.0;
  const double tol = OutputTolerance(t[kOutput].dtype) * std::max(1.0, want.max_abs_value);
  const Decl& out = t[kOutput];
  const Decl& lse = t[kLse];
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < HQ; ++h) {
      for (int64_t d = 0; d < D; ++d) {
        const int64_t off = o4 ? b * out.strides[0] + h * out.strides[2] + d * out.strides[3]
                               : b * out.strides[0] + h * out.strides[1] + d * out.strides[2];
        const double got = out.Load(off);
        const double ref = want.out[(b * HQ + h) * D + d];
        if (logits_in_range && !std::isfinite(got)) {
          Fail("non-finite output " + std::to_string(got) + " from finite inputs at b=" +
               std::to_string(b) + " h=" + std::to_string(h) + " d=" + std::to_string(d));
        }
        if (compare && !(std::abs(got - ref) <= tol)) {
          Fail("output at b=" + std::to_string(b) + " h=" + std::to_string(h) +
               " d=" + std::to_string(d) + " is " + std::to_string(got) + ", oracle " +
               std::to_string(ref));
        }
      }
      if (!lse.present) continue;
      const double got = lse.Load(b * lse.strides[0] + h * lse.strides[1]);
      const double ref = want.lse[b * HQ + h];
      if (std::isinf(ref) && ref < 0) {
        if (!(std::isinf(got) && got < 0)) {
          Fail("lse of an empty row is " + std::to_string(got) + ", expected -inf");
        }
        continue;
      }
      if (logits_in_range && !std::isfinite(got)) {
        Fail("non-finite lse " + std::to_string(got) + " from finite inputs");
      }
      if (compare && !(std::abs(got - ref) <= 1e-4 * std::max(1.0, std::abs(ref)))) {
        Fail("lse at b=" + std::to_string(b) + " h=" + std::to_string(h) + " is " +
             std::to_string(got) + ", oracle " + std::to_string(ref));
      }
    }
  }
  return compare ? Checked::kOracle : Checked::kFinite;
}

// One line per tensor and one for the options: what an input decodes to (RAGGED_FUZZ_VERBOSE=1).
std::string Describe(const Call& c, const absl::Status& status) {
  std::string out;
  for (int s = 0; s < kNumSlots; ++s) {
    const Decl& d = c.t[s];
    out += std::string(kSlotNames[s]) + ": " + (d.present ? "" : "(not passed) ") +
           std::string(DTypeName(d.dtype)) + ShapeToString(d.shape) + " strides " +
           ShapeToString(d.strides) + " on " + d.device.ToString() + (d.null_data ? " null" : "") +
           "\n";
    if ((s == kStart || s == kEnd) && d.dtype == DType::kI32 && d.addressable &&
        d.shape.size() == 1) {
      out += "  values:";
      for (int64_t b = 0; b < d.shape[0]; ++b)
        out += " " + std::to_string(d.LoadI32(b * d.strides[0]));
      out += "\n";
    }
  }
  const RaggedDecodeAttentionOptions& o = c.options;
  out += "options: platform " + std::string(PlatformName(o.platform));
  if (o.softmax_scale) out += " scale " + std::to_string(*o.softmax_scale);
  if (o.logits_soft_cap) out += " cap " + std::to_string(*o.logits_soft_cap);
  if (o.sliding_window) {
    out += " window (" + std::to_string(o.sliding_window->left) + ", " +
           std::to_string(o.sliding_window->right) + ")";
  }
  out += " kv_offset " + std::to_string(o.kv_offset) + " kv_total_capacity " +
         std::to_string(o.kv_total_capacity) + " num_threads " + std::to_string(o.num_threads) +
         "\nstatus: " + status.ToString() + "\n";
  return out;
}

}  // namespace
}  // namespace ragged::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ragged;
  using namespace ragged::fuzz;
  FuzzInput in(data, size);
  Call c;
  int specials = 0;
  double magnitude = 0.0;
  if (!BuildCall(in, c, &specials, &magnitude)) return 0;
  RaggedDecodeAttentionArgs args;
  args.query = c.t[kQuery].view();
  args.key = c.t[kKey].view();
  args.value = c.t[kValue].view();
  args.sequence_start = c.t[kStart].view();
  args.sequence_end = c.t[kEnd].view();
  if (c.t[kAux].present) args.softmax_aux = c.t[kAux].view();
  args.output = c.t[kOutput].view();
  if (c.t[kLse].present) args.lse = c.t[kLse].view();
  std::string before[kNumSlots];
  for (int s = 0; s < kNumSlots; ++s) before[s] = Bytes(c.t[s]);
  const absl::Status status = RaggedDecodeAttention(args, c.options);
  static const bool verbose = std::getenv("RAGGED_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "%s", Describe(c, status).c_str());
  const Checked checked = CheckResult(c, status, before);
  if (verbose) std::fprintf(stderr, "checked: %s\n", kCheckedNames[static_cast<int>(checked)]);
  return 0;
}
