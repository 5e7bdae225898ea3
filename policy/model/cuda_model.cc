#include "policy/model/cuda_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/dtype.h"
#include "core/status.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/dense.h"
#include "kernels/cuda/graph.h"
#include "kernels/cuda/model_glue.h"
#include "kernels/cuda/moe.h"

namespace rlvr::policy {
namespace cu = kernels::cuda;

namespace {

constexpr size_t kAlign = 256;
size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

struct DeviceFree {
  void operator()(void* p) const { cu::Free(p); }
};
using DevicePtr = std::unique_ptr<void, DeviceFree>;

absl::StatusOr<DevicePtr> Alloc(size_t bytes, const char* what) {
  RLVR_ASSIGN_OR_RETURN(void* p, cu::Malloc(std::max<size_t>(bytes, 1)), "device memory for ",
                        what, " (", bytes, " bytes)");
  return DevicePtr(p);
}

// Byte offsets of consecutive 256-byte aligned pieces of one allocation.
struct Carver {
  size_t size = 0;
  size_t Add(size_t bytes) {
    const size_t off = size;
    size = AlignUp(size + bytes);
    return off;
  }
};

// Host staging of the weights: pieces appended at aligned offsets, uploaded in one copy.
class Staging {
 public:
  size_t AddBf16(const float* src, int64_t n) {
    const size_t off = Reserve(static_cast<size_t>(n) * 2);
    auto* dst = reinterpret_cast<uint16_t*>(bytes_.data() + off);
    for (int64_t i = 0; i < n; ++i) dst[i] = F32ToBf16(src[i]);
    return off;
  }
  size_t AddF32(const float* src, int64_t n) {
    const size_t off = Reserve(static_cast<size_t>(n) * 4);
    std::memcpy(bytes_.data() + off, src, static_cast<size_t>(n) * 4);
    return off;
  }
  // Two [rows, cols] matrices stacked, as bf16 (fused gate|up or q|k|v).
  size_t AddBf16Rows(std::initializer_list<std::pair<const float*, int64_t>> parts) {
    int64_t n = 0;
    for (const auto& p : parts) n += p.second;
    const size_t off = Reserve(static_cast<size_t>(n) * 2);
    auto* dst = reinterpret_cast<uint16_t*>(bytes_.data() + off);
    for (const auto& p : parts) {
      for (int64_t i = 0; i < p.second; ++i) *dst++ = F32ToBf16(p.first[i]);
    }
    return off;
  }
  size_t size() const { return bytes_.size(); }
  const uint8_t* data() const { return bytes_.data(); }

 private:
  size_t Reserve(size_t bytes) {
    const size_t off = bytes_.size();
    bytes_.resize(AlignUp(off + bytes), 0);
    return off;
  }
  std::vector<uint8_t> bytes_;
};

constexpr size_t kNone = std::numeric_limits<size_t>::max();

}  // namespace

// ---------------------------------------------------------------------------------------------
// KvBlockTable

KvBlockTable::KvBlockTable(int64_t num_blocks, int64_t block_size, int64_t max_seqs,
                           int64_t max_blocks_per_seq)
    : block_size_(block_size), max_seqs_(max_seqs), max_blocks_per_seq_(max_blocks_per_seq) {
  free_.reserve(static_cast<size_t>(std::max<int64_t>(num_blocks, 0)));
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
  blocks_.resize(static_cast<size_t>(std::max<int64_t>(max_seqs, 0)));
  length_.assign(static_cast<size_t>(std::max<int64_t>(max_seqs, 0)), 0);
}

absl::Status KvBlockTable::Validate(const CudaKvOptions& o) {
  auto positive = [](const char* name, int64_t v) -> absl::Status {
    if (v > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("KV pool: ", name, " = ", v,
                                                   " must be positive"));
  };
  RLVR_RETURN_IF_ERROR(positive("num_blocks", o.num_blocks));
  RLVR_RETURN_IF_ERROR(positive("block_size", o.block_size));
  RLVR_RETURN_IF_ERROR(positive("max_seqs", o.max_seqs));
  RLVR_RETURN_IF_ERROR(positive("max_blocks_per_seq", o.max_blocks_per_seq));
  if (o.num_blocks > std::numeric_limits<int32_t>::max() ||
      o.block_size * o.max_blocks_per_seq > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError("KV pool: num_blocks or capacity per sequence too large");
  }
  return absl::OkStatus();
}

absl::Status KvBlockTable::Reserve(std::span<const int64_t> seqs,
                                   std::span<const int64_t> lengths) {
  int64_t need = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int64_t s = seqs[i];
    if (s < 0 || s >= max_seqs_) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence slot ", s, " is outside [0, max_seqs=", max_seqs_, ")"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (seqs[j] == s) {
        return absl::InvalidArgumentError(
            absl::StrCat("sequence slot ", s, " appears twice in one batch"));
      }
    }
    if (lengths[i] > capacity()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "position ", lengths[i] - 1, " of sequence ", s, " is past the KV pool's capacity of ",
          capacity(), " positions per sequence (max_blocks_per_seq ", max_blocks_per_seq_,
          " x block_size ", block_size_, ")"));
    }
    const int64_t want = (lengths[i] + block_size_ - 1) / block_size_;
    need += std::max<int64_t>(0, want - static_cast<int64_t>(blocks_[s].size()));
  }
  if (need > free_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat("KV pool: ", need, " more blocks needed, ",
                                                     free_blocks(), " free"));
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int64_t want = (lengths[i] + block_size_ - 1) / block_size_;
    std::vector<int32_t>& own = blocks_[seqs[i]];
    while (static_cast<int64_t>(own.size()) < want) {
      own.push_back(free_.back());
      free_.pop_back();
    }
  }
  return absl::OkStatus();
}

void KvBlockTable::Release(int64_t seq) {
  if (seq < 0 || seq >= max_seqs_) return;
  for (auto it = blocks_[seq].rbegin(); it != blocks_[seq].rend(); ++it) free_.push_back(*it);
  blocks_[seq].clear();
  length_[seq] = 0;
}

void KvBlockTable::AppendTableRow(int64_t seq, std::vector<int32_t>* out) const {
  const std::vector<int32_t>& own = blocks_[seq];
  out->insert(out->end(), own.begin(), own.end());
  out->insert(out->end(), static_cast<size_t>(max_blocks_per_seq_) - own.size(), 0);
}

// ---------------------------------------------------------------------------------------------
// Device state

struct CudaCausalLm::Impl {
  struct Layer {
    bool moe = false;
    // fp32
    const float* in_norm = nullptr;
    const float* post_norm = nullptr;
    const float* q_norm = nullptr;
    const float* k_norm = nullptr;
    const float* qkv_bias = nullptr;  // [(H + 2 Hkv) D] or null
    const float* o_bias = nullptr;    // [C] or null
    // bf16
    const uint16_t* wqkv = nullptr;  // [(H + 2 Hkv) D, C]
    const uint16_t* wo = nullptr;    // [C, H D]
    const uint16_t* gu = nullptr;    // dense [2I, C]
    const uint16_t* down = nullptr;  // dense [C, I]
    const uint16_t* router = nullptr;     // [E, C]
    const uint16_t* e_gu = nullptr;       // [E, 2Ie, C]
    const uint16_t* e_down = nullptr;     // [E, C, Ie]
    const uint16_t* shared_gu = nullptr;  // [2Is, C] or null
    const uint16_t* shared_down = nullptr;
  };
  struct LayerOffsets {
    size_t in_norm = kNone, post_norm = kNone, q_norm = kNone, k_norm = kNone, qkv_bias = kNone,
           o_bias = kNone, wqkv = kNone, wo = kNone, gu = kNone, down = kNone, router = kNone,
           e_gu = kNone, e_down = kNone, shared_gu = kNone, shared_down = kNone;
  };

  DevicePtr weights;
  std::vector<Layer> layers;
  const float* embed = nullptr;        // [V, C] fp32
  const uint16_t* lm_head = nullptr;   // [V, C] bf16
  const float* final_norm = nullptr;   // [C]
  DevicePtr k_pool, v_pool;            // [L, num_blocks, block_size, Hkv, D] bf16 each
  int64_t pool_blocks = 0;

  // Scratch for up to `rows` token rows.
  DevicePtr scratch;
  int64_t rows = 0, head_rows = 0;
  size_t decode_ws_bytes = 0;
  float* x = nullptr;
  uint16_t* hn = nullptr;
  float* qkv = nullptr;
  uint16_t *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;
  float* lse = nullptr;
  float *cos = nullptr, *sin = nullptr;
  int32_t* io = nullptr;  // ids [rows], positions [rows], block table [rows, max_blocks]
  float* gu = nullptr;
  uint16_t* act = nullptr;
  float *rlogits = nullptr, *probs = nullptr, *topk_w = nullptr;
  int32_t *topk_e = nullptr, *offset = nullptr, *order = nullptr, *slot = nullptr;
  uint16_t *xe = nullptr, *egu = nullptr, *eact = nullptr, *ye = nullptr, *ymoe = nullptr;
  float* logits = nullptr;
  int32_t* argmax = nullptr;
  void* decode_ws = nullptr;

  std::vector<int32_t> host_io;

  // Router replay recording (CudaKvOptions::record_experts): topk_e holds every MoE layer's
  // choices of the last run, [moe_layers, rows of the run, K] (layer m's slice at
  // m * rows_of_run * K), so one copy brings them back; `experts` is their host copy
  // [rows, moe_layers, K] after Prefill / DecodeStep.
  bool record_experts = false;
  int64_t moe_layers = 0;
  std::vector<int32_t> experts, experts_dev_order;

  // Execution: every launch and copy of this object goes on `stream` (created non-blocking in
  // Create, destroyed last). Decode steps replay CUDA graphs when use_graphs, one per
  // (batch size, greedy) key: `warm` after the first, eager, run of a key; `exec` once the
  // second run captured it. Dropped (DropGraphs) whenever the scratch is reallocated, since the
  // graphs hold its addresses.
  struct DecodeGraph {
    bool warm = false;
    cu::GraphExec exec = nullptr;
  };
  cu::Stream stream = nullptr;
  bool use_graphs = true;
  std::map<std::pair<int64_t, bool>, DecodeGraph> graphs;
  int64_t graph_captures = 0, graph_launches = 0;

  void DropGraphs() {
    for (auto& [key, g] : graphs) cu::DestroyGraph(g.exec);
    graphs.clear();
  }
  ~Impl() {
    if (stream != nullptr) (void)cu::Synchronize(stream);  // nothing may still use the buffers
    DropGraphs();
    if (stream != nullptr) {
      cu::ReleaseGemmWorkspace(stream);
      cu::StreamDestroy(stream);
    }
    // The device buffers (DevicePtr members) are freed after this body.
  }
};

CudaCausalLm::CudaCausalLm(const ModelConfig& config, const CudaKvOptions& kv)
    : config_(config),
      table_(kv.num_blocks, kv.block_size, kv.max_seqs, kv.max_blocks_per_seq),
      impl_(std::make_unique<Impl>()) {}

CudaCausalLm::~CudaCausalLm() = default;

absl::Status CudaCausalLm::CheckSupported(const ModelConfig& c) {
  auto no = [](auto... parts) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA model: ", parts..., " is not supported by the CUDA kernels"));
  };
  RLVR_RETURN_IF_ERROR(c.Validate(), "CUDA model config");
  if (c.hidden_act != "silu") return no("hidden_act \"", c.hidden_act, "\"");
  const int64_t D = c.head_dim;
  if (D != 16 && D != 32 && D != 64 && D != 128) {
    return no("head_dim ", D, " (the attention kernels take 16, 32, 64 or 128)");
  }
  if (c.num_attention_heads > 65535) return no("num_attention_heads above 65535");
  if (c.is_moe()) {
    if (c.scoring_func == ScoringFunc::kSigmoid) return no("scoring_func sigmoid (MoE routing)");
    if (c.use_score_correction_bias) return no("e_score_correction_bias (MoE routing)");
    if (c.n_group > 1) return no("group-limited routing (n_group ", c.n_group, ")");
    if (c.num_experts > 1024) return no("num_experts ", c.num_experts, " above 1024");
    if (c.num_experts_per_tok > 32) {
      return no("num_experts_per_tok ", c.num_experts_per_tok, " above 32");
    }
  }
  return absl::OkStatus();
}

absl::Status CudaCausalLm::CheckIds(const ModelConfig& c, const int32_t* ids, int64_t n,
                                    const char* what) {
  if (n <= 0 || ids == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": empty ids (n = ", n, ")"));
  }
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ids[", i, "] = ", ids[i],
                                                     " is outside [0, vocab_size=", c.vocab_size,
                                                     ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CudaCausalLm>> CudaCausalLm::Create(const CausalLM<float>& model,
                                                                   const CudaKvOptions& kv) {
  const ModelConfig& c = model.config();
  RLVR_RETURN_IF_ERROR(CheckSupported(c));
  RLVR_RETURN_IF_ERROR(KvBlockTable::Validate(kv));
  if (!cu::BuiltWithCuda()) {
    return absl::UnimplementedError("CUDA model: built without CUDA (configure -DRLVR_CUDA=ON)");
  }
  RLVR_ASSIGN_OR_RETURN(int devices, cu::DeviceCount(), "CUDA model");
  if (devices <= 0) {
    return absl::FailedPreconditionError("CUDA model: no CUDA device is visible");
  }
  std::unique_ptr<CudaCausalLm> m(new CudaCausalLm(c, kv));
  m->active_vocab_ = model.active_vocab();
  Impl& im = *m->impl_;
  RLVR_ASSIGN_OR_RETURN(im.stream, cu::StreamCreate(), "CUDA model");
  im.use_graphs = kv.use_graphs;
  im.record_experts = kv.record_experts;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) im.moe_layers += c.IsMoeLayer(l);
  const int64_t C = c.hidden_size, V = c.vocab_size, H = c.num_attention_heads,
                Hkv = c.num_key_value_heads, D = c.head_dim, L = c.num_hidden_layers;
  auto P = [&](const std::string& name) -> const float* {
    const ParamInfo* p = model.FindParam(name);
    return p == nullptr ? nullptr : model.param_data() + p->offset;
  };
  auto Need = [&](const std::string& name) -> absl::StatusOr<const float*> {
    const float* p = P(name);
    if (p == nullptr) return absl::InternalError(absl::StrCat("CUDA model: no parameter ", name));
    return p;
  };

  Staging st;
  std::vector<Impl::LayerOffsets> offs(static_cast<size_t>(L));
  RLVR_ASSIGN_OR_RETURN(const float* embed, Need("model.embed_tokens.weight"));
  const size_t embed_off = st.AddF32(embed, V * C);
  const float* lm = c.tie_word_embeddings ? embed : P("lm_head.weight");
  if (lm == nullptr) return absl::InternalError("CUDA model: no lm_head.weight");
  const size_t lm_off = st.AddBf16(lm, V * C);
  RLVR_ASSIGN_OR_RETURN(const float* fnorm, Need("model.norm.weight"));
  const size_t fnorm_off = st.AddF32(fnorm, C);
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    Impl::LayerOffsets& o = offs[l];
    RLVR_ASSIGN_OR_RETURN(const float* in_norm, Need(p + "input_layernorm.weight"));
    RLVR_ASSIGN_OR_RETURN(const float* post_norm, Need(p + "post_attention_layernorm.weight"));
    o.in_norm = st.AddF32(in_norm, C);
    o.post_norm = st.AddF32(post_norm, C);
    RLVR_ASSIGN_OR_RETURN(const float* wq, Need(p + "self_attn.q_proj.weight"));
    RLVR_ASSIGN_OR_RETURN(const float* wk, Need(p + "self_attn.k_proj.weight"));
    RLVR_ASSIGN_OR_RETURN(const float* wv, Need(p + "self_attn.v_proj.weight"));
    RLVR_ASSIGN_OR_RETURN(const float* wo, Need(p + "self_attn.o_proj.weight"));
    o.wqkv = st.AddBf16Rows({{wq, H * D * C}, {wk, Hkv * D * C}, {wv, Hkv * D * C}});
    o.wo = st.AddBf16(wo, C * H * D);
    if (c.attention_bias) {
      RLVR_ASSIGN_OR_RETURN(const float* bq, Need(p + "self_attn.q_proj.bias"));
      RLVR_ASSIGN_OR_RETURN(const float* bk, Need(p + "self_attn.k_proj.bias"));
      RLVR_ASSIGN_OR_RETURN(const float* bv, Need(p + "self_attn.v_proj.bias"));
      std::vector<float> b;
      b.insert(b.end(), bq, bq + H * D);
      b.insert(b.end(), bk, bk + Hkv * D);
      b.insert(b.end(), bv, bv + Hkv * D);
      o.qkv_bias = st.AddF32(b.data(), static_cast<int64_t>(b.size()));
    }
    if (const float* bo = P(p + "self_attn.o_proj.bias")) o.o_bias = st.AddF32(bo, C);
    if (c.qk_norm) {
      RLVR_ASSIGN_OR_RETURN(const float* qn, Need(p + "self_attn.q_norm.weight"));
      RLVR_ASSIGN_OR_RETURN(const float* kn, Need(p + "self_attn.k_norm.weight"));
      o.q_norm = st.AddF32(qn, D);
      o.k_norm = st.AddF32(kn, D);
    }
    if (c.IsMoeLayer(l)) {
      const int64_t E = c.num_experts, Ie = c.moe_intermediate_size;
      RLVR_ASSIGN_OR_RETURN(const float* router, Need(p + "mlp.gate.weight"));
      o.router = st.AddBf16(router, E * C);
      // Experts are stacked in the model ([E, Ie, C] gate, then up, then [E, C, Ie] down);
      // on the device each expert's gate and up rows are adjacent: [E, 2 Ie, C].
      RLVR_ASSIGN_OR_RETURN(const float* g0, Need(p + "mlp.experts.0.gate_proj.weight"));
      RLVR_ASSIGN_OR_RETURN(const float* u0, Need(p + "mlp.experts.0.up_proj.weight"));
      RLVR_ASSIGN_OR_RETURN(const float* d0, Need(p + "mlp.experts.0.down_proj.weight"));
      o.e_gu = kNone;
      for (int64_t e = 0; e < E; ++e) {
        const size_t off = st.AddBf16Rows({{g0 + e * Ie * C, Ie * C}, {u0 + e * Ie * C, Ie * C}});
        if (e == 0) o.e_gu = off;
        // AddBf16Rows pads to 256 bytes: the experts must be contiguous.
        if (off != o.e_gu + static_cast<size_t>(e) * 2 * Ie * C * 2) {
          return absl::InternalError("CUDA model: expert gate|up rows not contiguous");
        }
      }
      o.e_down = st.AddBf16(d0, E * C * Ie);
      if (c.n_shared_experts > 0) {
        const int64_t Is = c.n_shared_experts * Ie;
        RLVR_ASSIGN_OR_RETURN(const float* sg, Need(p + "mlp.shared_experts.gate_proj.weight"));
        RLVR_ASSIGN_OR_RETURN(const float* su, Need(p + "mlp.shared_experts.up_proj.weight"));
        RLVR_ASSIGN_OR_RETURN(const float* sd, Need(p + "mlp.shared_experts.down_proj.weight"));
        o.shared_gu = st.AddBf16Rows({{sg, Is * C}, {su, Is * C}});
        o.shared_down = st.AddBf16(sd, C * Is);
      }
    } else {
      const int64_t I = c.intermediate_size;
      RLVR_ASSIGN_OR_RETURN(const float* g, Need(p + "mlp.gate_proj.weight"));
      RLVR_ASSIGN_OR_RETURN(const float* u, Need(p + "mlp.up_proj.weight"));
      RLVR_ASSIGN_OR_RETURN(const float* d, Need(p + "mlp.down_proj.weight"));
      o.gu = st.AddBf16Rows({{g, I * C}, {u, I * C}});
      o.down = st.AddBf16(d, C * I);
    }
  }
  RLVR_ASSIGN_OR_RETURN(im.weights, Alloc(st.size(), "weights"));
  // On the model's stream (a non-blocking stream is not ordered after the legacy stream's
  // copies), then waited for: `st` is freed when Create returns.
  RLVR_RETURN_IF_ERROR(cu::CopyToDeviceAsync(im.weights.get(), st.data(), st.size(), im.stream),
                       "CUDA model: weight upload");
  RLVR_RETURN_IF_ERROR(cu::Synchronize(im.stream), "CUDA model: weight upload");
  m->weight_bytes_ = static_cast<int64_t>(st.size());
  const uint8_t* base = static_cast<const uint8_t*>(im.weights.get());
  auto F = [&](size_t off) {
    return off == kNone ? nullptr : reinterpret_cast<const float*>(base + off);
  };
  auto Bf = [&](size_t off) {
    return off == kNone ? nullptr : reinterpret_cast<const uint16_t*>(base + off);
  };
  im.embed = F(embed_off);
  im.lm_head = Bf(lm_off);
  im.final_norm = F(fnorm_off);
  im.layers.resize(static_cast<size_t>(L));
  for (int64_t l = 0; l < L; ++l) {
    const Impl::LayerOffsets& o = offs[l];
    Impl::Layer& w = im.layers[l];
    w.moe = c.IsMoeLayer(l);
    w.in_norm = F(o.in_norm);
    w.post_norm = F(o.post_norm);
    w.q_norm = F(o.q_norm);
    w.k_norm = F(o.k_norm);
    w.qkv_bias = F(o.qkv_bias);
    w.o_bias = F(o.o_bias);
    w.wqkv = Bf(o.wqkv);
    w.wo = Bf(o.wo);
    w.gu = Bf(o.gu);
    w.down = Bf(o.down);
    w.router = Bf(o.router);
    w.e_gu = Bf(o.e_gu);
    w.e_down = Bf(o.e_down);
    w.shared_gu = Bf(o.shared_gu);
    w.shared_down = Bf(o.shared_down);
  }
  const size_t pool_bytes =
      static_cast<size_t>(L * kv.num_blocks * kv.block_size * Hkv * D) * 2;
  im.pool_blocks = kv.num_blocks;
  RLVR_ASSIGN_OR_RETURN(im.k_pool, Alloc(pool_bytes, "KV pool (keys)"));
  RLVR_ASSIGN_OR_RETURN(im.v_pool, Alloc(pool_bytes, "KV pool (values)"));
  return m;
}

namespace {

// Makes `im` hold scratch for `rows` token rows (reallocating when it has fewer).
absl::Status EnsureScratch(const ModelConfig& c, const KvBlockTable& table, int64_t rows,
                           CudaCausalLm::Impl* im) {
  if (rows <= im->rows) return absl::OkStatus();
  const size_t N = static_cast<size_t>(rows);
  const size_t C = c.hidden_size, V = c.vocab_size, H = c.num_attention_heads,
               Hkv = c.num_key_value_heads, D = c.head_dim;
  const size_t QKV = (H + 2 * Hkv) * D;
  size_t I = 0;
  bool any_moe = false;
  size_t moe_layers = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    if (c.IsMoeLayer(l)) {
      any_moe = true;
      ++moe_layers;
      I = std::max<size_t>(I, c.n_shared_experts * c.moe_intermediate_size);
    } else {
      I = std::max<size_t>(I, c.intermediate_size);
    }
  }
  const size_t E = any_moe ? c.num_experts : 0, K = any_moe ? c.num_experts_per_tok : 0,
               Ie = any_moe ? c.moe_intermediate_size : 0;
  const size_t MB = table.max_blocks_per_seq();
  const size_t head_rows =
      std::min<size_t>(N, std::max<size_t>(256, (size_t{1} << 24) / std::max<size_t>(V, 1)));
  // The split count shrinks as the batch grows, so a smaller batch may need more partials:
  // size the decode workspace for the worst batch up to `rows`.
  size_t ws = 0;
  for (int64_t b = 1; b <= rows; ++b) {
    ws = std::max(ws, cu::AttentionDecodeWorkspaceBytes(b, 1, H, D, MB, table.block_size()));
  }
  Carver cv;
  const size_t x = cv.Add(N * C * 4), hn = cv.Add(N * C * 2), qkv = cv.Add(N * QKV * 4),
               q = cv.Add(N * H * D * 2), k = cv.Add(N * Hkv * D * 2),
               v = cv.Add(N * Hkv * D * 2), o = cv.Add(N * H * D * 2), lse = cv.Add(N * H * 4),
               cs = cv.Add(N * D / 2 * 4), sn = cv.Add(N * D / 2 * 4),
               io = cv.Add((2 * N + N * MB) * 4), gu = cv.Add(N * 2 * I * 4),
               act = cv.Add(N * I * 2), rl = cv.Add(N * E * 4), pr = cv.Add(N * E * 4),
               tw = cv.Add(N * K * 4), te = cv.Add(moe_layers * N * K * 4), off = cv.Add((E + 1) * 4),
               ord = cv.Add(N * K * 4), slot = cv.Add(N * K * 4), xe = cv.Add(N * K * C * 2),
               egu = cv.Add(N * K * 2 * Ie * 2), eact = cv.Add(N * K * Ie * 2),
               ye = cv.Add(N * K * C * 2), ymoe = cv.Add(N * C * 2),
               lg = cv.Add(head_rows * V * 4), am = cv.Add(head_rows * 4), dws = cv.Add(ws);
  // The cached decode graphs point into the old scratch.
  im->DropGraphs();
  im->scratch.reset();
  im->rows = 0;
  RLVR_ASSIGN_OR_RETURN(im->scratch, Alloc(cv.size, "activations"));
  uint8_t* b = static_cast<uint8_t*>(im->scratch.get());
  im->x = reinterpret_cast<float*>(b + x);
  im->hn = reinterpret_cast<uint16_t*>(b + hn);
  im->qkv = reinterpret_cast<float*>(b + qkv);
  im->q = reinterpret_cast<uint16_t*>(b + q);
  im->k = reinterpret_cast<uint16_t*>(b + k);
  im->v = reinterpret_cast<uint16_t*>(b + v);
  im->o = reinterpret_cast<uint16_t*>(b + o);
  im->lse = reinterpret_cast<float*>(b + lse);
  im->cos = reinterpret_cast<float*>(b + cs);
  im->sin = reinterpret_cast<float*>(b + sn);
  im->io = reinterpret_cast<int32_t*>(b + io);
  im->gu = reinterpret_cast<float*>(b + gu);
  im->act = reinterpret_cast<uint16_t*>(b + act);
  im->rlogits = reinterpret_cast<float*>(b + rl);
  im->probs = reinterpret_cast<float*>(b + pr);
  im->topk_w = reinterpret_cast<float*>(b + tw);
  im->topk_e = reinterpret_cast<int32_t*>(b + te);
  im->offset = reinterpret_cast<int32_t*>(b + off);
  im->order = reinterpret_cast<int32_t*>(b + ord);
  im->slot = reinterpret_cast<int32_t*>(b + slot);
  im->xe = reinterpret_cast<uint16_t*>(b + xe);
  im->egu = reinterpret_cast<uint16_t*>(b + egu);
  im->eact = reinterpret_cast<uint16_t*>(b + eact);
  im->ye = reinterpret_cast<uint16_t*>(b + ye);
  im->ymoe = reinterpret_cast<uint16_t*>(b + ymoe);
  im->logits = reinterpret_cast<float*>(b + lg);
  im->argmax = reinterpret_cast<int32_t*>(b + am);
  im->decode_ws = b + dws;
  im->decode_ws_bytes = ws;
  im->head_rows = static_cast<int64_t>(head_rows);
  im->rows = rows;
  return absl::OkStatus();
}

// How the attention of one run reads its keys and values.
struct AttnMode {
  bool decode = false;   // paged decode (one new token per row) instead of flash over [B, T]
  bool write_kv = false;  // store k, v into the pool at `positions` through the block table
  int64_t B = 0, T = 0;  // rows = B * T; decode: T = 1
};

// Dense SwiGLU MLP of width I on hn [N, C], added to x: x += bf16(silu(g) u) Wdown^T.
absl::Status DenseMlp(const CudaCausalLm::Impl& im, const uint16_t* w_gu, const uint16_t* w_down,
                      int64_t N, int64_t C, int64_t I) {
  RLVR_RETURN_IF_ERROR(cu::GemmBf16(false, true, N, 2 * I, C, 1.f, im.hn, C, w_gu, C, 0.f, im.gu,
                                    2 * I, im.stream),
                       "mlp gate|up");
  RLVR_RETURN_IF_ERROR(cu::SwigluPairedF32ToBf16(im.gu, N, I, im.act, im.stream));
  return cu::GemmBf16(false, true, N, C, I, 1.f, im.act, I, w_down, I, 1.f, im.x, C, im.stream);
}

}  // namespace

// Runs every layer on the rows whose ids and positions are in im.io (ids [N], positions [N],
// block table [B, max_blocks] after them), leaving the residual stream in im.x. Enqueues only
// (on im.stream; no copy, no synchronization), and every launch's arguments depend only on
// the config, the pool's sizes, the scratch addresses and mode.B / mode.T, never on the
// contents of im.io: a decode step captured as a CUDA graph is valid for every length and
// block table. (AttentionDecodeBf16's split count depends on B * H and the capacity
// max_blocks * block_size, not on the lengths; it reads positions from im.io on the device.)
static absl::Status RunLayers(const ModelConfig& c, const KvBlockTable& table,
                              const CudaCausalLm::Impl& im, const AttnMode& mode) {
  const int64_t N = mode.B * mode.T;
  const int64_t C = c.hidden_size, V = c.vocab_size, H = c.num_attention_heads,
                Hkv = c.num_key_value_heads, D = c.head_dim;
  const int64_t QKV = (H + 2 * Hkv) * D;
  const double eps = c.rms_norm_eps, scale = 1.0 / std::sqrt(static_cast<double>(D));
  const int32_t* ids = im.io;
  const int32_t* positions = im.io + N;
  const int32_t* block_table = im.io + 2 * N;
  const cu::Stream s = im.stream;
  RLVR_RETURN_IF_ERROR(cu::BuildRopeTableF32(positions, N, D, c.rope_theta, im.cos, im.sin, s));
  RLVR_RETURN_IF_ERROR(cu::EmbeddingForwardF32(ids, im.embed, N, V, C, im.x, s));
  int64_t moe_index = 0;  // MoE layers so far: layer m's top-k goes to topk_e + m * N * K
  for (size_t l = 0; l < im.layers.size(); ++l) {
    const CudaCausalLm::Impl::Layer& w = im.layers[l];
    RLVR_RETURN_IF_ERROR(cu::RmsNormF32ToBf16(im.x, w.in_norm, N, C, eps, im.hn, nullptr, s));
    RLVR_RETURN_IF_ERROR(
        cu::GemmBf16(false, true, N, QKV, C, 1.f, im.hn, C, w.wqkv, C, 0.f, im.qkv, QKV, s),
        "layer ", l, " qkv");
    RLVR_RETURN_IF_ERROR(cu::QkvPrepare(im.qkv, w.qkv_bias, w.q_norm, w.k_norm, eps, im.cos,
                                        im.sin, N, H, Hkv, D, im.q, im.k, im.v, s));
    if (mode.write_kv || mode.decode) {
      const int64_t layer_elems = im.pool_blocks * table.block_size() * Hkv * D;
      cu::PagedKv<uint16_t> pool;
      pool.k = static_cast<uint16_t*>(im.k_pool.get()) + static_cast<int64_t>(l) * layer_elems;
      pool.v = static_cast<uint16_t*>(im.v_pool.get()) + static_cast<int64_t>(l) * layer_elems;
      pool.num_blocks = im.pool_blocks;
      pool.block_size = table.block_size();
      pool.block_stride = table.block_size() * Hkv * D;
      pool.block_table = block_table;
      pool.max_blocks = table.max_blocks_per_seq();
      RLVR_RETURN_IF_ERROR(
          cu::KvCacheWriteBf16(im.k, im.v, positions, mode.B, mode.T, Hkv, D, pool, s), "layer ",
          l, " KV write");
      if (mode.decode) {
        cu::PagedKv<const uint16_t> rd{pool.k,          pool.v,          pool.num_blocks,
                                       pool.block_size, pool.block_stride, pool.block_table,
                                       pool.max_blocks};
        RLVR_RETURN_IF_ERROR(cu::AttentionDecodeBf16(im.q, positions, mode.B, 1, H, Hkv, D, scale,
                                                     rd, im.o, im.decode_ws, im.decode_ws_bytes,
                                                     s),
                             "layer ", l, " decode attention");
      }
    }
    if (!mode.decode) {
      RLVR_RETURN_IF_ERROR(cu::AttentionForwardBf16(im.q, im.k, im.v, mode.B, mode.T, H, Hkv, D,
                                                    scale, im.o, im.lse, /*seg_start=*/nullptr,
                                                    s),
                           "layer ", l, " attention");
    }
    RLVR_RETURN_IF_ERROR(
        cu::GemmBf16(false, true, N, C, H * D, 1.f, im.o, H * D, w.wo, H * D, 1.f, im.x, C, s),
        "layer ", l, " o_proj");
    if (w.o_bias != nullptr) RLVR_RETURN_IF_ERROR(cu::AddRowBiasF32(w.o_bias, N, C, im.x, s));
    RLVR_RETURN_IF_ERROR(cu::RmsNormF32ToBf16(im.x, w.post_norm, N, C, eps, im.hn, nullptr, s));
    if (!w.moe) {
      RLVR_RETURN_IF_ERROR(DenseMlp(im, w.gu, w.down, N, C, c.intermediate_size), "layer ", l,
                           " mlp");
      continue;
    }
    const int64_t E = c.num_experts, K = c.num_experts_per_tok, Ie = c.moe_intermediate_size;
    int32_t* topk_e = im.topk_e + moe_index * N * K;
    ++moe_index;
    RLVR_RETURN_IF_ERROR(
        cu::GemmBf16(false, true, N, E, C, 1.f, im.hn, C, w.router, C, 0.f, im.rlogits, E, s),
        "layer ", l, " router");
    RLVR_RETURN_IF_ERROR(cu::MoeRouterTopK(im.rlogits, N, E, K, c.norm_topk_prob,
                                           c.routed_scaling_factor, im.probs, topk_e, im.topk_w,
                                           s));
    RLVR_RETURN_IF_ERROR(cu::MoePermute(topk_e, N, K, E, im.offset, im.order, im.slot, s));
    RLVR_RETURN_IF_ERROR(cu::MoeGatherRowsBf16(im.hn, im.order, N, K, C, im.xe, s));
    RLVR_RETURN_IF_ERROR(
        cu::MoeGroupedGemmBf16(im.xe, w.e_gu, im.offset, E, N * K, 2 * Ie, C, false, im.egu, s),
        "layer ", l, " experts gate|up");
    RLVR_RETURN_IF_ERROR(cu::SwigluPairedBf16(im.egu, N * K, Ie, im.eact, s));
    RLVR_RETURN_IF_ERROR(
        cu::MoeGroupedGemmBf16(im.eact, w.e_down, im.offset, E, N * K, C, Ie, false, im.ye, s),
        "layer ", l, " experts down");
    RLVR_RETURN_IF_ERROR(cu::MoeCombineBf16(im.ye, im.topk_w, im.slot, N, K, C, im.ymoe, s));
    RLVR_RETURN_IF_ERROR(cu::AddBf16ToF32(im.ymoe, N * C, im.x, s));
    if (w.shared_gu != nullptr) {
      RLVR_RETURN_IF_ERROR(
          DenseMlp(im, w.shared_gu, w.shared_down, N, C, c.n_shared_experts * Ie), "layer ", l,
          " shared expert");
    }
  }
  return absl::OkStatus();
}

// Enqueues the upload of im.host_io (ids, positions, block table) to im.io in one copy on the
// model's stream. host_io must not change until the stream is synchronized: every public call
// ends with a synchronization (also when it fails after this point, see Drain).
static absl::Status UploadIo(CudaCausalLm::Impl* im) {
  return cu::CopyToDeviceAsync(im->io, im->host_io.data(), im->host_io.size() * sizeof(int32_t),
                               im->stream);
}

// `st`, after waiting for the work already enqueued (so that no copy still reads host_io and
// the next call starts on an idle stream).
static absl::Status Drain(const CudaCausalLm::Impl& im, absl::Status st) {
  if (!st.ok()) (void)cu::Synchronize(im.stream);
  return st;
}

// Router replay: when recording, copies the last run's top-k of every MoE layer ([moe_layers,
// rows, K] on the device, see Impl) to the host in one copy, waits, and reorders it into
// im->experts [rows, moe_layers, K]. No-op (experts cleared) when not recording.
static absl::Status FetchExperts(const ModelConfig& c, CudaCausalLm::Impl* im, int64_t rows) {
  im->experts.clear();
  if (!im->record_experts || im->moe_layers == 0) return absl::OkStatus();
  const int64_t ML = im->moe_layers, K = c.num_experts_per_tok;
  im->experts_dev_order.resize(static_cast<size_t>(ML * rows * K));
  RLVR_RETURN_IF_ERROR(
      Drain(*im, cu::CopyToHostAsync(im->experts_dev_order.data(), im->topk_e,
                                     im->experts_dev_order.size() * sizeof(int32_t), im->stream)),
      "recorded experts");
  RLVR_RETURN_IF_ERROR(cu::Synchronize(im->stream), "recorded experts");
  im->experts.resize(im->experts_dev_order.size());
  for (int64_t m = 0; m < ML; ++m) {
    for (int64_t r = 0; r < rows; ++r) {
      std::copy_n(im->experts_dev_order.data() + (m * rows + r) * K, K,
                  im->experts.data() + (r * ML + m) * K);
    }
  }
  return absl::OkStatus();
}

// One decode step (`step` enqueues it on im->stream) through the CUDA graph cached for `key`
// (batch size, greedy). The first run of a key is eager: it makes cuBLASLt choose and cache its
// algorithms and allocate the stream's workspace, and loads the kernels' modules, none of which
// may happen while capturing. The second run captures `step` (which then runs nothing) and
// launches the graph; later runs only launch it. The caller uploaded im.io before.
static absl::Status RunDecodeGraph(CudaCausalLm::Impl* im, std::pair<int64_t, bool> key,
                                   const std::function<absl::Status()>& step) {
  CudaCausalLm::Impl::DecodeGraph& g = im->graphs[key];
  if (g.exec == nullptr) {
    if (!g.warm) {
      RLVR_RETURN_IF_ERROR(step());
      g.warm = true;
      return absl::OkStatus();
    }
    RLVR_ASSIGN_OR_RETURN(g.exec, cu::CaptureGraph(im->stream, step),
                          "capturing the decode step of batch ", key.first, " as a CUDA graph");
    ++im->graph_captures;
  }
  RLVR_RETURN_IF_ERROR(cu::LaunchGraph(g.exec, im->stream), "decode step of batch ", key.first);
  ++im->graph_launches;
  return absl::OkStatus();
}

absl::Status CudaCausalLm::HeadCompute(int64_t first_row, int64_t n, bool argmax) {
  Impl& im = *impl_;
  const int64_t C = config_.hidden_size, V = config_.vocab_size;
  RLVR_RETURN_IF_ERROR(cu::RmsNormF32ToBf16(im.x + first_row * C, im.final_norm, n, C,
                                            config_.rms_norm_eps, im.hn, nullptr, im.stream));
  RLVR_RETURN_IF_ERROR(cu::GemmBf16(false, true, n, V, C, 1.f, im.hn, C, im.lm_head, C, 0.f,
                                    im.logits, V, im.stream),
                       "lm_head");
  if (argmax) {
    RLVR_RETURN_IF_ERROR(cu::ArgmaxRows(im.logits, n, V, active_vocab_, im.argmax, im.stream));
  }
  return absl::OkStatus();
}

absl::Status CudaCausalLm::HeadFetch(int64_t n, float* logits_host, int32_t* argmax_host) {
  Impl& im = *impl_;
  const int64_t V = config_.vocab_size;
  if (argmax_host != nullptr) {
    RLVR_RETURN_IF_ERROR(Drain(im, cu::CopyToHostAsync(argmax_host, im.argmax,
                                                       static_cast<size_t>(n) * sizeof(int32_t),
                                                       im.stream)),
                         "greedy ids");
  }
  if (logits_host != nullptr) {
    RLVR_RETURN_IF_ERROR(
        Drain(im, cu::CopyToHostAsync(logits_host, im.logits,
                                      static_cast<size_t>(n * V) * sizeof(float), im.stream)),
        "logits");
  }
  // Also reports an error raised inside any kernel of the call.
  RLVR_RETURN_IF_ERROR(cu::Synchronize(im.stream));
  if (logits_host != nullptr && active_vocab_ < V) {
    for (int64_t r = 0; r < n; ++r) {
      std::fill(logits_host + r * V + active_vocab_, logits_host + (r + 1) * V,
                -std::numeric_limits<float>::infinity());
    }
  }
  return absl::OkStatus();
}

absl::Status CudaCausalLm::Head(int64_t first_row, int64_t R, float* logits_host,
                                int32_t* argmax_host) {
  Impl& im = *impl_;
  const int64_t V = config_.vocab_size;
  for (int64_t r0 = 0; r0 < R; r0 += im.head_rows) {
    const int64_t n = std::min(im.head_rows, R - r0);
    RLVR_RETURN_IF_ERROR(Drain(im, HeadCompute(first_row + r0, n, argmax_host != nullptr)));
    RLVR_RETURN_IF_ERROR(HeadFetch(n, logits_host == nullptr ? nullptr : logits_host + r0 * V,
                                   argmax_host == nullptr ? nullptr : argmax_host + r0));
  }
  return absl::OkStatus();
}

absl::Status CudaCausalLm::Forward(const int32_t* ids, int64_t B, int64_t T,
                                   float* logits_host) {
  if (B <= 0 || T <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("Forward: empty batch [", B, ", ", T, "]"));
  }
  RLVR_RETURN_IF_ERROR(CheckIds(config_, ids, B * T, "Forward"));
  if (logits_host == nullptr) return absl::InvalidArgumentError("Forward: null logits_host");
  const int64_t N = B * T;
  Impl& im = *impl_;
  im.experts.clear();
  RLVR_RETURN_IF_ERROR(EnsureScratch(config_, table_, N, &im));
  im.host_io.assign(ids, ids + N);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) im.host_io.push_back(static_cast<int32_t>(t));
  }
  RLVR_RETURN_IF_ERROR(Drain(im, UploadIo(&im)), "Forward");
  RLVR_RETURN_IF_ERROR(Drain(im, RunLayers(config_, table_, im, {.decode = false,
                                                                 .write_kv = false, .B = B,
                                                                 .T = T})),
                       "Forward");
  return Head(0, N, logits_host, nullptr);
}

absl::Status CudaCausalLm::Prefill(int64_t seq, const int32_t* ids, int64_t n,
                                   float* last_logits_host) {
  RLVR_RETURN_IF_ERROR(CheckIds(config_, ids, n, "Prefill"));
  if (seq < 0 || seq >= table_.max_seqs()) {
    return absl::InvalidArgumentError(absl::StrCat("Prefill: sequence slot ", seq,
                                                   " is outside [0, max_seqs=",
                                                   table_.max_seqs(), ")"));
  }
  if (n > table_.capacity()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Prefill: position ", n - 1, " of sequence ", seq, " is past the KV pool's capacity of ",
        table_.capacity(), " positions per sequence"));
  }
  table_.Release(seq);
  impl_->experts.clear();
  const int64_t seqs[1] = {seq}, lengths[1] = {n};
  RLVR_RETURN_IF_ERROR(table_.Reserve(seqs, lengths), "Prefill");
  Impl& im = *impl_;
  RLVR_RETURN_IF_ERROR(EnsureScratch(config_, table_, n, &im));
  im.host_io.assign(ids, ids + n);
  for (int64_t t = 0; t < n; ++t) im.host_io.push_back(static_cast<int32_t>(t));
  table_.AppendTableRow(seq, &im.host_io);
  absl::Status st = UploadIo(&im);
  if (st.ok()) {
    st = RunLayers(config_, table_, im, {.decode = false, .write_kv = true, .B = 1, .T = n});
  }
  // Waits in every case: the call is synchronous, and a fault inside a kernel shows here.
  const absl::Status done = cu::Synchronize(im.stream);
  if (st.ok()) st = done;
  if (!st.ok()) {
    table_.Release(seq);
    return absl::Status(st.code(), absl::StrCat("Prefill: ", st.message()));
  }
  table_.set_length(seq, n);
  if (last_logits_host != nullptr) RLVR_RETURN_IF_ERROR(Head(n - 1, 1, last_logits_host, nullptr));
  return FetchExperts(config_, &im, n);
}

absl::Status CudaCausalLm::Decode(const int64_t* seqs, const int32_t* ids, int64_t B,
                                  float* logits_host, int32_t* argmax_host) {
  RLVR_RETURN_IF_ERROR(CheckIds(config_, ids, B, "DecodeStep"));
  if (seqs == nullptr) return absl::InvalidArgumentError("DecodeStep: null seqs");
  std::vector<int64_t> lengths(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    if (seqs[b] < 0 || seqs[b] >= table_.max_seqs()) {
      return absl::InvalidArgumentError(absl::StrCat("DecodeStep: seqs[", b, "] = ", seqs[b],
                                                     " is outside [0, max_seqs=",
                                                     table_.max_seqs(), ")"));
    }
    lengths[b] = table_.length(seqs[b]) + 1;
  }
  RLVR_RETURN_IF_ERROR(table_.Reserve(std::span<const int64_t>(seqs, static_cast<size_t>(B)),
                                      lengths),
                       "DecodeStep");
  Impl& im = *impl_;
  im.experts.clear();
  RLVR_RETURN_IF_ERROR(EnsureScratch(config_, table_, B, &im));  // may drop the graphs
  im.host_io.assign(ids, ids + B);
  for (int64_t b = 0; b < B; ++b) im.host_io.push_back(static_cast<int32_t>(lengths[b] - 1));
  for (int64_t b = 0; b < B; ++b) table_.AppendTableRow(seqs[b], &im.host_io);
  // Not part of the graph: a plain copy into the fixed im.io, ordered before the step.
  RLVR_RETURN_IF_ERROR(Drain(im, UploadIo(&im)), "DecodeStep");
  const bool greedy = argmax_host != nullptr;
  // The LM head belongs to the step (and to its graph) when one pass of it covers the batch;
  // otherwise Head runs it eagerly in chunks of head_rows after the layers.
  const bool head_in_step = B <= im.head_rows;
  const std::function<absl::Status()> step = [&]() -> absl::Status {
    RLVR_RETURN_IF_ERROR(
        RunLayers(config_, table_, im, {.decode = true, .write_kv = true, .B = B, .T = 1}));
    if (!head_in_step) return absl::OkStatus();
    return HeadCompute(0, B, greedy);
  };
  RLVR_RETURN_IF_ERROR(
      Drain(im, im.use_graphs ? RunDecodeGraph(&im, {B, greedy}, step) : step()),
      "DecodeStep");
  for (int64_t b = 0; b < B; ++b) table_.set_length(seqs[b], lengths[b]);
  if (head_in_step) {
    RLVR_RETURN_IF_ERROR(HeadFetch(B, logits_host, argmax_host));
  } else {
    RLVR_RETURN_IF_ERROR(Head(0, B, logits_host, argmax_host));
  }
  return FetchExperts(config_, &im, B);
}

absl::Status CudaCausalLm::DecodeStep(const int64_t* seqs, const int32_t* ids, int64_t B,
                                      float* last_logits_host) {
  return Decode(seqs, ids, B, last_logits_host, nullptr);
}

absl::Status CudaCausalLm::DecodeStepGreedy(const int64_t* seqs, const int32_t* ids, int64_t B,
                                            int32_t* next_host) {
  if (next_host == nullptr) return absl::InvalidArgumentError("DecodeStepGreedy: null next_host");
  return Decode(seqs, ids, B, nullptr, next_host);
}

int64_t CudaCausalLm::graph_captures() const { return impl_->graph_captures; }
int64_t CudaCausalLm::num_moe_layers() const { return impl_->moe_layers; }
const std::vector<int32_t>& CudaCausalLm::recorded_experts() const { return impl_->experts; }
int64_t CudaCausalLm::graph_launches() const { return impl_->graph_launches; }

absl::StatusOr<std::vector<int32_t>> CudaCausalLm::GreedyGenerate(
    const std::vector<int32_t>& prompt, int64_t max_new, int64_t seq) {
  if (max_new < 0) {
    return absl::InvalidArgumentError(absl::StrCat("GreedyGenerate: max_new = ", max_new));
  }
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (n + max_new - 1 > table_.capacity()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GreedyGenerate: prompt ", n, " + ", max_new, " new tokens need position ",
        n + max_new - 2, ", past the KV pool's capacity of ", table_.capacity(),
        " positions per sequence"));
  }
  RLVR_RETURN_IF_ERROR(Prefill(seq, prompt.data(), n, nullptr));
  std::vector<int32_t> out;
  if (max_new == 0) return out;
  int32_t next = 0;
  RLVR_RETURN_IF_ERROR(Head(n - 1, 1, nullptr, &next));
  out.push_back(next);
  for (int64_t i = 1; i < max_new; ++i) {
    RLVR_RETURN_IF_ERROR(DecodeStepGreedy(&seq, &next, 1, &next));
    out.push_back(next);
  }
  return out;
}

void CudaCausalLm::ReleaseSequence(int64_t seq) { table_.Release(seq); }

}  // namespace rlvr::policy
