#include "kernels/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/cuda/cuda.h"

namespace rlvr::kernels {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kBF16:
      return 2;
    case DType::kF64:
    case DType::kI64:
      return 8;
    case DType::kU8:
      return 1;
  }
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "f32";
    case DType::kBF16:
      return "bf16";
    case DType::kF64:
      return "f64";
    case DType::kI32:
      return "i32";
    case DType::kI64:
      return "i64";
    case DType::kU8:
      return "u8";
  }
  return "?";
}

const char* DeviceName(Device device) { return device == Device::kCpu ? "cpu" : "cuda"; }

namespace {

std::string ShapeString(std::span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<int64_t> CountElements(std::span<const int64_t> shape) {
  if (shape.size() > static_cast<size_t>(kMaxDims)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor shape ", ShapeString(shape), " has ",
                                                   shape.size(), " dims, at most ", kMaxDims));
  }
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor shape ", ShapeString(shape), " has a negative dim"));
    }
    n *= d;
  }
  return n;
}

}  // namespace

absl::StatusOr<Tensor> Tensor::Empty(std::span<const int64_t> shape, DType dtype, Device device) {
  RLVR_ASSIGN_OR_RETURN(int64_t n, CountElements(shape));
  Tensor t;
  t.ndim_ = static_cast<int>(shape.size());
  for (int i = 0; i < t.ndim_; ++i) t.shape_[i] = shape[i];
  t.numel_ = n;
  t.dtype_ = dtype;
  t.device_ = device;
  // Round up to whole cache lines (aligned_alloc needs a multiple of the alignment) and never
  // allocate zero bytes so that data() of an empty-shaped tensor is still a valid pointer.
  size_t bytes = std::max<size_t>(t.nbytes(), 1);
  bytes = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (device == Device::kCpu) {
    void* p = std::aligned_alloc(kAlignment, bytes);
    if (p == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate ", bytes, " bytes for tensor ", ShapeString(shape)));
    }
    t.owner_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  } else {
    RLVR_ASSIGN_OR_RETURN(void* p, cuda::Malloc(bytes), "tensor ", ShapeString(shape));
    t.owner_ = std::shared_ptr<void>(p, [](void* q) { cuda::Free(q); });
  }
  t.data_ = t.owner_.get();
  return t;
}

absl::StatusOr<Tensor> Tensor::Zeros(std::span<const int64_t> shape, DType dtype, Device device) {
  RLVR_ASSIGN_OR_RETURN(Tensor t, Empty(shape, dtype, device));
  if (device == Device::kCpu) {
    std::memset(t.data_, 0, t.nbytes());
  } else {
    RLVR_RETURN_IF_ERROR(cuda::Memset0(t.data_, t.nbytes()));
  }
  return t;
}

Tensor Tensor::View(void* data, std::span<const int64_t> shape, DType dtype, Device device) {
  absl::StatusOr<int64_t> n = CountElements(shape);
  RLVR_CHECK(n.ok(), n.status().ToString());
  Tensor t;
  t.ndim_ = static_cast<int>(shape.size());
  for (int i = 0; i < t.ndim_; ++i) t.shape_[i] = shape[i];
  t.numel_ = *n;
  t.dtype_ = dtype;
  t.device_ = device;
  t.data_ = data;
  return t;
}

int64_t Tensor::dim(int i) const {
  int j = i < 0 ? i + ndim_ : i;
  RLVR_CHECK(j >= 0 && j < ndim_, "dim(", i, ") of a ", ndim_, "-d tensor");
  return shape_[j];
}

absl::StatusOr<Tensor> Tensor::Reshape(std::span<const int64_t> shape) const {
  RLVR_ASSIGN_OR_RETURN(int64_t n, CountElements(shape));
  if (n != numel_) {
    return absl::InvalidArgumentError(absl::StrCat("cannot reshape ", DebugString(), " to ",
                                                   ShapeString(shape)));
  }
  Tensor t = *this;
  t.ndim_ = static_cast<int>(shape.size());
  for (int i = 0; i < t.ndim_; ++i) t.shape_[i] = shape[i];
  return t;
}

absl::StatusOr<Tensor> Tensor::Clone() const {
  if (device_ != Device::kCpu) {
    return absl::UnimplementedError("Tensor::Clone of a CUDA tensor");
  }
  RLVR_ASSIGN_OR_RETURN(Tensor t, Empty(shape(), dtype_, Device::kCpu));
  if (nbytes() > 0) std::memcpy(t.data_, data_, nbytes());
  return t;
}

std::string Tensor::DebugString() const {
  return absl::StrCat(ShapeString(shape()), " ", DTypeName(dtype_),
                      device_ == Device::kCuda ? " cuda" : "");
}

absl::Status Tensor::Check(std::string_view name, std::initializer_list<int64_t> shape,
                           DType dtype) const {
  bool ok = dtype == dtype_ && shape.size() == static_cast<size_t>(ndim_);
  int i = 0;
  for (int64_t d : shape) {
    if (!ok) break;
    ok = d == -1 || d == shape_[i++];
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(std::string(name), ": shape ", DebugString(), ", expected ",
                   ShapeString(std::span<const int64_t>(shape.begin(), shape.size())), " ",
                   DTypeName(dtype)));
}

}  // namespace rlvr::kernels
