// The registry of verifiers by name, and plugin loading.
//
//   VerifierRegistry registry;                  // empty
//   RLVR_RETURN_IF_ERROR(RegisterBuiltinVerifiers(&registry));   // format, overlong, math, ...
//   RLVR_RETURN_IF_ERROR(LoadVerifierPlugin("libmy_verifiers.so", &registry));
//   RLVR_ASSIGN_OR_RETURN(std::unique_ptr<Verifier> v, registry.Create("format", {}));
//
// Thread-safe: Register, Create and Names may be called concurrently.
#ifndef RLVR_REWARD_REGISTRY_H_
#define RLVR_REWARD_REGISTRY_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "reward/verifier.h"

namespace rlvr::reward {

class VerifierRegistry : public VerifierRegistrar {
 public:
  VerifierRegistry() = default;
  VerifierRegistry(const VerifierRegistry&) = delete;
  VerifierRegistry& operator=(const VerifierRegistry&) = delete;

  // AlreadyExists if `name` is registered; InvalidArgument if it is empty or factory is null.
  absl::Status Register(const std::string& name, VerifierFactory factory) override;

  // NotFound naming the known verifiers; otherwise the factory's result (errors prefixed with
  // the verifier name). A factory that throws is an Internal error, not a crash.
  absl::StatusOr<std::unique_ptr<Verifier>> Create(const std::string& name,
                                                   const VerifierOptions& options) const;

  bool Contains(const std::string& name) const;
  std::vector<std::string> Names() const;  // sorted

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, VerifierFactory> factories_ ABSL_GUARDED_BY(mu_);
};

// Registers the built-in verifiers: format, overlong, countdown, math, code (builtins.h).
absl::Status RegisterBuiltinVerifiers(VerifierRegistry* registry);

// dlopens `path` (RTLD_NOW | RTLD_LOCAL), checks rlvr_plugin_abi_version() == kPluginAbiVersion
// and calls rlvr_register_verifiers(registry). The library stays loaded for the life of the
// process. Errors name the path: NotFound (cannot open), InvalidArgument (missing entry point,
// ABI mismatch), Internal (the entry point failed or threw).
absl::Status LoadVerifierPlugin(const std::string& path, VerifierRegistry* registry);

}  // namespace rlvr::reward

#endif  // RLVR_REWARD_REGISTRY_H_
