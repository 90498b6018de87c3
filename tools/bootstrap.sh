#!/usr/bin/env bash
# Sets up a fresh Debian machine for clspec and builds it in the source tree:
# installs the build and test dependencies (needs root), then
# autoreconf + configure + make. Extra arguments go to ./configure.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential autoconf automake libtool pkg-config
      ocl-icd-opencl-dev opencl-c-headers pocl-opencl-icd clinfo
      libinih-dev libmicrohttpd-dev libjansson-dev libcmocka-dev
      clang libclang-rt-dev curl ca-certificates python3)
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
