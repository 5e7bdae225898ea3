#include "core/tensorboard.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/crc32c.h"
#include "core/file_util.h"
#include "core/status.h"
#include "proto/tensorboard.pb.h"

namespace rlvr {
namespace {

uint32_t MaskedCrc(const void* data, size_t n) { return crc32c::Mask(crc32c::Value(data, n)); }

const std::vector<double>& DefaultBucketLimits() {
  static const std::vector<double>* const kLimits = [] {
    std::vector<double> pos;
    // Buckets grow by 10% from 1e-12 to 1e20, mirrored for negative values (TensorFlow's
    // default, so our histograms render like tf.summary's).
    for (double v = 1.0e-12; v < 1.0e20; v *= 1.1) pos.push_back(v);
    pos.push_back(DBL_MAX);
    auto* limits = new std::vector<double>();
    for (auto it = pos.rbegin(); it != pos.rend(); ++it) limits->push_back(-*it);
    limits->push_back(0.0);
    limits->insert(limits->end(), pos.begin(), pos.end());
    return limits;
  }();
  return *kLimits;
}

std::string Hostname() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

}  // namespace

std::string EncodeTfRecord(absl::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 16);
  uint64_t len = payload.size();
  char header[12];
  std::memcpy(header, &len, 8);
  uint32_t len_crc = MaskedCrc(header, 8);
  std::memcpy(header + 8, &len_crc, 4);
  out.append(header, 12);
  out.append(payload.data(), payload.size());
  uint32_t data_crc = MaskedCrc(payload.data(), payload.size());
  out.append(reinterpret_cast<const char*>(&data_crc), 4);
  return out;
}

absl::StatusOr<std::vector<std::string>> DecodeTfRecords(absl::string_view bytes,
                                                         absl::string_view source) {
  std::vector<std::string> records;
  size_t pos = 0;
  while (pos < bytes.size()) {
    auto error = [&](absl::string_view what) {
      return absl::DataLossError(
          absl::StrCat(source, ": record ", records.size(), " at byte offset ", pos, ": ", what));
    };
    if (bytes.size() - pos < 12) return error("truncated header");
    uint64_t len;
    uint32_t len_crc;
    std::memcpy(&len, bytes.data() + pos, 8);
    std::memcpy(&len_crc, bytes.data() + pos + 8, 4);
    if (MaskedCrc(bytes.data() + pos, 8) != len_crc) return error("length CRC mismatch");
    if (len > bytes.size() - pos - 12 || bytes.size() - pos - 12 - len < 4) {
      return error(absl::StrCat("truncated data (length ", len, ")"));
    }
    absl::string_view data = bytes.substr(pos + 12, len);
    uint32_t data_crc;
    std::memcpy(&data_crc, bytes.data() + pos + 12 + len, 4);
    if (MaskedCrc(data.data(), data.size()) != data_crc) return error("data CRC mismatch");
    records.emplace_back(data);
    pos += 12 + len + 4;
  }
  return records;
}

absl::StatusOr<std::vector<std::string>> ReadTfRecordFile(const std::string& path) {
  RLVR_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return DecodeTfRecords(bytes, path);
}

HistogramData MakeHistogram(std::span<const double> values) {
  const std::vector<double>& limits = DefaultBucketLimits();
  std::vector<double> counts(limits.size(), 0.0);
  HistogramData h;
  h.min = DBL_MAX;
  h.max = -DBL_MAX;
  for (double v : values) {
    if (!std::isfinite(v)) continue;
    size_t b = std::upper_bound(limits.begin(), limits.end(), v) - limits.begin();
    counts[std::min(b, counts.size() - 1)] += 1.0;
    h.min = std::min(h.min, v);
    h.max = std::max(h.max, v);
    h.num += 1;
    h.sum += v;
    h.sum_squares += v * v;
  }
  for (size_t i = 0; i < counts.size();) {
    double end = limits[i];
    double count = counts[i];
    ++i;
    if (count <= 0.0) {
      // Collapse a run of empty buckets into one, keeping the run's last limit.
      while (i < counts.size() && counts[i] <= 0.0) {
        end = limits[i];
        count = counts[i];
        ++i;
      }
    }
    h.bucket_limit.push_back(end);
    h.bucket.push_back(count);
  }
  return h;
}

absl::StatusOr<std::unique_ptr<EventWriter>> EventWriter::Open(const std::string& logdir,
                                                               EventWriterOptions options) {
  RLVR_RETURN_IF_ERROR(MakeDirs(logdir));
  if (!options.clock)
    options.clock = [] { return absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()); };
  if (options.hostname.empty()) options.hostname = Hostname();
  double now = options.clock();
  const std::string base =
      absl::StrFormat("%s/events.out.tfevents.%010d.%s%s", logdir, static_cast<int64_t>(now),
                      options.hostname, options.filename_suffix);
  // Never append to or clobber another writer's file: a second writer in the same second gets
  // a numbered name (TensorBoard reads every file whose name contains "tfevents").
  std::string path = base;
  std::FILE* f = nullptr;
  for (int attempt = 1; attempt <= 100; ++attempt) {
    f = std::fopen(path.c_str(), "wbx");
    if (f != nullptr || errno != EEXIST) break;
    path = absl::StrCat(base, ".", attempt);
  }
  if (f == nullptr) {
    return absl::InternalError(absl::StrCat(path, ": create: ", std::strerror(errno)));
  }
  std::unique_ptr<EventWriter> writer(new EventWriter(path, f, std::move(options)));
  tensorboard::Event event;
  event.set_wall_time(now);
  event.set_file_version("brain.Event:2");
  RLVR_RETURN_IF_ERROR(writer->WriteRecord(event.SerializeAsString()));
  return writer;
}

EventWriter::~EventWriter() { Close().IgnoreError(); }

double EventWriter::Now() const { return options_.clock(); }

absl::Status EventWriter::WriteRecord(absl::string_view payload) {
  std::string record = EncodeTfRecord(payload);
  absl::MutexLock lock(&mu_);
  if (file_ == nullptr) return absl::FailedPreconditionError(absl::StrCat(path_, ": closed"));
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size()) {
    return absl::InternalError(absl::StrCat(path_, ": write: ", std::strerror(errno)));
  }
  if (options_.flush_every_event && std::fflush(file_) != 0) {
    return absl::InternalError(absl::StrCat(path_, ": flush: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status EventWriter::AddSerializedEvent(absl::string_view event) { return WriteRecord(event); }

absl::Status EventWriter::AddScalar(absl::string_view tag, double value, int64_t step) {
  tensorboard::Event event;
  event.set_wall_time(Now());
  event.set_step(step);
  tensorboard::Summary::Value* v = event.mutable_summary()->add_value();
  v->set_tag(std::string(tag));
  v->set_simple_value(static_cast<float>(value));
  return WriteRecord(event.SerializeAsString());
}

absl::Status EventWriter::AddHistogram(absl::string_view tag, std::span<const double> values,
                                       int64_t step) {
  return AddHistogram(tag, MakeHistogram(values), step);
}

absl::Status EventWriter::AddHistogram(absl::string_view tag, std::span<const float> values,
                                       int64_t step) {
  std::vector<double> v(values.begin(), values.end());
  return AddHistogram(tag, MakeHistogram(v), step);
}

absl::Status EventWriter::AddHistogram(absl::string_view tag, const HistogramData& h,
                                       int64_t step) {
  if (h.bucket.size() != h.bucket_limit.size()) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": histogram '", tag,
                                                   "': ", h.bucket.size(), " buckets but ",
                                                   h.bucket_limit.size(), " bucket limits"));
  }
  tensorboard::Event event;
  event.set_wall_time(Now());
  event.set_step(step);
  tensorboard::Summary::Value* v = event.mutable_summary()->add_value();
  v->set_tag(std::string(tag));
  tensorboard::HistogramProto* p = v->mutable_histo();
  p->set_min(h.min);
  p->set_max(h.max);
  p->set_num(h.num);
  p->set_sum(h.sum);
  p->set_sum_squares(h.sum_squares);
  for (double limit : h.bucket_limit) p->add_bucket_limit(limit);
  for (double count : h.bucket) p->add_bucket(count);
  return WriteRecord(event.SerializeAsString());
}

absl::Status EventWriter::AddText(absl::string_view tag, absl::string_view text, int64_t step) {
  tensorboard::Event event;
  event.set_wall_time(Now());
  event.set_step(step);
  tensorboard::Summary::Value* v = event.mutable_summary()->add_value();
  v->set_tag(std::string(tag));
  v->mutable_metadata()->mutable_plugin_data()->set_plugin_name("text");
  tensorboard::TensorProto* t = v->mutable_tensor();
  t->set_dtype(tensorboard::DT_STRING);
  t->mutable_tensor_shape();  // a scalar: present, no dims
  t->add_string_val(std::string(text));
  return WriteRecord(event.SerializeAsString());
}

absl::Status EventWriter::Flush() {
  absl::MutexLock lock(&mu_);
  if (file_ == nullptr) return absl::FailedPreconditionError(absl::StrCat(path_, ": closed"));
  if (std::fflush(file_) != 0) {
    return absl::InternalError(absl::StrCat(path_, ": flush: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status EventWriter::Close() {
  absl::MutexLock lock(&mu_);
  if (file_ == nullptr) return absl::OkStatus();
  absl::Status status;
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0) {
    status = absl::InternalError(absl::StrCat(path_, ": flush: ", std::strerror(errno)));
  }
  if (std::fclose(file_) != 0 && status.ok()) {
    status = absl::InternalError(absl::StrCat(path_, ": close: ", std::strerror(errno)));
  }
  file_ = nullptr;
  return status;
}

}  // namespace rlvr
