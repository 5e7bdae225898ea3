#include "core/tensorboard.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "core/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/tensorboard.pb.h"

namespace rlvr {
namespace {

using ::testing::HasSubstr;

const char kFixtureDir[] = "tests/fixtures/tensorboard";
const char kFixtureName[] = "events.out.tfevents.1700000000.rlvr-fixture";

std::string TempDir(const std::string& name) {
  std::string dir = std::string(::testing::TempDir()) + "/rlvr_tensorboard_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Writes the events of the committed fixture into `logdir` (tools/check_tensorboard.py checks
// the fixture with TensorBoard's own reader; keep the two in sync).
std::string WriteFixtureEvents(const std::string& logdir) {
  EventWriterOptions options;
  double t = 1700000000.0;
  options.clock = [t]() mutable {
    double now = t;
    t += 0.25;
    return now;
  };
  options.hostname = "rlvr-fixture";
  auto writer = EventWriter::Open(logdir, options);
  EXPECT_TRUE(writer.ok()) << writer.status();
  if (!writer.ok()) return "";
  for (int step = 0; step < 5; ++step) {
    EXPECT_TRUE((*writer)->AddScalar("train/loss", 1.0 / (1 + step), step).ok());
    EXPECT_TRUE((*writer)->AddScalar("train/reward", 0.25 * step, step).ok());
  }
  for (int step = 0; step < 2; ++step) {
    std::vector<double> values;
    for (int i = 0; i < 100; ++i) values.push_back(std::sin(0.1 * i + step));
    EXPECT_TRUE((*writer)->AddHistogram("policy/logits", values, step).ok());
  }
  EXPECT_TRUE((*writer)->AddText("samples/completion", "The answer is **42**.", 3).ok());
  EXPECT_TRUE((*writer)->Close().ok());
  return (*writer)->path();
}

TEST(TensorboardTest, WriterReproducesCommittedFixture) {
  std::string dir = TempDir("fixture");
  std::string path = WriteFixtureEvents(dir);
  EXPECT_EQ(path, dir + "/" + kFixtureName);
  auto ours = ReadFile(path);
  ASSERT_TRUE(ours.ok()) << ours.status();
  std::string fixture = std::string(kFixtureDir) + "/" + kFixtureName;
  if (std::getenv("RLVR_UPDATE_FIXTURES") != nullptr) {
    ASSERT_TRUE(WriteFileAtomically(fixture, *ours).ok());
  }
  auto committed = ReadFile(fixture);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_GT(committed->size(), 500u);
  EXPECT_EQ(*ours, *committed)
      << "the event writer's output changed; if intended, regenerate with RLVR_UPDATE_FIXTURES=1 "
         "and check it with tools/check_tensorboard.py";
}

TEST(TensorboardTest, EventsParseBack) {
  std::string dir = TempDir("parse");
  std::string path = WriteFixtureEvents(dir);
  auto records = ReadTfRecordFile(path);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 1u + 10 + 2 + 1);
  tensorboard::Event first;
  ASSERT_TRUE(first.ParseFromString((*records)[0]));
  EXPECT_EQ(first.file_version(), "brain.Event:2");
  EXPECT_EQ(first.wall_time(), 1700000000.0);
  int scalars = 0;
  for (size_t i = 1; i <= 10; ++i) {
    tensorboard::Event e;
    ASSERT_TRUE(e.ParseFromString((*records)[i]));
    ASSERT_EQ(e.summary().value_size(), 1);
    const auto& v = e.summary().value(0);
    if (v.tag() == "train/loss") {
      EXPECT_FLOAT_EQ(v.simple_value(), 1.0f / (1 + e.step()));
      ++scalars;
    }
  }
  EXPECT_EQ(scalars, 5);
  tensorboard::Event histo;
  ASSERT_TRUE(histo.ParseFromString((*records)[11]));
  const auto& h = histo.summary().value(0).histo();
  EXPECT_EQ(h.num(), 100);
  double total = 0;
  for (double c : h.bucket()) total += c;
  EXPECT_EQ(total, 100);
  tensorboard::Event text;
  ASSERT_TRUE(text.ParseFromString((*records)[13]));
  EXPECT_EQ(text.summary().value(0).metadata().plugin_data().plugin_name(), "text");
  EXPECT_EQ(text.summary().value(0).tensor().string_val(0), "The answer is **42**.");
  EXPECT_EQ(text.step(), 3);
}

TEST(TfRecordTest, RoundTripAndCrcValidation) {
  std::string bytes = EncodeTfRecord("hello") + EncodeTfRecord("") + EncodeTfRecord("world!");
  auto records = DecodeTfRecords(bytes, "mem");
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(*records, (std::vector<std::string>{"hello", "", "world!"}));

  std::string corrupt_data = bytes;
  corrupt_data[12 + 1] ^= 0x20;  // a payload byte of the first record
  auto s = DecodeTfRecords(corrupt_data, "mem").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("mem: record 0 at byte offset 0: data CRC"));

  std::string corrupt_length = bytes;
  corrupt_length[21 + 0] ^= 0x01;  // length of the second record (offset 5 + 16 = 21)
  s = DecodeTfRecords(corrupt_length, "mem").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("record 1 at byte offset 21: length CRC"));

  for (size_t cut : {size_t{5}, size_t{14}, bytes.size() - 1}) {
    s = DecodeTfRecords(bytes.substr(0, cut), "mem").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << cut;
    EXPECT_THAT(std::string(s.message()), HasSubstr("truncated")) << cut;
  }
}

TEST(TfRecordTest, KnownFraming) {
  // The framing of an empty record: zero length, its masked CRC, and the masked CRC of nothing.
  std::string r = EncodeTfRecord("");
  ASSERT_EQ(r.size(), 16u);
  EXPECT_EQ(r.substr(0, 8), std::string(8, '\0'));
  uint32_t data_crc;
  std::memcpy(&data_crc, r.data() + 12, 4);
  EXPECT_EQ(data_crc, 0xa282ead8u);  // Mask(crc32c("")) = Mask(0)
}

TEST(HistogramTest, TensorFlowBucketsAndStats) {
  std::vector<double> values = {0.0, 1.0, 1.0, -2.0, NAN, INFINITY};
  HistogramData h = MakeHistogram(values);
  EXPECT_EQ(h.num, 4);
  EXPECT_EQ(h.min, -2.0);
  EXPECT_EQ(h.max, 1.0);
  EXPECT_EQ(h.sum, 0.0);
  EXPECT_EQ(h.sum_squares, 6.0);
  ASSERT_EQ(h.bucket.size(), h.bucket_limit.size());
  double total = 0;
  int nonempty = 0;
  for (size_t i = 0; i < h.bucket.size(); ++i) {
    total += h.bucket[i];
    nonempty += h.bucket[i] > 0;
    if (i > 0) {
      EXPECT_LT(h.bucket_limit[i - 1], h.bucket_limit[i]);
    }
    // Every counted value v lands in the bucket with limit[i-1] <= v < limit[i].
    for (double v : {0.0, 1.0, -2.0}) {
      if (i > 0 && v >= h.bucket_limit[i - 1] && v < h.bucket_limit[i]) {
        EXPECT_GT(h.bucket[i], 0);
      }
    }
  }
  EXPECT_EQ(total, 4);
  EXPECT_EQ(nonempty, 3);
  // Empty runs collapse: 3 non-empty buckets need at most 4 empty separators.
  EXPECT_LE(h.bucket.size(), 7u);
}

TEST(TensorboardTest, SecondWriterInTheSameSecondGetsItsOwnFile) {
  std::string dir = TempDir("same_second");
  EventWriterOptions options;
  options.clock = [] { return 1700000000.0; };
  options.hostname = "h";
  auto a = EventWriter::Open(dir, options);
  auto b = EventWriter::Open(dir, options);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*a)->path(), dir + "/events.out.tfevents.1700000000.h");
  EXPECT_EQ((*b)->path(), dir + "/events.out.tfevents.1700000000.h.1");
}

TEST(TensorboardTest, ConcurrentWritersProduceWholeRecords) {
  std::string dir = TempDir("threads");
  EventWriterOptions options;
  options.flush_every_event = false;
  auto writer = EventWriter::Open(dir, options);
  ASSERT_TRUE(writer.ok()) << writer.status();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        EXPECT_TRUE((*writer)->AddScalar("t" + std::to_string(t), i, i).ok());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE((*writer)->Close().ok());
  auto records = ReadTfRecordFile((*writer)->path());
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->size(), 1u + 4 * 200);
}

TEST(TensorboardTest, WritingAfterCloseFails) {
  std::string dir = TempDir("closed");
  auto writer = EventWriter::Open(dir);
  ASSERT_TRUE(writer.ok()) << writer.status();
  EXPECT_THAT((*writer)->path(), HasSubstr("/events.out.tfevents."));
  ASSERT_TRUE((*writer)->Close().ok());
  EXPECT_EQ((*writer)->AddScalar("x", 1, 0).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE((*writer)->Close().ok());
}

}  // namespace
}  // namespace rlvr
