#include "core/process.h"

#include <malloc.h>

namespace rlvr {

void KeepFreedMemoryInProcess() {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, -1);
}

}  // namespace rlvr
