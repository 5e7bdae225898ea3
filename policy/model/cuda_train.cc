#include "policy/model/cuda_train.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/dense.h"
#include "kernels/cuda/model_glue.h"
#include "kernels/cuda/moe.h"
#include "policy/layers/moe.h"
#include "policy/model/cuda_model.h"

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

// Typed pieces of one device allocation: Add() reserves, Bind() resolves after the allocation.
class Arena {
 public:
  template <typename T>
  void Add(T** ptr, size_t count) {
    pieces_.push_back({reinterpret_cast<void**>(ptr), size_});
    size_ = AlignUp(size_ + count * sizeof(T));
  }
  size_t size() const { return size_; }
  void Bind(void* base) {
    for (const Piece& p : pieces_) *p.ptr = static_cast<uint8_t*>(base) + p.offset;
  }

 private:
  struct Piece {
    void** ptr;
    size_t offset;
  };
  std::vector<Piece> pieces_;
  size_t size_ = 0;
};

constexpr int64_t kNoParam = -1;

}  // namespace

struct CudaTrainModel::Impl {
  // Element offsets into the parameter / gradient / bf16 shadow buffers (kNoParam: absent).
  struct LayerParams {
    bool moe = false;
    int64_t in_norm = kNoParam, post_norm = kNoParam;
    int64_t wq = kNoParam, wk = kNoParam, wv = kNoParam, wo = kNoParam;
    int64_t bq = kNoParam, bk = kNoParam, bv = kNoParam, bo = kNoParam;
    int64_t q_norm = kNoParam, k_norm = kNoParam;
    int64_t gate = kNoParam, up = kNoParam, down = kNoParam;  // dense, or stacked experts
    int64_t router = kNoParam;
    int64_t s_gate = kNoParam, s_up = kNoParam, s_down = kNoParam;  // shared expert
    int64_t moe_index = -1;  // index among the MoE layers
  };
  // Activations of one layer kept for the backward.
  struct LayerActs {
    float* x_mid = nullptr;     // [N, C] residual after attention
    float* rstd1 = nullptr;     // [N]
    float* rstd2 = nullptr;     // [N]
    uint16_t* hn1 = nullptr;    // [N, C] bf16 input norm output
    uint16_t* hn2 = nullptr;    // [N, C] bf16 post-attention norm output
    float* qkv = nullptr;       // [N, QKV] projection output (no bias)
    uint16_t *q = nullptr, *k = nullptr, *v = nullptr;  // after QkvPrepare
    uint16_t* o = nullptr;      // [N, H D] attention output
    float* lse = nullptr;       // [B, H, T]
    float* gu = nullptr;        // [N, 2 I] dense gate|up (fp32)
    uint16_t* act = nullptr;    // [N, I]
    // MoE
    float* probs = nullptr;     // [N, E]
    int32_t* topk_e = nullptr;  // [N, K]
    float* topk_w = nullptr;    // [N, K]
    int32_t *offset = nullptr, *order = nullptr, *slot = nullptr;
    uint16_t *xe = nullptr, *eg = nullptr, *eu = nullptr, *eact = nullptr, *ye = nullptr;
    float* sgu = nullptr;       // [N, 2 Is] shared expert
    uint16_t* sact = nullptr;   // [N, Is]
  };

  std::vector<LayerParams> lp;
  int64_t embed = kNoParam, final_norm = kNoParam, lm_head = kNoParam;
  std::vector<ParamInfo> params;
  int64_t active_vocab = 0;
  int64_t moe_layers = 0;

  DevicePtr param_mem;  // fp32 params | fp32 grads | m | v | bf16 shadow
  float *p32 = nullptr, *g32 = nullptr, *m32 = nullptr, *v32 = nullptr;
  uint16_t* p16 = nullptr;
  std::unique_ptr<cu::AdamWMultiTensor> adamw;

  DevicePtr act_mem;
  int64_t capacity = 0;   // tokens the activations are sized for
  int64_t act_bytes = 0;
  std::vector<float*> x;  // [L + 1] residual stream entering each layer, then the trunk output
  std::vector<LayerActs> acts;
  float* rstd_f = nullptr;
  uint16_t* hf = nullptr;  // [N, C] final norm output (bf16)
  int32_t *ids = nullptr, *positions = nullptr, *seg_start = nullptr, *targets = nullptr;
  float *cos = nullptr, *sin = nullptr;
  float* qkv_bias = nullptr;  // [L, QKV] fused q|k|v biases (attention_bias)
  float *lse_h = nullptr, *logprob = nullptr, *entropy = nullptr, *dlogprob = nullptr,
        *dentropy = nullptr;
  float* logits = nullptr;       // [head_rows, V]
  uint16_t* dlogits = nullptr;   // [head_rows, V]
  float* rlogits = nullptr;      // [N, E] router logits (forward), their gradient (backward)
  uint16_t* drlogits = nullptr;  // [N, E] bf16
  uint16_t* ymoe = nullptr;      // [N, C]
  int64_t* counts = nullptr;     // [moe_layers, E]
  double* prob_sums = nullptr;   // [moe_layers, E]
  double* aux_coef = nullptr;    // [E]
  int32_t* forced = nullptr;     // [moe_layers, N, K] replayed experts (router replay)
  // Backward scratch.
  float *dx = nullptr, *dh = nullptr;
  uint16_t* dxb = nullptr;
  uint16_t* d_o = nullptr;
  uint16_t *dq = nullptr, *dk = nullptr, *dv = nullptr;
  float* dqkv = nullptr;
  uint16_t* dqkvb = nullptr;
  float* dnorm = nullptr;  // [N, 2 D]
  float* dact = nullptr;   // [N, max I]
  uint16_t* dgu = nullptr; // [N, 2 max I]
  float* dweights = nullptr;  // [N, K]
  uint16_t *dye = nullptr, *deact = nullptr, *deg = nullptr, *deu = nullptr, *dxe = nullptr;
  float* rms_ws = nullptr;
  void* attn_ws = nullptr;
  size_t attn_ws_bytes = 0;

  // Host state of the last Forward.
  int64_t B = 0, T = 0, N = 0;
  bool packed = false;
  bool have_logprobs = false;
  std::vector<int32_t> host_targets;  // as given (negative: skipped)
  std::vector<std::vector<int64_t>> host_counts;
  std::vector<std::vector<double>> host_prob_sums;

  const uint16_t* W16(int64_t off) const { return off < 0 ? nullptr : p16 + off; }
  const float* W32(int64_t off) const { return off < 0 ? nullptr : p32 + off; }
  float* G(int64_t off) const { return off < 0 ? nullptr : g32 + off; }
  int64_t LmHead() const { return lm_head >= 0 ? lm_head : embed; }
};

CudaTrainModel::CudaTrainModel(const ModelConfig& config, const CudaTrainOptions& options)
    : config_(config), options_(options), impl_(std::make_unique<Impl>()) {}

CudaTrainModel::~CudaTrainModel() = default;

absl::Status CudaTrainModel::CheckSupported(const ModelConfig& config) {
  RLVR_RETURN_IF_ERROR(CudaCausalLm::CheckSupported(config), "CUDA training");
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CudaTrainModel>> CudaTrainModel::Create(
    const CausalLM<float>& model, const CudaTrainOptions& options) {
  const ModelConfig& c = model.config();
  RLVR_RETURN_IF_ERROR(CheckSupported(c));
  if (options.max_tokens <= 0 || options.head_rows <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA training: max_tokens (", options.max_tokens, ") and head_rows (",
                     options.head_rows, ") must be positive"));
  }
  if (!cu::BuiltWithCuda()) {
    return absl::UnimplementedError(
        "CUDA training: built without CUDA (configure -DRLVR_CUDA=ON)");
  }
  RLVR_ASSIGN_OR_RETURN(int devices, cu::DeviceCount(), "CUDA training");
  if (devices <= 0) {
    return absl::FailedPreconditionError("CUDA training: no CUDA device is visible");
  }
  std::unique_ptr<CudaTrainModel> m(new CudaTrainModel(c, options));
  Impl& im = *m->impl_;
  im.params = model.params();
  im.active_vocab = model.active_vocab();
  m->num_params_ = model.num_param_elements();
  auto off = [&](const std::string& name) -> int64_t {
    const ParamInfo* p = model.FindParam(name);
    return p == nullptr ? kNoParam : p->offset;
  };
  auto need = [&](const std::string& name) -> absl::StatusOr<int64_t> {
    const int64_t o = off(name);
    if (o < 0) return absl::InternalError(absl::StrCat("CUDA training: no parameter ", name));
    return o;
  };
  const int64_t L = c.num_hidden_layers;
  RLVR_ASSIGN_OR_RETURN(im.embed, need("model.embed_tokens.weight"));
  RLVR_ASSIGN_OR_RETURN(im.final_norm, need("model.norm.weight"));
  if (!c.tie_word_embeddings) {
    RLVR_ASSIGN_OR_RETURN(im.lm_head, need("lm_head.weight"));
  }
  im.lp.resize(static_cast<size_t>(L));
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    Impl::LayerParams& w = im.lp[l];
    RLVR_ASSIGN_OR_RETURN(w.in_norm, need(p + "input_layernorm.weight"));
    RLVR_ASSIGN_OR_RETURN(w.post_norm, need(p + "post_attention_layernorm.weight"));
    RLVR_ASSIGN_OR_RETURN(w.wq, need(p + "self_attn.q_proj.weight"));
    RLVR_ASSIGN_OR_RETURN(w.wk, need(p + "self_attn.k_proj.weight"));
    RLVR_ASSIGN_OR_RETURN(w.wv, need(p + "self_attn.v_proj.weight"));
    RLVR_ASSIGN_OR_RETURN(w.wo, need(p + "self_attn.o_proj.weight"));
    if (c.attention_bias) {
      RLVR_ASSIGN_OR_RETURN(w.bq, need(p + "self_attn.q_proj.bias"));
      RLVR_ASSIGN_OR_RETURN(w.bk, need(p + "self_attn.k_proj.bias"));
      RLVR_ASSIGN_OR_RETURN(w.bv, need(p + "self_attn.v_proj.bias"));
    }
    w.bo = off(p + "self_attn.o_proj.bias");
    if (c.qk_norm) {
      RLVR_ASSIGN_OR_RETURN(w.q_norm, need(p + "self_attn.q_norm.weight"));
      RLVR_ASSIGN_OR_RETURN(w.k_norm, need(p + "self_attn.k_norm.weight"));
    }
    w.moe = c.IsMoeLayer(l);
    if (w.moe) {
      w.moe_index = im.moe_layers++;
      RLVR_ASSIGN_OR_RETURN(w.router, need(p + "mlp.gate.weight"));
      // Stacked in the CPU layout: [E, Ie, C] gate, [E, Ie, C] up, [E, C, Ie] down.
      RLVR_ASSIGN_OR_RETURN(w.gate, need(p + "mlp.experts.0.gate_proj.weight"));
      RLVR_ASSIGN_OR_RETURN(w.up, need(p + "mlp.experts.0.up_proj.weight"));
      RLVR_ASSIGN_OR_RETURN(w.down, need(p + "mlp.experts.0.down_proj.weight"));
      if (c.n_shared_experts > 0) {
        RLVR_ASSIGN_OR_RETURN(w.s_gate, need(p + "mlp.shared_experts.gate_proj.weight"));
        RLVR_ASSIGN_OR_RETURN(w.s_up, need(p + "mlp.shared_experts.up_proj.weight"));
        RLVR_ASSIGN_OR_RETURN(w.s_down, need(p + "mlp.shared_experts.down_proj.weight"));
      }
    } else {
      RLVR_ASSIGN_OR_RETURN(w.gate, need(p + "mlp.gate_proj.weight"));
      RLVR_ASSIGN_OR_RETURN(w.up, need(p + "mlp.up_proj.weight"));
      RLVR_ASSIGN_OR_RETURN(w.down, need(p + "mlp.down_proj.weight"));
    }
  }

  // Parameters, gradients, AdamW moments (fp32) and the bf16 shadow.
  const size_t P = static_cast<size_t>(m->num_params_);
  {
    Arena a;
    a.Add(&im.p32, P);
    a.Add(&im.g32, P);
    a.Add(&im.m32, P);
    a.Add(&im.v32, P);
    a.Add(&im.p16, P);
    RLVR_ASSIGN_OR_RETURN(im.param_mem, Alloc(a.size(), "parameters, gradients, AdamW state"));
    a.Bind(im.param_mem.get());
    m->param_bytes_ = static_cast<int64_t>(a.size());
    RLVR_RETURN_IF_ERROR(cu::Memset0(im.param_mem.get(), a.size()), "CUDA training: zero state");
  }
  RLVR_RETURN_IF_ERROR(m->UploadParams(model));
  std::vector<cu::AdamWTensor> tensors;
  for (const ParamInfo& p : im.params) {
    if (!p.trainable) continue;
    tensors.push_back({.param = im.p32 + p.offset,
                       .grad = im.g32 + p.offset,
                       .exp_avg = im.m32 + p.offset,
                       .exp_avg_sq = im.v32 + p.offset,
                       .param_bf16 = im.p16 + p.offset,
                       .numel = p.numel,
                       .decay = p.decay});
  }
  RLVR_ASSIGN_OR_RETURN(im.adamw, cu::AdamWMultiTensor::Create(tensors), "CUDA training: AdamW");

  RLVR_RETURN_IF_ERROR(m->Reserve(options.max_tokens));
  return m;
}

int64_t CudaTrainModel::device_bytes() const { return param_bytes_ + impl_->act_bytes; }

absl::Status CudaTrainModel::Reserve(int64_t max_tokens) {
  if (max_tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA training: max_tokens = ", max_tokens, " must be positive"));
  }
  Impl& im = *impl_;
  if (max_tokens <= im.capacity) return absl::OkStatus();
  const ModelConfig& c = config_;
  const int64_t L = c.num_hidden_layers;
  // The previous activations (if any) are dropped: the next call must be a Forward.
  im.N = 0;
  im.have_logprobs = false;
  const size_t N = static_cast<size_t>(max_tokens);
  const size_t C = c.hidden_size, V = c.vocab_size, H = c.num_attention_heads,
               Hkv = c.num_key_value_heads, D = c.head_dim;
  const size_t QKV = (H + 2 * Hkv) * D;
  const size_t HR = std::min<size_t>(N, static_cast<size_t>(options_.head_rows));
  size_t I = 0;  // widest dense MLP (dense layers, shared experts)
  for (int64_t l = 0; l < L; ++l) {
    I = std::max<size_t>(I, c.IsMoeLayer(l) ? c.n_shared_experts * c.moe_intermediate_size
                                            : c.intermediate_size);
  }
  const size_t E = im.moe_layers > 0 ? c.num_experts : 0;
  const size_t K = im.moe_layers > 0 ? c.num_experts_per_tok : 0;
  const size_t Ie = im.moe_layers > 0 ? c.moe_intermediate_size : 0;
  const size_t ML = static_cast<size_t>(im.moe_layers);
  Arena a;
  im.x.assign(static_cast<size_t>(L + 1), nullptr);
  for (float*& x : im.x) a.Add(&x, N * C);
  im.acts.resize(static_cast<size_t>(L));
  for (int64_t l = 0; l < L; ++l) {
    Impl::LayerActs& s = im.acts[l];
    a.Add(&s.x_mid, N * C);
    a.Add(&s.rstd1, N);
    a.Add(&s.rstd2, N);
    a.Add(&s.hn1, N * C);
    a.Add(&s.hn2, N * C);
    a.Add(&s.qkv, N * QKV);
    a.Add(&s.q, N * H * D);
    a.Add(&s.k, N * Hkv * D);
    a.Add(&s.v, N * Hkv * D);
    a.Add(&s.o, N * H * D);
    a.Add(&s.lse, N * H);
    if (!im.lp[l].moe) {
      a.Add(&s.gu, N * 2 * c.intermediate_size);
      a.Add(&s.act, N * c.intermediate_size);
      continue;
    }
    a.Add(&s.probs, N * E);
    a.Add(&s.topk_e, N * K);
    a.Add(&s.topk_w, N * K);
    a.Add(&s.offset, E + 1);
    a.Add(&s.order, N * K);
    a.Add(&s.slot, N * K);
    a.Add(&s.xe, N * K * C);
    a.Add(&s.eg, N * K * Ie);
    a.Add(&s.eu, N * K * Ie);
    a.Add(&s.eact, N * K * Ie);
    a.Add(&s.ye, N * K * C);
    if (c.n_shared_experts > 0) {
      const size_t Is = c.n_shared_experts * Ie;
      a.Add(&s.sgu, N * 2 * Is);
      a.Add(&s.sact, N * Is);
    }
  }
  a.Add(&im.rstd_f, N);
  a.Add(&im.hf, N * C);
  a.Add(&im.ids, N);
  a.Add(&im.positions, N);
  a.Add(&im.seg_start, N);
  a.Add(&im.targets, N);
  a.Add(&im.cos, N * D / 2);
  a.Add(&im.sin, N * D / 2);
  if (c.attention_bias) a.Add(&im.qkv_bias, static_cast<size_t>(L) * QKV);
  a.Add(&im.lse_h, N);
  a.Add(&im.logprob, N);
  a.Add(&im.entropy, N);
  a.Add(&im.dlogprob, N);
  a.Add(&im.dentropy, N);
  a.Add(&im.logits, HR * V);
  a.Add(&im.dlogits, HR * V);
  a.Add(&im.rlogits, N * E);
  a.Add(&im.drlogits, N * E);
  a.Add(&im.ymoe, N * C);
  a.Add(&im.counts, ML * E);
  a.Add(&im.prob_sums, ML * E);
  a.Add(&im.aux_coef, E);
  a.Add(&im.forced, ML * N * K);
  a.Add(&im.dx, N * C);
  a.Add(&im.dh, N * C);
  a.Add(&im.dxb, N * C);
  a.Add(&im.d_o, N * H * D);
  a.Add(&im.dq, N * H * D);
  a.Add(&im.dk, N * Hkv * D);
  a.Add(&im.dv, N * Hkv * D);
  a.Add(&im.dqkv, N * QKV);
  a.Add(&im.dqkvb, N * QKV);
  a.Add(&im.dnorm, N * 2 * D);
  a.Add(&im.dact, N * I);
  a.Add(&im.dgu, N * 2 * I);
  a.Add(&im.dweights, N * K);
  a.Add(&im.dye, N * K * C);
  a.Add(&im.deact, N * K * Ie);
  a.Add(&im.deg, N * K * Ie);
  a.Add(&im.deu, N * K * Ie);
  a.Add(&im.dxe, N * K * C);
  a.Add(&im.rms_ws, static_cast<size_t>(cu::RmsNormBackwardWorkspaceFloats(
                        static_cast<int64_t>(N), static_cast<int64_t>(C))));
  im.attn_ws_bytes = cu::AttentionBackwardWorkspaceBytes(1, static_cast<int64_t>(N),
                                                         static_cast<int64_t>(H));
  uint8_t* attn_ws = nullptr;
  a.Add(&attn_ws, im.attn_ws_bytes);
  im.act_mem.reset();
  im.capacity = 0;
  RLVR_ASSIGN_OR_RETURN(im.act_mem, Alloc(a.size(), "activations"));
  a.Bind(im.act_mem.get());
  im.attn_ws = attn_ws;
  im.capacity = max_tokens;
  im.act_bytes = static_cast<int64_t>(a.size());
  return absl::OkStatus();
}

absl::Status CudaTrainModel::UploadParams(const CausalLM<float>& model) {
  if (model.num_param_elements() != num_params_ ||
      model.config().ToJson() != config_.ToJson()) {
    return absl::InvalidArgumentError(
        "UploadParams: the model's config differs from the CUDA training model's");
  }
  Impl& im = *impl_;
  const size_t P = static_cast<size_t>(num_params_);
  RLVR_RETURN_IF_ERROR(cu::CopyToDevice(im.p32, model.param_data(), P * sizeof(float)),
                       "UploadParams");
  RLVR_RETURN_IF_ERROR(cu::ConvertF32ToBf16(im.p32, num_params_, im.p16), "UploadParams");
  im.active_vocab = model.active_vocab();
  return cu::Synchronize();
}

absl::Status CudaTrainModel::DownloadParams(CausalLM<float>* model) const {
  if (model == nullptr || model->num_param_elements() != num_params_ ||
      model->config().ToJson() != config_.ToJson()) {
    return absl::InvalidArgumentError(
        "DownloadParams: the model's config differs from the CUDA training model's");
  }
  return cu::CopyToHost(model->param_data(), impl_->p32,
                        static_cast<size_t>(num_params_) * sizeof(float));
}

absl::Status CudaTrainModel::DownloadGrads(float* host) const {
  if (host == nullptr) return absl::InvalidArgumentError("DownloadGrads: null output");
  return cu::CopyToHost(host, impl_->g32, static_cast<size_t>(num_params_) * sizeof(float));
}

absl::Status CudaTrainModel::DownloadOptimizerState(float* exp_avg, float* exp_avg_sq) const {
  if (exp_avg == nullptr || exp_avg_sq == nullptr) {
    return absl::InvalidArgumentError("DownloadOptimizerState: null output");
  }
  const size_t bytes = static_cast<size_t>(num_params_) * sizeof(float);
  RLVR_RETURN_IF_ERROR(cu::CopyToHost(exp_avg, impl_->m32, bytes), "DownloadOptimizerState");
  return cu::CopyToHost(exp_avg_sq, impl_->v32, bytes);
}

absl::Status CudaTrainModel::UploadOptimizerState(const float* exp_avg, const float* exp_avg_sq,
                                                  int64_t steps) {
  if (exp_avg == nullptr || exp_avg_sq == nullptr || steps < 0) {
    return absl::InvalidArgumentError("UploadOptimizerState: null input or negative step count");
  }
  const size_t bytes = static_cast<size_t>(num_params_) * sizeof(float);
  RLVR_RETURN_IF_ERROR(cu::CopyToDevice(impl_->m32, exp_avg, bytes), "UploadOptimizerState");
  RLVR_RETURN_IF_ERROR(cu::CopyToDevice(impl_->v32, exp_avg_sq, bytes), "UploadOptimizerState");
  step_ = steps;
  return absl::OkStatus();
}

absl::Status CudaTrainModel::ZeroGrads() {
  return cu::Memset0(impl_->g32, static_cast<size_t>(num_params_) * sizeof(float));
}

std::vector<MoeLayerStats> CudaTrainModel::moe_stats() const {
  std::vector<MoeLayerStats> out;
  const Impl& im = *impl_;
  if (im.N == 0) return out;
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    if (!im.lp[l].moe) continue;
    out.push_back({.layer = l, .expert_count = im.host_counts[im.lp[l].moe_index]});
  }
  return out;
}

namespace {

// y (+)= x W^T for bf16 x [N, K], W [Nout, K] (nn.Linear), fp32 y with row stride ldy.
absl::Status Linear(const uint16_t* x, int64_t ldx, const uint16_t* w, int64_t N, int64_t K,
                    int64_t Nout, float beta, float* y, int64_t ldy) {
  return cu::GemmBf16(false, true, N, Nout, K, 1.f, x, ldx, w, K, beta, y, ldy);
}
// dx (+)= dy W for bf16 dy [N, Nout] (row stride lddy), W [Nout, K]: fp32 dx [N, K].
absl::Status LinearDx(const uint16_t* dy, int64_t lddy, const uint16_t* w, int64_t N, int64_t K,
                      int64_t Nout, float beta, float* dx) {
  return cu::GemmBf16(false, false, N, K, Nout, 1.f, dy, lddy, w, K, beta, dx, K);
}
// dW [Nout, K] += dy^T x (fp32 gradient, accumulated).
absl::Status LinearDw(const uint16_t* dy, int64_t lddy, const uint16_t* x, int64_t ldx,
                      int64_t N, int64_t K, int64_t Nout, float* dw) {
  return cu::GemmBf16(true, false, Nout, K, N, 1.f, dy, lddy, x, ldx, 1.f, dw, K);
}

}  // namespace

// A dense SwiGLU MLP of width I on hn [N, C] added to y: gu = [hn Wg^T | hn Wu^T] (fp32),
// act = bf16(silu(g) u), y += act Wd^T.
static absl::Status DenseForward(const CudaTrainModel::Impl& im, int64_t gate, int64_t up,
                                 int64_t down, const uint16_t* hn, int64_t N, int64_t C,
                                 int64_t I, float* gu, uint16_t* act, float* y) {
  RLVR_RETURN_IF_ERROR(Linear(hn, C, im.W16(gate), N, C, I, 0.f, gu, 2 * I), "gate_proj");
  RLVR_RETURN_IF_ERROR(Linear(hn, C, im.W16(up), N, C, I, 0.f, gu + I, 2 * I), "up_proj");
  RLVR_RETURN_IF_ERROR(cu::SwigluPairedF32ToBf16(gu, N, I, act));
  return cu::GemmBf16(false, true, N, C, I, 1.f, act, I, im.W16(down), I, 1.f, y, C);
}

// Its backward from dyb = bf16(dy) [N, C]: weight gradients accumulate; dhn (+)= (beta).
static absl::Status DenseBackward(const CudaTrainModel::Impl& im, int64_t gate, int64_t up,
                                  int64_t down, const uint16_t* hn, const float* gu,
                                  const uint16_t* act, const uint16_t* dyb, int64_t N, int64_t C,
                                  int64_t I, float beta, float* dhn) {
  // act [N, I] -> y [N, C] through down [C, I].
  RLVR_RETURN_IF_ERROR(LinearDx(dyb, C, im.W16(down), N, I, C, 0.f, im.dact), "down_proj dx");
  RLVR_RETURN_IF_ERROR(LinearDw(dyb, C, act, I, N, I, C, im.G(down)), "down_proj dW");
  RLVR_RETURN_IF_ERROR(cu::SwigluPairedBackwardF32ToBf16(im.dact, gu, N, I, im.dgu));
  RLVR_RETURN_IF_ERROR(LinearDx(im.dgu, 2 * I, im.W16(gate), N, C, I, beta, dhn), "gate dx");
  RLVR_RETURN_IF_ERROR(LinearDx(im.dgu + I, 2 * I, im.W16(up), N, C, I, 1.f, dhn), "up dx");
  RLVR_RETURN_IF_ERROR(LinearDw(im.dgu, 2 * I, hn, C, N, C, I, im.G(gate)), "gate dW");
  return LinearDw(im.dgu + I, 2 * I, hn, C, N, C, I, im.G(up));
}

absl::Status CudaTrainModel::CheckForcedExperts(const ModelConfig& c,
                                                std::span<const int32_t* const> forced,
                                                int64_t N) {
  if (forced.empty()) return absl::OkStatus();
  const int64_t L = c.num_hidden_layers;
  if (static_cast<int64_t>(forced.size()) != L) {
    return absl::InvalidArgumentError(absl::StrCat("Forward: forced_experts has ", forced.size(),
                                                   " entries, expected ", L));
  }
  const int64_t E = c.num_experts, K = c.num_experts_per_tok;
  for (int64_t l = 0; l < L; ++l) {
    const int32_t* f = forced[l];
    if (f == nullptr) continue;
    if (!c.IsMoeLayer(l)) {
      return absl::InvalidArgumentError(
          absl::StrCat("Forward: forced_experts[", l, "] given for a dense layer"));
    }
    for (int64_t n = 0; n < N; ++n) {
      const int32_t* row = f + n * K;
      if (std::all_of(row, row + K, [](int32_t e) { return e == -1; })) continue;  // router
      for (int64_t k = 0; k < K; ++k) {
        const int32_t e = row[k];
        if (e < 0 || e >= E) {
          return absl::InvalidArgumentError(absl::StrCat("Forward: layer ", l,
                                                         ": moe: forced expert ", e,
                                                         " of token ", n, " outside [0, ", E,
                                                         ")"));
        }
        for (int64_t j = 0; j < k; ++j) {
          if (row[j] == e) {
            return absl::InvalidArgumentError(absl::StrCat(
                "Forward: layer ", l, ": moe: forced expert ", e, " repeated for token ", n));
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CudaTrainModel::Forward(const int32_t* ids, int64_t B, int64_t T,
                                     std::span<const int32_t* const> forced_experts,
                                     const int32_t* positions) {
  const ModelConfig& c = config_;
  Impl& im = *impl_;
  if (B <= 0 || T <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("Forward: empty batch [", B, ", ", T, "]"));
  }
  const int64_t N = B * T;
  if (N > im.capacity) {
    return absl::InvalidArgumentError(absl::StrCat("Forward: B*T = ", N,
                                                   " tokens is above max_tokens = ", im.capacity,
                                                   " (see Reserve)"));
  }
  RLVR_RETURN_IF_ERROR(CudaCausalLm::CheckIds(c, ids, N, "Forward"));
  // Host checks of the packing, then the device inputs: ids | positions | seg_start.
  std::vector<int32_t> io(ids, ids + N);
  io.resize(static_cast<size_t>(3 * N));
  int32_t* pos = io.data() + N;
  int32_t* seg = io.data() + 2 * N;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t i = b * T + t;
      int32_t p = static_cast<int32_t>(t);
      if (positions != nullptr) {
        p = positions[i];
        const bool ok = t == 0 ? p == 0 : (p == 0 || p == positions[i - 1] + 1);
        if (!ok) {
          return absl::InvalidArgumentError(absl::StrCat(
              "Forward: positions[", b, ", ", t, "] = ", p,
              t == 0 ? " (a row must start at position 0)"
                     : " neither restarts at 0 nor follows the previous position"));
        }
      }
      pos[i] = p;
      seg[i] = static_cast<int32_t>(t - p);
    }
  }
  // Router replay: checked, then packed [moe_layers, N, K] (-1 where the router decides) for
  // one upload; layer_forced marks the decoder layers that replay anything.
  RLVR_RETURN_IF_ERROR(CheckForcedExperts(c, forced_experts, N));
  std::vector<int32_t> forced_host;
  std::vector<char> layer_forced(static_cast<size_t>(c.num_hidden_layers), 0);
  const int64_t K_moe = c.num_experts_per_tok;
  for (size_t l = 0; l < forced_experts.size(); ++l) {
    const int32_t* f = forced_experts[l];
    if (f == nullptr) continue;
    if (forced_host.empty()) {
      forced_host.assign(static_cast<size_t>(im.moe_layers * N * K_moe), -1);
    }
    std::copy(f, f + N * K_moe, forced_host.begin() + im.lp[l].moe_index * N * K_moe);
    layer_forced[l] = 1;
  }
  im.N = 0;
  im.have_logprobs = false;
  RLVR_RETURN_IF_ERROR(cu::CopyToDevice(im.ids, io.data(), static_cast<size_t>(N) * 4),
                       "Forward");
  RLVR_RETURN_IF_ERROR(cu::CopyToDevice(im.positions, pos, static_cast<size_t>(N) * 4),
                       "Forward");
  RLVR_RETURN_IF_ERROR(cu::CopyToDevice(im.seg_start, seg, static_cast<size_t>(N) * 4),
                       "Forward");
  if (!forced_host.empty()) {
    RLVR_RETURN_IF_ERROR(
        cu::CopyToDevice(im.forced, forced_host.data(), forced_host.size() * sizeof(int32_t)),
        "Forward: forced experts");
  }
  im.packed = positions != nullptr;
  const int32_t* seg_start = im.packed ? im.seg_start : nullptr;

  const int64_t C = c.hidden_size, V = c.vocab_size, H = c.num_attention_heads,
                Hkv = c.num_key_value_heads, D = c.head_dim, L = c.num_hidden_layers;
  const int64_t HD = H * D, KD = Hkv * D, QKV = HD + 2 * KD;
  const double eps = c.rms_norm_eps, scale = 1.0 / std::sqrt(static_cast<double>(D));
  RLVR_RETURN_IF_ERROR(cu::BuildRopeTableF32(im.positions, N, D, c.rope_theta, im.cos, im.sin));
  RLVR_RETURN_IF_ERROR(cu::EmbeddingForwardF32(im.ids, im.W32(im.embed), N, V, C, im.x[0]));
  for (int64_t l = 0; l < L; ++l) {
    const Impl::LayerParams& w = im.lp[l];
    Impl::LayerActs& s = im.acts[l];
    const float* x_in = im.x[l];
    float* x_out = im.x[l + 1];
    // Attention block.
    RLVR_RETURN_IF_ERROR(
        cu::RmsNormF32ToBf16(x_in, im.W32(w.in_norm), N, C, eps, s.hn1, s.rstd1));
    RLVR_RETURN_IF_ERROR(Linear(s.hn1, C, im.W16(w.wq), N, C, HD, 0.f, s.qkv, QKV), "layer ", l,
                         " q_proj");
    RLVR_RETURN_IF_ERROR(Linear(s.hn1, C, im.W16(w.wk), N, C, KD, 0.f, s.qkv + HD, QKV),
                         "layer ", l, " k_proj");
    RLVR_RETURN_IF_ERROR(Linear(s.hn1, C, im.W16(w.wv), N, C, KD, 0.f, s.qkv + HD + KD, QKV),
                         "layer ", l, " v_proj");
    const float* bias = nullptr;
    if (w.bq >= 0) {
      float* fused = im.qkv_bias + l * QKV;
      RLVR_RETURN_IF_ERROR(cu::CopyOnDevice(fused, im.W32(w.bq), HD * 4));
      RLVR_RETURN_IF_ERROR(cu::CopyOnDevice(fused + HD, im.W32(w.bk), KD * 4));
      RLVR_RETURN_IF_ERROR(cu::CopyOnDevice(fused + HD + KD, im.W32(w.bv), KD * 4));
      bias = fused;
    }
    RLVR_RETURN_IF_ERROR(cu::QkvPrepare(s.qkv, bias, im.W32(w.q_norm), im.W32(w.k_norm), eps,
                                        im.cos, im.sin, N, H, Hkv, D, s.q, s.k, s.v));
    RLVR_RETURN_IF_ERROR(
        cu::AttentionForwardBf16(s.q, s.k, s.v, B, T, H, Hkv, D, scale, s.o, s.lse, seg_start),
        "layer ", l, " attention");
    RLVR_RETURN_IF_ERROR(cu::CopyOnDevice(s.x_mid, x_in, static_cast<size_t>(N * C) * 4));
    RLVR_RETURN_IF_ERROR(
        cu::GemmBf16(false, true, N, C, HD, 1.f, s.o, HD, im.W16(w.wo), HD, 1.f, s.x_mid, C),
        "layer ", l, " o_proj");
    if (w.bo >= 0) RLVR_RETURN_IF_ERROR(cu::AddRowBiasF32(im.W32(w.bo), N, C, s.x_mid));
    // MLP / MoE block.
    RLVR_RETURN_IF_ERROR(
        cu::RmsNormF32ToBf16(s.x_mid, im.W32(w.post_norm), N, C, eps, s.hn2, s.rstd2));
    RLVR_RETURN_IF_ERROR(cu::CopyOnDevice(x_out, s.x_mid, static_cast<size_t>(N * C) * 4));
    if (!w.moe) {
      RLVR_RETURN_IF_ERROR(DenseForward(im, w.gate, w.up, w.down, s.hn2, N, C,
                                        c.intermediate_size, s.gu, s.act, x_out),
                           "layer ", l, " mlp");
      continue;
    }
    const int64_t E = c.num_experts, K = c.num_experts_per_tok, Ie = c.moe_intermediate_size;
    RLVR_RETURN_IF_ERROR(Linear(s.hn2, C, im.W16(w.router), N, C, E, 0.f, im.rlogits, E),
                         "layer ", l, " router");
    RLVR_RETURN_IF_ERROR(cu::MoeRouterTopK(im.rlogits, N, E, K, c.norm_topk_prob,
                                           c.routed_scaling_factor, s.probs, s.topk_e,
                                           s.topk_w));
    if (layer_forced[l]) {
      RLVR_RETURN_IF_ERROR(cu::MoeApplyForcedExperts(s.probs, im.forced + w.moe_index * N * K, N,
                                                     E, K, c.norm_topk_prob,
                                                     c.routed_scaling_factor, s.topk_e,
                                                     s.topk_w),
                           "layer ", l, " router replay");
    }
    RLVR_RETURN_IF_ERROR(cu::MoePermute(s.topk_e, N, K, E, s.offset, s.order, s.slot));
    RLVR_RETURN_IF_ERROR(cu::MoeRoutingStats(s.probs, s.topk_e, N, E, K,
                                             im.counts + w.moe_index * E,
                                             im.prob_sums + w.moe_index * E));
    RLVR_RETURN_IF_ERROR(cu::MoeGatherRowsBf16(s.hn2, s.order, N, K, C, s.xe));
    RLVR_RETURN_IF_ERROR(
        cu::MoeGroupedGemmBf16(s.xe, im.W16(w.gate), s.offset, E, N * K, Ie, C, false, s.eg),
        "layer ", l, " experts gate");
    RLVR_RETURN_IF_ERROR(
        cu::MoeGroupedGemmBf16(s.xe, im.W16(w.up), s.offset, E, N * K, Ie, C, false, s.eu),
        "layer ", l, " experts up");
    RLVR_RETURN_IF_ERROR(cu::SwigluForwardBf16(s.eg, s.eu, N * K * Ie, s.eact));
    RLVR_RETURN_IF_ERROR(
        cu::MoeGroupedGemmBf16(s.eact, im.W16(w.down), s.offset, E, N * K, C, Ie, false, s.ye),
        "layer ", l, " experts down");
    RLVR_RETURN_IF_ERROR(cu::MoeCombineBf16(s.ye, s.topk_w, s.slot, N, K, C, im.ymoe));
    RLVR_RETURN_IF_ERROR(cu::AddBf16ToF32(im.ymoe, N * C, x_out));
    if (w.s_gate >= 0) {
      RLVR_RETURN_IF_ERROR(DenseForward(im, w.s_gate, w.s_up, w.s_down, s.hn2, N, C,
                                        c.n_shared_experts * Ie, s.sgu, s.sact, x_out),
                           "layer ", l, " shared expert");
    }
  }
  RLVR_RETURN_IF_ERROR(
      cu::RmsNormF32ToBf16(im.x[L], im.W32(im.final_norm), N, C, eps, im.hf, im.rstd_f));

  // Routing statistics for moe_stats() and the load-balancing loss (one copy each).
  aux_loss_ = 0;
  if (im.moe_layers > 0) {
    const int64_t E = c.num_experts, ML = im.moe_layers;
    std::vector<int64_t> counts(static_cast<size_t>(ML * E));
    std::vector<double> sums(static_cast<size_t>(ML * E));
    RLVR_RETURN_IF_ERROR(cu::CopyToHost(counts.data(), im.counts, counts.size() * 8), "Forward");
    RLVR_RETURN_IF_ERROR(cu::CopyToHost(sums.data(), im.prob_sums, sums.size() * 8), "Forward");
    im.host_counts.assign(static_cast<size_t>(ML), {});
    im.host_prob_sums.assign(static_cast<size_t>(ML), {});
    std::vector<const std::vector<int64_t>*> cp;
    std::vector<const std::vector<double>*> pp;
    for (int64_t j = 0; j < ML; ++j) {
      im.host_counts[j].assign(counts.begin() + j * E, counts.begin() + (j + 1) * E);
      im.host_prob_sums[j].assign(sums.begin() + j * E, sums.begin() + (j + 1) * E);
      cp.push_back(&im.host_counts[j]);
      pp.push_back(&im.host_prob_sums[j]);
    }
    RLVR_ASSIGN_OR_RETURN(layers::LoadBalancingResult lb,
                          layers::LoadBalancingLoss(cp, pp, N, 1.0), "aux loss");
    aux_loss_ = lb.loss;
  } else {
    RLVR_RETURN_IF_ERROR(cu::Synchronize(), "Forward");
  }
  im.B = B;
  im.T = T;
  im.N = N;
  return absl::OkStatus();
}

absl::Status CudaTrainModel::TokenLogProbs(const int32_t* targets, float* logprob,
                                           float* entropy) {
  Impl& im = *impl_;
  if (im.N == 0) return absl::FailedPreconditionError("TokenLogProbs: call Forward first");
  if (targets == nullptr) return absl::InvalidArgumentError("TokenLogProbs: null targets");
  const int64_t N = im.N, C = config_.hidden_size, V = config_.vocab_size;
  std::vector<int32_t> tgt(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    if (targets[n] >= im.active_vocab) {
      return absl::InvalidArgumentError(absl::StrCat("targets[", n, "] = ", targets[n],
                                                     " is outside the vocabulary (",
                                                     im.active_vocab, ")"));
    }
    tgt[n] = std::max(targets[n], 0);
  }
  im.host_targets.assign(targets, targets + N);
  RLVR_RETURN_IF_ERROR(cu::CopyToDevice(im.targets, tgt.data(), static_cast<size_t>(N) * 4),
                       "TokenLogProbs");
  const uint16_t* w = im.W16(im.LmHead());
  const int64_t rows = std::min(N, options_.head_rows);
  for (int64_t r0 = 0; r0 < N; r0 += rows) {
    const int64_t R = std::min(rows, N - r0);
    RLVR_RETURN_IF_ERROR(Linear(im.hf + r0 * C, C, w, R, C, V, 0.f, im.logits, V), "lm_head");
    RLVR_RETURN_IF_ERROR(cu::LogSoftmaxStatsF32(im.logits, im.targets + r0, R, V,
                                                im.active_vocab, 1.0, im.lse_h + r0,
                                                im.logprob + r0, im.entropy + r0));
  }
  std::vector<float> lp(static_cast<size_t>(N)), ent(static_cast<size_t>(N));
  RLVR_RETURN_IF_ERROR(cu::CopyToHost(lp.data(), im.logprob, lp.size() * 4), "TokenLogProbs");
  RLVR_RETURN_IF_ERROR(cu::CopyToHost(ent.data(), im.entropy, ent.size() * 4), "TokenLogProbs");
  for (int64_t n = 0; n < N; ++n) {
    if (logprob != nullptr) logprob[n] = targets[n] < 0 ? 0.f : lp[n];
    if (entropy != nullptr) entropy[n] = ent[n];
  }
  im.have_logprobs = true;
  return absl::OkStatus();
}

absl::Status CudaTrainModel::Backward(const float* dlogprob, const float* dentropy,
                                      double aux_weight) {
  Impl& im = *impl_;
  if (im.N == 0 || !im.have_logprobs) {
    return absl::FailedPreconditionError("Backward: call Forward and TokenLogProbs first");
  }
  if (dlogprob == nullptr) return absl::InvalidArgumentError("Backward: null dlogprob");
  const ModelConfig& c = config_;
  const int64_t N = im.N, B = im.B, T = im.T;
  const int64_t C = c.hidden_size, V = c.vocab_size, H = c.num_attention_heads,
                Hkv = c.num_key_value_heads, D = c.head_dim, L = c.num_hidden_layers;
  const int64_t HD = H * D, KD = Hkv * D, QKV = HD + 2 * KD;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const int32_t* seg_start = im.packed ? im.seg_start : nullptr;

  // Upstream gradients (skipped targets get none) and the aux-loss coefficients.
  std::vector<float> dlp(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) dlp[n] = im.host_targets[n] < 0 ? 0.f : dlogprob[n];
  RLVR_RETURN_IF_ERROR(cu::CopyToDevice(im.dlogprob, dlp.data(), dlp.size() * 4), "Backward");
  if (dentropy != nullptr) {
    RLVR_RETURN_IF_ERROR(
        cu::CopyToDevice(im.dentropy, dentropy, static_cast<size_t>(N) * 4), "Backward");
  }
  const double* aux_coef = nullptr;
  if (im.moe_layers > 0 && aux_weight != 0.0) {
    std::vector<const std::vector<int64_t>*> cp;
    std::vector<const std::vector<double>*> pp;
    for (int64_t j = 0; j < im.moe_layers; ++j) {
      cp.push_back(&im.host_counts[j]);
      pp.push_back(&im.host_prob_sums[j]);
    }
    RLVR_ASSIGN_OR_RETURN(layers::LoadBalancingResult lb,
                          layers::LoadBalancingLoss(cp, pp, N, aux_weight), "aux loss");
    RLVR_RETURN_IF_ERROR(cu::CopyToDevice(im.aux_coef, lb.coef.data(), lb.coef.size() * 8),
                         "Backward");
    aux_coef = im.aux_coef;
  }

  // LM head and log-softmax, a block of rows at a time (logits recomputed).
  const int64_t lm = im.LmHead();
  const int64_t rows = std::min(N, options_.head_rows);
  for (int64_t r0 = 0; r0 < N; r0 += rows) {
    const int64_t R = std::min(rows, N - r0);
    const uint16_t* h = im.hf + r0 * C;
    RLVR_RETURN_IF_ERROR(Linear(h, C, im.W16(lm), R, C, V, 0.f, im.logits, V), "lm_head");
    RLVR_RETURN_IF_ERROR(cu::LogSoftmaxGradInPlaceF32(
        im.targets + r0, im.lse_h + r0, im.entropy + r0, im.dlogprob + r0,
        dentropy == nullptr ? nullptr : im.dentropy + r0, R, V, im.active_vocab, 1.0,
        im.logits));
    RLVR_RETURN_IF_ERROR(cu::ConvertF32ToBf16(im.logits, R * V, im.dlogits));
    RLVR_RETURN_IF_ERROR(LinearDx(im.dlogits, V, im.W16(lm), R, C, V, 0.f, im.dh + r0 * C),
                         "lm_head dx");
    RLVR_RETURN_IF_ERROR(LinearDw(im.dlogits, V, h, C, R, C, V, im.G(lm)), "lm_head dW");
  }
  RLVR_RETURN_IF_ERROR(cu::Memset0(im.dx, static_cast<size_t>(N * C) * 4));
  RLVR_RETURN_IF_ERROR(cu::RmsNormBackwardF32(im.dh, im.x[L], im.W32(im.final_norm), im.rstd_f,
                                              N, C, im.dx, im.G(im.final_norm), im.rms_ws));

  for (int64_t l = L - 1; l >= 0; --l) {
    const Impl::LayerParams& w = im.lp[l];
    const Impl::LayerActs& s = im.acts[l];
    // x_out = x_mid + ffn(norm2(x_mid)); im.dx holds d x_out.
    RLVR_RETURN_IF_ERROR(cu::ConvertF32ToBf16(im.dx, N * C, im.dxb));
    if (!w.moe) {
      RLVR_RETURN_IF_ERROR(DenseBackward(im, w.gate, w.up, w.down, s.hn2, s.gu, s.act, im.dxb,
                                         N, C, c.intermediate_size, 0.f, im.dh),
                           "layer ", l, " mlp backward");
    } else {
      const int64_t E = c.num_experts, K = c.num_experts_per_tok, Ie = c.moe_intermediate_size;
      const int64_t M = N * K;
      RLVR_RETURN_IF_ERROR(cu::Memset0(im.dh, static_cast<size_t>(N * C) * 4));
      RLVR_RETURN_IF_ERROR(cu::MoeCombineBackwardBf16(im.dxb, s.ye, s.topk_w, s.slot, N, K, C,
                                                      im.dweights, im.dye));
      // Down: ye = eact W_down_e^T, W_down [E, C, Ie].
      RLVR_RETURN_IF_ERROR(cu::MoeGroupedGemmBf16(im.dye, im.W16(w.down), s.offset, E, M, Ie, C,
                                                  true, im.deact),
                           "layer ", l, " experts down dx");
      RLVR_RETURN_IF_ERROR(cu::MoeGroupedGemmWeightGradBf16(im.dye, s.eact, s.offset, E, M, C,
                                                            Ie, im.G(w.down)),
                           "layer ", l, " experts down dW");
      RLVR_RETURN_IF_ERROR(cu::SwigluBackwardBf16(im.deact, s.eg, s.eu, M * Ie, im.deg, im.deu));
      // Gate and up: eg = xe W_gate_e^T, W_gate [E, Ie, C].
      for (const auto& [dproj, wproj] : {std::pair{im.deg, w.gate}, std::pair{im.deu, w.up}}) {
        RLVR_RETURN_IF_ERROR(cu::MoeGroupedGemmBf16(dproj, im.W16(wproj), s.offset, E, M, C, Ie,
                                                    true, im.dxe),
                             "layer ", l, " experts gate/up dx");
        RLVR_RETURN_IF_ERROR(cu::MoeGatherRowsBackwardBf16ToF32(im.dxe, s.slot, N, K, C, im.dh));
        RLVR_RETURN_IF_ERROR(cu::MoeGroupedGemmWeightGradBf16(dproj, s.xe, s.offset, E, M, Ie, C,
                                                              im.G(wproj)),
                             "layer ", l, " experts gate/up dW");
      }
      // Router: the routing weights' gradient (and the aux loss) through softmax and top-k.
      RLVR_RETURN_IF_ERROR(cu::Memset0(im.rlogits, static_cast<size_t>(N * E) * 4));
      RLVR_RETURN_IF_ERROR(cu::MoeRouterBackward(s.probs, s.topk_e, im.dweights, aux_coef, N, E,
                                                 K, c.norm_topk_prob, c.routed_scaling_factor,
                                                 im.rlogits));
      RLVR_RETURN_IF_ERROR(cu::ConvertF32ToBf16(im.rlogits, N * E, im.drlogits));
      RLVR_RETURN_IF_ERROR(LinearDx(im.drlogits, E, im.W16(w.router), N, C, E, 1.f, im.dh),
                           "layer ", l, " router dx");
      RLVR_RETURN_IF_ERROR(LinearDw(im.drlogits, E, s.hn2, C, N, C, E, im.G(w.router)),
                           "layer ", l, " router dW");
      if (w.s_gate >= 0) {
        RLVR_RETURN_IF_ERROR(DenseBackward(im, w.s_gate, w.s_up, w.s_down, s.hn2, s.sgu, s.sact,
                                           im.dxb, N, C, c.n_shared_experts * Ie, 1.f, im.dh),
                             "layer ", l, " shared expert backward");
      }
    }
    RLVR_RETURN_IF_ERROR(cu::RmsNormBackwardF32(im.dh, s.x_mid, im.W32(w.post_norm), s.rstd2, N,
                                                C, im.dx, im.G(w.post_norm), im.rms_ws));
    // x_mid = x_in + o Wo^T (+ bo); im.dx holds d x_mid.
    if (w.bo >= 0) RLVR_RETURN_IF_ERROR(cu::ColumnSumF32(im.dx, N, C, C, im.G(w.bo)));
    RLVR_RETURN_IF_ERROR(cu::ConvertF32ToBf16(im.dx, N * C, im.dxb));
    RLVR_RETURN_IF_ERROR(
        cu::GemmBf16(false, false, N, HD, C, 1.f, im.dxb, C, im.W16(w.wo), HD, 0.f, im.d_o, HD),
        "layer ", l, " o_proj dx");
    RLVR_RETURN_IF_ERROR(LinearDw(im.dxb, C, s.o, HD, N, HD, C, im.G(w.wo)), "layer ", l,
                         " o_proj dW");
    RLVR_RETURN_IF_ERROR(cu::Memset0(im.dq, static_cast<size_t>(N * HD) * 2));
    RLVR_RETURN_IF_ERROR(cu::Memset0(im.dk, static_cast<size_t>(N * KD) * 2));
    RLVR_RETURN_IF_ERROR(cu::Memset0(im.dv, static_cast<size_t>(N * KD) * 2));
    RLVR_RETURN_IF_ERROR(cu::AttentionBackwardBf16(im.d_o, s.q, s.k, s.v, s.o, s.lse, B, T, H,
                                                   Hkv, D, scale, im.dq, im.dk, im.dv,
                                                   im.attn_ws, im.attn_ws_bytes, seg_start),
                         "layer ", l, " attention backward");
    const float* bias = w.bq >= 0 ? im.qkv_bias + l * QKV : nullptr;
    RLVR_RETURN_IF_ERROR(cu::QkvPrepareBackward(im.dq, im.dk, im.dv, s.qkv, bias,
                                                im.W32(w.q_norm), im.W32(w.k_norm),
                                                c.rms_norm_eps, im.cos, im.sin, N, H, Hkv, D,
                                                im.dqkv, w.q_norm >= 0 ? im.dnorm : nullptr));
    if (w.bq >= 0) {
      RLVR_RETURN_IF_ERROR(cu::ColumnSumF32(im.dqkv, N, HD, QKV, im.G(w.bq)));
      RLVR_RETURN_IF_ERROR(cu::ColumnSumF32(im.dqkv + HD, N, KD, QKV, im.G(w.bk)));
      RLVR_RETURN_IF_ERROR(cu::ColumnSumF32(im.dqkv + HD + KD, N, KD, QKV, im.G(w.bv)));
    }
    if (w.q_norm >= 0) {
      RLVR_RETURN_IF_ERROR(cu::ColumnSumF32(im.dnorm, N, D, 2 * D, im.G(w.q_norm)));
      RLVR_RETURN_IF_ERROR(cu::ColumnSumF32(im.dnorm + D, N, D, 2 * D, im.G(w.k_norm)));
    }
    RLVR_RETURN_IF_ERROR(cu::ConvertF32ToBf16(im.dqkv, N * QKV, im.dqkvb));
    RLVR_RETURN_IF_ERROR(LinearDx(im.dqkvb, QKV, im.W16(w.wq), N, C, HD, 0.f, im.dh), "layer ",
                         l, " q_proj dx");
    RLVR_RETURN_IF_ERROR(LinearDx(im.dqkvb + HD, QKV, im.W16(w.wk), N, C, KD, 1.f, im.dh),
                         "layer ", l, " k_proj dx");
    RLVR_RETURN_IF_ERROR(LinearDx(im.dqkvb + HD + KD, QKV, im.W16(w.wv), N, C, KD, 1.f, im.dh),
                         "layer ", l, " v_proj dx");
    RLVR_RETURN_IF_ERROR(LinearDw(im.dqkvb, QKV, s.hn1, C, N, C, HD, im.G(w.wq)), "layer ", l,
                         " q_proj dW");
    RLVR_RETURN_IF_ERROR(LinearDw(im.dqkvb + HD, QKV, s.hn1, C, N, C, KD, im.G(w.wk)), "layer ",
                         l, " k_proj dW");
    RLVR_RETURN_IF_ERROR(LinearDw(im.dqkvb + HD + KD, QKV, s.hn1, C, N, C, KD, im.G(w.wv)),
                         "layer ", l, " v_proj dW");
    RLVR_RETURN_IF_ERROR(cu::RmsNormBackwardF32(im.dh, im.x[l], im.W32(w.in_norm), s.rstd1, N, C,
                                                im.dx, im.G(w.in_norm), im.rms_ws));
  }
  RLVR_RETURN_IF_ERROR(cu::EmbeddingBackwardF32(im.ids, im.dx, N, V, C, im.G(im.embed)));
  return cu::Synchronize();
}

absl::StatusOr<StepStats> CudaTrainModel::OptimizerStep(const AdamWConfig& config) {
  RLVR_RETURN_IF_ERROR(config.Validate(), "OptimizerStep");
  cu::AdamWStepConfig sc;
  sc.lr = LearningRate(config, step_);
  sc.step = step_ + 1;
  sc.beta1 = config.beta1;
  sc.beta2 = config.beta2;
  sc.eps = config.eps;
  sc.weight_decay = config.weight_decay;
  sc.max_grad_norm = config.max_grad_norm;
  RLVR_RETURN_IF_ERROR(impl_->adamw->Step(sc), "OptimizerStep");
  RLVR_ASSIGN_OR_RETURN(cu::AdamWStepResult r, impl_->adamw->LastStepResult(), "OptimizerStep");
  if (!r.skipped) ++step_;
  return StepStats{.grad_norm = r.grad_norm, .lr = sc.lr, .clipped = r.clipped,
                   .skipped = r.skipped};
}

}  // namespace rlvr::policy
