// rlvr demo: the built-in end-to-end run (SFT warm start, then GRPO on arithmetic with a
// scratchpad, scored by the math verifier). Its last line is
//   demo: accuracy A% -> B% (pass@8 before C%), N min, report at PATH
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <string>

#include "cli/args.h"
#include "cli/commands.h"
#include "cluster/demo.h"

namespace rlvr::cli {

int DemoMain(const Args& args) {
  CLI::App app{"The built-in demo: SFT warm start then GRPO on multi-step arithmetic",
               "rlvr demo"};
  cluster::DemoOptions o;
  app.add_option("--out", o.run_dir, "run directory")->capture_default_str();
  app.add_option("--seed", o.seed, "seed")->capture_default_str();
  app.add_option("--sft-steps", o.sft_steps, "SFT warm-start steps")->capture_default_str();
  app.add_option("--grpo-steps", o.grpo_steps, "GRPO steps")->capture_default_str();
  app.add_option("--group-size", o.group_size, "completions per prompt")->capture_default_str();
  app.add_option("--prompts-per-step", o.prompts_per_step, "prompts per GRPO step")
      ->capture_default_str();
  app.add_option("--lr", o.grpo_lr, "GRPO learning rate")->capture_default_str();
  app.add_option("--sft-lr", o.sft_lr, "SFT learning rate")->capture_default_str();
  app.add_option("--eval-problems", o.eval_problems, "held-out problems")->capture_default_str();
  app.add_option("--trainer-mode", o.trainer_mode,
                 "sync, or overlapped (rollout of step s+1 alongside the update of step s)")
      ->capture_default_str();
  app.add_option("--max-staleness", o.max_staleness, "overlapped: rollouts use the policy "
                 "after step s-1-max_staleness")
      ->capture_default_str();
  app.add_option("--clip-high", o.clip_eps_high,
                 "upper clip of the importance ratio (DAPO clip-higher; 0.2 would be symmetric)")
      ->capture_default_str();
  app.add_option("--dynamic-sampling", o.dynamic_sampling,
                 "DAPO dynamic sampling: replace groups whose rewards are all equal (true/false)")
      ->capture_default_str();
  app.add_flag("--router-replay", o.router_replay,
               "MoE router replay: the update uses the experts the rollout chose");
  if (int status = ParseCommandArgs(app, args); status >= 0) return status;
  auto r = cluster::RunDemo(o);
  if (!r.ok()) {
    std::fprintf(stderr, "rlvr demo: %s\n", std::string(r.status().message()).c_str());
    return 1;
  }
  std::printf("demo: accuracy %.1f%% -> %.1f%% (pass@8 before %.1f%%), %.1f min, report at %s\n",
              100 * r->accuracy_before, 100 * r->accuracy_after, 100 * r->pass_at_k_before,
              r->minutes, r->report_path.c_str());
  return 0;
}

}  // namespace rlvr::cli
