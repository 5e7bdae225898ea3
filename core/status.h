// Status helpers shared by every folder.
//
// Debian's Abseil (20220623) has absl::Status and absl::StatusOr but not the propagation macros,
// so they are defined here once. Errors gain context as they travel up:
//
//   RLVR_RETURN_IF_ERROR(ReadHeader(path), "reading ", path);
//   RLVR_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
//
// Broken invariants (bugs, never bad input) use RLVR_CHECK, which prints the condition and
// aborts.
#ifndef RLVR_CORE_STATUS_H_
#define RLVR_CORE_STATUS_H_

#include <cstdio>
#include <cstdlib>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace rlvr {

// Returns `status` with `prefix + ": "` prepended to its message, keeping the code.
// An OK status is returned unchanged.
absl::Status Annotate(const absl::Status& status, absl::string_view prefix);

namespace internal {
inline const absl::Status& ToStatus(const absl::Status& s) { return s; }
template <typename T>
inline absl::Status ToStatus(const absl::StatusOr<T>& s) {
  return s.status();
}
[[noreturn]] void CheckFailed(const char* file, int line, const char* cond, const std::string& msg);
}  // namespace internal

}  // namespace rlvr

#define RLVR_CONCAT_INNER_(a, b) a##b
#define RLVR_CONCAT_(a, b) RLVR_CONCAT_INNER_(a, b)

// RLVR_RETURN_IF_ERROR(expr [, context...]): returns the (annotated) status if `expr` failed.
#define RLVR_RETURN_IF_ERROR(expr, ...)                                                     \
  do {                                                                                      \
    ::absl::Status rlvr_status_ = ::rlvr::internal::ToStatus(expr);                         \
    if (!rlvr_status_.ok()) {                                                               \
      return ::rlvr::Annotate(rlvr_status_, ::absl::StrCat("" __VA_OPT__(, ) __VA_ARGS__)); \
    }                                                                                       \
  } while (0)

#define RLVR_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr, ...)                             \
  auto tmp = (expr);                                                                 \
  if (!tmp.ok()) {                                                                   \
    return ::rlvr::Annotate(tmp.status(), ::absl::StrCat("" __VA_OPT__(, ) __VA_ARGS__)); \
  }                                                                                  \
  lhs = std::move(*tmp)

// RLVR_ASSIGN_OR_RETURN(lhs, expr [, context...]): `lhs = *expr`, or returns its status.
#define RLVR_ASSIGN_OR_RETURN(lhs, expr, ...) \
  RLVR_ASSIGN_OR_RETURN_IMPL_(RLVR_CONCAT_(rlvr_statusor_, __LINE__), lhs, expr __VA_OPT__(, ) __VA_ARGS__)

// RLVR_CHECK(cond [, message...]): aborts with the location if an invariant is broken.
#define RLVR_CHECK(cond, ...)                                         \
  do {                                                                \
    if (!(cond)) {                                                    \
      ::rlvr::internal::CheckFailed(__FILE__, __LINE__, #cond,        \
                                    ::absl::StrCat("" __VA_OPT__(, ) __VA_ARGS__)); \
    }                                                                 \
  } while (0)

#endif  // RLVR_CORE_STATUS_H_
