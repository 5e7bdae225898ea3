// Loading, overriding and printing protobuf-described configuration.
//
// A config file is YAML (JSON is accepted too: it is read by the same YAML parser) whose keys are
// the field names of a protobuf message. Values are checked against the schema: an unknown key
// is an InvalidArgument error naming the file, line and the closest valid keys; a value of the
// wrong type names the key and the expected type. Overrides are Hydra-style `dotted.key=value`
// strings whose value is parsed as YAML (`grpo.group_size=16`, `rollout.stop=["</answer>"]`,
// `reward.verifiers=[{name: math, weight: 1}]`, `reward.verifiers.0.weight=0.5`). A list in a file
// or override replaces the list it overrides; a nested message is merged field by field.
//
// The functions work on any message; RunConfig-specific defaults live in LoadRunConfig().
// Thread-safe: no shared state.
#ifndef RLVR_CORE_CONFIG_H_
#define RLVR_CORE_CONFIG_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "proto/config.pb.h"

namespace rlvr {

// Merges the YAML/JSON document `text` into `*msg`. `source_name` is used in error messages
// (`config.yaml:12: ...`).
absl::Status MergeConfigText(absl::string_view text, absl::string_view source_name,
                             google::protobuf::Message* msg);

// Reads the file at `path` and merges it into `*msg`.
absl::Status MergeConfigFile(const std::string& path, google::protobuf::Message* msg);

// Applies one `dotted.key=value` override to `*msg`.
absl::Status ApplyOverride(absl::string_view override_text, google::protobuf::Message* msg);

// Renders `msg` as YAML with every field, including those at their default value, in schema
// order. MergeConfigText(ToYaml(m)) reproduces `m` exactly.
std::string ToYaml(const google::protobuf::Message& msg);

// The built-in defaults of a run.
proto::RunConfig DefaultRunConfig();

// Defaults, then the file at `path` (skipped when empty), then each override in order; then
// validates cross-field constraints (ValidateRunConfig).
absl::StatusOr<proto::RunConfig> LoadRunConfig(const std::string& path,
                                               const std::vector<std::string>& overrides);

// Checks constraints between fields (e.g. the batch divides into groups, known enum-like strings),
// naming the offending key.
absl::Status ValidateRunConfig(const proto::RunConfig& config);

// Levenshtein edit distance (exposed for tests).
int EditDistance(absl::string_view a, absl::string_view b);

}  // namespace rlvr

#endif  // RLVR_CORE_CONFIG_H_
