// libFuzzer target: code extraction and output comparison never crash on arbitrary text, and a
// text always matches itself.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "verifiers/code/harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  namespace vc = ::rlvr::verifiers::code;
  std::string py = vc::ExtractCode(text, vc::Language::kPython);
  std::string cpp = vc::ExtractCode(text, vc::Language::kCpp);
  if (py.size() > text.size() || cpp.size() > text.size()) std::abort();
  size_t half = size / 2;
  std::string a = text.substr(0, half), b = text.substr(half);
  (void)vc::OutputsMatch(a, b, 1e-6);
  (void)vc::OutputsMatch(a, b, 0);
  if (!vc::OutputsMatch(a, a, 0) || !vc::OutputsMatch(b, b, 1e-6)) std::abort();
  return 0;
}
