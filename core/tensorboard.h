// TensorBoard event files: a writer for scalars, histograms and text, and a TFRecord reader.
//
// Why our own writer: TensorBoard's format is small (TFRecord framing around serialized `Event`
// protos, proto/tensorboard.proto) and the only C++ implementation lives inside TensorFlow,
// which we do not link. The files load in the real `tensorboard` reader (checked by
// tools/check_tensorboard.py against a committed fixture).
//
// TFRecord framing of one record:
//   uint64 length (LE) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
//
// EventWriter creates `<logdir>/events.out.tfevents.<%010d unix seconds>.<hostname><suffix>`
// (TensorFlow's name pattern), writes the "brain.Event:2" version record first, and then one
// Event per Add*() call. Events are buffered and written out on Flush(), Close(), and (by
// default) after every Add*(). Scalars are `simple_value` summaries, histograms use TensorFlow's
// default exponential buckets (collapsed runs of empty buckets, as tf.summary does), text is a
// DT_STRING tensor with the "text" plugin. EventWriter is thread-safe. Errors are Internal with
// the path and the failing call; writing after Close() is FailedPrecondition.
#ifndef RLVR_CORE_TENSORBOARD_H_
#define RLVR_CORE_TENSORBOARD_H_

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace rlvr {

// Frames `payload` as one TFRecord.
std::string EncodeTfRecord(absl::string_view payload);

// Splits TFRecord-framed bytes into their payloads, checking both CRCs of every record. A
// truncated record or a CRC mismatch is DataLoss naming `source`, the record index and its byte
// offset.
absl::StatusOr<std::vector<std::string>> DecodeTfRecords(absl::string_view bytes,
                                                         absl::string_view source = "<memory>");
// Reads and decodes a whole TFRecord file.
absl::StatusOr<std::vector<std::string>> ReadTfRecordFile(const std::string& path);

// A histogram in TensorFlow's representation (HistogramProto's fields).
struct HistogramData {
  double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
  // Bucket i counts values v with bucket_limit[i-1] <= v < bucket_limit[i].
  std::vector<double> bucket_limit;
  std::vector<double> bucket;
};

// Bins `values` into TensorFlow's default buckets (+-1e-12 * 1.1^k up to 1e20, 0 and
// +-DBL_MAX) and collapses runs of empty buckets like tensorflow::histogram::Histogram's
// EncodeToProto. Non-finite values are skipped.
HistogramData MakeHistogram(std::span<const double> values);

struct EventWriterOptions {
  // Appended to the file name after the host name (e.g. ".train").
  std::string filename_suffix;
  // Wall-clock source in seconds since the epoch; defaults to the system clock. Tests inject a
  // fixed clock to get reproducible files.
  std::function<double()> clock;
  // Host name for the file name; defaults to gethostname().
  std::string hostname;
  // Write each event to the OS as soon as it is added (so a live TensorBoard sees it).
  bool flush_every_event = true;
};

class EventWriter {
 public:
  // Creates `logdir` if needed and opens a new event file in it.
  static absl::StatusOr<std::unique_ptr<EventWriter>> Open(const std::string& logdir,
                                                           EventWriterOptions options = {});
  // Closes the file (errors are ignored here; call Close() to see them).
  ~EventWriter();

  absl::Status AddScalar(absl::string_view tag, double value, int64_t step);
  absl::Status AddHistogram(absl::string_view tag, std::span<const double> values, int64_t step);
  absl::Status AddHistogram(absl::string_view tag, std::span<const float> values, int64_t step);
  absl::Status AddHistogram(absl::string_view tag, const HistogramData& histogram, int64_t step);
  absl::Status AddText(absl::string_view tag, absl::string_view text, int64_t step);
  // Appends an already-serialized tensorboard.Event (for summaries not covered above).
  absl::Status AddSerializedEvent(absl::string_view event);

  absl::Status Flush();
  // Flushes, fsyncs and closes. Idempotent.
  absl::Status Close();

  const std::string& path() const { return path_; }

 private:
  EventWriter(std::string path, std::FILE* file, EventWriterOptions options)
      : path_(std::move(path)), file_(file), options_(std::move(options)) {}
  double Now() const;
  absl::Status WriteRecord(absl::string_view payload);

  const std::string path_;
  absl::Mutex mu_;
  std::FILE* file_ ABSL_GUARDED_BY(mu_);
  const EventWriterOptions options_;
};

}  // namespace rlvr

#endif  // RLVR_CORE_TENSORBOARD_H_
