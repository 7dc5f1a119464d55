#!/usr/bin/env bash
# Installs what tandem needs to build and test on Debian 12, skipping what is there.
# Usage: install-deps.sh [--fuzz] [--cuda]
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config git
      libgtest-dev libgmock-dev libbenchmark-dev libfmt-dev libcli11-dev nlohmann-json3-dev
      libpcre2-dev openmpi-bin libopenmpi-dev libcpp-httplib-dev)
# chromium: the browser test of tandem serve's chat page (skipped without it).
pkgs+=(chromium)
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
cuda=0
for arg in "$@"; do
  case "$arg" in
    # --fuzz: also clang and its runtimes (libFuzzer, sanitizers) for scripts/fuzz.sh.
    --fuzz) pkgs+=(clang libclang-rt-dev) ;;
    # --cuda: the CUDA toolkit for the NCCL backend (opt-in: several GB), from Debian's
    # non-free component, unless a toolkit with NCCL is already there.
    --cuda) cuda=1 ;;
    *) echo "install-deps: unknown option $arg (expected --fuzz, --cuda)" >&2; exit 2 ;;
  esac
done
if [ "$cuda" = 1 ]; then
  if { command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; } &&
     { [ -f /usr/local/cuda/include/nccl.h ] || [ -f /usr/include/nccl.h ] ||
       [ -f "${NCCL_ROOT:-/nonexistent}/include/nccl.h" ]; }; then
    echo "install-deps: CUDA toolkit and NCCL present"
  else
    # Debian 12 packages CUDA 11.8 (nvidia-cuda-toolkit, non-free) but not NCCL: get
    # libnccl-dev from NVIDIA's repository (or a tarball) and point NCCL_ROOT at it;
    # without NCCL the backend is left out and nothing else changes.
    list=/etc/apt/sources.list.d/tandem-nonfree.list
    if ! grep -rqs "non-free" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm contrib non-free" | $SUDO tee "$list" >/dev/null
      echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates contrib non-free" | $SUDO tee -a "$list" >/dev/null
    fi
    pkgs+=(nvidia-cuda-toolkit nvidia-cuda-dev)
    [ -f /usr/include/nccl.h ] || [ -f "${NCCL_ROOT:-/nonexistent}/include/nccl.h" ] ||
      echo "install-deps: NCCL is not in Debian 12; install libnccl-dev from NVIDIA and set NCCL_ROOT" >&2
  fi
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
