// libFuzzer target: the config loader on arbitrary documents and overrides. Errors are fine;
// crashes, sanitizer reports and hangs are not.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  rlvr::proto::RunConfig config = rlvr::DefaultRunConfig();
  // The first line doubles as an override, the whole input as a document.
  std::string first = text.substr(0, text.find('\n'));
  (void)rlvr::ApplyOverride(first, &config);
  if (rlvr::MergeConfigText(text, "fuzz.yaml", &config).ok()) {
    (void)rlvr::ValidateRunConfig(config);
    (void)rlvr::ToYaml(config);
  }
  return 0;
}
