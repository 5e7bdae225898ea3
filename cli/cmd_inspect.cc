// rlvr inspect PATH: lists the tensors of a safetensors file or checkpoint directory (name,
// dtype, shape, bytes, and totals) and prints the checkpoint's config.json if there is one.
// A malformed file, index or config is reported on stderr with exit status 1.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/commands.h"
#include "core/file_util.h"
#include "core/safetensors.h"
#include "nlohmann/json.hpp"

namespace rlvr::cli {
namespace {

std::string HumanBytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? absl::StrCat(bytes, " B") : absl::StrFormat("%.2f %s", v, units[u]);
}

int Inspect(const std::string& path, bool as_json, bool show_config) {
  auto ckpt = SafetensorsCheckpoint::Open(path);
  if (!ckpt.ok()) {
    std::fprintf(stderr, "rlvr inspect: %s\n", std::string(ckpt.status().message()).c_str());
    return 1;
  }
  std::vector<const TensorView*> tensors;
  for (const TensorView& t : (*ckpt)->tensors()) tensors.push_back(&t);
  std::sort(tensors.begin(), tensors.end(),
            [](const TensorView* a, const TensorView* b) { return a->name < b->name; });
  int64_t total_bytes = 0, total_elements = 0;
  std::map<std::string, int64_t> bytes_by_dtype;
  for (const TensorView* t : tensors) {
    total_bytes += static_cast<int64_t>(t->nbytes());
    total_elements += t->num_elements();
    bytes_by_dtype[std::string(DTypeName(t->dtype))] += static_cast<int64_t>(t->nbytes());
  }

  nlohmann::json config;
  std::string config_path = (std::filesystem::path((*ckpt)->directory()) / "config.json").string();
  bool has_config = show_config && std::filesystem::exists(config_path);
  if (has_config) {
    auto text = ReadFile(config_path);
    if (!text.ok()) {
      std::fprintf(stderr, "rlvr inspect: %s\n", std::string(text.status().message()).c_str());
      return 1;
    }
    config = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded()) {
      std::fprintf(stderr, "rlvr inspect: %s: not valid JSON\n", config_path.c_str());
      return 1;
    }
  }

  if (as_json) {
    nlohmann::json out;
    out["path"] = path;
    out["shards"] = nlohmann::json::array();
    for (const auto& shard : (*ckpt)->shards()) out["shards"].push_back(shard->path());
    out["metadata"] = (*ckpt)->metadata();
    out["tensors"] = nlohmann::json::array();
    for (const TensorView* t : tensors) {
      out["tensors"].push_back({{"name", t->name},
                                {"dtype", std::string(DTypeName(t->dtype))},
                                {"shape", t->shape},
                                {"bytes", t->nbytes()}});
    }
    out["total_bytes"] = total_bytes;
    out["total_elements"] = total_elements;
    if (has_config) out["config"] = config;
    std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }

  std::printf("%s: %zu tensor%s in %zu file%s%s\n", path.c_str(), tensors.size(),
              tensors.size() == 1 ? "" : "s", (*ckpt)->shards().size(),
              (*ckpt)->shards().size() == 1 ? "" : "s",
              (*ckpt)->index_path().empty()
                  ? ""
                  : absl::StrCat(" (index ", (*ckpt)->index_path(), ")").c_str());
  for (const auto& [key, value] : (*ckpt)->metadata()) {
    std::printf("metadata %s = %s\n", key.c_str(), value.c_str());
  }
  size_t name_width = 4, shape_width = 5;
  for (const TensorView* t : tensors) {
    name_width = std::max(name_width, t->name.size());
    shape_width = std::max(shape_width, FormatShape(t->shape).size());
  }
  std::printf("%-*s  %-7s  %-*s  %12s\n", static_cast<int>(name_width), "NAME", "DTYPE",
              static_cast<int>(shape_width), "SHAPE", "BYTES");
  for (const TensorView* t : tensors) {
    std::printf("%-*s  %-7s  %-*s  %12zu\n", static_cast<int>(name_width), t->name.c_str(),
                std::string(DTypeName(t->dtype)).c_str(), static_cast<int>(shape_width),
                FormatShape(t->shape).c_str(), t->nbytes());
  }
  std::string by_dtype;
  for (const auto& [dtype, bytes] : bytes_by_dtype) {
    absl::StrAppend(&by_dtype, by_dtype.empty() ? "" : ", ", dtype, " ", HumanBytes(bytes));
  }
  std::printf("total: %zu tensors, %lld elements, %lld bytes (%s; %s)\n", tensors.size(),
              static_cast<long long>(total_elements), static_cast<long long>(total_bytes),
              HumanBytes(total_bytes).c_str(), by_dtype.empty() ? "empty" : by_dtype.c_str());
  if (has_config) {
    std::printf("config.json (%s):\n%s\n", config_path.c_str(),
                config.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  }
  return 0;
}

}  // namespace

int InspectMain(const Args& args) {
  CLI::App app{
      "Print the tensors (name, dtype, shape, bytes) of a safetensors file or a Hugging "
      "Face checkpoint directory (model.safetensors or sharded with "
      "model.safetensors.index.json), and its config.json.",
      "rlvr inspect"};
  std::string path;
  bool as_json = false;
  bool no_config = false;
  app.add_option("path", path, "a .safetensors file, an index .json, or a checkpoint directory")
      ->required();
  app.add_flag("--json", as_json, "print one JSON object instead of a table");
  app.add_flag("--no-config", no_config, "do not print config.json");
  try {
    std::vector<std::string> rest(args.begin() + (args.empty() ? 0 : 1), args.end());
    std::reverse(rest.begin(), rest.end());
    app.parse(rest);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    return Inspect(path, as_json, !no_config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rlvr inspect: %s: %s\n", path.c_str(), e.what());
    return 1;
  }
}

}  // namespace rlvr::cli
