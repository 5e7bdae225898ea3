// libFuzzer target: the streaming JSONL reader on arbitrary bytes.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "core/jsonl.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/rlvr_fuzz_jsonl_" + std::to_string(::getpid());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  for (bool skip : {false, true}) {
    rlvr::JsonlReadOptions options;
    options.skip_bad_lines = skip;
    options.max_line_bytes = 1 << 16;
    auto reader = rlvr::JsonlReader::Open(path, options);
    if (!reader.ok()) return 0;
    nlohmann::json record;
    while (true) {
      auto more = (*reader)->Next(&record);
      if (!more.ok() || !*more) break;
    }
  }
  return 0;
}
