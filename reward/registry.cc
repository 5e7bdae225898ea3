#include "reward/registry.h"

#include <dlfcn.h>

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status.h"
#include "reward/builtins.h"

namespace rlvr::reward {

absl::Status VerifierRegistry::Register(const std::string& name, VerifierFactory factory) {
  if (name.empty()) return absl::InvalidArgumentError("verifier registry: empty verifier name");
  if (!factory) {
    return absl::InvalidArgumentError(
        absl::StrCat("verifier registry: null factory for '", name, "'"));
  }
  absl::MutexLock lock(&mu_);
  if (!factories_.emplace(name, std::move(factory)).second) {
    return absl::AlreadyExistsError(
        absl::StrCat("verifier registry: '", name, "' is already registered"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Verifier>> VerifierRegistry::Create(
    const std::string& name, const VerifierOptions& options) const {
  VerifierFactory factory;
  {
    absl::MutexLock lock(&mu_);
    auto it = factories_.find(name);
    if (it == factories_.end()) {
      std::vector<std::string> names;
      for (const auto& [n, f] : factories_) names.push_back(n);
      return absl::NotFoundError(absl::StrCat("unknown verifier '", name,
                                              "' (registered: ", absl::StrJoin(names, ", "), ")"));
    }
    factory = it->second;
  }
  try {
    absl::StatusOr<std::unique_ptr<Verifier>> v = factory(options);
    if (!v.ok()) return Annotate(v.status(), absl::StrCat("verifier '", name, "'"));
    if (*v == nullptr) {
      return absl::InternalError(absl::StrCat("verifier '", name, "': factory returned null"));
    }
    return v;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("verifier '", name, "': factory threw: ", e.what()));
  } catch (...) {
    return absl::InternalError(absl::StrCat("verifier '", name, "': factory threw"));
  }
}

bool VerifierRegistry::Contains(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  return factories_.count(name) > 0;
}

std::vector<std::string> VerifierRegistry::Names() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto& [n, f] : factories_) names.push_back(n);
  return names;
}

absl::Status LoadVerifierPlugin(const std::string& path, VerifierRegistry* registry) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = dlerror();
    return absl::NotFoundError(
        absl::StrCat("plugin ", path, ": cannot load: ", err ? err : "unknown error"));
  }
  // The library is deliberately never dlclose()d: verifiers it created (and threads still
  // running a hung Score()) may outlive this call.
  auto abi = reinterpret_cast<RlvrPluginAbiVersionFn>(dlsym(handle, "rlvr_plugin_abi_version"));
  auto reg = reinterpret_cast<RlvrRegisterVerifiersFn>(dlsym(handle, "rlvr_register_verifiers"));
  if (abi == nullptr || reg == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("plugin ", path, ": missing entry point ",
                     abi == nullptr ? "rlvr_plugin_abi_version" : "rlvr_register_verifiers",
                     " (declare it extern \"C\"; see reward/verifier.h)"));
  }
  const int version = abi();
  if (version != kPluginAbiVersion) {
    return absl::InvalidArgumentError(absl::StrCat("plugin ", path, ": built for plugin ABI ",
                                                   version, ", this rlvr has ", kPluginAbiVersion,
                                                   "; rebuild it"));
  }
  int rc = 0;
  try {
    rc = reg(registry);
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("plugin ", path, ": rlvr_register_verifiers threw: ", e.what()));
  } catch (...) {
    return absl::InternalError(absl::StrCat("plugin ", path, ": rlvr_register_verifiers threw"));
  }
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("plugin ", path, ": rlvr_register_verifiers returned ", rc));
  }
  return absl::OkStatus();
}

}  // namespace rlvr::reward

namespace rlvr::reward {

absl::Status RegisterBuiltinVerifiers(VerifierRegistry* registry) {
  RLVR_RETURN_IF_ERROR(registry->Register("format", MakeFormatVerifier));
  RLVR_RETURN_IF_ERROR(registry->Register("overlong", MakeOverlongVerifier));
  RLVR_RETURN_IF_ERROR(registry->Register("countdown", MakeCountdownVerifier));
  RLVR_RETURN_IF_ERROR(registry->Register("math", MakeMathVerifier));
  RLVR_RETURN_IF_ERROR(registry->Register("code", MakeCodeVerifier));
  return absl::OkStatus();
}

}  // namespace rlvr::reward
