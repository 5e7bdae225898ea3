// libFuzzer target for the safetensors reader: parses arbitrary bytes from memory. Any input
// must give either an error status or views that lie inside the buffer and match their shape.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "core/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> file(data, size);
  auto contents = rlvr::ParseSafetensors(file, "fuzz");
  if (!contents.ok()) return 0;
  for (const rlvr::TensorView& t : contents->tensors) {
    if (t.data.size() != static_cast<size_t>(t.num_elements()) * rlvr::DTypeSize(t.dtype)) {
      std::abort();
    }
    if (t.data.size() > 0 &&
        (t.data.data() < data || t.data.data() + t.data.size() > data + size)) {
      std::abort();
    }
    // Touch every byte so ASan sees any out-of-bounds view.
    volatile uint8_t sink = 0;
    for (uint8_t b : t.data) sink = sink ^ b;
    (void)sink;
  }
  return 0;
}
