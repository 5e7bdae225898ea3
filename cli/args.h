// Argument helpers shared by the `rlvr` subcommands (header-only, so command files that tests
// compile on their own need nothing else).
#ifndef RLVR_CLI_ARGS_H_
#define RLVR_CLI_ARGS_H_

#include <CLI/CLI.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace rlvr::cli {

// Parses args[1..] (args[0] is the command name) with `app`. Returns -1 when the command should
// go on, else the exit status to return (CLI11's: 0 after --help, non-zero after a usage error).
inline int ParseCommandArgs(CLI::App& app, const Args& args) {
  // CLI11's vector overload consumes its input from the back.
  std::vector<std::string> rest(args.begin() + 1, args.end());
  std::reverse(rest.begin(), rest.end());
  try {
    app.parse(rest);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return -1;
}

// Splits `CONFIG key=value ...` positionals: the first argument without '=' (if it comes first)
// is the config file, the rest are dotted overrides.
inline void SplitConfigAndOverrides(const std::vector<std::string>& positional, std::string* file,
                                    std::vector<std::string>* overrides) {
  for (const std::string& a : positional) {
    if (file->empty() && overrides->empty() && a.find('=') == std::string::npos) {
      *file = a;
    } else {
      overrides->push_back(a);
    }
  }
}

}  // namespace rlvr::cli

#endif  // RLVR_CLI_ARGS_H_
