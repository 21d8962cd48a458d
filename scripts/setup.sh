#!/usr/bin/env bash
# Installs every Debian 12 package sambalm needs to build, test and run, and the one PyPI package a test
# uses. Idempotent: quiet when all packages are present. Run as root (or with sudo available).
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build ccache pkg-config git
  libopenblas-dev libopenblas-openmp-dev libomp-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libsentencepiece-dev libcpp-httplib-dev libpcre2-dev libzstd-dev zlib1g-dev
  openmpi-bin libopenmpi-dev
  clang libclang-rt-14-dev
  python3 python3.11-doc gnuplot-nox zip unzip zstd time valgrind
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# From PyPI: the official `openai` client, which tests/serve_openai_client.py runs against `sambalm serve`
# (its test skips without it).
if ! python3 -c "import openai" 2>/dev/null; then
  echo "setup: pip install openai"
  python3 -m pip install -q openai >/dev/null || echo "setup: warning: pip install openai failed (the openai client test will skip)"
fi
