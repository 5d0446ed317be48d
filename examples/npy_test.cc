// Tests of the .npy reader and writer: files written by NumPy 2.4 and ml_dtypes 0.6 (in
// examples/testdata, see its README), byte-exact agreement of the writer with NumPy, round trips,
// and one malformed input per error path.
#include "examples/npy.h"

#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace ragged {
namespace {

std::string TestData(const std::string& name) {
  return absl::StrCat(RAGGED_EXAMPLES_TESTDATA, "/", name);
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// A .npy file with the given header text (unpadded) and data bytes.
std::string MakeNpy(const std::string& header, const std::string& data, int major = 1) {
  std::string out = "\x93NUMPY";
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  const uint32_t len = static_cast<uint32_t>(header.size());
  out.push_back(static_cast<char>(len & 0xff));
  out.push_back(static_cast<char>((len >> 8) & 0xff));
  if (major >= 2) {
    out.push_back(static_cast<char>((len >> 16) & 0xff));
    out.push_back(static_cast<char>((len >> 24) & 0xff));
  }
  return out + header + data;
}

TEST(NpyTest, ReadsFloat32WrittenByNumPy) {
  auto a = ReadNpy(TestData("f32_2x3.npy"));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->dtype(), DType::kF32);
  EXPECT_EQ(a->shape(), Shape({2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(a->data.data_as<float>()[i], i - 2.5f);
}

TEST(NpyTest, ReadsBFloat16FromMlDtypes) {
  auto a = ReadNpy(TestData("bf16_vec.npy"));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->dtype(), DType::kBF16);
  EXPECT_EQ(a->shape(), Shape({4}));
  const float want[] = {1.5f, -2.0f, 3.140625f, 0.0f};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(LoadAsFloat(a->data.data(), DType::kBF16, i), want[i]);
}

TEST(NpyTest, ReadsEmptyAndScalar) {
  auto e = ReadNpy(TestData("f16_empty.npy"));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->dtype(), DType::kF16);
  EXPECT_EQ(e->shape(), Shape({0, 4}));
  auto s = ReadNpy(TestData("i32_scalar.npy"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->dtype(), DType::kI32);
  EXPECT_TRUE(s->shape().empty());
  EXPECT_EQ(s->data.data_as<int32_t>()[0], 7);
}

TEST(NpyTest, ReadsVersions2And3) {
  auto v2 = ReadNpy(TestData("f32_v2.npy"));
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ(v2->shape(), Shape({3}));
  EXPECT_EQ(v2->data.data_as<float>()[2], 3.0f);
  auto v3 = ReadNpy(TestData("f16_v3.npy"));
  ASSERT_TRUE(v3.ok()) << v3.status();
  EXPECT_EQ(v3->shape(), Shape({2, 1}));
  EXPECT_EQ(LoadAsFloat(v3->data.data(), DType::kF16, 1), -1.0f);
}

TEST(NpyTest, RejectsFortranOrderAndFloat64FromNumPy) {
  auto f = ReadNpy(TestData("fortran.npy"));
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(f.status().message().find("Fortran order"), std::string::npos) << f.status();
  EXPECT_NE(f.status().message().find("fortran.npy"), std::string::npos) << f.status();
  auto d = ReadNpy(TestData("f64.npy"));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("'<f8'"), std::string::npos) << d.status();
}

TEST(NpyTest, MissingFileIsNotFound) {
  auto a = ReadNpy("/nonexistent/dir/x.npy");
  EXPECT_EQ(a.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(a.status().message().find("/nonexistent/dir/x.npy"), std::string::npos);
}

// The writer produces the very bytes that np.save produces.
class NpyWriterMatchesNumPy : public ::testing::TestWithParam<const char*> {};

TEST_P(NpyWriterMatchesNumPy, SameBytes) {
  const std::string numpy_bytes = Slurp(TestData(GetParam()));
  ASSERT_FALSE(numpy_bytes.empty());
  auto a = ParseNpy(Bytes(numpy_bytes));
  ASSERT_TRUE(a.ok()) << a.status();
  auto ours = SerializeNpy(a->data.view());
  ASSERT_TRUE(ours.ok()) << ours.status();
  EXPECT_EQ(*ours, numpy_bytes);
}

INSTANTIATE_TEST_SUITE_P(Files, NpyWriterMatchesNumPy,
                         ::testing::Values("f32_2x3.npy", "bf16_vec.npy", "f16_empty.npy",
                                           "i32_scalar.npy"),
                         [](const auto& info) {
                           std::string n = info.param;
                           return n.substr(0, n.find('.'));
                         });

struct RoundTripCase {
  DType dtype;
  std::vector<int64_t> shape;
  friend void PrintTo(const RoundTripCase& c, std::ostream* os) {
    *os << DTypeName(c.dtype) << ShapeToString(c.shape);
  }
};

class NpyRoundTrip : public ::testing::TestWithParam<RoundTripCase> {};

TEST_P(NpyRoundTrip, WriteThenRead) {
  const RoundTripCase& c = GetParam();
  HostBuffer buf = HostBuffer::Allocate(c.dtype, c.shape);
  std::mt19937 rng(42);
  auto* bytes = static_cast<uint8_t*>(buf.data());
  for (int64_t i = 0; i < buf.nbytes(); ++i) bytes[i] = static_cast<uint8_t>(rng());
  const std::string path =
      absl::StrCat(::testing::TempDir(), "/roundtrip_", DTypeName(c.dtype), ".npy");
  ASSERT_TRUE(WriteNpy(path, buf.view()).ok());
  const std::string file = Slurp(path);
  EXPECT_EQ(file.size() % 64, static_cast<size_t>(buf.nbytes() % 64)) << "data not 64-aligned";
  auto back = ReadNpy(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->dtype(), c.dtype);
  EXPECT_EQ(back->shape(), buf.shape());
  EXPECT_EQ(std::memcmp(back->data.data(), buf.data(), buf.nbytes()), 0);
}

INSTANTIATE_TEST_SUITE_P(
    DTypes, NpyRoundTrip,
    ::testing::Values(RoundTripCase{DType::kF32, {3, 5, 7}}, RoundTripCase{DType::kF16, {17}},
                      RoundTripCase{DType::kBF16, {2, 4, 3, 8}}, RoundTripCase{DType::kI32, {9}},
                      RoundTripCase{DType::kBF16, {}}, RoundTripCase{DType::kF32, {4, 0, 2}}),
    [](const auto& info) {
      return absl::StrCat(DTypeName(info.param.dtype), "_rank", info.param.shape.size(), "_",
                          info.index);
    });

TEST(NpyTest, WriterRejectsStridedViews) {
  HostBuffer buf = HostBuffer::Allocate(DType::kF32, {4, 4});
  const int64_t shape[] = {4, 2};
  const int64_t strides[] = {4, 2};
  TensorView strided(buf.data(), DType::kF32, shape, strides);
  auto s = SerializeNpy(strided);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("contiguous"), std::string::npos) << s.status();
}

TEST(NpyTest, AcceptsBFloat16DescrAndLooseSpacing) {
  const std::string data(4, '\0');
  auto a =
      ParseNpy(Bytes(MakeNpy("{ \"shape\":(2,) ,'fortran_order':False,'descr':'bfloat16'}", data)));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->dtype(), DType::kBF16);
  EXPECT_EQ(a->shape(), Shape({2}));
}

// Every malformed input gives InvalidArgument with a message that says what is wrong.
struct MalformedCase {
  const char* name;
  std::string bytes;
  const char* message;
  friend void PrintTo(const MalformedCase& c, std::ostream* os) { *os << c.name; }
};

class NpyMalformed : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(NpyMalformed, IsInvalidArgument) {
  auto a = ParseNpy(Bytes(GetParam().bytes));
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(a.status().message().find(GetParam().message), std::string::npos) << a.status();
}

const std::string kGood = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
const std::string kEight(8, '\0');

INSTANTIATE_TEST_SUITE_P(
    Inputs, NpyMalformed,
    ::testing::Values(
        MalformedCase{"Empty", "", "not a .npy file"},
        MalformedCase{"BadMagic", "\x93NUMPX\x01\x00\x10\x00", "not a .npy file"},
        MalformedCase{"Version4", MakeNpy(kGood, kEight).replace(6, 1, "\x04"),
                      "unsupported format version 4.0"},
        MalformedCase{"Minor1", MakeNpy(kGood, kEight).replace(7, 1, "\x01"),
                      "unsupported format version 1.1"},
        MalformedCase{"TruncatedLength", std::string("\x93NUMPY\x02\x00\x10\x00", 10),
                      "the header length needs 12"},
        MalformedCase{"HeaderPastEnd", MakeNpy(kGood, "").substr(0, 30), "truncated: the header"},
        MalformedCase{"HugeHeaderLength", std::string("\x93NUMPY\x02\x00\xff\xff\xff\xff", 12),
                      "exceeds the limit"},
        MalformedCase{"NotADict", MakeNpy("['descr']", kEight), "expected '{'"},
        MalformedCase{"MissingDescr", MakeNpy("{'fortran_order': False, 'shape': (2,)}", kEight),
                      "no 'descr'"},
        MalformedCase{"MissingShape", MakeNpy("{'descr': '<f4', 'fortran_order': False}", kEight),
                      "no 'shape'"},
        MalformedCase{"MissingOrder", MakeNpy("{'descr': '<f4', 'shape': (2,)}", kEight),
                      "no 'fortran_order'"},
        MalformedCase{
            "ExtraKey",
            MakeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", kEight),
            "unexpected key 'x'"},
        MalformedCase{"DuplicateKey",
                      MakeNpy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
                              "'shape': (2,)}",
                              kEight),
                      "appears twice"},
        MalformedCase{"ZeroSizeWithHugeDims",
                      MakeNpy("{'descr': '<f4', 'fortran_order': False, "
                              "'shape': (0, 4611686018427387904, 4611686018427387904)}",
                              ""),
                      "too large"},
        MalformedCase{"FortranOrder",
                      MakeNpy("{'descr': '<f4', 'fortran_order': True, 'shape': (2,)}", kEight),
                      "Fortran order"},
        MalformedCase{"BigEndian",
                      MakeNpy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,)}", kEight),
                      "big-endian"},
        MalformedCase{"Int64",
                      MakeNpy("{'descr': '<i8', 'fortran_order': False, 'shape': (1,)}", kEight),
                      "astype(np.int32)"},
        MalformedCase{
            "Structured",
            MakeNpy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", kEight),
            "structured dtypes"},
        MalformedCase{"ShapeNotTuple",
                      MakeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", kEight),
                      "not a tuple"},
        MalformedCase{"ShapeIsString",
                      MakeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': '2'}", kEight),
                      "'shape' is not a tuple"},
        MalformedCase{"DescrIsBool",
                      MakeNpy("{'descr': True, 'fortran_order': False, 'shape': (2,)}", kEight),
                      "'descr' is not a string"},
        MalformedCase{"OrderIsString",
                      MakeNpy("{'descr': '<f4', 'fortran_order': 'no', 'shape': (2,)}", kEight),
                      "'fortran_order' is not True/False"},
        MalformedCase{"NegativeDim",
                      MakeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", kEight),
                      "negative dimension"},
        MalformedCase{"DimOverflow",
                      MakeNpy("{'descr': '<f4', 'fortran_order': False, "
                              "'shape': (99999999999999999999,)}",
                              kEight),
                      "dimension too large"},
        MalformedCase{"SizeOverflow",
                      MakeNpy("{'descr': '<f4', 'fortran_order': False, "
                              "'shape': (4294967296, 4294967296)}",
                              kEight),
                      "too large"},
        MalformedCase{"TooManyDims",
                      MakeNpy("{'descr': '<f4', 'fortran_order': False, "
                              "'shape': (1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1)}",
                              kEight),
                      "more than 16 dimensions"},
        MalformedCase{"TruncatedData", MakeNpy(kGood, kEight.substr(0, 7)), "truncated data"},
        MalformedCase{"TrailingBytes", MakeNpy(kGood, kEight + "x"), "trailing bytes"},
        MalformedCase{"UnterminatedString",
                      MakeNpy("{'descr': '<f4, 'fortran_order': False}", kEight),
                      "expected ',' or '}'"},
        MalformedCase{"UnterminatedAtEnd", MakeNpy("{'descr", kEight), "unterminated string"},
        MalformedCase{"Escape", MakeNpy("{'de\\scr': '<f4'}", kEight), "escape sequences"},
        MalformedCase{"TextAfterDict", MakeNpy(kGood + "x", kEight), "after the closing"},
        MalformedCase{"UnclosedDict", MakeNpy("{'descr': '<f4'", kEight), "expected ',' or '}'"},
        MalformedCase{"UnclosedTuple",
                      MakeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,", kEight),
                      "expected a dimension"},
        MalformedCase{"WordPrefix",
                      MakeNpy("{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2,)}", kEight),
                      "unsupported value for 'fortran_order'"},
        MalformedCase{"NulInHeader",
                      MakeNpy(std::string("{'descr': '<f4',\0 'shape': (2,)}", 31), kEight),
                      "\\x00"}),
    [](const auto& info) { return info.param.name; });

// Every prefix of a valid file is rejected cleanly (never a crash or an out-of-bounds read).
TEST(NpyTest, EveryTruncationIsAnError) {
  const std::string file = Slurp(TestData("f32_2x3.npy"));
  ASSERT_EQ(file.size(), 152u);
  for (size_t n = 0; n < file.size(); ++n) {
    auto a = ParseNpy(Bytes(file.substr(0, n)));
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << "prefix of " << n;
  }
}

}  // namespace
}  // namespace ragged
