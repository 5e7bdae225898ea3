// Streaming JSON Lines reader and writer.
//
// JsonlReader reads one object per line without loading the file; a line that is not valid JSON
// is an InvalidArgument error naming `file:line` (or, with `skip_bad_lines`, is skipped and
// counted). Blank lines are ignored. JsonlWriter writes to `path + ".tmp"` and, on Close(),
// fsyncs and renames it into place, so a reader never sees a half-written file; each Write()
// appends one line. Neither class is thread-safe.
#ifndef RLVR_CORE_JSONL_H_
#define RLVR_CORE_JSONL_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace rlvr {

struct JsonlReadOptions {
  // Skip lines that are not valid JSON instead of failing; they are counted in bad_lines().
  bool skip_bad_lines = false;
  // Lines longer than this are errors (protects against a binary file passed by mistake).
  int64_t max_line_bytes = int64_t{256} << 20;
};

class JsonlReader {
 public:
  static absl::StatusOr<std::unique_ptr<JsonlReader>> Open(const std::string& path,
                                                           JsonlReadOptions options = {});
  ~JsonlReader();

  // Reads the next record into `*out`. Returns false at end of file, true when a record was read,
  // or an error naming `path:line`.
  absl::StatusOr<bool> Next(nlohmann::json* out);

  // 1-based line number of the record last returned by Next().
  int64_t line_number() const { return line_; }
  int64_t bad_lines() const { return bad_lines_; }
  const std::string& path() const { return path_; }

 private:
  JsonlReader(std::string path, std::FILE* f, JsonlReadOptions options);
  std::string path_;
  std::FILE* file_;
  JsonlReadOptions options_;
  int64_t line_ = 0;
  int64_t bad_lines_ = 0;
  std::string buffer_;
};

// Reads a whole JSONL file into memory (convenience for small data sets).
absl::StatusOr<std::vector<nlohmann::json>> ReadJsonl(const std::string& path,
                                                      JsonlReadOptions options = {});

class JsonlWriter {
 public:
  // Opens `path + ".tmp"` for writing. `path` itself is replaced only by Close().
  static absl::StatusOr<std::unique_ptr<JsonlWriter>> Open(const std::string& path);
  // Destroying an unclosed writer removes the temporary file and leaves `path` untouched.
  ~JsonlWriter();

  absl::Status Write(const nlohmann::json& record);
  // Flushes, fsyncs and renames the temporary file to `path`.
  absl::Status Close();
  int64_t records() const { return records_; }

 private:
  JsonlWriter(std::string path, std::FILE* f);
  std::string path_;
  std::FILE* file_;
  int64_t records_ = 0;
};

}  // namespace rlvr

#endif  // RLVR_CORE_JSONL_H_
