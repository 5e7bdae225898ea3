// Process-wide settings for the long-running compute programs (the rlvr CLI, the benchmarks).
#ifndef RLVR_CORE_PROCESS_H_
#define RLVR_CORE_PROCESS_H_

namespace rlvr {

// Keeps freed memory in the process instead of returning it to the kernel. A training step
// allocates and frees the same large activation buffers every step; with glibc's defaults each
// one is a fresh mmap whose pages fault in and get zeroed again (page faults were ~6% of a
// training step). Raises the mmap threshold to 256 MiB and disables trimming of the heap top,
// so peak RSS stays at the high-water mark. Call once at the start of main().
void KeepFreedMemoryInProcess();

}  // namespace rlvr

#endif  // RLVR_CORE_PROCESS_H_
