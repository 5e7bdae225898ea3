// Stand-ins for the math and code adapters when verifiers/math or verifiers/code is not built:
// creating either verifier is an Unimplemented error naming the missing library.
#include "absl/status/status.h"
#include "reward/builtins.h"

namespace rlvr::reward {

absl::StatusOr<std::unique_ptr<Verifier>> MakeMathVerifier(const VerifierOptions&) {
  return absl::UnimplementedError("math: built without verifiers/math (rlvr_verifiers_math)");
}

absl::StatusOr<std::unique_ptr<Verifier>> MakeCodeVerifier(const VerifierOptions&) {
  return absl::UnimplementedError("code: built without verifiers/code (rlvr_verifiers_code)");
}

}  // namespace rlvr::reward
