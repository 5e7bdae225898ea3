#include "core/jsonl.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace rlvr {
namespace {

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  int err = errno;
  std::string msg = absl::StrCat(path, ": ", what, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  return absl::InternalError(msg);
}

}  // namespace

JsonlReader::JsonlReader(std::string path, std::FILE* f, JsonlReadOptions options)
    : path_(std::move(path)), file_(f), options_(options) {}

JsonlReader::~JsonlReader() {
  if (file_ != nullptr) std::fclose(file_);
}

absl::StatusOr<std::unique_ptr<JsonlReader>> JsonlReader::Open(const std::string& path,
                                                               JsonlReadOptions options) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return ErrnoError("cannot open", path);
  return std::unique_ptr<JsonlReader>(new JsonlReader(path, f, options));
}

absl::StatusOr<bool> JsonlReader::Next(nlohmann::json* out) {
  while (true) {
    buffer_.clear();
    bool got_any = false;
    int c;
    while ((c = getc_unlocked(file_)) != EOF) {
      got_any = true;
      if (c == '\n') break;
      buffer_.push_back(static_cast<char>(c));
      if (static_cast<int64_t>(buffer_.size()) > options_.max_line_bytes) {
        return absl::InvalidArgumentError(absl::StrCat(path_, ":", line_ + 1, ": line longer than ",
                                                       options_.max_line_bytes, " bytes"));
      }
    }
    if (std::ferror(file_)) return ErrnoError("read error", path_);
    if (!got_any) return false;
    ++line_;
    if (!buffer_.empty() && buffer_.back() == '\r') buffer_.pop_back();
    if (buffer_.find_first_not_of(" \t") == std::string::npos) continue;
    *out = nlohmann::json::parse(buffer_, nullptr, /*allow_exceptions=*/false);
    if (out->is_discarded() || !out->is_object()) {
      std::string why = out->is_discarded() ? "not valid JSON" : "not a JSON object";
      if (options_.skip_bad_lines) {
        ++bad_lines_;
        continue;
      }
      std::string excerpt = buffer_.substr(0, 60);
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ":", line_, ": ", why, " (line starts: '", excerpt, "')"));
    }
    return true;
  }
}

absl::StatusOr<std::vector<nlohmann::json>> ReadJsonl(const std::string& path,
                                                      JsonlReadOptions options) {
  RLVR_ASSIGN_OR_RETURN(auto reader, JsonlReader::Open(path, options));
  std::vector<nlohmann::json> records;
  nlohmann::json record;
  while (true) {
    RLVR_ASSIGN_OR_RETURN(bool more, reader->Next(&record));
    if (!more) break;
    records.push_back(std::move(record));
  }
  return records;
}

JsonlWriter::JsonlWriter(std::string path, std::FILE* f) : path_(std::move(path)), file_(f) {}

JsonlWriter::~JsonlWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::remove((path_ + ".tmp").c_str());
  }
}

absl::StatusOr<std::unique_ptr<JsonlWriter>> JsonlWriter::Open(const std::string& path) {
  std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return ErrnoError("cannot create", tmp);
  return std::unique_ptr<JsonlWriter>(new JsonlWriter(path, f));
}

absl::Status JsonlWriter::Write(const nlohmann::json& record) {
  if (file_ == nullptr) return absl::FailedPreconditionError(path_ + ": writer already closed");
  // Replace invalid UTF-8 rather than throwing: model output can contain any bytes.
  std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line.push_back('\n');
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size()) {
    return ErrnoError("write error", path_ + ".tmp");
  }
  ++records_;
  return absl::OkStatus();
}

absl::Status JsonlWriter::Close() {
  if (file_ == nullptr) return absl::FailedPreconditionError(path_ + ": writer already closed");
  std::string tmp = path_ + ".tmp";
  bool ok = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  int err = errno;
  std::fclose(file_);
  file_ = nullptr;
  if (!ok) {
    errno = err;
    absl::Status s = ErrnoError("flush failed", tmp);
    std::remove(tmp.c_str());
    return s;
  }
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
    absl::Status s = ErrnoError("rename failed", path_);
    std::remove(tmp.c_str());
    return s;
  }
  return absl::OkStatus();
}

}  // namespace rlvr
