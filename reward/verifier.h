// The reward-verifier interface, its options, and the C ABI of verifier plugins.
//
// A Verifier scores one sample (prompt, completion, the dataset record it came from, token counts)
// with a scalar reward. Verifiers are created by name from a registry (registry.h) with a map of
// string options (the config's `reward.verifiers[i].options`), and combined by the RewardComposer
// (composer.h), which runs them on worker threads with a deadline: a verifier that throws or hangs
// costs that sample a zero reward and a logged error, never the run.
//
// Writing a verifier (in-tree or in a plugin):
//   class MyVerifier : public rlvr::reward::Verifier {
//    public:
//     std::string name() const override { return "my"; }
//     absl::Status CheckRecord(const nlohmann::json& record) const override;  // optional
//     absl::StatusOr<VerdictResult> Score(const Sample& sample) const override;
//   };
// Score() must be thread-safe (it is called from several threads at once on one object) and
// should return InvalidArgument only for bad data (a record lacking a field it needs: the
// composer then fails the batch with an error naming the dataset line and field); any other
// error, or an exception, is logged and scored as 0.
//
// Plugins: a shared library that exports, with C linkage,
//   int rlvr_plugin_abi_version(void);          // must return rlvr::reward::kPluginAbiVersion
//   int rlvr_register_verifiers(rlvr::reward::VerifierRegistrar* registrar);  // 0 on success
// and calls registrar->Register(name, factory) for each verifier it provides. The registrar and
// the Verifier are used only through virtual functions, so a plugin needs no symbol of the rlvr
// binary; it must be compiled against the same rlvr headers (kPluginAbiVersion guards the
// layout of Sample/VerdictResult) and the same C++ standard library. A plugin is never unloaded.
// See examples/plugin/ and docs/grpo.md.
#ifndef RLVR_REWARD_VERIFIER_H_
#define RLVR_REWARD_VERIFIER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace rlvr::reward {

// Bumped whenever Sample, VerdictResult, Verifier or VerifierRegistrar change layout.
inline constexpr int kPluginAbiVersion = 1;

// One completion to score. `record` is the dataset line the prompt came from (never null when
// built by the trainer; verifiers must still treat a null record as an empty object). `source`
// and `line` locate it for error messages ("train.jsonl:12").
struct Sample {
  std::string prompt;
  std::string completion;
  std::shared_ptr<const nlohmann::json> record;
  int64_t completion_tokens = 0;
  int64_t max_tokens = 0;  // the generation budget (rollout.max_new_tokens)
  bool truncated = false;  // generation stopped at max_tokens rather than at a stop condition
  std::string source;      // dataset file name, for messages
  int64_t line = 0;        // 1-based line in `source`; 0 if unknown
};

struct VerdictResult {
  double reward = 0.0;
  // Set by accuracy verifiers (math, code, countdown, ...): whether the answer is right.
  std::optional<bool> correct;
  // Short machine-readable outcome ("correct", "wrong", "no_answer", "timeout", ...).
  std::string detail;
};

using VerifierOptions = std::map<std::string, std::string>;

class Verifier {
 public:
  virtual ~Verifier() = default;
  virtual std::string name() const = 0;
  // Checks that `record` has the fields Score() needs; InvalidArgument naming the field. The
  // composer calls it before scoring (and the trainer can call it on a whole dataset up front).
  virtual absl::Status CheckRecord(const nlohmann::json& record) const {
    (void)record;
    return absl::OkStatus();
  }
  virtual absl::StatusOr<VerdictResult> Score(const Sample& sample) const = 0;
};

// Creates a verifier from its options; InvalidArgument naming an unknown or malformed option.
using VerifierFactory =
    std::function<absl::StatusOr<std::unique_ptr<Verifier>>(const VerifierOptions& options)>;

// What a plugin registers into (implemented by VerifierRegistry, registry.h).
class VerifierRegistrar {
 public:
  virtual ~VerifierRegistrar() = default;
  // AlreadyExists if `name` is taken; InvalidArgument if it is empty.
  virtual absl::Status Register(const std::string& name, VerifierFactory factory) = 0;
};

// Option helpers, inline so that plugins can use them without linking rlvr. Each getter parses
// `key` from the options or returns `fallback` when it is absent; errors are InvalidArgument
// naming the verifier and key ("format.reward: expected a number, got 'x'"). CheckAllUsed()
// rejects options that no getter asked for (typos).
class OptionReader {
 public:
  OptionReader(std::string verifier, const VerifierOptions& options)
      : verifier_(std::move(verifier)), options_(options) {}

  absl::StatusOr<double> Double(const std::string& key, double fallback) {
    const std::string* v = Find(key);
    if (v == nullptr) return fallback;
    double out = 0;
    if (!absl::SimpleAtod(*v, &out)) return Bad(key, "a number", *v);
    return out;
  }
  absl::StatusOr<int64_t> Int(const std::string& key, int64_t fallback) {
    const std::string* v = Find(key);
    if (v == nullptr) return fallback;
    int64_t out = 0;
    if (!absl::SimpleAtoi(*v, &out)) return Bad(key, "an integer", *v);
    return out;
  }
  absl::StatusOr<bool> Bool(const std::string& key, bool fallback) {
    const std::string* v = Find(key);
    if (v == nullptr) return fallback;
    bool out = false;
    if (!absl::SimpleAtob(*v, &out)) return Bad(key, "true or false", *v);
    return out;
  }
  std::string String(const std::string& key, const std::string& fallback) {
    const std::string* v = Find(key);
    return v == nullptr ? fallback : *v;
  }
  absl::Status CheckAllUsed() const {
    for (const auto& [key, value] : options_) {
      if (used_.count(key) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(verifier_, ".options.", key, ": unknown option"));
      }
    }
    return absl::OkStatus();
  }

 private:
  const std::string* Find(const std::string& key) {
    used_.insert(key);
    auto it = options_.find(key);
    return it == options_.end() ? nullptr : &it->second;
  }
  absl::Status Bad(const std::string& key, const char* expected, const std::string& got) const {
    return absl::InvalidArgumentError(
        absl::StrCat(verifier_, ".options.", key, ": expected ", expected, ", got '", got, "'"));
  }

  std::string verifier_;
  const VerifierOptions& options_;
  std::set<std::string> used_;
};

// Reads a field of a record as text: a JSON string as is, a number or bool as its JSON text.
// InvalidArgument "missing field 'answer'" / "field 'answer' is not a string or number".
inline absl::StatusOr<std::string> RecordString(const nlohmann::json* record,
                                                const std::string& key) {
  if (record == nullptr || !record->is_object() || !record->contains(key)) {
    return absl::InvalidArgumentError(absl::StrCat("missing field '", key, "'"));
  }
  const nlohmann::json& v = (*record)[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number() || v.is_boolean()) return v.dump();
  return absl::InvalidArgumentError(
      absl::StrCat("field '", key, "' is not a string or number (", v.type_name(), ")"));
}

}  // namespace rlvr::reward

extern "C" {
// Signatures of the plugin entry points (for dlsym).
typedef int (*RlvrPluginAbiVersionFn)(void);
typedef int (*RlvrRegisterVerifiersFn)(rlvr::reward::VerifierRegistrar* registrar);
}

#endif  // RLVR_REWARD_VERIFIER_H_
