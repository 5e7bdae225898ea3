#include "core/safetensors.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace rlvr {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

const char kFixtures[] = "tests/fixtures/safetensors";

std::string Fixture(const std::string& name) { return std::string(kFixtures) + "/" + name; }

std::string TempDir(const std::string& name) {
  std::string dir = std::string(::testing::TempDir()) + "/rlvr_safetensors_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// A safetensors file with the given header text and data buffer.
std::string MakeFile(const std::string& header, const std::string& data = "") {
  uint64_t n = header.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

absl::Status ParseStatus(const std::string& bytes) {
  return ParseSafetensors(
             std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
             "bad.safetensors")
      .status();
}

std::string Message(const absl::Status& s) { return std::string(s.message()); }

std::string HexOf(std::span<const uint8_t> data) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : data) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

// Compares every tensor of `tensors` (name -> {dtype, shape, hex, values}) with `lookup`.
template <typename Lookup>
int CheckAgainstDescription(const Json& tensors, Lookup lookup) {
  int compared = 0;
  for (auto it = tensors.begin(); it != tensors.end(); ++it) {
    SCOPED_TRACE(it.key());
    const TensorView* t = lookup(it.key());
    if (t == nullptr) {
      ADD_FAILURE() << "missing tensor " << it.key();
      continue;
    }
    EXPECT_EQ(DTypeName(t->dtype), (*it)["dtype"].get<std::string>());
    EXPECT_EQ(t->shape, (*it)["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(HexOf(t->data), (*it)["hex"].get<std::string>());
    std::vector<float> values(t->num_elements());
    ConvertToF32(t->dtype, t->data.data(), values.data(), values.size());
    const Json& want = (*it)["values"];
    EXPECT_EQ(values.size(), want.size());
    for (size_t i = 0; i < values.size() && i < want.size(); ++i) {
      if (want[i].is_string()) {
        std::string w = want[i].get<std::string>();
        if (w == "nan") {
          EXPECT_TRUE(std::isnan(values[i])) << i;
        } else {
          EXPECT_EQ(values[i], w == "inf" ? INFINITY : -INFINITY) << i;
        }
      } else {
        // Values are exact in their own dtype; float32 holds all of them except the F64 and
        // 64-bit integer extremes, which must round like a float cast.
        EXPECT_EQ(values[i], static_cast<float>(want[i].get<double>())) << i;
      }
      ++compared;
    }
  }
  return compared;
}

TEST(SafetensorsTest, ReadsEveryDtypeWrittenByPythonSafetensors) {
  auto file = SafetensorsFile::Open(Fixture("all_dtypes.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  auto text = ReadFile(Fixture("all_dtypes.json"));
  ASSERT_TRUE(text.ok()) << text.status();
  Json expected = Json::parse(*text);
  EXPECT_EQ((*file)->tensors().size(), expected["tensors"].size());
  EXPECT_EQ((*file)->tensors().size(), 17u);
  int compared = CheckAgainstDescription(
      expected["tensors"], [&](const std::string& name) { return (*file)->Find(name); });
  EXPECT_GT(compared, 60);
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  EXPECT_EQ((*file)->metadata().at("producer"), "make_safetensors_fixtures.py");
  // All kNumDTypes dtypes are present.
  std::vector<bool> seen(kNumDTypes, false);
  for (const TensorView& t : (*file)->tensors()) seen[static_cast<int>(t.dtype)] = true;
  for (int d = 0; d < kNumDTypes; ++d) EXPECT_TRUE(seen[d]) << DTypeName(static_cast<DType>(d));
}

TEST(SafetensorsTest, ViewsAreZeroCopyAndAligned) {
  auto file = SafetensorsFile::Open(Fixture("all_dtypes.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  std::span<const uint8_t> bytes = (*file)->bytes();
  for (const TensorView& t : (*file)->tensors()) {
    EXPECT_GE(t.data.data(), bytes.data());
    EXPECT_LE(t.data.data() + t.data.size(), bytes.data() + bytes.size());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data.data()) % DTypeSize(t.dtype), 0u) << t.name;
  }
}

TEST(SafetensorsTest, GetNamesFileAndTensorWhenMissing) {
  auto file = SafetensorsFile::Open(Fixture("all_dtypes.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  auto t = (*file)->Get("nope");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(t.status()), HasSubstr("all_dtypes.safetensors: no tensor named 'nope'"));
}

TEST(SafetensorsTest, MissingFileIsNotFound) {
  auto file = SafetensorsFile::Open(Fixture("does_not_exist.safetensors"));
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(file.status()), HasSubstr("does_not_exist.safetensors"));
}

TEST(SafetensorsTest, ReadsShardedCheckpointFromDirectoryAndIndex) {
  auto text = ReadFile(Fixture("sharded/expected.json"));
  ASSERT_TRUE(text.ok()) << text.status();
  Json expected = Json::parse(*text);
  for (std::string path : {Fixture("sharded"), Fixture("sharded/model.safetensors.index.json")}) {
    SCOPED_TRACE(path);
    auto ckpt = SafetensorsCheckpoint::Open(path);
    ASSERT_TRUE(ckpt.ok()) << ckpt.status();
    EXPECT_EQ((*ckpt)->shards().size(), 2u);
    EXPECT_EQ((*ckpt)->tensors().size(), 3u);
    int compared = CheckAgainstDescription(
        expected["tensors"], [&](const std::string& name) { return (*ckpt)->Find(name); });
    EXPECT_EQ(compared, 12 + 9 + 12);
    EXPECT_EQ((*ckpt)->total_bytes(), 48 + 18 + 48);
    EXPECT_EQ((*ckpt)->metadata().at("format"), "pt");
  }
}

TEST(SafetensorsTest, CheckpointOpensSingleFile) {
  auto ckpt = SafetensorsCheckpoint::Open(Fixture("all_dtypes.safetensors"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->tensors().size(), 17u);
  EXPECT_TRUE((*ckpt)->index_path().empty());
}

// The tensors of tests/fixtures/safetensors/written_by_rlvr.safetensors; keep in sync with
// rlvr_written_tensors() in tools/make_safetensors_fixtures.py.
struct RlvrWritten {
  std::vector<float> weight;
  std::vector<uint16_t> bias, half;
  std::vector<int64_t> ids = {0, -1, int64_t{1} << 40, 7};
  std::vector<uint8_t> mask = {1, 0, 0, 1};
  std::vector<uint8_t> fp8;
  double scalar = 3.25;
  std::vector<uint8_t> bytes = {0, 128, 255};
  std::vector<int32_t> i32 = {-7, 2147483647};
  std::vector<int8_t> i8 = {-128, 127};
  std::vector<TensorToWrite> tensors;

  template <typename T>
  static std::span<const uint8_t> AsBytes(const std::vector<T>& v) {
    return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)};
  }

  RlvrWritten() {
    for (int i = 0; i < 6; ++i) weight.push_back((static_cast<float>(i) - 2.5f) * 0.25f);
    for (float f : {1.0f, -2.5f, 3.140625f}) bias.push_back(F32ToBf16(f));
    for (float f : {0.5f, -1.0f, 65504.0f, 0.0009765625f}) half.push_back(F32ToF16(f));
    for (float f : {0.5f, -448.0f, 0.001953125f, 1.75f}) fp8.push_back(F32ToF8E4M3(f));
    tensors = {
        {"weight", DType::kF32, {2, 3}, AsBytes(weight)},
        {"bias", DType::kBF16, {3}, AsBytes(bias)},
        {"half", DType::kF16, {2, 2}, AsBytes(half)},
        {"ids", DType::kI64, {4}, AsBytes(ids)},
        {"mask", DType::kBool, {2, 2}, AsBytes(mask)},
        {"fp8", DType::kF8E4M3, {4}, AsBytes(fp8)},
        {"scalar", DType::kF64, {}, {reinterpret_cast<const uint8_t*>(&scalar), 8}},
        {"empty", DType::kF32, {0, 4}, {}},
        {"bytes", DType::kU8, {3}, AsBytes(bytes)},
        {"i32", DType::kI32, {2}, AsBytes(i32)},
        {"i8", DType::kI8, {2}, AsBytes(i8)},
    };
  }
};

TEST(SafetensorsTest, WriterReproducesCommittedFixtureByteForByte) {
  RlvrWritten w;
  auto bytes = SerializeSafetensors(w.tensors, {{"format", "pt"}});
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  const std::string path = Fixture("written_by_rlvr.safetensors");
  if (std::getenv("RLVR_UPDATE_FIXTURES") != nullptr) {
    ASSERT_TRUE(WriteSafetensors(path, w.tensors, {{"format", "pt"}}).ok());
  }
  auto committed = ReadFile(path);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_GT(committed->size(), 100u);
  EXPECT_EQ(*bytes, *committed) << "our writer's output changed; if intended, regenerate with "
                                   "RLVR_UPDATE_FIXTURES=1 and re-run "
                                   "tools/make_safetensors_fixtures.py --check-only";
}

TEST(SafetensorsTest, WriteThenReadRoundTrips) {
  RlvrWritten w;
  std::string dir = TempDir("roundtrip");
  std::string path = dir + "/m.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, w.tensors, {{"a", "1"}, {"b", "two"}}).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata(), (SafetensorsMetadata{{"a", "1"}, {"b", "two"}}));
  ASSERT_EQ((*file)->tensors().size(), w.tensors.size());
  size_t compared_bytes = 0;
  for (const TensorToWrite& t : w.tensors) {
    const TensorView* v = (*file)->Find(t.name);
    ASSERT_NE(v, nullptr) << t.name;
    EXPECT_EQ(v->dtype, t.dtype);
    EXPECT_EQ(v->shape, t.shape);
    ASSERT_EQ(v->data.size(), t.data.size());
    if (!t.data.empty()) {
      EXPECT_EQ(std::memcmp(v->data.data(), t.data.data(), t.data.size()), 0) << t.name;
    }
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v->data.data()) % DTypeSize(v->dtype), 0u);
    compared_bytes += t.data.size();
  }
  EXPECT_EQ(compared_bytes, 24u + 6 + 8 + 32 + 4 + 4 + 8 + 0 + 3 + 8 + 2);
  // No temporary file is left behind.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(SafetensorsTest, ShardedWriteAndReadBack) {
  std::vector<float> a(100), b(50), c(10);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i);
  for (size_t i = 0; i < b.size(); ++i) b[i] = -static_cast<float>(i);
  for (size_t i = 0; i < c.size(); ++i) c[i] = 0.5f * static_cast<float>(i);
  auto bytes = [](const std::vector<float>& v) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size() * 4);
  };
  std::vector<TensorToWrite> tensors = {{"x.a", DType::kF32, {10, 10}, bytes(a)},
                                        {"x.b", DType::kF32, {50}, bytes(b)},
                                        {"x.c", DType::kF32, {2, 5}, bytes(c)}};
  std::string dir = TempDir("sharded");
  auto written =
      WriteShardedSafetensors(dir, tensors, {{"format", "pt"}}, {.max_shard_bytes = 300});
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(*written, (std::vector<std::string>{"model-00001-of-00002.safetensors",
                                                "model-00002-of-00002.safetensors",
                                                "model.safetensors.index.json"}));
  auto index = ReadFile(dir + "/model.safetensors.index.json");
  ASSERT_TRUE(index.ok());
  Json j = Json::parse(*index);
  EXPECT_EQ(j["metadata"]["total_size"], 640);
  EXPECT_EQ(j["weight_map"]["x.a"], "model-00001-of-00002.safetensors");
  EXPECT_EQ(j["weight_map"]["x.b"], "model-00002-of-00002.safetensors");
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  ASSERT_EQ((*ckpt)->tensors().size(), 3u);
  for (const TensorToWrite& t : tensors) {
    const TensorView* v = (*ckpt)->Find(t.name);
    ASSERT_NE(v, nullptr);
    ASSERT_EQ(v->data.size(), t.data.size());
    EXPECT_EQ(std::memcmp(v->data.data(), t.data.data(), t.data.size()), 0);
  }

  std::string single = TempDir("single");
  auto one = WriteShardedSafetensors(single, tensors, {}, {.max_shard_bytes = 1 << 20});
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(*one, std::vector<std::string>{"model.safetensors"});
  auto ckpt1 = SafetensorsCheckpoint::Open(single);
  ASSERT_TRUE(ckpt1.ok()) << ckpt1.status();
  EXPECT_EQ((*ckpt1)->tensors().size(), 3u);
}

TEST(SafetensorsWriterTest, RejectsDuplicateNames) {
  std::vector<uint8_t> d(4);
  std::vector<TensorToWrite> t = {{"a", DType::kF32, {1}, d}, {"a", DType::kF32, {1}, d}};
  auto s = SerializeSafetensors(t).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("tensor 'a' given more than once"));
}

TEST(SafetensorsWriterTest, RejectsSizeMismatch) {
  std::vector<uint8_t> d(4);
  std::vector<TensorToWrite> t = {{"w", DType::kF32, {2}, d}};
  auto s = SerializeSafetensors(t).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("tensor 'w': shape [2] of F32 needs 8 bytes, got 4"));
}

TEST(SafetensorsWriterTest, RejectsNegativeDim) {
  std::vector<TensorToWrite> t = {{"w", DType::kF32, {-1}, {}}};
  auto s = SerializeSafetensors(t).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("tensor 'w': invalid shape [-1]"));
}

TEST(SafetensorsWriterTest, RejectsMetadataKeyAsName) {
  std::vector<TensorToWrite> t = {{"__metadata__", DType::kU8, {0}, {}}};
  EXPECT_EQ(SerializeSafetensors(t).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SafetensorsWriterTest, RejectsInvalidUtf8Name) {
  std::vector<TensorToWrite> t = {{"bad\xff", DType::kU8, {0}, {}}};
  auto s = SerializeSafetensors(t).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("UTF-8"));
}

// ---- Malformed files: one test per way a file can be broken. ----

void ExpectRejected(const std::string& bytes, absl::StatusCode code, const std::string& text) {
  absl::Status s = ParseStatus(bytes);
  EXPECT_EQ(s.code(), code) << s;
  EXPECT_THAT(Message(s), HasSubstr("bad.safetensors: "));
  EXPECT_THAT(Message(s), HasSubstr(text));
}

TEST(SafetensorsMalformedTest, EmptyFile) {
  ExpectRejected("", absl::StatusCode::kDataLoss, "file is 0 bytes, too short");
}

TEST(SafetensorsMalformedTest, HeaderLengthPastEnd) {
  std::string f = MakeFile("{}");
  uint64_t n = 1000;
  std::memcpy(f.data(), &n, 8);
  ExpectRejected(f, absl::StatusCode::kDataLoss,
                 "header length 1000 runs past the end of the file (10 bytes)");
}

TEST(SafetensorsMalformedTest, HeaderLengthAbsurd) {
  std::string f = MakeFile("{}");
  uint64_t n = uint64_t{1} << 62;
  std::memcpy(f.data(), &n, 8);
  ExpectRejected(f, absl::StatusCode::kDataLoss, "exceeds the limit of 100000000 bytes");
}

TEST(SafetensorsMalformedTest, BadJson) {
  ExpectRejected(MakeFile("{\"a\": {\"dtype\": "), absl::StatusCode::kDataLoss,
                 "header is not valid JSON");
}

TEST(SafetensorsMalformedTest, HeaderNotAnObject) {
  ExpectRejected(MakeFile("[1, 2]"), absl::StatusCode::kDataLoss, "header is not a JSON object");
}

TEST(SafetensorsMalformedTest, EntryNotAnObject) {
  ExpectRejected(MakeFile("{\"w\": 3}"), absl::StatusCode::kDataLoss,
                 "tensor 'w': entry is a JSON number, expected an object");
}

TEST(SafetensorsMalformedTest, UnknownDtype) {
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}})", "x"),
                 absl::StatusCode::kInvalidArgument, "tensor 'w': unknown dtype 'F4'");
}

TEST(SafetensorsMalformedTest, MissingDtype) {
  ExpectRejected(MakeFile(R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", std::string(8, 0)),
                 absl::StatusCode::kDataLoss, "tensor 'w': missing \"dtype\"");
}

TEST(SafetensorsMalformedTest, OffsetsOutOfRange) {
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
                          std::string(8, 0)),
                 absl::StatusCode::kDataLoss,
                 "tensor 'w': data_offsets [0, 16] run past the end of the data buffer (8 bytes)");
}

TEST(SafetensorsMalformedTest, OffsetsReversed) {
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}})",
                          std::string(8, 0)),
                 absl::StatusCode::kDataLoss,
                 "tensor 'w': data_offsets [8, 0] end before they begin");
}

TEST(SafetensorsMalformedTest, OffsetsNotAPair) {
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})"),
                 absl::StatusCode::kDataLoss, "tensor 'w': \"data_offsets\" is [0]");
}

TEST(SafetensorsMalformedTest, OverlappingData) {
  ExpectRejected(MakeFile(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                          R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                          std::string(12, 0)),
                 absl::StatusCode::kDataLoss,
                 "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]");
}

TEST(SafetensorsMalformedTest, GapBetweenTensors) {
  ExpectRejected(MakeFile(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                          R"( "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
                          std::string(12, 0)),
                 absl::StatusCode::kDataLoss,
                 "tensor 'b': data_offsets [8, 12] leave a gap of 4 bytes after offset 4");
}

TEST(SafetensorsMalformedTest, DataNotStartingAtZero) {
  ExpectRejected(MakeFile(R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}})",
                          std::string(4, 0)),
                 absl::StatusCode::kDataLoss, "leave a gap of 2 bytes after offset 0");
}

TEST(SafetensorsMalformedTest, TrailingBytes) {
  ExpectRejected(MakeFile(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                          std::string(12, 0)),
                 absl::StatusCode::kDataLoss, "(4 trailing bytes)");
}

TEST(SafetensorsMalformedTest, ShapeSizeMismatch) {
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})",
                          std::string(8, 0)),
                 absl::StatusCode::kDataLoss,
                 "tensor 'w': shape [3] of F32 needs 12 bytes but data_offsets [0, 8] hold 8");
}

TEST(SafetensorsMalformedTest, NegativeDim) {
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}})"),
                 absl::StatusCode::kDataLoss,
                 "tensor 'w': shape dimension 0 is -1, expected a non-negative integer");
}

TEST(SafetensorsMalformedTest, FractionalDim) {
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 0]}})"),
                 absl::StatusCode::kDataLoss, "tensor 'w': shape dimension 0 is 2.5");
}

TEST(SafetensorsMalformedTest, ShapeProductOverflows) {
  ExpectRejected(
      MakeFile(
          R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})"),
      absl::StatusCode::kDataLoss,
      "tensor 'w': shape [4294967296, 4294967296] overflows 64-bit element or byte counts");
}

TEST(SafetensorsMalformedTest, ByteSizeOverflows) {
  // 2^62 elements fit in int64, 2^62 * 8 bytes do not.
  ExpectRejected(
      MakeFile(
          R"({"w": {"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 0]}})"),
      absl::StatusCode::kDataLoss, "overflows 64-bit element or byte counts");
}

TEST(SafetensorsMalformedTest, DuplicateTensorNames) {
  ExpectRejected(MakeFile(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},)"
                          R"( "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})",
                          std::string(2, 0)),
                 absl::StatusCode::kDataLoss, "header has the key 'w' more than once");
}

TEST(SafetensorsMalformedTest, MetadataNotAnObject) {
  ExpectRejected(MakeFile(R"({"__metadata__": [1]})"), absl::StatusCode::kDataLoss,
                 "__metadata__ is not a JSON object");
}

TEST(SafetensorsMalformedTest, MetadataValueNotAString) {
  ExpectRejected(MakeFile(R"({"__metadata__": {"step": 3}})"), absl::StatusCode::kDataLoss,
                 "__metadata__ key 'step' is a JSON number, expected a string");
}

TEST(SafetensorsMalformedTest, EveryTruncationOfARealFileIsRejected) {
  auto bytes = ReadFile(Fixture("all_dtypes.safetensors"));
  ASSERT_TRUE(bytes.ok());
  int rejected = 0;
  for (size_t n = 0; n < bytes->size(); ++n) {
    absl::Status s = ParseStatus(bytes->substr(0, n));
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << n << ": " << s;
    rejected += !s.ok();
  }
  EXPECT_EQ(rejected, static_cast<int>(bytes->size()));
  EXPECT_TRUE(ParseStatus(*bytes).ok());
}

TEST(SafetensorsMalformedTest, EmptyHeaderObjectIsValid) {
  // Not malformed: a file without tensors.
  EXPECT_TRUE(ParseStatus(MakeFile("{}      ")).ok());
}

// ---- Broken sharded checkpoints. ----

void WriteText(const std::string& path, const std::string& text) {
  ASSERT_TRUE(WriteFileAtomically(path, text).ok());
}

std::string CopyShardedFixture(const std::string& name) {
  std::string dir = TempDir(name);
  for (const char* f : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}) {
    std::filesystem::copy_file(Fixture(std::string("sharded/") + f), dir + "/" + f);
  }
  return dir;
}

TEST(SafetensorsCheckpointTest, IndexNamesMissingTensor) {
  std::string dir = CopyShardedFixture("missing_tensor");
  WriteText(dir + "/model.safetensors.index.json",
            R"({"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                "model.layers.0.mlp.weight": "model-00001-of-00002.safetensors",
                "lm_head.weight": "model-00002-of-00002.safetensors",
                "ghost": "model-00002-of-00002.safetensors"}})");
  auto s = SafetensorsCheckpoint::Open(dir).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Message(s), HasSubstr("weight_map says tensor 'ghost' is in "
                                    "'model-00002-of-00002.safetensors', but it is not"));
}

TEST(SafetensorsCheckpointTest, ShardHoldsUnlistedTensor) {
  std::string dir = CopyShardedFixture("unlisted");
  WriteText(dir + "/model.safetensors.index.json",
            R"({"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                "lm_head.weight": "model-00002-of-00002.safetensors"}})");
  auto s = SafetensorsCheckpoint::Open(dir).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Message(s), HasSubstr("holds tensor 'model.layers.0.mlp.weight', which weight_map "
                                    "does not assign to it"));
}

TEST(SafetensorsCheckpointTest, ShardOutsideDirectory) {
  std::string dir = CopyShardedFixture("escape");
  WriteText(dir + "/model.safetensors.index.json", R"({"weight_map": {"w": "../../etc/passwd"}})");
  auto s = SafetensorsCheckpoint::Open(dir).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Message(s), HasSubstr("is not a plain file name"));
}

TEST(SafetensorsCheckpointTest, MissingShard) {
  std::string dir = CopyShardedFixture("missing_shard");
  WriteText(dir + "/model.safetensors.index.json",
            R"({"weight_map": {"w": "model-00003-of-00003.safetensors"}})");
  auto s = SafetensorsCheckpoint::Open(dir).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(s), HasSubstr("model-00003-of-00003.safetensors"));
}

TEST(SafetensorsCheckpointTest, IndexNotJson) {
  std::string dir = CopyShardedFixture("bad_index");
  WriteText(dir + "/model.safetensors.index.json", "{weight_map");
  auto s = SafetensorsCheckpoint::Open(dir).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Message(s), HasSubstr("model.safetensors.index.json: not valid JSON"));
}

TEST(SafetensorsCheckpointTest, IndexWithoutWeightMap) {
  std::string dir = CopyShardedFixture("no_weight_map");
  WriteText(dir + "/model.safetensors.index.json", R"({"metadata": {}})");
  auto s = SafetensorsCheckpoint::Open(dir).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Message(s), HasSubstr("missing \"weight_map\" object"));
}

TEST(SafetensorsCheckpointTest, EmptyDirectory) {
  std::string dir = TempDir("empty");
  auto s = SafetensorsCheckpoint::Open(dir).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(s), HasSubstr("0 *.safetensors files"));
}

}  // namespace
}  // namespace rlvr
