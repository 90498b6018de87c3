# lib.sh: what the clspecd end-to-end scripts (e2e.sh, spec-e2e.sh,
# never-fail.sh) share; sourced (bash) after `set -u` with $here set to
# tests/daemon. It gives the paths, TAP output (the plan line and the exit
# status stay the caller's), the skip when a tool or file is missing, a
# temporary directory cleaned at exit with its daemons, and start/stop of one
# daemon on a free loopback port.

srcdir=$(cd "$here/../.." && pwd)
builddir=${CLSPEC_BUILDDIR:-$srcdir}
shared=${CLSPEC_SHARED:-$srcdir/../shared}
model=$shared/models/stories260K.gguf
bin=$builddir/clspecd

# ---- TAP: n checks so far, fails of them failed
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { # not_ok NAME [DETAIL]: DETAIL (any number of lines) as "# " comments
    n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"
    [ $# -gt 1 ] && printf '%s\n' "$2" | sed 's/^/# /'
}
check() { # check NAME COMMAND...: ok when the command succeeds
    local name=$1; shift
    if "$@"; then ok "$name"; else not_ok "$name"; fi
}
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }

# need FILE...: skips the whole script (plan 1..0) without curl, jq, the built
# daemon or one of the files
need() {
    local t f
    for t in curl jq; do
        command -v $t >/dev/null || { echo "1..0 # SKIP $t not installed"; exit 0; }
    done
    [ -x "$bin" ] || { echo "1..0 # SKIP $bin not built"; exit 0; }
    for f in "$@"; do
        [ -f "$f" ] || { echo "1..0 # SKIP $f missing (set CLSPEC_SHARED)"; exit 0; }
    done
}

# ---- daemons: $tmp holds their INIs and logs; every pid in pids is killed at exit
# (E2E_KEEP set: nothing is removed and the directory is printed)
make_tmp() {
    tmp=$(mktemp -d)
    pids=()
    trap cleanup EXIT
    [ -n "${E2E_KEEP:-}" ] && { trap - EXIT; echo "# files in $tmp"; }
}
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$tmp"
}

pid=
port=
url=
pocl= # POCL_DEVICES of the daemons started (empty: the environment's)
start() { # start NAME: the daemon on $tmp/NAME.ini, log $tmp/NAME.log; sets pid, port, url; 1 when it is not up
    local name=$1
    port=
    env ${pocl:+"POCL_DEVICES=$pocl"} "$bin" -c "$tmp/$name.ini" > "$tmp/$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 1 300); do
        port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$tmp/$name.log" 2>/dev/null | grep -o '[0-9]*$')
        [ -n "$port" ] && break
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    url=http://127.0.0.1:$port
    for _ in $(seq 1 600); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200 ] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
stop() { # SIGTERM drains and exits 0
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
}

# spec_lines KIND: the [speculator] lines of the shipped speculators on the shared
# stories260K drafters, one per line (for mkini "$@"-style helpers)
spec_lines() {
    case $1 in
    ngram) printf '%s\n' "type = ngram" "n_max = 8" ;;
    draft) printf '%s\n' "type = draft" "model = $shared/models/derived/stories260K-draft-distilled.gguf" "n_max = 8" \
        "p_min = 0" ;;
    mtp) printf '%s\n' "type = mtp" "model = $shared/models/derived/stories260K-mtp-head.gguf" "n_max = 3" ;;
    dflash) printf '%s\n' "type = dflash" "model = $shared/models/derived/stories260K-dflash.gguf" "n_max = 7" ;;
    esac
    echo "controller = acceptance" # the tests' deterministic drafts (clspecd's default, cost, follows the clock)
}
