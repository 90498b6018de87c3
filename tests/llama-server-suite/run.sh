#!/usr/bin/env bash
# run.sh: llama.cpp's server test suite (tools/server/tests, pytest) against
# clspecd. The tests are not in this repository: they are copied from a
# llama.cpp checkout into a temporary directory and run there unchanged, with
# clspec_launcher.py (a pytest plugin) replacing only their launcher: each
# ServerProcess starts clspecd with an INI instead of llama-server with flags.
#
# Usage: tests/llama-server-suite/run.sh LLAMA_CPP_DIR [TEST_FILE...] [-- PYTEST_ARGS...]
#   LLAMA_CPP_DIR   a llama.cpp checkout (or its tools/server/tests); also $LLAMA_CPP_DIR
#   TEST_FILE       unit/test_*.py to run (default: the files whose presets use only
#                   stories260K, listed below)
# Environment: CLSPEC_BUILDDIR (where clspecd is; default the source tree),
#   CLSPEC_MODEL (default ../shared/models/stories260K.gguf, else models/stories260K.gguf),
#   PYTHON (default /usr/bin/python3: Debian's python3-pytest, -requests, -aiohttp).
# Exit: pytest's status; 77 (skip) without a llama.cpp checkout or pytest.
# The result: a line per test (PASSED / FAILED / SKIPPED with the reason) and
# pytest's summary; docs/api.md lists the failures and why.
set -u
here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/../.." && pwd)
builddir=${CLSPEC_BUILDDIR:-$srcdir}
llama=${1:-${LLAMA_CPP_DIR:-}}
[ $# -gt 0 ] && shift
if [ -z "$llama" ]; then
    echo "run.sh: SKIP: give a llama.cpp checkout (argument or LLAMA_CPP_DIR)" >&2
    exit 77
fi
tests=$llama
[ -f "$tests/utils.py" ] || tests=$llama/tools/server/tests
if [ ! -f "$tests/utils.py" ] || [ ! -d "$tests/unit" ]; then
    echo "run.sh: SKIP: no tools/server/tests/utils.py under $llama" >&2
    exit 77
fi
py=${PYTHON:-/usr/bin/python3}
if ! "$py" -c 'import pytest, requests' 2>/dev/null; then
    echo "run.sh: SKIP: $py lacks pytest or requests (apt-get install python3-pytest python3-requests python3-aiohttp)" >&2
    exit 77
fi
model=${CLSPEC_MODEL:-$srcdir/../shared/models/stories260K.gguf}
[ -f "$model" ] || model=$srcdir/models/stories260K.gguf
[ -x "$builddir/clspecd" ] || { echo "run.sh: $builddir/clspecd not built" >&2; exit 1; }

files=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do files+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
if [ ${#files[@]} -eq 0 ]; then
    # the files whose tests start ServerPreset.tinyllama2 (stories260K) only
    for f in test_basic test_completion test_tokenize test_security test_ctx_shift test_chat_completion \
             test_slot_save test_template test_ignore_eos test_stream test_props test_slots; do
        [ -f "$tests/unit/$f.py" ] && files+=("unit/$f.py")
    done
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -n "${SUITE_KEEP:-}" ] && { trap - EXIT; echo "# files in $tmp"; }
cp -r "$tests" "$tmp/tests"
cp "$here/clspec_launcher.py" "$tmp/tests/"
mkdir -p "$tmp/logs"
cd "$tmp/tests" || exit 1
PYTHONPATH=$tmp/tests CLSPEC_SUITE_SRC=$(cd "$tests" && pwd) CLSPECD=$builddir/clspecd CLSPEC_MODEL=$model CLSPEC_SUITE_TMP=$tmp/logs \
    XDG_CACHE_HOME=${XDG_CACHE_HOME:-$HOME/.cache} \
    "$py" -m pytest -p clspec_launcher -p no:cacheprovider -rA -q --tb=line "${files[@]}" "$@"
