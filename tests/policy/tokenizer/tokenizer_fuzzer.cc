// libFuzzer target: encodes arbitrary bytes with the Llama-3-style fixture tokenizer and checks
// that decoding gives back the input with invalid UTF-8 repaired (that tokenizer has no
// normalizer and no stripping added tokens, so the round trip is exact).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "policy/text/tokenizer.h"
#include "policy/text/unicode.h"

namespace {

const rlvr::policy::Tokenizer& Get() {
  static const rlvr::policy::Tokenizer* tok = [] {
    const char* root = std::getenv("RLVR_SOURCE_DIR");
    const std::string path = std::string(root != nullptr ? root : ".") +
                             "/tests/fixtures/tokenizers/llama3/tokenizer.json";
    auto t = rlvr::policy::Tokenizer::FromFile(path);
    if (!t.ok()) {
      std::fprintf(stderr, "%s (set RLVR_SOURCE_DIR to the source root)\n",
                   t.status().ToString().c_str());
      std::abort();
    }
    return t->release();
  }();
  return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const rlvr::policy::Tokenizer& tok = Get();
  const std::vector<int32_t> ids = tok.Encode(input);
  if (tok.Decode(ids) != rlvr::policy::ToValidUtf8(input)) std::abort();
  return 0;
}
