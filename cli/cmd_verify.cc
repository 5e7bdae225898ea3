// rlvr verify --verifier math|code ...: dispatches to the verifier's command.
#include <cstdio>
#include <string>

#include "cli/commands.h"

namespace rlvr::cli {

int VerifyMain(const Args& args) {
  std::string verifier;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--verifier" && i + 1 < args.size()) verifier = args[i + 1];
    if (args[i].rfind("--verifier=", 0) == 0) verifier = args[i].substr(11);
    if ((args[i] == "--help" || args[i] == "-h") && verifier.empty()) {
      std::printf(
          "usage: rlvr verify --verifier math|code --in FILE.jsonl --out FILE.jsonl [options]\n"
          "  rlvr verify --verifier math --help   options of the math verifier\n"
          "  rlvr verify --verifier code --help   options of the code verifier\n");
      return 0;
    }
  }
  if (verifier == "math") return VerifyMathMain(args);
  if (verifier == "code") return VerifyCodeMain(args);
  std::fprintf(stderr, "rlvr verify: --verifier must be 'math' or 'code'%s%s\n",
               verifier.empty() ? "" : ", got ", verifier.c_str());
  return 2;
}

}  // namespace rlvr::cli
