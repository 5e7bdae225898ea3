#include "core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace rlvr {

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  if (seconds < 60) return absl::StrFormat("%.1fs", seconds);
  int64_t s = static_cast<int64_t>(seconds);
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
}

std::string FormatCount(double value) {
  double a = std::fabs(value);
  if (a < 1e3) return absl::StrFormat("%.4g", value);
  if (a < 1e6) return absl::StrFormat("%.3gk", value / 1e3);
  if (a < 1e9) return absl::StrFormat("%.3gM", value / 1e6);
  return absl::StrFormat("%.3gG", value / 1e9);
}

std::string ProgressBar::FormatLine(absl::string_view label, int64_t count, int64_t total,
                                    double elapsed_seconds, absl::string_view unit, int bar_width) {
  double rate = elapsed_seconds > 0 ? static_cast<double>(count) / elapsed_seconds : 0.0;
  std::string rate_text = absl::StrCat(FormatCount(rate), " ", unit, "/s");
  if (total <= 0) {
    return absl::StrCat(label, ": ", count, " ", unit, " | ", FormatDuration(elapsed_seconds),
                        " | ", rate_text);
  }
  double fraction = std::clamp(static_cast<double>(count) / static_cast<double>(total), 0.0, 1.0);
  int filled = static_cast<int>(fraction * bar_width);
  std::string bar = std::string(filled, '#') + std::string(bar_width - filled, '.');
  std::string eta = "?";
  if (count >= total) {
    eta = "0.0s";
  } else if (rate > 0) {
    eta = FormatDuration(static_cast<double>(total - count) / rate);
  }
  return absl::StrFormat("%s: %3d%% [%s] %d/%d %s | %s | %s | ETA %s", label,
                         static_cast<int>(fraction * 100), bar, count, total, unit,
                         FormatDuration(elapsed_seconds), rate_text, eta);
}

ProgressBar::ProgressBar(int64_t total, std::string label, ProgressOptions options)
    : total_(total),
      label_(std::move(label)),
      options_(std::move(options)),
      drawing_(options_.stream != nullptr &&
               (options_.force_draw || ::isatty(::fileno(options_.stream)) == 1)),
      start_(absl::Now()) {}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Add(int64_t n) {
  count_.fetch_add(n, std::memory_order_relaxed);
  if (!drawing_) return;
  int64_t now = absl::GetCurrentTimeNanos();
  int64_t due = next_draw_nanos_.load(std::memory_order_relaxed);
  // Only the thread that wins the exchange redraws, so a hot loop pays one clock read.
  if (now >= due && next_draw_nanos_.compare_exchange_strong(
                        due, now + static_cast<int64_t>(options_.min_redraw_seconds * 1e9))) {
    Draw(/*final=*/false);
  }
}

void ProgressBar::Draw(bool final) {
  absl::MutexLock lock(&draw_mu_);
  if (finished_) return;
  double elapsed = absl::ToDoubleSeconds(absl::Now() - start_);
  std::string line =
      FormatLine(label_, count(), total_, elapsed, options_.unit, options_.bar_width);
  // '\r' returns to the line start and "\x1b[K" clears what a longer previous line left.
  std::fprintf(options_.stream, "\r%s\x1b[K%s", line.c_str(), final ? "\n" : "");
  std::fflush(options_.stream);
}

void ProgressBar::Finish() {
  if (drawing_) {
    Draw(/*final=*/true);
  } else if (options_.summary_when_quiet && options_.stream != nullptr) {
    absl::MutexLock lock(&draw_mu_);
    if (!finished_) {
      double elapsed = absl::ToDoubleSeconds(absl::Now() - start_);
      double rate = elapsed > 0 ? static_cast<double>(count()) / elapsed : 0.0;
      std::fprintf(options_.stream, "%s: %lld %s in %s (%s %s/s)\n", label_.c_str(),
                   static_cast<long long>(count()), options_.unit.c_str(),
                   FormatDuration(elapsed).c_str(), FormatCount(rate).c_str(),
                   options_.unit.c_str());
      std::fflush(options_.stream);
    }
  }
  absl::MutexLock lock(&draw_mu_);
  finished_ = true;
}

}  // namespace rlvr
