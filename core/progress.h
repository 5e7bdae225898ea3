// A progress bar for long loops: count/total, rate and ETA, redrawn in place on stderr.
//
//   ProgressBar bar(num_prompts, "generate", {.unit = "prompts"});
//   for (...) { ...; bar.Add(1); }
//   bar.Finish();
//
// It draws only when its stream is a terminal (isatty), at most every `min_redraw_seconds`, so
// logs and CI output stay clean; otherwise it is silent, except for one summary line at
// Finish() when `summary_when_quiet` is set. Add() is thread-safe and cheap (an atomic add plus
// a clock read when a redraw may be due). The destructor calls Finish().
#ifndef RLVR_CORE_PROGRESS_H_
#define RLVR_CORE_PROGRESS_H_

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace rlvr {

struct ProgressOptions {
  std::string unit = "it";
  std::FILE* stream = stderr;
  // Draw even when `stream` is not a terminal (for tests); the bar then writes '\r' lines too.
  bool force_draw = false;
  // When not drawing, print "label: N unit in T (R unit/s)" once at Finish().
  bool summary_when_quiet = false;
  double min_redraw_seconds = 0.1;
  int bar_width = 30;
};

class ProgressBar {
 public:
  // `total` <= 0 means unknown (no bar, percentage or ETA; count and rate only).
  ProgressBar(int64_t total, std::string label, ProgressOptions options = {});
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void Add(int64_t n = 1);
  // Draws the final state (or the summary line) once; later calls do nothing.
  void Finish();

  int64_t count() const { return count_.load(std::memory_order_relaxed); }
  bool drawing() const { return drawing_; }

  // The text of one redraw, without '\r' (exposed for tests).
  static std::string FormatLine(absl::string_view label, int64_t count, int64_t total,
                                double elapsed_seconds, absl::string_view unit, int bar_width);

 private:
  void Draw(bool final);

  const int64_t total_;
  const std::string label_;
  const ProgressOptions options_;
  const bool drawing_;
  const absl::Time start_;
  std::atomic<int64_t> count_{0};
  std::atomic<int64_t> next_draw_nanos_{0};
  absl::Mutex draw_mu_;
  bool finished_ = false;
};

// "1.5s", "2m03s", "1h02m" (for ETAs and summaries).
std::string FormatDuration(double seconds);
// "950", "12.3k", "4.56M" (for counts and rates).
std::string FormatCount(double value);

}  // namespace rlvr

#endif  // RLVR_CORE_PROGRESS_H_
