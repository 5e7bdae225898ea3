#include "cluster/report.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "core/file_util.h"
#include "core/jsonl.h"
#include "core/status.h"

namespace rlvr::cluster {
namespace {

std::string Escape(absl::string_view s) {
  return absl::StrReplaceAll(s, {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&quot;"}});
}

std::string FormatNumber(double v) {
  if (v == 0) return "0";
  double a = std::fabs(v);
  if (a >= 1e5 || a < 1e-3) return absl::StrFormat("%.3g", v);
  return absl::StrFormat("%.4g", v);
}

// One line plot as inline SVG: x = step, y = value, with min/max labels and the last value.
std::string Plot(const std::string& name, const std::vector<std::pair<double, double>>& pts) {
  constexpr double kW = 320, kH = 160, kL = 48, kR = 8, kT = 22, kB = 20;
  double x0 = pts.front().first, x1 = pts.back().first;
  double y0 = pts.front().second, y1 = y0;
  for (const auto& [x, y] : pts) {
    x0 = std::min(x0, x);
    x1 = std::max(x1, x);
    y0 = std::min(y0, y);
    y1 = std::max(y1, y);
  }
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) {
    y0 -= 0.5;
    y1 += 0.5;
  }
  auto sx = [&](double x) { return kL + (x - x0) / (x1 - x0) * (kW - kL - kR); };
  auto sy = [&](double y) { return kT + (y1 - y) / (y1 - y0) * (kH - kT - kB); };
  std::string path;
  for (size_t i = 0; i < pts.size(); ++i) {
    absl::StrAppend(&path, i == 0 ? "M" : "L", absl::StrFormat("%.1f,%.1f ", sx(pts[i].first),
                                                               sy(pts[i].second)));
  }
  std::string svg = absl::StrFormat(
      "<svg class=\"plot\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\">"
      "<text x=\"4\" y=\"14\" class=\"t\">%s (last %s)</text>"
      "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" class=\"frame\"/>"
      "<text x=\"%.0f\" y=\"%.0f\" class=\"a\" text-anchor=\"end\">%s</text>"
      "<text x=\"%.0f\" y=\"%.0f\" class=\"a\" text-anchor=\"end\">%s</text>"
      "<text x=\"%.0f\" y=\"%.0f\" class=\"a\">%s</text>"
      "<text x=\"%.0f\" y=\"%.0f\" class=\"a\" text-anchor=\"end\">%s</text>",
      kW, kH, kW, kH, Escape(name), FormatNumber(pts.back().second), kL, kT, kW - kL - kR,
      kH - kT - kB, kL - 3, kT + 8, FormatNumber(y1), kL - 3, kH - kB, FormatNumber(y0), kL,
      kH - 6, FormatNumber(x0), kW - kR, kH - 6, FormatNumber(x1));
  if (pts.size() == 1) {
    absl::StrAppend(&svg, absl::StrFormat("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" class=\"pt\"/>",
                                          sx(pts[0].first), sy(pts[0].second)));
  } else {
    absl::StrAppend(&svg, "<path d=\"", path, "\" class=\"line\"/>");
  }
  absl::StrAppend(&svg, "</svg>");
  return svg;
}

}  // namespace

absl::StatusOr<std::string> RenderReport(const std::string& run_dir) {
  std::string metrics_path = run_dir + "/metrics.jsonl";
  JsonlReadOptions lenient;
  // The last line may be cut short if the run was killed while writing it.
  lenient.skip_bad_lines = true;
  RLVR_ASSIGN_OR_RETURN(auto rows, ReadJsonl(metrics_path, lenient), "report");
  // metric name -> (step, value), in file order; later duplicates of a step win (resume).
  std::map<std::string, std::map<double, double>> series;
  for (const auto& row : rows) {
    if (!row.contains("step") || !row["step"].is_number()) continue;
    double step = row["step"].get<double>();
    for (const auto& [k, v] : row.items()) {
      if (k == "step" || !v.is_number()) continue;
      double d = v.get<double>();
      if (std::isfinite(d)) series[k][step] = d;
    }
  }
  std::string html =
      "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>rlvr run report</title><style>"
      "body{font-family:sans-serif;margin:20px;color:#222}h2{border-bottom:1px solid #ccc}"
      ".plot{margin:4px;background:#fafafa}.t{font-size:12px;font-weight:bold}"
      ".a{font-size:10px;fill:#666}.frame{fill:none;stroke:#ccc}"
      ".line{fill:none;stroke:#1f77b4;stroke-width:1.5}.pt{fill:#1f77b4}"
      "pre{background:#f4f4f4;padding:8px;overflow-x:auto;max-height:400px}"
      "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px;vertical-align:top}"
      "</style></head><body>";
  absl::StrAppend(&html, "<h1>rlvr run: ", Escape(run_dir), "</h1>");
  if (auto summary = ReadFile(run_dir + "/summary.json"); summary.ok()) {
    absl::StrAppend(&html, "<h2>Summary</h2><pre>", Escape(*summary), "</pre>");
  }
  absl::StrAppend(&html, "<p>", rows.size(), " metric rows, ", series.size(), " metrics.</p>");
  std::string group;
  for (const auto& [name, points] : series) {
    std::string g = name.substr(0, name.find('/'));
    if (g != group) {
      group = g;
      absl::StrAppend(&html, "<h2>", Escape(group), "</h2>");
    }
    std::vector<std::pair<double, double>> pts(points.begin(), points.end());
    absl::StrAppend(&html, Plot(name, pts));
  }
  JsonlReadOptions samples_options;
  samples_options.skip_bad_lines = true;
  if (auto samples = ReadJsonl(run_dir + "/samples.jsonl", samples_options); samples.ok()) {
    absl::StrAppend(&html, "<h2>Sampled completions</h2><table><tr><th>step</th><th>prompt</th>"
                           "<th>completion</th><th>reward</th></tr>");
    size_t start = samples->size() > 24 ? samples->size() - 24 : 0;
    for (size_t i = start; i < samples->size(); ++i) {
      const auto& s = (*samples)[i];
      absl::StrAppend(&html, "<tr><td>", s.value("step", 0), "</td><td><pre>",
                      Escape(s.value("prompt", "")), "</pre></td><td><pre>",
                      Escape(s.value("completion", "")), "</pre></td><td>",
                      s.contains("reward") ? s["reward"].dump() : "", "</td></tr>");
    }
    absl::StrAppend(&html, "</table>");
  }
  if (auto config = ReadFile(run_dir + "/config.yaml"); config.ok()) {
    absl::StrAppend(&html, "<h2>Resolved config</h2><pre>", Escape(*config), "</pre>");
  }
  absl::StrAppend(&html, "</body></html>\n");
  return html;
}

absl::StatusOr<std::string> WriteReport(const std::string& run_dir) {
  RLVR_ASSIGN_OR_RETURN(std::string html, RenderReport(run_dir));
  std::string path = run_dir + "/report.html";
  RLVR_RETURN_IF_ERROR(WriteFileAtomically(path, html));
  return path;
}

}  // namespace rlvr::cluster
