// The `rlvr` subcommands. Each takes the arguments after its name (argv[0] is the command name),
// parses them itself (CLI11), prints results to stdout and errors to stderr, and returns the
// process exit status: 0 on success, 1 on a failed run (bad input, failed checks), 2 on a usage
// error. No command lets an exception escape or aborts on bad input.
#ifndef RLVR_CLI_COMMANDS_H_
#define RLVR_CLI_COMMANDS_H_

#include <string>
#include <vector>

namespace rlvr::cli {

using Args = std::vector<std::string>;

int InitMain(const Args& args);
int GenerateMain(const Args& args);
int LogprobsMain(const Args& args);
int VerifyMain(const Args& args);      // dispatches on --verifier to the two below
int VerifyMathMain(const Args& args);  // rlvr verify --verifier math ...
int VerifyCodeMain(const Args& args);  // rlvr verify --verifier code ...
int SandboxMain(const Args& args);
int TrainMain(const Args& args);
int SftMain(const Args& args);
int DistillMain(const Args& args);
int EvalMain(const Args& args);
int ReportMain(const Args& args);
int ServeMain(const Args& args);
int DemoMain(const Args& args);
int ConfigMain(const Args& args);
int InspectMain(const Args& args);

}  // namespace rlvr::cli

#endif  // RLVR_CLI_COMMANDS_H_
