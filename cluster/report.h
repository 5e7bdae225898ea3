// The HTML report of a run: one self-contained page (inline SVG plots, no scripts or external
// files) with a plot per numeric metric of `metrics.jsonl` (grouped by the prefix before the
// first '/'), the resolved config, the demo/eval summary if present and a few sampled
// completions with their rewards.
#ifndef RLVR_CLUSTER_REPORT_H_
#define RLVR_CLUSTER_REPORT_H_

#include <string>

#include "absl/status/statusor.h"

namespace rlvr::cluster {

// Renders the report of the run directory `run_dir` and returns the HTML.
absl::StatusOr<std::string> RenderReport(const std::string& run_dir);

// Renders and writes `<run_dir>/report.html` atomically; returns its path.
absl::StatusOr<std::string> WriteReport(const std::string& run_dir);

}  // namespace rlvr::cluster

#endif  // RLVR_CLUSTER_REPORT_H_
