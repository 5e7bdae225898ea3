// Host emulation of kernels/cuda/cuda.h and kernels/cuda/graph.h: memory,
// streams as queues of closures, stream capture into graphs (see
// kernels/cuda/emulation/emu.h).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/dense.h"
#include "kernels/cuda/emulation/emu.h"
#include "kernels/cuda/graph.h"

namespace rlvr::kernels::cuda {
namespace emu {
namespace {

using Work = std::function<void()>;

struct Graph {
  std::vector<Work> work;
};

struct StreamState {
  std::deque<Work> queue;
  bool capturing = false;
  bool capture_invalid = false;
  std::string invalid_reason;
  std::thread::id capture_thread;
  std::unique_ptr<Graph> graph; // being recorded
};

struct State {
  std::recursive_mutex mu;
  std::map<uintptr_t, size_t> allocations; // begin -> bytes
  std::map<Stream, StreamState>
      streams; // created streams; nullptr is the legacy stream
  std::set<Graph *> graphs;
  std::set<Stream> gemm_workspaces;
  uintptr_t next_stream = 0x5eed0000;
  bool eager = false;
};

State &S() {
  static State *s = [] {
    auto *st = new State(); // leaked: no teardown-order problems with static
                            // destructors
    st->streams.emplace(nullptr, StreamState());
    const char *env = std::getenv("RLVR_CUDA_EMU_EAGER");
    st->eager = env != nullptr && env[0] == '1';
    return st;
  }();
  return *s;
}

// Runs the queued work of one stream, in order. The work may not call back into
// the API.
void Drain(StreamState &st) {
  while (!st.queue.empty()) {
    Work w = std::move(st.queue.front());
    st.queue.pop_front();
    w();
  }
}

void DrainAll() {
  for (auto &[s, st] : S().streams)
    Drain(st);
}

// The stream this thread is capturing, if any.
StreamState *ThreadCapture() {
  for (auto &[s, st] : S().streams) {
    if (st.capturing && st.capture_thread == std::this_thread::get_id())
      return &st;
  }
  return nullptr;
}

std::string Ptr(const void *p) {
  return absl::StrCat("0x", absl::Hex(reinterpret_cast<uintptr_t>(p)));
}

constexpr const char *kNotPermitted =
    "operation not permitted when stream is capturing";

} // namespace

absl::Status ForbiddenWhileCapturing(const char *what) {
  std::lock_guard<std::recursive_mutex> lock(S().mu);
  StreamState *cap = ThreadCapture();
  if (cap == nullptr)
    return absl::OkStatus();
  cap->capture_invalid = true;
  if (cap->invalid_reason.empty())
    cap->invalid_reason = what;
  return absl::InternalError(absl::StrCat(what, ": ", kNotPermitted));
}

bool IsCapturing(Stream stream) {
  std::lock_guard<std::recursive_mutex> lock(S().mu);
  auto it = S().streams.find(stream);
  return it != S().streams.end() && it->second.capturing;
}

absl::Status Enqueue(const char *fn, Stream stream, Work work) {
  std::lock_guard<std::recursive_mutex> lock(S().mu);
  auto it = S().streams.find(stream);
  if (it == S().streams.end()) {
    return absl::InternalError(
        absl::StrCat(fn, ": invalid resource handle (stream ", Ptr(stream),
                     " was not created or was destroyed)"));
  }
  StreamState &st = it->second;
  if (st.capturing) {
    if (st.capture_invalid) {
      return absl::InternalError(
          absl::StrCat(fn, ": ",
                       "operation failed due to a previous "
                       "error during capture"));
    }
    st.graph->work.push_back(std::move(work));
    return absl::OkStatus();
  }
  if (S().eager) {
    Drain(st);
    work();
    return absl::OkStatus();
  }
  st.queue.push_back(std::move(work));
  return absl::OkStatus();
}

absl::Status CheckRange(const char *fn, const char *name, const void *ptr,
                        size_t bytes) {
  if (bytes == 0)
    return absl::OkStatus();
  std::lock_guard<std::recursive_mutex> lock(S().mu);
  const uintptr_t p = reinterpret_cast<uintptr_t>(ptr);
  auto it = S().allocations.upper_bound(p);
  if (it != S().allocations.begin()) {
    --it;
    if (p >= it->first && p + bytes <= it->first + it->second)
      return absl::OkStatus();
    if (p >= it->first && p < it->first + it->second) {
      return absl::InternalError(absl::StrCat(
          "emulation: ", fn, ": ", name, " [", Ptr(ptr), ", +", bytes,
          " bytes) runs ", p + bytes - (it->first + it->second),
          " bytes past the end of its allocation of ", it->second,
          " bytes (an illegal address on a GPU)"));
    }
  }
  return absl::InternalError(
      absl::StrCat("emulation: ", fn, ": ", name, " [", Ptr(ptr), ", +", bytes,
                   " bytes) is not inside any live device allocation"));
}

void Die(const std::string &what) {
  std::fprintf(stderr, "emulation: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

void DieIfOutOfRange(const char *fn, const char *name, const void *ptr,
                     size_t bytes) {
  absl::Status st = CheckRange(fn, name, ptr, bytes);
  if (!st.ok())
    Die(std::string(st.message()));
}

absl::Status SynchronizeStream(const char *fn, Stream stream) {
  std::lock_guard<std::recursive_mutex> lock(S().mu);
  absl::Status st = ForbiddenWhileCapturing(fn);
  if (!st.ok())
    return st;
  auto it = S().streams.find(stream);
  if (it == S().streams.end()) {
    return absl::InternalError(
        absl::StrCat(fn, ": invalid resource handle (stream ", Ptr(stream),
                     " was not created or was destroyed)"));
  }
  Drain(it->second);
  return absl::OkStatus();
}

absl::Status DeviceSynchronize(const char *fn) {
  std::lock_guard<std::recursive_mutex> lock(S().mu);
  absl::Status st = ForbiddenWhileCapturing(fn);
  if (!st.ok())
    return st;
  DrainAll();
  return absl::OkStatus();
}

absl::Status EnsureGemmWorkspace(const char *fn, Stream stream) {
  std::lock_guard<std::recursive_mutex> lock(S().mu);
  if (S().gemm_workspaces.count(stream) != 0)
    return absl::OkStatus();
  // gemm.cu would cudaMalloc the stream's 32 MiB workspace now.
  absl::Status st = ForbiddenWhileCapturing("cuBLASLt workspace");
  if (!st.ok())
    return absl::InternalError(absl::StrCat(fn, ": ", st.message()));
  S().gemm_workspaces.insert(stream);
  return absl::OkStatus();
}

void ReleaseGemmWorkspaceFor(Stream stream) {
  std::lock_guard<std::recursive_mutex> lock(S().mu);
  if (S().gemm_workspaces.erase(stream) != 0)
    DrainAll(); // cudaFree waits for the device
}

} // namespace emu

using emu::S;

absl::Status Synchronize(Stream stream) {
  return emu::SynchronizeStream("cudaStreamSynchronize", stream);
}

absl::StatusOr<Stream> StreamCreate() {
  std::lock_guard<std::recursive_mutex> lock(S().mu);
  Stream s = reinterpret_cast<Stream>(S().next_stream);
  S().next_stream += 0x100;
  S().streams.emplace(s, emu::StreamState());
  return s;
}

void StreamDestroy(Stream stream) {
  if (stream == nullptr)
    return;
  std::lock_guard<std::recursive_mutex> lock(S().mu);
  auto it = S().streams.find(stream);
  if (it == S().streams.end()) {
    std::fprintf(stderr, "emulation: StreamDestroy(%p): not a live stream\n",
                 stream);
    std::abort();
  }
  emu::Drain(it->second); // work already enqueued completes
  S().streams.erase(it);
}

bool BuiltWithCuda() { return true; }

absl::StatusOr<int> DeviceCount() { return 1; }

absl::StatusOr<void *> Malloc(size_t bytes) {
  absl::Status st = emu::ForbiddenWhileCapturing(
      absl::StrCat("cudaMalloc(", bytes, ")").c_str());
  if (!st.ok())
    return st;
  if (bytes == 0)
    return static_cast<void *>(nullptr); // cudaMalloc(0) succeeds with null
  const size_t rounded = (bytes + 255) / 256 * 256;
  void *p = std::aligned_alloc(256, rounded);
  if (p == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cudaMalloc(", bytes, "): out of memory"));
  }
  std::memset(p, 0xFF, rounded); // uninitialized device memory reads as NaN
  std::lock_guard<std::recursive_mutex> lock(S().mu);
  S().allocations[reinterpret_cast<uintptr_t>(p)] = bytes;
  return p;
}

void Free(void *ptr) {
  if (ptr == nullptr)
    return;
  std::lock_guard<std::recursive_mutex> lock(S().mu);
  if (!emu::ForbiddenWhileCapturing("cudaFree").ok())
    return;
  emu::DrainAll(); // cudaFree synchronizes the device
  auto it = S().allocations.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == S().allocations.end()) {
    std::fprintf(stderr, "emulation: Free(%p): not a live device allocation\n",
                 ptr);
    std::abort();
  }
  S().allocations.erase(it);
  std::free(ptr);
}

absl::Status Memset0(void *ptr, size_t bytes) {
  const char *fn = "cudaMemset";
  if (bytes == 0)
    return absl::OkStatus();
  absl::Status st = emu::ForbiddenWhileCapturing(fn);
  if (!st.ok())
    return st;
  st = emu::CheckRange(fn, "ptr", ptr, bytes);
  if (!st.ok())
    return st;
  return emu::Enqueue(fn, nullptr, [=] { std::memset(ptr, 0, bytes); });
}

absl::Status CopyToDevice(void *dst, const void *src, size_t bytes) {
  const char *fn = "cudaMemcpy H2D";
  if (bytes == 0)
    return absl::OkStatus();
  absl::Status st = emu::SynchronizeStream(fn, nullptr);
  if (!st.ok())
    return st;
  st = emu::CheckRange(fn, "dst", dst, bytes);
  if (!st.ok())
    return st;
  std::memcpy(dst, src, bytes);
  return absl::OkStatus();
}

absl::Status CopyToHost(void *dst, const void *src, size_t bytes) {
  const char *fn = "cudaMemcpy D2H";
  if (bytes == 0)
    return absl::OkStatus();
  absl::Status st = emu::SynchronizeStream(fn, nullptr);
  if (!st.ok())
    return st;
  st = emu::CheckRange(fn, "src", src, bytes);
  if (!st.ok())
    return st;
  std::memcpy(dst, src, bytes);
  return absl::OkStatus();
}

absl::Status CopyOnDevice(void *dst, const void *src, size_t bytes,
                          Stream stream) {
  const char *fn = "cudaMemcpyAsync D2D";
  if (bytes == 0)
    return absl::OkStatus();
  absl::Status st = emu::CheckRange(fn, "src", src, bytes);
  if (st.ok())
    st = emu::CheckRange(fn, "dst", dst, bytes);
  if (!st.ok())
    return st;
  return emu::Enqueue(fn, stream, [=] { std::memmove(dst, src, bytes); });
}

absl::Status CopyToDeviceAsync(void *dst, const void *src, size_t bytes,
                               Stream stream) {
  const char *fn = "cudaMemcpyAsync H2D";
  if (bytes == 0)
    return absl::OkStatus();
  absl::Status st = emu::CheckRange(fn, "dst", dst, bytes);
  if (!st.ok())
    return st;
  return emu::Enqueue(fn, stream, [=] { std::memcpy(dst, src, bytes); });
}

absl::Status CopyToHostAsync(void *dst, const void *src, size_t bytes,
                             Stream stream) {
  const char *fn = "cudaMemcpyAsync D2H";
  if (bytes == 0)
    return absl::OkStatus();
  absl::Status st = emu::CheckRange(fn, "src", src, bytes);
  if (!st.ok())
    return st;
  return emu::Enqueue(fn, stream, [=] { std::memcpy(dst, src, bytes); });
}

// ---------------------------------------------------------------------------------------------
// Graphs.

absl::Status BeginCapture(Stream stream) {
  if (stream == nullptr) {
    return absl::InvalidArgumentError("BeginCapture: null stream (the legacy "
                                      "default stream cannot be captured)");
  }
  std::lock_guard<std::recursive_mutex> lock(S().mu);
  auto it = S().streams.find(stream);
  if (it == S().streams.end()) {
    return absl::InternalError(
        "cudaStreamBeginCapture: invalid resource handle");
  }
  emu::StreamState &st = it->second;
  if (st.capturing) {
    return absl::InternalError("cudaStreamBeginCapture: " +
                               std::string(emu::kNotPermitted));
  }
  st.capturing = true;
  st.capture_invalid = false;
  st.invalid_reason.clear();
  st.capture_thread = std::this_thread::get_id();
  st.graph = std::make_unique<emu::Graph>();
  return absl::OkStatus();
}

absl::StatusOr<GraphExec> EndCaptureAndInstantiate(Stream stream) {
  if (stream == nullptr)
    return absl::InvalidArgumentError("EndCaptureAndInstantiate: null stream");
  std::lock_guard<std::recursive_mutex> lock(S().mu);
  auto it = S().streams.find(stream);
  if (it == S().streams.end() || !it->second.capturing) {
    return absl::InternalError(
        "cudaStreamEndCapture: the stream is not capturing");
  }
  emu::StreamState &st = it->second;
  st.capturing = false;
  std::unique_ptr<emu::Graph> graph = std::move(st.graph);
  if (st.capture_invalid) {
    return absl::InternalError(
        absl::StrCat("cudaStreamEndCapture: capture invalidated (",
                     st.invalid_reason, ": ", emu::kNotPermitted, ")"));
  }
  emu::Graph *g = graph.release();
  S().graphs.insert(g);
  return static_cast<GraphExec>(g);
}

absl::StatusOr<GraphExec>
CaptureGraph(Stream stream, const std::function<absl::Status()> &body) {
  {
    const absl::Status begin = BeginCapture(stream);
    if (!begin.ok())
      return begin;
  }
  const absl::Status recorded = body();
  absl::StatusOr<GraphExec> exec = EndCaptureAndInstantiate(stream);
  if (!recorded.ok()) {
    if (exec.ok())
      DestroyGraph(*exec);
    return absl::Status(
        recorded.code(),
        absl::StrCat("while capturing a CUDA graph: ", recorded.message()));
  }
  return exec;
}

absl::Status LaunchGraph(GraphExec graph, Stream stream) {
  if (graph == nullptr)
    return absl::InvalidArgumentError("LaunchGraph: null graph");
  std::lock_guard<std::recursive_mutex> lock(S().mu);
  auto *g = static_cast<emu::Graph *>(graph);
  if (S().graphs.count(g) == 0) {
    return absl::InternalError(
        "cudaGraphLaunch: invalid resource handle (graph destroyed?)");
  }
  for (const emu::Work &w : g->work) {
    absl::Status st = emu::Enqueue("cudaGraphLaunch", stream, w);
    if (!st.ok())
      return st;
  }
  return absl::OkStatus();
}

void DestroyGraph(GraphExec graph) {
  if (graph == nullptr)
    return;
  std::lock_guard<std::recursive_mutex> lock(S().mu);
  auto *g = static_cast<emu::Graph *>(graph);
  if (S().graphs.erase(g) == 0) {
    std::fprintf(stderr, "emulation: DestroyGraph(%p): not a live graph\n",
                 graph);
    std::abort();
  }
  emu::DrainAll(); // graphs still running finish first (their closures are
                   // copies anyway)
  delete g;
}

void ReleaseGemmWorkspace(Stream stream) {
  emu::ReleaseGemmWorkspaceFor(stream);
}

} // namespace rlvr::kernels::cuda
