// rlvr config [FILE] [dotted.key=value ...]: prints the resolved config as YAML.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/config.h"

namespace rlvr::cli {

int ConfigMain(const Args& args) {
  CLI::App app{"Print the resolved config: built-in defaults, then FILE, then overrides.\n"
               "Overrides are dotted keys as in Hydra: grpo.group_size=16 rollout.stop=[\"</answer>\"]",
               "rlvr config"};
  std::vector<std::string> positional;
  app.add_option("file_and_overrides", positional,
                 "a YAML or JSON config file (optional), then key=value overrides");
  if (int status = ParseCommandArgs(app, args); status >= 0) return status;
  std::string file;
  std::vector<std::string> overrides;
  SplitConfigAndOverrides(positional, &file, &overrides);
  auto config = LoadRunConfig(file, overrides);
  if (!config.ok()) {
    std::fprintf(stderr, "rlvr config: %s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  std::fputs(ToYaml(*config).c_str(), stdout);
  return 0;
}

}  // namespace rlvr::cli
