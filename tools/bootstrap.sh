#!/usr/bin/env bash
# Sets up a fresh Debian machine for clspec and builds it in the source tree:
# installs the build and test dependencies (needs root), then
# autoreconf + configure + make, and installs the pinned npm packages of the
# daemon's end-to-end test. Extra arguments go to ./configure.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential autoconf automake libtool pkg-config
      ocl-icd-opencl-dev opencl-c-headers pocl-opencl-icd clinfo
      libinih-dev libmicrohttpd-dev libjansson-dev libcmocka-dev
      clang libclang-rt-dev curl ca-certificates python3
      haproxy) # haproxy: the pool scenario of tests/soak/soak.py
# the end-to-end tests' tools: only when missing (node and npm may come from elsewhere, e.g. NodeSource)
command -v jq >/dev/null || pkgs+=(jq)
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bootstrap: missing packages: ${missing[*]}; run as root or apt-get install them" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

autoreconf -fi
[ -f Makefile ] || ./configure "$@"
make -j"$(nproc)"

# the official openai npm client, pinned by tests/daemon/package-lock.json (tests/daemon/e2e.sh
# skips its checks without it)
if command -v npm >/dev/null && { [ ! -d tests/daemon/node_modules/openai ] ||
    [ tests/daemon/package-lock.json -nt tests/daemon/node_modules/.package-lock.json ]; }; then
    npm ci --prefix tests/daemon --no-audit --no-fund --loglevel=error ||
        echo "bootstrap: npm ci failed; the openai client checks of tests/daemon/e2e.sh will be skipped" >&2
fi
