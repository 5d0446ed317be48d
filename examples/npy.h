// Npy: reading and writing NumPy's .npy files, so that a decode step captured from a Python
// engine (np.save) can be replayed by the examples, and their outputs read back with np.load.
//
// What is accepted (anything else is an InvalidArgument naming what was found, never a crash):
// - Format versions 1.0, 2.0 and 3.0 (header length as uint16 for 1.0, uint32 for 2.0 and 3.0;
//   3.0 only differs by allowing UTF-8 in the header, which we never need to interpret).
// - The header dict with exactly the keys 'descr', 'fortran_order' and 'shape', in any order,
//   quoted with ' or ", trailing commas and spaces allowed, as NumPy's own reader allows.
// - 'descr': '<f4' (f32), '<f2' (f16), '<i4' (i32); '|' or '=' instead of '<' is not accepted
//   for these (NumPy writes '<' on every little-endian machine). bfloat16 as NumPy writes it
//   from ml_dtypes: np.save(f, x.astype(ml_dtypes.bfloat16)) stores 'descr': '<V2' (a 2-byte
//   void: NumPy keeps no name for user dtypes), so '<V2' and '|V2' are read as bf16 bit
//   patterns; the explicit 'bfloat16' descr (what some writers emit) is accepted too. Big-endian
//   ('>f4'), other widths ('<f8', '<i8') and structured dtypes are rejected with the descr named.
// - C order only: 'fortran_order': True is an error (transpose or np.ascontiguousarray first).
// - The data must be exactly prod(shape) * itemsize bytes: a truncated file and trailing bytes
//   are both errors. Shapes up to kMaxNpyRank dimensions, each >= 0, and a total size that fits
//   in int64 bytes.
//
// Writing produces version 1.0 (2.0 when the header does not fit in 65535 bytes), with the header
// padded by spaces and a '\n' so that the data starts at a multiple of 64 bytes, as NumPy does;
// bf16 is written as '<V2' so that np.load(...).view(ml_dtypes.bfloat16) gives the values back.
//
// ParseNpy takes a byte buffer (no file system) so that it can be fuzzed. All functions are
// thread-safe; NpyArray owns its data.
//
//   RAGGED_ASSIGN_OR_RETURN(NpyArray q, ReadNpy("/tmp/step/query.npy"));
//   TensorView view = q.data.view();  // bf16[B, HQ, D], contiguous, on the host
//   RAGGED_RETURN_IF_ERROR(WriteNpy("/tmp/out/output.npy", out.view()));
#ifndef RAGGED_EXAMPLES_NPY_H_
#define RAGGED_EXAMPLES_NPY_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/buffer.h"
#include "runtime/tensor.h"

namespace ragged {

// The most dimensions a file may declare.
inline constexpr int kMaxNpyRank = 16;

struct NpyArray {
  HostBuffer data;  // contiguous, C order, of the file's dtype and shape
  DType dtype() const { return data.dtype(); }
  const Shape& shape() const { return data.shape(); }
};

// Parses a whole .npy file held in `bytes`. On success returns the array (its own copy of the
// data); on any malformed or unsupported input returns InvalidArgument whose message says what
// and where (byte offset or header text).
absl::StatusOr<NpyArray> ParseNpy(absl::Span<const uint8_t> bytes);

// Reads and parses `path`. NotFound when the file cannot be opened; InvalidArgument (prefixed with
// the path) when it is not a valid .npy file.
absl::StatusOr<NpyArray> ReadNpy(const std::string& path);

// The bytes of a .npy file holding `tensor`, which must be a contiguous host tensor
// (InvalidArgument otherwise).
absl::StatusOr<std::string> SerializeNpy(const TensorView& tensor);

// Writes SerializeNpy(tensor) to `path` (replacing it). Internal/PermissionDenied-style errors
// from the file system come back as Unavailable naming the path.
absl::Status WriteNpy(const std::string& path, const TensorView& tensor);

// The descr written for `dtype` ("<f4", "<f2", "<V2", "<i4").
absl::string_view NpyDescr(DType dtype);

}  // namespace ragged

#endif  // RAGGED_EXAMPLES_NPY_H_
