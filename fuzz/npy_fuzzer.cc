// Fuzz target: the .npy reader (examples/npy.h), on arbitrary bytes.
//
// What must hold, or the target aborts:
// - ParseNpy never crashes and returns OK or InvalidArgument whose message starts with "npy: ".
// - On OK, the array is used as the header's example uses it: view() describes exactly the bytes
//   that followed the header; SerializeNpy of that view succeeds, and parsing the result gives the
//   same dtype, shape and bytes (the writer and the reader agree).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/types/span.h"
#include "examples/npy.h"

namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "npy_fuzzer: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using ragged::NpyArray;
  auto parsed = ragged::ParseNpy(absl::MakeConstSpan(data, size));
  if (!parsed.ok()) {
    if (parsed.status().code() != absl::StatusCode::kInvalidArgument) {
      Fail("unexpected status code: " + parsed.status().ToString());
    }
    if (parsed.status().message().substr(0, 5) != "npy: ") {
      Fail("error message without the 'npy: ' prefix: " + parsed.status().ToString());
    }
    return 0;
  }
  const NpyArray& a = *parsed;
  const ragged::TensorView view = a.data.view();
  if (view.dtype() != a.dtype() || view.shape() != a.shape() || !view.is_contiguous()) {
    Fail("view() does not describe the array: " + view.DebugString());
  }
  if (view.nbytes() > static_cast<int64_t>(size)) {
    Fail("the array claims " + std::to_string(view.nbytes()) + " bytes from a " +
         std::to_string(size) + "-byte file");
  }
  // The data is the file's tail.
  if (view.nbytes() > 0 &&
      std::memcmp(view.data(), data + size - view.nbytes(), view.nbytes()) != 0) {
    Fail("the array's bytes differ from the file's data");
  }
  auto bytes = ragged::SerializeNpy(view);
  if (!bytes.ok()) Fail("SerializeNpy of a parsed array failed: " + bytes.status().ToString());
  auto again = ragged::ParseNpy(
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size()));
  if (!again.ok()) Fail("ParseNpy of SerializeNpy's output failed: " + again.status().ToString());
  if (again->dtype() != a.dtype() || again->shape() != a.shape()) {
    Fail("round trip changed the array: " + again->data.view().DebugString() + " vs " +
         view.DebugString());
  }
  if (view.nbytes() > 0 && std::memcmp(again->data.data(), a.data.data(), view.nbytes()) != 0) {
    Fail("round trip changed the data");
  }
  return 0;
}
