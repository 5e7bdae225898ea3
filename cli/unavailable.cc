// Commands whose implementation is not linked into this build answer with a clear message.
//
// Each command is defined as a weak symbol here; the file that implements it (cli/cmd_*.cc)
// provides the strong definition, which the linker prefers. This keeps `rlvr --help` complete
// while the later issues fill the commands in.
#include <cstdio>

#include "cli/commands.h"

namespace rlvr::cli {
namespace {
int Unavailable(const Args& args, const char* what) {
  std::fprintf(stderr, "rlvr %s: not available in this build yet (%s)\n",
               args.empty() ? "?" : args[0].c_str(), what);
  return 2;
}
}  // namespace

#define RLVR_UNAVAILABLE(fn, what) \
  __attribute__((weak)) int fn(const Args& args) { return Unavailable(args, what); }

RLVR_UNAVAILABLE(InitMain, "the policy, issue 3")
RLVR_UNAVAILABLE(GenerateMain, "the rollout engine, issue 4")
RLVR_UNAVAILABLE(LogprobsMain, "the policy, issue 3")
RLVR_UNAVAILABLE(VerifyMathMain, "the math verifier, issue 8")
RLVR_UNAVAILABLE(VerifyCodeMain, "the code sandbox, issue 5")
RLVR_UNAVAILABLE(SandboxMain, "the code sandbox, issue 5")
RLVR_UNAVAILABLE(TrainMain, "the GRPO trainer, issue 6")
RLVR_UNAVAILABLE(DistillMain, "the distillation stage is not built yet")
RLVR_UNAVAILABLE(ReportMain, "the run report, issue 6")
RLVR_UNAVAILABLE(ServeMain, "the reward server is not built yet")
RLVR_UNAVAILABLE(DemoMain, "the demo, issue 6")
RLVR_UNAVAILABLE(InspectMain, "the foundation, issue 2")

}  // namespace rlvr::cli
