// libFuzzer target: parses arbitrary text as a chat template and renders it with a small
// conversation. Any input must give a template or an error, never a crash or a hang.
#include <cstdint>
#include <string>

#include "nlohmann/json.hpp"
#include "policy/text/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;
  const std::string source(reinterpret_cast<const char*>(data), size);
  auto t = rlvr::policy::ChatTemplate::Parse(source, "fuzz.jinja");
  if (!t.ok()) return 0;
  static const nlohmann::ordered_json* vars = new nlohmann::ordered_json(
      nlohmann::ordered_json::parse(R"({"messages": [{"role": "system", "content": "s"},
        {"role": "user", "content": "hé <think>x</think>"}], "add_generation_prompt": true,
        "bos_token": "<s>", "tools": null, "n": 3, "f": 1.5})"));
  (void)(*t)->Render(*vars);
  return 0;
}
