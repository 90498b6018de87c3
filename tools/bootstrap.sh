#!/usr/bin/env bash
# Sets up a fresh Debian machine for clspec and builds it in the source tree:
# installs the build and test dependencies (needs root), then
# autoreconf + configure + make, and installs the pinned npm packages of the
# daemon's end-to-end test. Extra arguments go to ./configure.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential autoconf automake libtool pkg-config
      ocl-icd-opencl-dev opencl-c-headers pocl-opencl-icd clinfo
      libinih-dev libmicrohttpd-dev libjansson-dev libcmocka-dev libpng-dev libjpeg62-turbo-dev libcurl4-openssl-dev
      clang libclang-rt-dev curl ca-certificates python3 python3-jinja2
      haproxy) # haproxy: the pool scenario of tests/soak/soak.py
# the end-to-end tests' tools: only when missing (node and npm may come from elsewhere, e.g. NodeSource)
command -v jq >/dev/null || pkgs+=(jq)
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
# the chat page's test (tests/daemon/llama-e2e.sh) runs it in headless Chromium; llama.cpp's
# server test suite (tests/llama-server-suite/run.sh) needs pytest, requests and aiohttp
command -v chromium >/dev/null || pkgs+=(chromium)
pkgs+=(python3-pytest python3-requests python3-aiohttp)
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

# the official openai npm client and playwright-core, pinned by tests/daemon/package-lock.json
# (tests/daemon/e2e.sh and llama-e2e.sh skip their checks without them)
if command -v npm >/dev/null && { [ ! -d tests/daemon/node_modules/openai ] || [ ! -d tests/daemon/node_modules/playwright-core ] ||
    [ tests/daemon/package-lock.json -nt tests/daemon/node_modules/.package-lock.json ]; }; then
    npm ci --prefix tests/daemon --no-audit --no-fund --loglevel=error ||
        echo "bootstrap: npm ci failed; the openai client checks of tests/daemon/e2e.sh will be skipped" >&2
fi
