#!/usr/bin/env bash
# Installs what cairun needs on Debian 12 (Debian packages only) and builds
# it into build/. Safe to run again: installed packages are skipped and the
# build is incremental (ccache is used when present).
set -euo pipefail
cd "$(dirname "$0")"

packages=(
  build-essential cmake pkg-config ccache git
  libtorch-dev libopenblas0-pthread libsleef-dev libgloo-dev libdnnl-dev
  libluajit-5.1-dev luajit
  libsentencepiece-dev sentencepiece
  libyaml-cpp-dev nlohmann-json3-dev libpcre2-dev libicu-dev
  libcpp-httplib-dev  # cairun serve's HTTP server
  catch2
  python3   # tests only: cairun serve's HTTP and browser tests
  chromium  # tests only: the run report is loaded and screenshotted in headless Chromium
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$jobs"
