#include "cluster/trainer.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <thread>

#include "cluster/checkpoint_manager.h"
#include "cluster/demo_task.h"
#include "cluster/learner.h"
#include "core/config.h"
#include "core/jsonl.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/model/config.h"
#include "policy/optim/adamw.h"
#include "verifiers/math/math_verifier.h"

namespace rlvr::cluster {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int32_t kEos = 256;

std::unique_ptr<policy::CausalLM<float>> TinyModel(uint64_t seed) {
  policy::ModelConfig c = *policy::Preset("qwen3_moe", "tiny");
  c.vocab_size = 257;
  c.max_position_embeddings = 64;
  c.eos_token_ids = {kEos};
  auto m = policy::CausalLM<float>::Create(c);
  EXPECT_TRUE(m.ok()) << m.status();
  (*m)->InitRandom(seed);
  return std::move(*m);
}

struct Fixture {
  std::unique_ptr<policy::Tokenizer> tokenizer;
  std::vector<nlohmann::json> train;
};

Fixture MakeFixture() {
  Fixture f;
  auto tok = policy::Tokenizer::FromJson(ByteLevelTokenizerJson());
  EXPECT_TRUE(tok.ok()) << tok.status();
  f.tokenizer = std::move(*tok);
  for (const auto& p : MakeArithmeticProblems(7, 0, 64)) {
    f.train.push_back({{"prompt", p.prompt}, {"answer", p.answer}});
  }
  return f;
}

// mode "sync" or "overlapped" (with max_staleness `staleness`).
TrainerInputs Inputs(const Fixture& f, const std::string& run_dir, int steps,
                     const std::string& mode = "sync", int staleness = 1) {
  TrainerInputs in;
  in.config = DefaultRunConfig();
  in.config.mutable_trainer()->set_mode(mode);
  in.config.mutable_trainer()->set_max_staleness(staleness);
  in.config.set_run_dir(run_dir);
  in.config.set_seed(3);
  in.config.mutable_grpo()->set_group_size(4);
  in.config.mutable_grpo()->set_prompts_per_step(4);
  in.config.mutable_rollout()->set_max_new_tokens(8);
  in.config.mutable_optimizer()->set_lr(1e-3f);
  in.config.mutable_trainer()->set_total_steps(steps);
  in.config.mutable_trainer()->set_save_every(2);
  in.config.mutable_trainer()->set_keep_checkpoints(2);
  in.train = f.train;
  const policy::Tokenizer* tok = f.tokenizer.get();
  in.tokenizer = tok;
  in.prompt = [tok](const nlohmann::json& r) -> absl::StatusOr<std::vector<int32_t>> {
    return tok->Encode(r["prompt"].get<std::string>());
  };
  // A dense reward (length and digits) so that groups are rarely degenerate in a tiny run.
  in.reward = [](const nlohmann::json& r, const std::string& completion, int64_t n,
                 int64_t) -> absl::StatusOr<RewardResult> {
    RewardResult out;
    auto v = verifiers::math::VerifyMath(completion, r["answer"].get<std::string>());
    double digits = 0;
    for (char ch : completion) digits += (ch >= '0' && ch <= '9');
    out.components["math"] = v.reward;
    out.components["digits"] = digits / std::max<int64_t>(1, n);
    out.total = v.reward + out.components["digits"];
    out.correct = v.correct;
    return out;
  };
  in.eos_ids = {kEos};
  in.model = TinyModel(11);
  return in;
}

// Metric rows without the timing and throughput columns (which differ run to run).
std::vector<nlohmann::json> StableMetrics(const std::string& run_dir) {
  auto rows = ReadJsonl(run_dir + "/metrics.jsonl");
  EXPECT_TRUE(rows.ok()) << rows.status();
  std::vector<nlohmann::json> out;
  for (auto row : *rows) {
    nlohmann::json keep;
    for (const auto& [k, v] : row.items()) {
      if (k.rfind("timing_s/", 0) == 0 || k.rfind("perf/", 0) == 0) continue;
      keep[k] = v;
    }
    out.push_back(keep);
  }
  return out;
}

std::string FreshDir(const std::string& name) {
  std::string d = ::testing::TempDir() + "/trainer_" + std::to_string(::getpid()) + "_" + name;
  fs::remove_all(d);
  return d;
}

TEST(LearnerTest, OnPolicyRatioIsExactlyOneAndNothingIsClipped) {
  auto model = TinyModel(5);
  policy::AdamWConfig ac;
  ac.lr = 1e-2;
  auto opt = policy::AdamW::Create(ac, TrainableParams(model.get()));
  ASSERT_TRUE(opt.ok());
  Learner learner(model.get(), &*opt);
  auto batch = MakeTokenBatch({{1, 2, 3}, {1, 2, 3}, {4, 5}, {4, 5}},
                              {{7, 8, 9, 10}, {7, 11}, {12, 13, 14}, {15}});
  ASSERT_TRUE(batch.ok());
  std::vector<float> adv(batch->B * batch->T, 0.0f);
  for (int64_t b = 0; b < batch->B; ++b) {
    for (int64_t t = 0; t < batch->T; ++t) {
      if (batch->mask[b * batch->T + t]) adv[b * batch->T + t] = (b % 2 == 0) ? 3.0f : -3.0f;
    }
  }
  GrpoUpdateOptions o;
  o.group_size = 2;
  o.loss.clip_eps_low = 0.0;  // any ratio != 1 would count as clipped
  o.loss.clip_eps_high = 0.0;
  auto stats = learner.GrpoUpdate(*batch, adv, {}, {}, o);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->optimizer_steps, 1);
  EXPECT_EQ(stats->loss_stats.ratio_min, 1.0);
  EXPECT_EQ(stats->loss_stats.ratio_max, 1.0);
  EXPECT_EQ(stats->clip_frac, 0.0);
  EXPECT_EQ(stats->loss_stats.num_tokens, 4 + 2 + 3 + 1);
  EXPECT_GT(stats->grad_norm, 0.0);
  // With two mini-batches the second one runs on moved weights: ratios differ from 1.
  o.mini_batches = 2;
  o.loss.clip_eps_low = 0.2;
  o.loss.clip_eps_high = 0.2;
  stats = learner.GrpoUpdate(*batch, adv, {}, {}, o);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->optimizer_steps, 2);
  EXPECT_NE(stats->loss_stats.ratio_max, 1.0);
}

TEST(LearnerTest, BadShapesAreErrors) {
  auto model = TinyModel(5);
  Learner learner(model.get(), nullptr);
  auto batch = MakeTokenBatch({{1, 2}}, {{3}});
  ASSERT_TRUE(batch.ok());
  GrpoUpdateOptions o;
  auto s = learner.GrpoUpdate(*batch, {1.0f}, {}, {}, o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(MakeTokenBatch({{}}, {{1}}).ok());
  EXPECT_FALSE(MakeTokenBatch({{1}}, {}).ok());
}

TEST(TrainerTest, LearnsSomethingAndWritesTheRunDirectory) {
  Fixture f = MakeFixture();
  std::string dir = FreshDir("basic");
  auto t = Trainer::Create(Inputs(f, dir, 4));
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)->Run(false).ok());
  auto rows = StableMetrics(dir);
  ASSERT_EQ(rows.size(), 4u);
  for (const char* key : {"critic/rewards/mean", "actor/entropy", "actor/grad_norm",
                          "response_length/mean", "actor/pg_clipfrac", "reward/digits/mean",
                          "moe/layer0/max_load_ratio"}) {
    EXPECT_TRUE(rows[0].contains(key)) << key;
  }
  EXPECT_GT(rows[0]["actor/grad_norm"].get<double>(), 0.0);
  EXPECT_TRUE(fs::exists(dir + "/config.yaml"));
  EXPECT_TRUE(fs::exists(dir + "/samples.jsonl"));
  EXPECT_TRUE(fs::exists(dir + "/tensorboard"));
  auto m = CheckpointManager::Open(dir + "/checkpoints", 2);
  ASSERT_TRUE(m.ok());
  auto latest = m->LatestValid();
  ASSERT_TRUE(latest.ok() && latest->has_value());
  EXPECT_EQ((*latest)->step, 4);
  EXPECT_TRUE(fs::exists((*latest)->path + "/model/config.json"));
}

// Kills a training process with SIGKILL at random instants (some land during saves), resumes
// each time, and checks the final metrics equal an uninterrupted run's.
void KillResumeAndCompare(const std::string& mode, int staleness) {
  Fixture f = MakeFixture();
  const int kSteps = 6;
  const std::string tag = mode + std::to_string(staleness);
  std::string ref_dir = FreshDir("ref" + tag);
  {
    auto t = Trainer::Create(Inputs(f, ref_dir, kSteps, mode, staleness));
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_TRUE((*t)->Run(false).ok());
  }
  auto t_start = std::chrono::steady_clock::now();
  {
    // Time one uninterrupted run to spread the kills over it.
    std::string probe = FreshDir("probe" + tag);
    auto t = Trainer::Create(Inputs(f, probe, kSteps, mode, staleness));
    ASSERT_TRUE(t.ok());
    ASSERT_TRUE((*t)->Run(false).ok());
  }
  double run_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_start).count();
  std::string dir = FreshDir("killed" + tag);
  std::mt19937 rng(42);
  int kills = 0;
  bool first = true;
  for (int attempt = 0; attempt < 40; ++attempt) {
    // The child re-executes this binary (TrainerChild.Run below): a forked child of a process
    // whose OpenMP pool is running can deadlock in libgomp, a fresh exec cannot.
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::setenv("RLVR_TRAINER_CHILD_DIR", dir.c_str(), 1);
      ::setenv("RLVR_TRAINER_CHILD_RESUME", first ? "0" : "1", 1);
      ::setenv("RLVR_TRAINER_CHILD_STEPS", std::to_string(kSteps).c_str(), 1);
      ::setenv("RLVR_TRAINER_CHILD_MODE", mode.c_str(), 1);
      ::setenv("RLVR_TRAINER_CHILD_STALENESS", std::to_string(staleness).c_str(), 1);
      const char* argv[] = {"trainer_test", "--gtest_filter=TrainerChild.Run", nullptr};
      ::execv("/proc/self/exe", const_cast<char* const*>(argv));
      ::_exit(5);
    }
    int delay_ms = static_cast<int>(std::uniform_real_distribution<double>(0.05, 0.6)(rng) * run_ms);
    bool killed = false;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms);
    int status = 0;
    while (true) {
      pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) break;
      if (kills < 8 && std::chrono::steady_clock::now() >= deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        killed = true;
        ++kills;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    first = false;
    if (!killed) {
      ASSERT_TRUE(WIFEXITED(status)) << "child died by signal " << WTERMSIG(status);
      ASSERT_EQ(WEXITSTATUS(status), 0);
      if (kills == 0) {
        // The whole run beat the first kill (the probe ran slow on a loaded machine): start
        // over with earlier kills.
        run_ms /= 2;
        fs::remove_all(dir);
        first = true;
        continue;
      }
      break;
    }
    // After every kill, no checkpoint on disk may fail verification once the sweep has run.
    auto m = CheckpointManager::Open(dir + "/checkpoints", 2);
    ASSERT_TRUE(m.ok());
    auto all = m->List();
    ASSERT_TRUE(all.ok());
    for (const auto& c : *all) {
      EXPECT_TRUE(CheckpointManager::Verify(c.path).ok()) << c.path;
    }
  }
  EXPECT_GE(kills, 1);
  auto want = StableMetrics(ref_dir);
  auto got = StableMetrics(dir);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].dump(), want[i].dump()) << "step " << i + 1 << " after " << kills
                                             << " kills";
  }
}

TEST(TrainerTest, KilledAndResumedRunReproducesUninterruptedMetrics) {
  KillResumeAndCompare("sync", 1);
}

// The same in overlapped mode with max_staleness 2: checkpoints carry the two stale policies
// the pending and the next rollout use, and the resumed run regenerates them.
TEST(TrainerTest, KilledAndResumedOverlappedRunReproducesUninterruptedMetrics) {
  KillResumeAndCompare("overlapped", 2);
}

// Not a test on its own: the training process that KilledAndResumedRun... starts and kills.
TEST(TrainerChild, Run) {
  const char* dir = std::getenv("RLVR_TRAINER_CHILD_DIR");
  if (dir == nullptr) GTEST_SKIP() << "only runs as the child of the resume test";
  Fixture f = MakeFixture();
  auto t = Trainer::Create(Inputs(f, dir, std::atoi(std::getenv("RLVR_TRAINER_CHILD_STEPS")),
                                  std::getenv("RLVR_TRAINER_CHILD_MODE"),
                                  std::atoi(std::getenv("RLVR_TRAINER_CHILD_STALENESS"))));
  if (!t.ok()) ::_exit(3);
  absl::Status s = (*t)->Run(std::string(std::getenv("RLVR_TRAINER_CHILD_RESUME")) == "1");
  ::_exit(s.ok() ? 0 : 4);
}

TEST(TrainerTest, NonFiniteWeightsStopTheRunWithoutACheckpoint) {
  Fixture f = MakeFixture();
  std::string dir = FreshDir("nan");
  TrainerInputs in = Inputs(f, dir, 4);
  in.model->param_data()[0] = std::nanf("");
  for (int64_t i = 0; i < in.model->num_param_elements(); i += 7) {
    in.model->param_data()[i] = std::nanf("");
  }
  auto t = Trainer::Create(std::move(in));
  ASSERT_TRUE(t.ok());
  absl::Status s = (*t)->Run(false);
  ASSERT_FALSE(s.ok());
  auto m = CheckpointManager::Open(dir + "/checkpoints", 2);
  ASSERT_TRUE(m.ok());
  auto all = m->List();
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->empty());
}

TEST(TrainerTest, BadInputs) {
  Fixture f = MakeFixture();
  TrainerInputs in = Inputs(f, FreshDir("bad"), 2);
  in.train.clear();
  auto t = Trainer::Create(std::move(in));
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("data.train_path"));

  in = Inputs(f, FreshDir("bad2"), 2);
  in.config.mutable_grpo()->set_prompts_per_step(3);
  in.config.mutable_grpo()->set_mini_batches(2);
  t = Trainer::Create(std::move(in));
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("grpo.mini_batches"));

  in = Inputs(f, FreshDir("bad3"), 2);
  in.prompt = [](const nlohmann::json&) -> absl::StatusOr<std::vector<int32_t>> {
    return absl::InvalidArgumentError("missing field 'prompt'");
  };
  t = Trainer::Create(std::move(in));
  ASSERT_TRUE(t.ok());
  absl::Status s = (*t)->Run(false);
  EXPECT_THAT(std::string(s.message()), HasSubstr("training record"));
}

std::vector<nlohmann::json> RunToEnd(TrainerInputs in) {
  const std::string dir = in.config.run_dir();
  auto t = Trainer::Create(std::move(in));
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return {};
  absl::Status s = (*t)->Run(false);
  EXPECT_TRUE(s.ok()) << s;
  return StableMetrics(dir);
}

void ExpectSameRows(const std::vector<nlohmann::json>& got,
                    const std::vector<nlohmann::json>& want) {
  ASSERT_EQ(got.size(), want.size());
  ASSERT_FALSE(want.empty());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].dump(), want[i].dump()) << "step " << i + 1;
  }
}

// Overlapped mode, max_staleness 1: the rollout of step s uses the policy after step s-2 (the
// first two steps use the initial one), the ratio uses the rollout's logprobs on those stale
// steps, and two runs give the same metrics whatever the thread timing.
TEST(OverlappedTrainerTest, StalenessOneIsDeterministicAndOffPolicy) {
  Fixture f = MakeFixture();
  const int kSteps = 5;
  auto a = RunToEnd(Inputs(f, FreshDir("ov1a"), kSteps, "overlapped", 1));
  auto b = RunToEnd(Inputs(f, FreshDir("ov1b"), kSteps, "overlapped", 1));
  ExpectSameRows(b, a);
  auto sync = RunToEnd(Inputs(f, FreshDir("ov1sync"), kSteps));
  ASSERT_EQ(a.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(sync.size(), a.size());
  for (int i = 0; i < kSteps; ++i) {
    const int64_t step = i + 1;
    SCOPED_TRACE(step);
    EXPECT_EQ(a[i]["trainer/staleness"].get<int64_t>(), std::min<int64_t>(1, step - 1));
    EXPECT_EQ(a[i]["trainer/rollout_weights_step"].get<int64_t>(), std::max<int64_t>(0, step - 2));
    EXPECT_EQ(sync[i]["trainer/staleness"].get<int64_t>(), 0);
    if (step == 1) {
      // Step 1 is on-policy in both modes: the same rollout and the same update, up to float
      // rounding (the overlapped trainer thread runs on its share of the OpenMP threads, and
      // the kernels' reductions depend on the team size).
      for (const char* key : {"critic/rewards/mean", "response_length/mean", "reward/accuracy"}) {
        EXPECT_EQ(a[i][key].dump(), sync[i][key].dump()) << key;
      }
      for (const char* key : {"actor/entropy", "actor/grad_norm", "actor/pg_loss"}) {
        EXPECT_NEAR(a[i][key].get<double>(), sync[i][key].get<double>(), 1e-6) << key;
      }
      EXPECT_EQ(a[i]["actor/ppo_kl"].get<double>(), 0.0);
    } else {
      // Stale rollout: the behaviour logprobs differ from the current policy's (ratio != 1).
      EXPECT_NE(a[i]["actor/ppo_kl"].get<double>(), 0.0);
      EXPECT_EQ(sync[i]["actor/ppo_kl"].get<double>(), 0.0);
    }
  }
  // Sync's step-2 rollout uses the policy after step 1, overlapped's the initial one: the runs
  // diverge from step 2 on.
  EXPECT_NE(a[1]["critic/rewards/mean"].dump() + a[1]["actor/pg_loss"].dump(),
            sync[1]["critic/rewards/mean"].dump() + sync[1]["actor/pg_loss"].dump());
  // Timing metrics of the overlap are logged (their values are not asserted).
  auto rows = ReadJsonl(::testing::TempDir() + "/trainer_" + std::to_string(::getpid()) +
                        "_ov1a/metrics.jsonl");
  ASSERT_TRUE(rows.ok());
  for (const char* key : {"timing_s/gen", "timing_s/reward", "timing_s/rollout",
                          "timing_s/wait_rollout", "timing_s/update", "timing_s/overlap",
                          "timing_s/step"}) {
    EXPECT_TRUE((*rows)[1].contains(key)) << key;
  }
}

// max_staleness 0 leaves nothing to overlap: exactly the sync mode's metrics.
TEST(OverlappedTrainerTest, StalenessZeroEqualsSync) {
  Fixture f = MakeFixture();
  auto ov = RunToEnd(Inputs(f, FreshDir("ov0"), 4, "overlapped", 0));
  auto sync = RunToEnd(Inputs(f, FreshDir("ov0sync"), 4));
  ExpectSameRows(ov, sync);
}

// Resuming from an older checkpoint of a finished overlapped run (no kill): the stale policies
// in the checkpoint regenerate the same rollouts. An overlapped resume from a sync checkpoint is
// an error naming the key.
TEST(OverlappedTrainerTest, ResumeFromAnEarlierCheckpointReproducesTheRun) {
  Fixture f = MakeFixture();
  const std::string ref = FreshDir("ovres_ref");
  auto want = RunToEnd(Inputs(f, ref, 6, "overlapped", 2));
  const std::string dir = FreshDir("ovres");
  fs::copy(ref, dir, fs::copy_options::recursive);
  fs::remove_all(dir + "/checkpoints/" + CheckpointDirName(6));
  ASSERT_TRUE(fs::exists(dir + "/checkpoints/" + CheckpointDirName(4) +
                         "/stale_weights.safetensors"));
  {
    auto t = Trainer::Create(Inputs(f, dir, 6, "overlapped", 2));
    ASSERT_TRUE(t.ok());
    ASSERT_TRUE((*t)->Run(true).ok());
    EXPECT_EQ((*t)->step(), 6);
  }
  ExpectSameRows(StableMetrics(dir), want);

  const std::string sync_dir = FreshDir("ovres_sync");
  RunToEnd(Inputs(f, sync_dir, 2));
  auto t = Trainer::Create(Inputs(f, sync_dir, 4, "overlapped", 1));
  ASSERT_TRUE(t.ok());
  absl::Status s = (*t)->Run(true);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("trainer.max_staleness"));
}

TEST(OverlappedTrainerTest, BadConfigNamesTheKey) {
  Fixture f = MakeFixture();
  TrainerInputs in = Inputs(f, FreshDir("ovbad"), 2, "overlapped", -1);
  auto t = Trainer::Create(std::move(in));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("trainer.max_staleness"));
  in = Inputs(f, FreshDir("ovbad2"), 2, "async", 1);
  t = Trainer::Create(std::move(in));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("trainer.mode"));
}

// grpo.router_replay in the trainer: every step replays the recorded experts (sync and
// overlapped), a dense model is refused naming the key.
TEST(TrainerTest, RouterReplayReplaysEveryStep) {
  Fixture f = MakeFixture();
  for (const std::string mode : {"sync", "overlapped"}) {
    SCOPED_TRACE(mode);
    TrainerInputs in = Inputs(f, FreshDir("replay_" + mode), 3, mode, 1);
    in.config.mutable_grpo()->set_router_replay(true);
    auto rows = RunToEnd(std::move(in));
    ASSERT_EQ(rows.size(), 3u);
    for (const auto& row : rows) {
      // Every prompt token and every completion token but the last of each sample.
      EXPECT_GT(row["moe/replayed_tokens"].get<int64_t>(), 16 * 4);
    }
  }
  TrainerInputs in = Inputs(f, FreshDir("replay_dense"), 2);
  policy::ModelConfig c = *policy::Preset("qwen3", "tiny");
  c.vocab_size = 257;
  c.max_position_embeddings = 64;
  in.model = std::move(*policy::CausalLM<float>::Create(c));
  in.config.mutable_grpo()->set_router_replay(true);
  auto t = Trainer::Create(std::move(in));
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("grpo.router_replay"));
}

}  // namespace
}  // namespace rlvr::cluster
