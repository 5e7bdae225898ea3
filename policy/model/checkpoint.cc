#include "policy/model/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/dtype.h"
#include "core/file_util.h"
#include "core/status.h"

namespace rlvr::policy {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string Join(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

absl::StatusOr<json> ReadJsonFile(const std::string& path) {
  RLVR_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": invalid JSON"));
  return j;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return FormatShape(std::span<const int64_t>(shape.data(), shape.size()));
}

}  // namespace

const std::vector<std::string>& TokenizerFileNames() {
  static const auto* names = new std::vector<std::string>{"tokenizer.json",
                                                          "tokenizer_config.json",
                                                          "special_tokens_map.json",
                                                          "chat_template.jinja",
                                                          "vocab.json",
                                                          "merges.txt"};
  return *names;
}

json GenerationConfig::ToJson() const {
  json j;
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  if (eos_token_ids.size() == 1) {
    j["eos_token_id"] = eos_token_ids[0];
  } else if (!eos_token_ids.empty()) {
    j["eos_token_id"] = eos_token_ids;
  }
  if (pad_token_id >= 0) j["pad_token_id"] = pad_token_id;
  j["do_sample"] = do_sample;
  if (do_sample) {
    j["temperature"] = temperature;
    j["top_p"] = top_p;
    if (top_k > 0) j["top_k"] = top_k;
  }
  return j;
}

absl::StatusOr<GenerationConfig> ParseGenerationConfig(const json& j, const std::string& source) {
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": expected a JSON object"));
  }
  GenerationConfig g;
  auto int_field = [&](const char* key, int64_t* out) -> absl::Status {
    if (!j.contains(key) || j[key].is_null()) return absl::OkStatus();
    if (!j[key].is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": ", key, ": expected an integer"));
    }
    *out = j[key].get<int64_t>();
    return absl::OkStatus();
  };
  auto num_field = [&](const char* key, double* out) -> absl::Status {
    if (!j.contains(key) || j[key].is_null()) return absl::OkStatus();
    if (!j[key].is_number()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": ", key, ": expected a number"));
    }
    *out = j[key].get<double>();
    return absl::OkStatus();
  };
  RLVR_RETURN_IF_ERROR(int_field("bos_token_id", &g.bos_token_id));
  RLVR_RETURN_IF_ERROR(int_field("pad_token_id", &g.pad_token_id));
  RLVR_RETURN_IF_ERROR(int_field("top_k", &g.top_k));
  RLVR_RETURN_IF_ERROR(num_field("temperature", &g.temperature));
  RLVR_RETURN_IF_ERROR(num_field("top_p", &g.top_p));
  if (j.contains("do_sample") && j["do_sample"].is_boolean()) g.do_sample = j["do_sample"];
  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
    const json& e = j["eos_token_id"];
    if (e.is_number_integer()) {
      g.eos_token_ids.push_back(e.get<int64_t>());
    } else if (e.is_array()) {
      for (const json& x : e) {
        if (!x.is_number_integer()) {
          return absl::InvalidArgumentError(
              absl::StrCat(source, ": eos_token_id: expected integers, got ", x.dump()));
        }
        g.eos_token_ids.push_back(x.get<int64_t>());
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": eos_token_id: expected an integer or a list of integers"));
    }
  }
  return g;
}

template <typename T>
absl::Status LoadWeights(const SafetensorsCheckpoint& ckpt, CausalLM<T>* model) {
  const std::string& where = ckpt.index_path().empty() ? ckpt.directory() : ckpt.index_path();
  absl::flat_hash_set<std::string> expected;
  for (const ParamInfo& p : model->params()) expected.insert(p.name);
  for (const TensorView& t : ckpt.tensors()) {
    if (!expected.contains(t.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": tensor ", t.name, " ", FormatShape(t.shape), " is not part of a ",
                       model->config().model_type, " model with this config.json (extra tensor)"));
    }
  }
  std::vector<float> buf;
  for (const ParamInfo& p : model->params()) {
    const TensorView* t = ckpt.Find(p.name);
    if (t == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": tensor ", p.name, " ",
                                                     ShapeString(p.shape),
                                                     " is missing from the checkpoint"));
    }
    if (t->shape != p.shape) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": tensor ", p.name, ": shape ",
                                                     FormatShape(t->shape), ", config says ",
                                                     ShapeString(p.shape)));
    }
    if (t->dtype != DType::kF32 && t->dtype != DType::kBF16 && t->dtype != DType::kF16 &&
        t->dtype != DType::kF64) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": tensor ", p.name, ": dtype ", std::string(DTypeName(t->dtype)),
                       ", expected a floating-point dtype (F32, BF16, F16 or F64)"));
    }
    T* dst = model->data(p);
    if (t->dtype == DType::kF64) {
      for (int64_t i = 0; i < p.numel; ++i) {
        double v;
        std::memcpy(&v, t->data.data() + i * sizeof(double), sizeof(double));
        dst[i] = static_cast<T>(v);
      }
      continue;
    }
    buf.resize(static_cast<size_t>(p.numel));
    ConvertToF32(t->dtype, t->data.data(), buf.data(), static_cast<size_t>(p.numel));
    for (int64_t i = 0; i < p.numel; ++i) dst[i] = static_cast<T>(buf[i]);
  }
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<LoadedModel<T>> LoadModel(const std::string& dir) {
  LoadedModel<T> out;
  out.dir = dir;
  RLVR_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(Join(dir, "config.json")));
  RLVR_ASSIGN_OR_RETURN(out.model, CausalLM<T>::Create(config), Join(dir, "config.json"));
  RLVR_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsCheckpoint> ckpt,
                        SafetensorsCheckpoint::Open(dir));
  RLVR_RETURN_IF_ERROR(LoadWeights(*ckpt, out.model.get()));
  out.generation.bos_token_id = config.bos_token_id;
  out.generation.pad_token_id = config.pad_token_id;
  out.generation.eos_token_ids = config.eos_token_ids;
  const std::string gen_path = Join(dir, "generation_config.json");
  if (fs::exists(gen_path)) {
    RLVR_ASSIGN_OR_RETURN(json j, ReadJsonFile(gen_path));
    RLVR_ASSIGN_OR_RETURN(out.generation, ParseGenerationConfig(j, gen_path));
  }
  for (const std::vector<int64_t>* list : {&config.eos_token_ids, &out.generation.eos_token_ids}) {
    for (int64_t id : *list) {
      if (id < 0 || id >= config.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            dir, ": eos_token_id ", id, " is outside the vocabulary (", config.vocab_size, ")"));
      }
      if (std::find(out.eos_token_ids.begin(), out.eos_token_ids.end(), id) ==
          out.eos_token_ids.end()) {
        out.eos_token_ids.push_back(id);
      }
    }
  }
  return out;
}

template <typename T>
absl::Status SaveModel(const CausalLM<T>& model, const std::string& dir,
                       const SaveOptions& options) {
  ModelConfig config = model.config();
  if (!options.dtype.empty()) config.torch_dtype = options.dtype;
  DType disk;
  if (config.torch_dtype == "float32") {
    disk = DType::kF32;
  } else if (config.torch_dtype == "bfloat16") {
    disk = DType::kBF16;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("SaveModel: dtype \"", config.torch_dtype, "\" is not float32 or bfloat16"));
  }
  const fs::path final_dir = fs::absolute(fs::path(dir).lexically_normal());
  const std::string parent = final_dir.parent_path().string();
  RLVR_RETURN_IF_ERROR(MakeDirs(parent));
  const std::string tmp = absl::StrCat(final_dir.string(), ".tmp.", getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  RLVR_RETURN_IF_ERROR(MakeDirs(tmp));

  // Weights: converted to the disk dtype; buffers must outlive the write.
  std::vector<std::vector<uint8_t>> storage;
  std::vector<TensorToWrite> tensors;
  storage.reserve(model.params().size());
  std::vector<float> f32;
  for (const ParamInfo& p : model.params()) {
    // The correction bias is kept in float32, as transformers does (_keep_in_fp32_modules).
    const DType dt = p.trainable ? disk : DType::kF32;
    const T* src = model.param_data() + p.offset;
    f32.assign(src, src + p.numel);
    std::vector<uint8_t>& bytes =
        storage.emplace_back(static_cast<size_t>(p.numel) * DTypeSize(dt));
    RLVR_RETURN_IF_ERROR(ConvertFromF32(f32.data(), dt, bytes.data(), f32.size()), p.name);
    tensors.push_back({.name = p.name, .dtype = dt, .shape = p.shape, .data = bytes});
  }
  ShardedWriteOptions shard_options;
  shard_options.max_shard_bytes = options.max_shard_bytes;
  RLVR_RETURN_IF_ERROR(
      WriteShardedSafetensors(tmp, tensors, {{"format", "pt"}}, shard_options).status(), "writing ",
      tmp);
  storage.clear();

  RLVR_RETURN_IF_ERROR(WriteFileAtomically(Join(tmp, "config.json"), config.ToJson().dump(2)));
  GenerationConfig gen;
  if (options.generation != nullptr) {
    gen = *options.generation;
  } else {
    gen.bos_token_id = config.bos_token_id;
    gen.eos_token_ids = config.eos_token_ids;
    gen.pad_token_id = config.pad_token_id;
  }
  RLVR_RETURN_IF_ERROR(
      WriteFileAtomically(Join(tmp, "generation_config.json"), gen.ToJson().dump(2)));
  if (!options.tokenizer_dir.empty()) {
    for (const std::string& name : TokenizerFileNames()) {
      const std::string src = Join(options.tokenizer_dir, name);
      if (!fs::exists(src)) continue;
      RLVR_ASSIGN_OR_RETURN(std::string bytes, ReadFile(src));
      RLVR_RETURN_IF_ERROR(WriteFileAtomically(Join(tmp, name), bytes));
    }
  }
  if (options.write_extra) {
    absl::Status extra = options.write_extra(tmp);
    if (!extra.ok()) {
      fs::remove_all(tmp, ec);
      return Annotate(extra, "SaveModel: write_extra");
    }
  }
  RLVR_RETURN_IF_ERROR(FsyncDir(tmp));

  // Swap the finished directory into place.
  const std::string old = absl::StrCat(final_dir.string(), ".old.", getpid());
  const bool existed = fs::exists(final_dir);
  if (existed) {
    fs::remove_all(old, ec);
    fs::rename(final_dir, old, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("rename ", final_dir.string(), " -> ", old, ": ", ec.message()));
    }
  }
  fs::rename(tmp, final_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("rename ", tmp, " -> ", final_dir.string(), ": ", ec.message()));
  }
  RLVR_RETURN_IF_ERROR(FsyncDir(parent));
  if (existed) fs::remove_all(old, ec);
  return absl::OkStatus();
}

template absl::Status LoadWeights<float>(const SafetensorsCheckpoint&, CausalLM<float>*);
template absl::Status LoadWeights<double>(const SafetensorsCheckpoint&, CausalLM<double>*);
template absl::StatusOr<LoadedModel<float>> LoadModel<float>(const std::string&);
template absl::StatusOr<LoadedModel<double>> LoadModel<double>(const std::string&);
template absl::Status SaveModel<float>(const CausalLM<float>&, const std::string&,
                                       const SaveOptions&);
template absl::Status SaveModel<double>(const CausalLM<double>&, const std::string&,
                                        const SaveOptions&);

}  // namespace rlvr::policy
