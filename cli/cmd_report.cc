// rlvr report RUN_DIR: writes RUN_DIR/report.html (one self-contained page with plots).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <string>

#include "cli/args.h"
#include "cli/commands.h"
#include "cluster/report.h"

namespace rlvr::cli {

int ReportMain(const Args& args) {
  CLI::App app{"Render a run directory's metrics, samples and config as one HTML page",
               "rlvr report"};
  std::string run_dir;
  app.add_option("run_dir", run_dir, "the run directory (holds metrics.jsonl)")->required();
  if (int status = ParseCommandArgs(app, args); status >= 0) return status;
  auto path = cluster::WriteReport(run_dir);
  if (!path.ok()) {
    std::fprintf(stderr, "rlvr report: %s\n", std::string(path.status().message()).c_str());
    return 1;
  }
  std::printf("%s\n", path->c_str());
  return 0;
}

}  // namespace rlvr::cli
