// An example verifier plugin. Build it with CMake (target rlvr_example_plugin) or by hand:
//   g++ -std=c++20 -shared -fPIC -I<rlvr source> example_plugin.cc -labsl_status
//       -labsl_strings -o libmy_verifiers.so        (one command line)
// and list the library in the config:
//   reward:
//     plugins: [path/to/libmy_verifiers.so]
//     verifiers:
//       - {name: keyword, weight: 0.5, options: {keyword: "therefore"}}
//
// It registers two verifiers:
//   keyword      reward `reward` (1) if the completion contains options.keyword, else 0.
//                With options.field instead of keyword, the needle is the dataset record's
//                field (an example of reading the record; a line without it is a data error).
//   answer_len   -(characters of the last <answer>...</answer>) / options.scale (100): prefers
//                short answers.
#include <memory>
#include <string>

#include "reward/verifier.h"

namespace {

using rlvr::reward::OptionReader;
using rlvr::reward::Sample;
using rlvr::reward::VerdictResult;
using rlvr::reward::Verifier;
using rlvr::reward::VerifierOptions;

class KeywordVerifier : public Verifier {
 public:
  KeywordVerifier(std::string keyword, std::string field, double reward)
      : keyword_(std::move(keyword)), field_(std::move(field)), reward_(reward) {}
  std::string name() const override { return "keyword"; }

  absl::Status CheckRecord(const nlohmann::json& record) const override {
    if (field_.empty()) return absl::OkStatus();
    return rlvr::reward::RecordString(&record, field_).status();
  }

  absl::StatusOr<VerdictResult> Score(const Sample& sample) const override {
    std::string needle = keyword_;
    if (!field_.empty()) {
      absl::StatusOr<std::string> v = rlvr::reward::RecordString(sample.record.get(), field_);
      if (!v.ok()) return v.status();
      needle = *v;
    }
    VerdictResult out;
    const bool found = !needle.empty() && sample.completion.find(needle) != std::string::npos;
    out.reward = found ? reward_ : 0.0;
    out.detail = found ? "found" : "missing";
    return out;
  }

 private:
  std::string keyword_, field_;
  double reward_;
};

class AnswerLengthVerifier : public Verifier {
 public:
  explicit AnswerLengthVerifier(double scale) : scale_(scale) {}
  std::string name() const override { return "answer_len"; }
  absl::StatusOr<VerdictResult> Score(const Sample& sample) const override {
    const std::string& c = sample.completion;
    const size_t close = c.rfind("</answer>");
    const size_t open = close == std::string::npos ? close : c.rfind("<answer>", close);
    VerdictResult out;
    if (open == std::string::npos) {
      out.detail = "no_answer";
      return out;
    }
    out.reward = -static_cast<double>(close - open - 8) / scale_;
    out.detail = "ok";
    return out;
  }

 private:
  double scale_;
};

absl::StatusOr<std::unique_ptr<Verifier>> MakeKeyword(const VerifierOptions& options) {
  OptionReader r("keyword", options);
  std::string keyword = r.String("keyword", "");
  std::string field = r.String("field", "");
  absl::StatusOr<double> reward = r.Double("reward", 1.0);
  if (!reward.ok()) return reward.status();
  if (absl::Status s = r.CheckAllUsed(); !s.ok()) return s;
  if (keyword.empty() == field.empty()) {
    return absl::InvalidArgumentError("keyword.options: set exactly one of keyword, field");
  }
  return std::unique_ptr<Verifier>(new KeywordVerifier(keyword, field, *reward));
}

absl::StatusOr<std::unique_ptr<Verifier>> MakeAnswerLength(const VerifierOptions& options) {
  OptionReader r("answer_len", options);
  absl::StatusOr<double> scale = r.Double("scale", 100.0);
  if (!scale.ok()) return scale.status();
  if (absl::Status s = r.CheckAllUsed(); !s.ok()) return s;
  if (!(*scale > 0)) return absl::InvalidArgumentError("answer_len.options.scale: must be > 0");
  return std::unique_ptr<Verifier>(new AnswerLengthVerifier(*scale));
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int rlvr_plugin_abi_version(void) {
  return rlvr::reward::kPluginAbiVersion;
}

__attribute__((visibility("default"))) int rlvr_register_verifiers(
    rlvr::reward::VerifierRegistrar* registrar) {
  if (!registrar->Register("keyword", MakeKeyword).ok()) return 1;
  if (!registrar->Register("answer_len", MakeAnswerLength).ok()) return 2;
  return 0;
}

}  // extern "C"
