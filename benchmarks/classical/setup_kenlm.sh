#!/usr/bin/env bash
# Build KenLM's lmplz and query for the n-gram benchmark (never run in CI).
#
#   benchmarks/classical/setup_kenlm.sh [PREFIX]     # default PREFIX: benchmarks/classical/_work/kenlm (git-ignored)
#
# Installs Debian's boost/zlib/bz2/lzma development packages (needs root), downloads the kenlm
# source distribution from the Python package index with pip, and builds the two binaries with
# cmake (about 6 minutes on 2 cores). The binaries end up in PREFIX/bin.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
prefix="${1:-$here/_work/kenlm}"
pip="$root/.venv/bin/pip"

if [ -x "$prefix/bin/lmplz" ] && [ -x "$prefix/bin/query" ]; then
    echo "KenLM already built in $prefix/bin"; exit 0
fi
if ! dpkg -s libboost-program-options-dev libboost-system-dev libboost-thread-dev \
        libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential cmake \
        libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev \
        zlib1g-dev libbz2-dev liblzma-dev
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$pip" download --no-deps --no-binary :all: --no-build-isolation kenlm==0.3.0 -d "$work" \
    || "$pip" download --no-deps --no-binary :all: kenlm==0.3.0 -d "$work"
tar -xzf "$work"/kenlm-*.tar.gz -C "$work"
src="$(find "$work" -maxdepth 1 -type d -name 'kenlm-*' | head -1)"
mkdir -p "$src/build" "$prefix/bin"
cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=9 >/dev/null
cmake --build "$src/build" --target lmplz query build_binary -j "$(nproc)"
cp "$src/build/bin/lmplz" "$src/build/bin/query" "$src/build/bin/build_binary" "$prefix/bin/"
echo "KenLM built: $prefix/bin/lmplz, $prefix/bin/query"
