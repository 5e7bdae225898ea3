// The `rlvr` binary: dispatches `rlvr <command> [args]` to the command functions of
// cli/commands.h.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/process.h"

namespace rlvr::cli {
namespace {

struct CommandEntry {
  const char* name;
  int (*run)(const Args&);
  const char* summary;
};

constexpr CommandEntry kCommands[] = {
    {"init", InitMain, "write a random-initialized model (HF layout) from an architecture preset"},
    {"generate", GenerateMain, "sample completions for prompts in a JSONL file"},
    {"logprobs", LogprobsMain, "per-token logprobs and entropy of completions under a model"},
    {"verify", VerifyMain, "score completions with a verifier (math, code)"},
    {"sandbox", SandboxMain, "run a program in the code sandbox and print its verdict"},
    {"train", TrainMain, "run GRPO training from a config"},
    {"sft", SftMain, "supervised fine-tuning on prompt/completion JSONL"},
    {"distill", DistillMain, "distill a teacher's verified traces into a smaller dense model"},
    {"eval", EvalMain, "pass@1 and pass@k of a model on a data set"},
    {"report", ReportMain, "render a run directory as one HTML page"},
    {"serve", ServeMain, "serve rollout or reward workers over gRPC"},
    {"demo", DemoMain, "the built-in end-to-end demo"},
    {"config", ConfigMain, "print the resolved config of a file plus dotted overrides"},
    {"inspect", InspectMain, "list the tensors and config of a safetensors file or checkpoint"},
};

void PrintUsage(std::FILE* out) {
  std::fprintf(out,
               "rlvr: reinforcement learning with verifiable rewards\n\n"
               "usage: rlvr <command> [args]    (rlvr <command> --help for its options)\n\n"
               "commands:\n");
  for (const CommandEntry& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
}

}  // namespace
}  // namespace rlvr::cli

int main(int argc, char** argv) {
  using rlvr::cli::kCommands;
  rlvr::KeepFreedMemoryInProcess();
  if (argc < 2) {
    rlvr::cli::PrintUsage(stderr);
    return 2;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    rlvr::cli::PrintUsage(stdout);
    return 0;
  }
  if (name == "--version") {
    std::printf("rlvr 0.1.0\n");
    return 0;
  }
  for (const auto& c : kCommands) {
    if (name != c.name) continue;
    rlvr::cli::Args args(argv + 1, argv + argc);
    try {
      return c.run(args);
    } catch (const std::exception& e) {
      // Commands handle their own errors; this is the last line of defence against a crash.
      std::fprintf(stderr, "rlvr %s: internal error: %s\n", c.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "rlvr: unknown command '%s'\n\n", name.c_str());
  rlvr::cli::PrintUsage(stderr);
  return 2;
}
