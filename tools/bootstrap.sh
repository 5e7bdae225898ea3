#!/usr/bin/env bash
# Installs the Debian packages rlvr builds with, if any is missing. Idempotent and quiet when
# everything is already there. CUDA is not installed here: the build uses /usr/local/cuda when it
# exists (RLVR_CUDA=AUTO).
set -euo pipefail

PACKAGES=(
  cmake make g++ pkg-config clang-14 libclang-rt-14-dev
  libabsl-dev libre2-dev libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenblas-openmp-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  libpcre2-dev libicu-dev libgmp-dev libmpfr-dev libseccomp-dev libxxhash-dev
  python3 python3-venv
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "bootstrap: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "bootstrap: done" >&2
