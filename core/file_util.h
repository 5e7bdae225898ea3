// File utilities: whole-file reads, atomic writes, directory creation and fsync, read-only
// memory maps.
//
// Atomic writes follow the usual POSIX recipe: the bytes go to a temporary file in the same
// directory (`<path>.tmp.<pid>.<n>`), which is fsynced, renamed over `path`, and then the
// directory is fsynced so the rename itself survives a crash. A reader therefore sees either the
// old file or the complete new one, never a prefix.
//
// Errors: every function returns absl::Status naming the path and the failing system call with
// strerror(errno). A missing file is NotFound; other I/O failures are Internal (or
// InvalidArgument for a path that is not what the call needs, e.g. a directory to ReadFile).
// All functions are thread-compatible; concurrent atomic writes to the same path are safe in the
// sense that one of them wins.
#ifndef RLVR_CORE_FILE_UTIL_H_
#define RLVR_CORE_FILE_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rlvr {

// Reads the whole file at `path`.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `contents` to `path` atomically (see above). The parent directory must exist.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

// Creates `path` and any missing parents (like `mkdir -p`). OK if it already is a directory;
// an error if it exists and is not a directory.
absl::Status MakeDirs(const std::string& path);

// fsyncs the directory `dir` so that entries created or renamed in it are durable.
absl::Status FsyncDir(const std::string& dir);

// The directory part of `path` ("." when it has none).
std::string DirName(const std::string& path);

// Streams bytes into a temporary file and renames it over `path` on Commit(). Destroying (or
// calling Abort() on) an uncommitted writer removes the temporary file and leaves `path`
// untouched. Not thread-safe.
class AtomicFileWriter {
 public:
  static absl::StatusOr<AtomicFileWriter> Open(const std::string& path);
  AtomicFileWriter(AtomicFileWriter&& other) noexcept;
  AtomicFileWriter& operator=(AtomicFileWriter&& other) noexcept;
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter();

  // Appends bytes; retries short writes and EINTR.
  absl::Status Append(absl::string_view bytes);
  absl::Status Append(std::span<const uint8_t> bytes) {
    return Append(absl::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  }
  // fsyncs, closes, renames to the final path and fsyncs the directory. After Commit() the
  // writer is closed; calling Append() or Commit() again is a FailedPrecondition error.
  absl::Status Commit();
  // Removes the temporary file. Safe to call more than once.
  void Abort();

  int64_t bytes_written() const { return bytes_written_; }
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  AtomicFileWriter(std::string path, std::string temp_path, int fd)
      : path_(std::move(path)), temp_path_(std::move(temp_path)), fd_(fd) {}
  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  int64_t bytes_written_ = 0;
};

// A read-only, private memory map of a whole file. An empty file maps to an empty span (no
// mmap call). The mapping lives as long as the object; moving transfers it. Thread-safe to read.
class MappedFile {
 public:
  static absl::StatusOr<MappedFile> Open(const std::string& path);
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const uint8_t> data() const { return {data_, size_}; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  void Reset();
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace rlvr

#endif  // RLVR_CORE_FILE_UTIL_H_
