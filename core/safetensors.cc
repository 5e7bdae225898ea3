#include "core/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/status.h"
#include "nlohmann/json.hpp"

namespace rlvr {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

constexpr absl::string_view kMetadataKey = "__metadata__";

absl::Status Corrupt(absl::string_view source, absl::string_view message) {
  return absl::DataLossError(absl::StrCat(source, ": ", message));
}

absl::Status BadTensor(absl::string_view source, absl::string_view name,
                       absl::string_view message) {
  return absl::DataLossError(absl::StrCat(source, ": tensor '", name, "': ", message));
}

// Reads a JSON integer that must fit in [0, INT64_MAX].
bool AsNonNegativeInt(const Json& j, int64_t* out) {
  if (j.is_number_unsigned()) {
    uint64_t v = j.get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    *out = static_cast<int64_t>(v);
    return true;
  }
  if (j.is_number_integer()) {
    int64_t v = j.get<int64_t>();
    if (v < 0) return false;
    *out = v;
    return true;
  }
  return false;
}

// Parses the JSON header, rejecting duplicate keys in any object (nlohmann would silently keep
// one of them). Returns a discarded value on a syntax error.
Json ParseHeaderJson(absl::string_view text, std::string* duplicate) {
  std::vector<absl::flat_hash_set<std::string>> keys_stack;
  Json::parser_callback_t callback = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
        keys_stack.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        if (!keys_stack.empty()) keys_stack.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!keys_stack.empty() && parsed.is_string()) {
          const std::string& key = parsed.get_ref<const std::string&>();
          if (!keys_stack.back().insert(key).second && duplicate->empty()) {
            *duplicate = key.empty() ? std::string("\"\"") : key;
          }
        }
        break;
      default:
        break;
    }
    return true;
  };
  return Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/false);
}

struct Entry {
  TensorView view;
  uint64_t begin = 0;
  uint64_t end = 0;
};

absl::Status ParseEntry(absl::string_view source, const std::string& name, const Json& value,
                        uint64_t buffer_size, Entry* entry) {
  entry->view.name = name;
  if (name.empty()) return Corrupt(source, "a tensor has an empty name");
  if (!value.is_object()) {
    return BadTensor(source, name,
                     absl::StrCat("entry is a JSON ", value.type_name(), ", expected an object"));
  }
  auto dtype_it = value.find("dtype");
  if (dtype_it == value.end()) return BadTensor(source, name, "missing \"dtype\"");
  if (!dtype_it->is_string()) return BadTensor(source, name, "\"dtype\" is not a string");
  absl::StatusOr<DType> dtype = ParseDType(dtype_it->get_ref<const std::string&>());
  if (!dtype.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": tensor '", name, "': ", dtype.status().message()));
  }
  entry->view.dtype = *dtype;

  auto shape_it = value.find("shape");
  if (shape_it == value.end()) return BadTensor(source, name, "missing \"shape\"");
  if (!shape_it->is_array()) return BadTensor(source, name, "\"shape\" is not an array");
  uint64_t elements = 1;
  bool overflow = false;
  for (size_t i = 0; i < shape_it->size(); ++i) {
    const Json& dim = (*shape_it)[i];
    int64_t d;
    if (!AsNonNegativeInt(dim, &d)) {
      return BadTensor(source, name,
                       absl::StrCat("shape dimension ", i, " is ", dim.dump(),
                                    ", expected a non-negative integer"));
    }
    entry->view.shape.push_back(d);
    if (!overflow && __builtin_mul_overflow(elements, static_cast<uint64_t>(d), &elements)) {
      overflow = true;
    }
  }
  uint64_t nbytes = 0;
  if (overflow || elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
      __builtin_mul_overflow(elements, DTypeSize(*dtype), &nbytes)) {
    // A zero dim makes the product 0 even if another dim overflowed on the way; that case is
    // rejected too since no real tensor has such a shape.
    return BadTensor(source, name,
                     absl::StrCat("shape ", FormatShape(entry->view.shape),
                                  " overflows 64-bit element or byte counts"));
  }

  auto offsets_it = value.find("data_offsets");
  if (offsets_it == value.end()) return BadTensor(source, name, "missing \"data_offsets\"");
  int64_t begin, end;
  if (!offsets_it->is_array() || offsets_it->size() != 2 ||
      !AsNonNegativeInt((*offsets_it)[0], &begin) || !AsNonNegativeInt((*offsets_it)[1], &end)) {
    return BadTensor(source, name,
                     absl::StrCat("\"data_offsets\" is ", offsets_it->dump(),
                                  ", expected [begin, end] with non-negative integers"));
  }
  if (begin > end) {
    return BadTensor(source, name,
                     absl::StrCat("data_offsets [", begin, ", ", end, "] end before they begin"));
  }
  if (static_cast<uint64_t>(end) > buffer_size) {
    return BadTensor(
        source, name,
        absl::StrCat("data_offsets [", begin, ", ", end, "] run past the end of the data buffer (",
                     buffer_size, " bytes)"));
  }
  if (static_cast<uint64_t>(end - begin) != nbytes) {
    return BadTensor(source, name,
                     absl::StrCat("shape ", FormatShape(entry->view.shape), " of ",
                                  DTypeName(*dtype), " needs ", nbytes, " bytes but data_offsets [",
                                  begin, ", ", end, "] hold ", end - begin));
  }
  entry->begin = static_cast<uint64_t>(begin);
  entry->end = static_cast<uint64_t>(end);
  return absl::OkStatus();
}

}  // namespace

int64_t TensorView::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string FormatShape(std::span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<SafetensorsContents> ParseSafetensors(std::span<const uint8_t> file,
                                                     absl::string_view source) {
  if (file.size() < 8) {
    return Corrupt(source, absl::StrCat("file is ", file.size(),
                                        " bytes, too short for the 8-byte header length"));
  }
  uint64_t header_len;
  std::memcpy(&header_len, file.data(), 8);
  if (header_len > kSafetensorsMaxHeaderBytes) {
    return Corrupt(source, absl::StrCat("header length ", header_len, " exceeds the limit of ",
                                        kSafetensorsMaxHeaderBytes, " bytes"));
  }
  if (header_len > file.size() - 8) {
    return Corrupt(source,
                   absl::StrCat("header length ", header_len, " runs past the end of the file (",
                                file.size(), " bytes)"));
  }
  absl::string_view header(reinterpret_cast<const char*>(file.data()) + 8, header_len);
  if (header.empty() || header.front() != '{') {
    return Corrupt(source, "header is not a JSON object (it must start with '{')");
  }
  std::string duplicate;
  Json json = ParseHeaderJson(header, &duplicate);
  if (json.is_discarded()) return Corrupt(source, "header is not valid JSON");
  if (!json.is_object()) return Corrupt(source, "header is not a JSON object");
  if (!duplicate.empty()) {
    return Corrupt(source, absl::StrCat("header has the key '", duplicate, "' more than once"));
  }

  SafetensorsContents contents;
  contents.header_bytes = header_len;
  const uint64_t data_start = 8 + header_len;
  const uint64_t buffer_size = file.size() - data_start;
  std::vector<Entry> entries;
  entries.reserve(json.size());
  for (auto it = json.begin(); it != json.end(); ++it) {
    if (it.key() == kMetadataKey) {
      if (!it->is_object()) return Corrupt(source, "__metadata__ is not a JSON object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) {
          return Corrupt(source, absl::StrCat("__metadata__ key '", m.key(), "' is a JSON ",
                                              m->type_name(), ", expected a string"));
        }
        contents.metadata.emplace(m.key(), m->get<std::string>());
      }
      continue;
    }
    Entry entry;
    RLVR_RETURN_IF_ERROR(ParseEntry(source, it.key(), *it, buffer_size, &entry));
    entries.push_back(std::move(entry));
  }

  // The reference implementation requires the byte ranges to tile the buffer exactly; sorting
  // by (begin, end) puts empty tensors before a non-empty one at the same offset.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, a.view.name) < std::tie(b.begin, b.end, b.view.name);
  });
  uint64_t expected = 0;
  const Entry* previous = nullptr;
  for (const Entry& e : entries) {
    if (e.begin < expected) {
      return BadTensor(
          source, e.view.name,
          absl::StrCat("data_offsets [", e.begin, ", ", e.end, "] overlap tensor '",
                       previous->view.name, "' [", previous->begin, ", ", previous->end, "]"));
    }
    if (e.begin > expected) {
      return BadTensor(source, e.view.name,
                       absl::StrCat("data_offsets [", e.begin, ", ", e.end, "] leave a gap of ",
                                    e.begin - expected, " bytes after offset ", expected,
                                    " (data must be contiguous)"));
    }
    expected = e.end;
    previous = &e;
  }
  if (expected != buffer_size) {
    return Corrupt(source,
                   absl::StrCat("the tensors cover ", expected, " bytes of the ", buffer_size,
                                "-byte data buffer (", buffer_size - expected, " trailing bytes)"));
  }
  contents.tensors.reserve(entries.size());
  for (Entry& e : entries) {
    e.view.data = file.subspan(data_start + e.begin, e.end - e.begin);
    contents.tensors.push_back(std::move(e.view));
  }
  return contents;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  RLVR_ASSIGN_OR_RETURN(MappedFile mapped, MappedFile::Open(path));
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->mapping_ = std::make_unique<MappedFile>(std::move(mapped));
  RLVR_RETURN_IF_ERROR(file->Init(file->mapping_->data()));
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(std::string bytes,
                                                                            std::string name) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = std::move(name);
  file->owned_ = std::move(bytes);
  RLVR_RETURN_IF_ERROR(file->Init(std::span<const uint8_t>(
      reinterpret_cast<const uint8_t*>(file->owned_.data()), file->owned_.size())));
  return file;
}

absl::Status SafetensorsFile::Init(std::span<const uint8_t> bytes) {
  bytes_ = bytes;
  RLVR_ASSIGN_OR_RETURN(contents_, ParseSafetensors(bytes, path_));
  for (size_t i = 0; i < contents_.tensors.size(); ++i) {
    by_name_.emplace(contents_.tensors[i].name, i);
  }
  return absl::OkStatus();
}

const TensorView* SafetensorsFile::Find(absl::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &contents_.tensors[it->second];
}

absl::StatusOr<const TensorView*> SafetensorsFile::Get(absl::string_view name) const {
  const TensorView* view = Find(name);
  if (view == nullptr) {
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor named '", name, "'"));
  }
  return view;
}

namespace {

bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(
    const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::file_status status = fs::status(path, ec);
  if (ec || !fs::exists(status)) return absl::NotFoundError(absl::StrCat(path, ": not found"));
  std::unique_ptr<SafetensorsCheckpoint> ckpt(new SafetensorsCheckpoint());
  std::string single_file;
  if (fs::is_directory(status)) {
    ckpt->directory_ = path;
    std::string index = (fs::path(path) / std::string(kSafetensorsIndexName)).string();
    std::string model = (fs::path(path) / "model.safetensors").string();
    if (fs::exists(index, ec)) {
      ckpt->index_path_ = index;
    } else if (fs::exists(model, ec)) {
      single_file = model;
    } else {
      std::vector<std::string> found;
      std::vector<std::string> indexes;
      for (const auto& entry : fs::directory_iterator(path, ec)) {
        std::string name = entry.path().filename().string();
        if (absl::EndsWith(name, ".safetensors")) found.push_back(entry.path().string());
        if (absl::EndsWith(name, ".safetensors.index.json"))
          indexes.push_back(entry.path().string());
      }
      if (indexes.size() == 1) {
        ckpt->index_path_ = indexes[0];
      } else if (found.size() == 1 && indexes.empty()) {
        single_file = found[0];
      } else {
        return absl::NotFoundError(
            absl::StrCat(path, ": no ", kSafetensorsIndexName, " or model.safetensors, and ",
                         found.size(), " *.safetensors files and ", indexes.size(),
                         " *.safetensors.index.json files (expected exactly one)"));
      }
    }
  } else if (absl::EndsWith(path, ".json")) {
    ckpt->index_path_ = path;
    ckpt->directory_ = DirName(path);
  } else {
    single_file = path;
    ckpt->directory_ = DirName(path);
  }

  if (!single_file.empty()) {
    RLVR_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(single_file));
    ckpt->shards_.push_back(std::move(file));
  } else {
    const std::string& index_path = ckpt->index_path_;
    RLVR_ASSIGN_OR_RETURN(std::string text, ReadFile(index_path));
    Json index = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (index.is_discarded()) return Corrupt(index_path, "not valid JSON");
    if (!index.is_object()) return Corrupt(index_path, "not a JSON object");
    auto map_it = index.find("weight_map");
    if (map_it == index.end() || !map_it->is_object()) {
      return Corrupt(index_path, "missing \"weight_map\" object");
    }
    // shard file name -> tensor names the index assigns to it
    std::map<std::string, absl::flat_hash_set<std::string>> shard_tensors;
    for (auto it = map_it->begin(); it != map_it->end(); ++it) {
      if (!it->is_string()) {
        return Corrupt(index_path,
                       absl::StrCat("weight_map: tensor '", it.key(), "': shard is not a string"));
      }
      const std::string& shard = it->get_ref<const std::string&>();
      if (!IsPlainFileName(shard)) {
        return Corrupt(index_path,
                       absl::StrCat("weight_map: tensor '", it.key(), "': shard '", shard,
                                    "' is not a plain file name in the index's directory"));
      }
      shard_tensors[shard].insert(it.key());
    }
    for (const auto& [shard, names] : shard_tensors) {
      std::string shard_path = (fs::path(ckpt->directory_) / shard).string();
      RLVR_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(shard_path), index_path, ": shard '",
                            shard, "'");
      for (const TensorView& t : file->tensors()) {
        if (!names.contains(t.name)) {
          return Corrupt(index_path, absl::StrCat("shard '", shard, "' holds tensor '", t.name,
                                                  "', which weight_map does not assign to it"));
        }
      }
      for (const std::string& name : names) {
        if (file->Find(name) == nullptr) {
          return Corrupt(index_path, absl::StrCat("weight_map says tensor '", name, "' is in '",
                                                  shard, "', but it is not"));
        }
      }
      ckpt->shards_.push_back(std::move(file));
    }
  }
  for (const auto& shard : ckpt->shards_) {
    for (const TensorView& t : shard->tensors()) {
      if (!ckpt->by_name_.emplace(t.name, ckpt->tensors_.size()).second) {
        return Corrupt(ckpt->index_path_,
                       absl::StrCat("tensor '", t.name, "' appears in more than one shard"));
      }
      ckpt->tensors_.push_back(t);
    }
  }
  return ckpt;
}

const TensorView* SafetensorsCheckpoint::Find(absl::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<const TensorView*> SafetensorsCheckpoint::Get(absl::string_view name) const {
  const TensorView* view = Find(name);
  if (view == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(index_path_.empty() ? shards_.front()->path() : index_path_,
                     ": no tensor named '", name, "'"));
  }
  return view;
}

const SafetensorsMetadata& SafetensorsCheckpoint::metadata() const {
  static const SafetensorsMetadata* const kEmpty = new SafetensorsMetadata();
  return shards_.empty() ? *kEmpty : shards_.front()->metadata();
}

int64_t SafetensorsCheckpoint::total_bytes() const {
  int64_t total = 0;
  for (const TensorView& t : tensors_) total += static_cast<int64_t>(t.nbytes());
  return total;
}

namespace {

// The header bytes (length prefix, JSON, padding) and the data order for `tensors`.
absl::StatusOr<std::string> BuildHeader(std::span<const TensorToWrite> tensors,
                                        const SafetensorsMetadata& metadata,
                                        std::vector<size_t>* order) {
  absl::flat_hash_set<absl::string_view> names;
  for (const TensorToWrite& t : tensors) {
    if (t.name.empty()) return absl::InvalidArgumentError("safetensors: empty tensor name");
    if (t.name == kMetadataKey) {
      return absl::InvalidArgumentError("safetensors: '__metadata__' is not a valid tensor name");
    }
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor '", t.name, "' given more than once"));
    }
    uint64_t elements = 1;
    for (int64_t d : t.shape) {
      if (d < 0 || __builtin_mul_overflow(elements, static_cast<uint64_t>(d), &elements)) {
        return absl::InvalidArgumentError(absl::StrCat("safetensors: tensor '", t.name,
                                                       "': invalid shape ", FormatShape(t.shape)));
      }
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(elements, DTypeSize(t.dtype), &nbytes) || nbytes != t.data.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor '", t.name, "': shape ", FormatShape(t.shape), " of ",
                       DTypeName(t.dtype), " needs ", elements * DTypeSize(t.dtype), " bytes, got ",
                       t.data.size()));
    }
  }
  order->resize(tensors.size());
  std::iota(order->begin(), order->end(), 0);
  // Larger elements first keeps every tensor naturally aligned (as the reference writer does).
  std::sort(order->begin(), order->end(), [&](size_t a, size_t b) {
    if (tensors[a].dtype != tensors[b].dtype) return tensors[a].dtype > tensors[b].dtype;
    return tensors[a].name < tensors[b].name;
  });

  OrderedJson header = OrderedJson::object();
  if (!metadata.empty()) {
    OrderedJson meta = OrderedJson::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header[std::string(kMetadataKey)] = std::move(meta);
  }
  uint64_t offset = 0;
  for (size_t i : *order) {
    const TensorToWrite& t = tensors[i];
    OrderedJson entry = OrderedJson::object();
    entry["dtype"] = DTypeName(t.dtype);
    entry["shape"] = t.shape;
    entry["data_offsets"] = {offset, offset + t.data.size()};
    offset += t.data.size();
    header[t.name] = std::move(entry);
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    // dump() throws only on strings that are not valid UTF-8.
    return absl::InvalidArgumentError(absl::StrCat(
        "safetensors: a tensor name or metadata string is not valid UTF-8: ", e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  uint64_t n = text.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  out += text;
  return out;
}

}  // namespace

absl::StatusOr<std::string> SerializeSafetensors(std::span<const TensorToWrite> tensors,
                                                 const SafetensorsMetadata& metadata) {
  std::vector<size_t> order;
  RLVR_ASSIGN_OR_RETURN(std::string out, BuildHeader(tensors, metadata, &order));
  for (size_t i : order) {
    out.append(reinterpret_cast<const char*>(tensors[i].data.data()), tensors[i].data.size());
  }
  return out;
}

absl::Status WriteSafetensors(const std::string& path, std::span<const TensorToWrite> tensors,
                              const SafetensorsMetadata& metadata) {
  std::vector<size_t> order;
  RLVR_ASSIGN_OR_RETURN(std::string header, BuildHeader(tensors, metadata, &order), path);
  RLVR_ASSIGN_OR_RETURN(AtomicFileWriter writer, AtomicFileWriter::Open(path));
  RLVR_RETURN_IF_ERROR(writer.Append(header));
  for (size_t i : order) RLVR_RETURN_IF_ERROR(writer.Append(tensors[i].data));
  return writer.Commit();
}

absl::StatusOr<std::vector<std::string>> WriteShardedSafetensors(
    const std::string& dir, std::span<const TensorToWrite> tensors,
    const SafetensorsMetadata& metadata, const ShardedWriteOptions& options) {
  if (options.max_shard_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("WriteShardedSafetensors: max_shard_bytes must be positive, got ",
                     options.max_shard_bytes));
  }
  std::vector<std::vector<TensorToWrite>> shards;
  int64_t current = 0;
  int64_t total = 0;
  for (const TensorToWrite& t : tensors) {
    int64_t n = static_cast<int64_t>(t.data.size());
    if (shards.empty() || (current > 0 && current + n > options.max_shard_bytes)) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(t);
    current += n;
    total += n;
  }
  if (shards.empty()) shards.emplace_back();
  std::vector<std::string> written;
  const std::string base = (std::filesystem::path(dir) / "").string();
  if (shards.size() == 1) {
    RLVR_RETURN_IF_ERROR(WriteSafetensors(base + "model.safetensors", shards[0], metadata));
    written.push_back("model.safetensors");
    return written;
  }
  Json weight_map = Json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    std::string name = absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, shards.size());
    RLVR_RETURN_IF_ERROR(WriteSafetensors(base + name, shards[s], metadata));
    for (const TensorToWrite& t : shards[s]) weight_map[t.name] = name;
    written.push_back(name);
  }
  Json index = {{"metadata", {{"total_size", total}}}, {"weight_map", std::move(weight_map)}};
  RLVR_RETURN_IF_ERROR(
      WriteFileAtomically(base + std::string(kSafetensorsIndexName), index.dump(2) + "\n"));
  written.push_back(std::string(kSafetensorsIndexName));
  return written;
}

}  // namespace rlvr
