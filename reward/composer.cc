#include "reward/composer.h"

#include <cmath>
#include <cstdio>
#include <exception>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "core/status.h"

namespace rlvr::reward {

struct RewardComposer::Component {
  RewardComponentSpec spec;
  std::shared_ptr<const Verifier> verifier;
  absl::Duration timeout;
};

namespace {

std::string Where(const Sample& s) {
  return absl::StrCat(s.source.empty() ? "sample" : s.source, ":", s.line);
}

// What a worker hands back: the verdict or why it failed.
struct Outcome {
  absl::StatusOr<VerdictResult> result = absl::UnknownError("not run");
};

}  // namespace

absl::StatusOr<ComposerSettings> ComposerSettingsFromConfig(const proto::RunConfig& config) {
  ComposerSettings s;
  const proto::RewardConfig& rc = config.reward();
  s.data_source_key = config.data().data_source_key();
  s.timeout_seconds = rc.timeout_seconds() > 0 ? rc.timeout_seconds() : 10.0;
  s.threads = config.trainer().threads();
  for (int i = 0; i < rc.verifiers_size(); ++i) {
    const proto::VerifierSpec& v = rc.verifiers(i);
    const std::string key = absl::StrCat("reward.verifiers.", i);
    RewardComponentSpec c;
    c.name = v.name();
    if (c.name.empty()) return absl::InvalidArgumentError(absl::StrCat(key, ".name: empty"));
    c.weight = v.weight();
    if (!std::isfinite(c.weight)) {
      return absl::InvalidArgumentError(absl::StrCat(key, ".weight: not finite"));
    }
    c.data_sources.assign(v.data_sources().begin(), v.data_sources().end());
    for (const auto& [k, val] : v.options()) c.options[k] = val;
    if (auto it = c.options.find("timeout_seconds"); it != c.options.end()) {
      if (!absl::SimpleAtod(it->second, &c.timeout_seconds) || !(c.timeout_seconds > 0)) {
        return absl::InvalidArgumentError(absl::StrCat(
            key, ".options.timeout_seconds: expected a positive number, got '", it->second, "'"));
      }
      c.options.erase(it);
    }
    if (!c.data_sources.empty() && s.data_source_key.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          key,
          ".data_sources: routing by data source needs data.data_source_key to name the "
          "record field"));
    }
    if (c.name == "overlong") {
      if (!c.options.count("buffer_tokens") && rc.overlong_buffer_tokens() > 0) {
        c.options["buffer_tokens"] = absl::StrCat(rc.overlong_buffer_tokens());
      }
      if (!c.options.count("penalty")) c.options["penalty"] = absl::StrCat(rc.overlong_penalty());
    }
    if (c.name == "math" && !c.options.count("answer_key") && !config.data().answer_key().empty()) {
      c.options["answer_key"] = config.data().answer_key();
    }
    s.components.push_back(std::move(c));
  }
  if (s.components.empty()) {
    return absl::InvalidArgumentError("reward.verifiers: at least one verifier is needed");
  }
  return s;
}

RewardComposer::RewardComposer(ComposerSettings settings,
                               std::vector<std::shared_ptr<Component>> components)
    : settings_(std::move(settings)), components_(std::move(components)) {
  for (const auto& c : components_) routed_ |= !c->spec.data_sources.empty();
  int threads = settings_.threads;
  if (threads <= 0) threads = static_cast<int>(std::thread::hardware_concurrency());
  executor_ = std::make_unique<DeadlineExecutor>(std::max(threads, 1), settings_.max_abandoned);
}

RewardComposer::~RewardComposer() = default;

absl::StatusOr<std::unique_ptr<RewardComposer>> RewardComposer::Create(
    ComposerSettings settings, const VerifierRegistry& registry) {
  if (!(settings.timeout_seconds > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("reward.timeout_seconds: must be > 0, got ", settings.timeout_seconds));
  }
  std::vector<std::shared_ptr<Component>> components;
  for (size_t i = 0; i < settings.components.size(); ++i) {
    const RewardComponentSpec& spec = settings.components[i];
    auto c = std::make_shared<Component>();
    c->spec = spec;
    RLVR_ASSIGN_OR_RETURN(std::unique_ptr<Verifier> v, registry.Create(spec.name, spec.options),
                          "reward.verifiers.", i);
    c->verifier = std::move(v);
    c->timeout =
        absl::Seconds(spec.timeout_seconds > 0 ? spec.timeout_seconds : settings.timeout_seconds);
    components.push_back(std::move(c));
  }
  return std::unique_ptr<RewardComposer>(
      new RewardComposer(std::move(settings), std::move(components)));
}

absl::StatusOr<std::vector<int>> RewardComposer::Route(const nlohmann::json* record,
                                                       const std::string& where) const {
  std::vector<int> out;
  std::string source;
  if (routed_) {
    absl::StatusOr<std::string> s = RecordString(record, settings_.data_source_key);
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": ", s.status().message(),
                       " (data.data_source_key; the reward verifiers are chosen by it)"));
    }
    source = *std::move(s);
  }
  bool routed_match = false;
  for (size_t i = 0; i < components_.size(); ++i) {
    const auto& ds = components_[i]->spec.data_sources;
    if (ds.empty()) {
      out.push_back(static_cast<int>(i));
    } else if (std::find(ds.begin(), ds.end(), source) != ds.end()) {
      out.push_back(static_cast<int>(i));
      routed_match = true;
    }
  }
  if (routed_ && !routed_match) {
    std::vector<std::string> known;
    for (const auto& c : components_) {
      for (const auto& d : c->spec.data_sources) known.push_back(d);
    }
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", settings_.data_source_key, " '", source,
                     "' is not listed in any reward.verifiers.*.data_sources (listed: ",
                     absl::StrJoin(known, ", "), ")"));
  }
  return out;
}

absl::Status RewardComposer::CheckRecord(const nlohmann::json& record, const std::string& source,
                                         int64_t line) const {
  const std::string where = absl::StrCat(source.empty() ? "record" : source, ":", line);
  RLVR_ASSIGN_OR_RETURN(std::vector<int> comps, Route(&record, where));
  for (int i : comps) {
    const Component& c = *components_[i];
    absl::Status s;
    try {
      s = c.verifier->CheckRecord(record);
    } catch (const std::exception& e) {
      s = absl::InternalError(absl::StrCat("CheckRecord threw: ", e.what()));
    } catch (...) {
      s = absl::InternalError("CheckRecord threw");
    }
    if (!s.ok()) {
      return absl::Status(
          s.code(), absl::StrCat(where, ": reward verifier '", c.spec.name, "': ", s.message()));
    }
  }
  return absl::OkStatus();
}

void RewardComposer::LogError(const std::string& message, BatchRewards* out) {
  if (logged_.fetch_add(1) < settings_.max_logged_errors) {
    std::fprintf(stderr, "reward: %s\n", message.c_str());
  }
  if (static_cast<int>(out->error_messages.size()) < settings_.max_logged_errors) {
    out->error_messages.push_back(message);
  }
}

absl::StatusOr<BatchRewards> RewardComposer::Score(const std::vector<Sample>& samples) {
  const size_t n = samples.size();
  const size_t m = components_.size();
  BatchRewards out;
  out.samples.resize(n);
  // Route and validate every sample before running anything: bad data fails the batch.
  std::vector<std::vector<int>> routes(n);
  for (size_t i = 0; i < n; ++i) {
    RLVR_ASSIGN_OR_RETURN(routes[i], Route(samples[i].record.get(), Where(samples[i])));
    static const nlohmann::json kEmpty = nlohmann::json::object();
    const nlohmann::json& record = samples[i].record ? *samples[i].record : kEmpty;
    for (int c : routes[i]) {
      absl::Status s;
      try {
        s = components_[c]->verifier->CheckRecord(record);
      } catch (...) {
        s = absl::InternalError("CheckRecord threw");
      }
      if (s.code() == absl::StatusCode::kInvalidArgument) {
        return absl::InvalidArgumentError(absl::StrCat(Where(samples[i]), ": reward verifier '",
                                                       components_[c]->spec.name,
                                                       "': ", s.message()));
      }
    }
  }

  struct Job {
    size_t sample;
    int component;
    std::shared_ptr<Outcome> outcome;
    std::shared_ptr<DeadlineExecutor::Task> task;
  };
  std::vector<Job> jobs;
  for (size_t i = 0; i < n; ++i) {
    // Each task owns a copy of its sample: a hung verifier may outlive this call.
    auto sample = std::make_shared<const Sample>(samples[i]);
    for (int c : routes[i]) {
      auto outcome = std::make_shared<Outcome>();
      std::shared_ptr<Component> comp = components_[c];
      RLVR_ASSIGN_OR_RETURN(auto task, executor_->Submit([sample, comp, outcome] {
        try {
          outcome->result = comp->verifier->Score(*sample);
        } catch (const std::exception& e) {
          outcome->result = absl::InternalError(absl::StrCat("threw: ", e.what()));
        } catch (...) {
          outcome->result = absl::InternalError("threw a non-std exception");
        }
      }));
      jobs.push_back({i, c, outcome, std::move(task)});
    }
  }

  for (size_t i = 0; i < n; ++i) {
    out.samples[i].components.assign(m, 0.0);
    out.samples[i].applied.assign(m, 0);
    out.samples[i].details.assign(m, "");
  }
  out.components.resize(m);
  std::vector<double> sum(m, 0.0), sq(m, 0.0);
  absl::Status data_error;
  for (Job& job : jobs) {
    SampleReward& sr = out.samples[job.sample];
    const Component& comp = *components_[job.component];
    ComponentStats& cs = out.components[job.component];
    sr.applied[job.component] = 1;
    ++cs.applied;
    absl::Status waited = executor_->Wait(job.task, comp.timeout);
    std::string failure;
    if (!waited.ok()) {
      failure = absl::StrCat("timeout: ", waited.message());
      sr.details[job.component] = "timeout";
      ++cs.timeouts;
      ++out.timeouts;
    } else if (!job.outcome->result.ok()) {
      const absl::Status& st = job.outcome->result.status();
      if (st.code() == absl::StatusCode::kInvalidArgument && data_error.ok()) {
        data_error = absl::InvalidArgumentError(absl::StrCat(Where(samples[job.sample]),
                                                             ": reward verifier '", comp.spec.name,
                                                             "': ", st.message()));
      }
      failure = std::string(st.ToString());
      sr.details[job.component] = "error";
    } else if (!std::isfinite(job.outcome->result->reward)) {
      failure = absl::StrCat("non-finite reward ", job.outcome->result->reward);
      sr.details[job.component] = "error";
    }
    if (!failure.empty()) {
      ++sr.errors;
      ++cs.errors;
      ++out.errors;
      LogError(absl::StrCat(Where(samples[job.sample]), ": verifier '", comp.spec.name,
                            "' scored 0: ", failure),
               &out);
      continue;
    }
    const VerdictResult& v = *job.outcome->result;
    sr.components[job.component] = v.reward;
    sr.details[job.component] = v.detail;
    sr.total += comp.spec.weight * v.reward;
    if (v.correct.has_value() && !sr.correct.has_value()) sr.correct = v.correct;
    sum[job.component] += v.reward;
    sq[job.component] += v.reward * v.reward;
  }
  if (!data_error.ok()) return data_error;

  for (size_t c = 0; c < m; ++c) {
    ComponentStats& cs = out.components[c];
    cs.name = components_[c]->spec.name;
    cs.weight = components_[c]->spec.weight;
    if (cs.applied > 0) {
      cs.mean = sum[c] / cs.applied;
      cs.std = std::sqrt(std::max(0.0, sq[c] / cs.applied - cs.mean * cs.mean));
    }
  }
  double tsum = 0, tsq = 0;
  for (const SampleReward& sr : out.samples) {
    tsum += sr.total;
    tsq += sr.total * sr.total;
    if (sr.correct.has_value()) {
      ++out.judged;
      out.correct += *sr.correct ? 1 : 0;
    }
  }
  if (n > 0) {
    out.total_mean = tsum / n;
    out.total_std = std::sqrt(std::max(0.0, tsq / n - out.total_mean * out.total_mean));
  }
  out.accuracy = out.judged > 0 ? static_cast<double>(out.correct) / out.judged : 0.0;
  return out;
}

std::vector<std::pair<std::string, double>> RewardMetrics(const BatchRewards& r) {
  std::vector<std::pair<std::string, double>> out;
  out.emplace_back("critic/score/mean", r.total_mean);
  out.emplace_back("critic/score/std", r.total_std);
  out.emplace_back("reward/accuracy", r.accuracy);
  out.emplace_back("reward/errors", static_cast<double>(r.errors));
  out.emplace_back("reward/timeouts", static_cast<double>(r.timeouts));
  for (size_t i = 0; i < r.components.size(); ++i) {
    const ComponentStats& c = r.components[i];
    int same = 0;
    for (const ComponentStats& other : r.components) same += other.name == c.name ? 1 : 0;
    const std::string prefix =
        absl::StrCat("reward/", c.name, same > 1 ? absl::StrCat("#", i) : "", "/");
    out.emplace_back(prefix + "mean", c.mean);
    out.emplace_back(prefix + "std", c.std);
    out.emplace_back(prefix + "errors", static_cast<double>(c.errors));
    out.emplace_back(prefix + "timeouts", static_cast<double>(c.timeouts));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<RewardComposer>> CreateRewardComposer(
    const proto::RunConfig& config) {
  // The registry is only needed while the verifiers are created.
  VerifierRegistry registry;
  RLVR_RETURN_IF_ERROR(RegisterBuiltinVerifiers(&registry));
  for (int i = 0; i < config.reward().plugins_size(); ++i) {
    RLVR_RETURN_IF_ERROR(LoadVerifierPlugin(config.reward().plugins(i), &registry),
                         "reward.plugins.", i);
  }
  if (config.reward().servers_size() > 0) {
    return absl::UnimplementedError(
        "reward.servers: out-of-process reward servers are not implemented yet");
  }
  RLVR_ASSIGN_OR_RETURN(ComposerSettings settings, ComposerSettingsFromConfig(config));
  return RewardComposer::Create(std::move(settings), registry);
}

}  // namespace rlvr::reward
