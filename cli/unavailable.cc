// Commands whose implementation is not linked into this build answer with a clear message.
//
// Each command is defined as a weak symbol here; the file that implements it (cli/cmd_*.cc)
// provides the strong definition, which the linker prefers. This keeps `rlvr --help` complete
// while the later issues fill the commands in.
#include <cstdio>

#include "cli/commands.h"

namespace rlvr::cli {
namespace {
int Unavailable(const Args& args, const char* issue) {
  std::fprintf(stderr, "rlvr %s: not available in this build yet (tracked in issue %s)\n",
               args.empty() ? "?" : args[0].c_str(), issue);
  return 2;
}
}  // namespace

#define RLVR_UNAVAILABLE(fn, issue) \
  __attribute__((weak)) int fn(const Args& args) { return Unavailable(args, issue); }

RLVR_UNAVAILABLE(InitMain, "3")
RLVR_UNAVAILABLE(GenerateMain, "4")
RLVR_UNAVAILABLE(LogprobsMain, "3")
RLVR_UNAVAILABLE(VerifyMathMain, "8")
RLVR_UNAVAILABLE(VerifyCodeMain, "5")
RLVR_UNAVAILABLE(SandboxMain, "5")
RLVR_UNAVAILABLE(TrainMain, "6")
RLVR_UNAVAILABLE(DistillMain, "6")
RLVR_UNAVAILABLE(ReportMain, "6")
RLVR_UNAVAILABLE(ServeMain, "6")
RLVR_UNAVAILABLE(DemoMain, "6")
RLVR_UNAVAILABLE(InspectMain, "2")

}  // namespace rlvr::cli
