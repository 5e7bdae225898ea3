// safetensors reader and writer, single files and sharded Hugging Face checkpoints.
//
// Format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N,
// N bytes of JSON, then the data buffer. The JSON object maps each tensor name to
// {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]} (offsets relative to the data
// buffer), plus an optional "__metadata__" object of string -> string.
//
// Reading. ParseSafetensors() validates everything before returning a single view, so a caller
// never touches a byte outside the buffer: the header length (at most 100,000,000 bytes, like
// the reference implementation, and inside the file), the JSON (an object, no duplicate keys),
// each entry (known dtype, non-negative integer dims whose element count and byte size do not
// overflow, byte size equal to the span of its data_offsets, offsets inside the buffer) and the
// layout (the tensors' byte ranges tile the data buffer exactly: no overlap, no gap, no trailing
// bytes). Corrupt input is DataLoss; an unsupported dtype name is InvalidArgument; a missing
// file is NotFound. Every message starts with the file path (or the name given for a memory
// buffer) and names the tensor or field at fault.
//
// Views are zero-copy: TensorView::data points into the mapped file. The data buffer starts at
// offset 8 + N; writers (ours and the reference one) pad N to a multiple of 8 and order tensors
// by decreasing element size, so data is naturally aligned in such files, but a reader must not
// assume it (use memcpy or check `reinterpret_cast<uintptr_t>(p) % alignof(T)`).
//
// Writing. WriteSafetensors() streams the file through AtomicFileWriter (temporary file, fsync,
// rename). The layout matches the reference writer: "__metadata__" first, tensors sorted by
// decreasing dtype (element size) then name, header padded with spaces to a multiple of 8.
// Given the same tensors and at most one metadata key, the bytes equal those of Python's
// `safetensors.serialize`. Bad arguments (duplicate or empty names, a data span that does not
// match shape and dtype, negative dims, invalid UTF-8) are InvalidArgument.
//
// Thread safety: the reader classes are immutable after Open() and safe to share; the free
// functions are thread-safe.
#ifndef RLVR_CORE_SAFETENSORS_H_
#define RLVR_CORE_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/dtype.h"
#include "core/file_util.h"

namespace rlvr {

inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;
inline constexpr absl::string_view kSafetensorsIndexName = "model.safetensors.index.json";

using SafetensorsMetadata = std::map<std::string, std::string>;

// One tensor of a safetensors buffer. Does not own its bytes.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;     // row-major; empty for a scalar
  std::span<const uint8_t> data;  // little-endian elements, num_elements() * DTypeSize(dtype)

  int64_t num_elements() const;
  size_t nbytes() const { return data.size(); }
};

// "[2, 3]" (for messages and `rlvr inspect`).
std::string FormatShape(std::span<const int64_t> shape);

struct SafetensorsContents {
  SafetensorsMetadata metadata;
  std::vector<TensorView> tensors;  // in data order (increasing offset)
  size_t header_bytes = 0;          // N, the JSON header's length
};

// Parses and validates a whole safetensors file held in memory. `source` names it in errors.
// The views point into `file`, which must outlive them.
absl::StatusOr<SafetensorsContents> ParseSafetensors(std::span<const uint8_t> file,
                                                     absl::string_view source = "<memory>");

// A validated safetensors file, memory-mapped (Open) or held in memory (FromBytes).
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(std::string bytes,
                                                                    std::string name);

  const std::string& path() const { return path_; }
  const SafetensorsMetadata& metadata() const { return contents_.metadata; }
  // In data order.
  const std::vector<TensorView>& tensors() const { return contents_.tensors; }
  // nullptr if absent.
  const TensorView* Find(absl::string_view name) const;
  // NotFound naming the file and the tensor if absent.
  absl::StatusOr<const TensorView*> Get(absl::string_view name) const;
  // The whole file's bytes.
  std::span<const uint8_t> bytes() const { return bytes_; }

 private:
  SafetensorsFile() = default;
  absl::Status Init(std::span<const uint8_t> bytes);

  std::string path_;
  std::unique_ptr<MappedFile> mapping_;
  std::string owned_;
  std::span<const uint8_t> bytes_;
  SafetensorsContents contents_;
  absl::flat_hash_map<std::string, size_t> by_name_;
};

// A checkpoint: one safetensors file or the shards listed by a model.safetensors.index.json.
class SafetensorsCheckpoint {
 public:
  // `path` is a .safetensors file, an index .json file, or a directory holding
  // model.safetensors.index.json, else model.safetensors, else exactly one *.safetensors file.
  // With an index, every tensor it lists must be in the named shard, every tensor of a shard
  // must be listed for that shard, no name may appear twice, and shard names must be plain file
  // names in the index's directory (DataLoss otherwise).
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(const std::string& path);

  // All tensors: shards in file-name order, each in data order.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* Find(absl::string_view name) const;
  absl::StatusOr<const TensorView*> Get(absl::string_view name) const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }
  // The path of the index file, or empty for a single-file checkpoint.
  const std::string& index_path() const { return index_path_; }
  // The directory holding the checkpoint's files.
  const std::string& directory() const { return directory_; }
  // The first shard's __metadata__.
  const SafetensorsMetadata& metadata() const;
  // Sum of all tensors' byte sizes.
  int64_t total_bytes() const;

 private:
  SafetensorsCheckpoint() = default;
  std::string index_path_;
  std::string directory_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::vector<TensorView> tensors_;
  absl::flat_hash_map<std::string, size_t> by_name_;
};

// A tensor to write; `data` is borrowed and must hold exactly
// product(shape) * DTypeSize(dtype) bytes.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const uint8_t> data;
};

// The whole file as bytes (for small files and tests).
absl::StatusOr<std::string> SerializeSafetensors(std::span<const TensorToWrite> tensors,
                                                 const SafetensorsMetadata& metadata = {});
// Writes `path` atomically.
absl::Status WriteSafetensors(const std::string& path, std::span<const TensorToWrite> tensors,
                              const SafetensorsMetadata& metadata = {});

struct ShardedWriteOptions {
  // A shard holds tensors totalling at most this many bytes, except that a single larger tensor
  // gets a shard of its own. Must be positive.
  int64_t max_shard_bytes = int64_t{5} << 30;
};

// Writes a Hugging Face checkpoint into the existing directory `dir`: `model.safetensors` if
// everything fits in one shard, otherwise `model-0000i-of-0000n.safetensors` (tensors in the
// given order, filled greedily) plus `model.safetensors.index.json` with
// {"metadata": {"total_size": bytes}, "weight_map": {name: shard}}. Each shard carries
// `metadata`. Every file is written atomically; the index is written last. Returns the file
// names written.
absl::StatusOr<std::vector<std::string>> WriteShardedSafetensors(
    const std::string& dir, std::span<const TensorToWrite> tensors,
    const SafetensorsMetadata& metadata = {}, const ShardedWriteOptions& options = {});

}  // namespace rlvr

#endif  // RLVR_CORE_SAFETENSORS_H_
