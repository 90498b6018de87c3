#!/usr/bin/env bash
# soak-quick.sh: bounded quick variants of two soak scenarios of
# tests/soak/soak.py (TAP), each with its own daemon on loopback:
#   idle: 2,000 idle connections open while 16 clients run 4 completions
#     each (streamed and whole): 0 failures, /health 200, the idle
#     connections still open;
#   kv: on a shared 512-cell cache, one long + three short greedy requests,
#     then 8 long greedy streams (too many for the cache): every request
#     completes, none fails mid-stream, each with the text of its run alone;
#     the 8 streams force preemptions (counted in /metrics), no cell is left;
#     then the 8 streams again with the dflash speculator: the same texts,
#     drafts shrink for want of free cells (clspec_spec_draft_kv_shrinks_total
#     > 0), and every preempted request drafts again once resumed.
# The tables soak.py prints are passed on as comments.
# Needs python3 and the built daemon.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
model=$srcdir/models/stories260K.gguf
[ -x "$bin" ] || { echo "1..0 # SKIP $bin not built"; exit 0; }
[ -f "$model" ] || { echo "1..0 # SKIP $model missing"; exit 0; }
command -v python3 >/dev/null || { echo "1..0 # SKIP python3 not installed"; exit 0; }
soak() { CLSPECD=$bin timeout 600 python3 "$srcdir/tests/soak/soak.py" --model "$model" "$@" 2>&1 | sed 's/^/# /'; return "${PIPESTATUS[0]}"; }
out=$(soak idle --idle 2000 --clients 16 --requests 4); rc=$?
echo "$out"
[ $rc = 0 ] && ok "idle: 2000 idle connections, 16 clients x 4 completions: 0 failures" \
    || not_ok "idle: 2000 idle connections, 16 clients x 4 completions: 0 failures"
dflash=$shared/models/derived/stories260K-dflash.gguf
if [ -f "$dflash" ] && [ -f "$builddir/plugins/dflash/.libs/dflash.so" ]; then
    out=$(soak kv --n-ctx 512 --spec dflash --spec-model "$dflash"); rc=$?
    what="kv: 1 long + 3 short, and 8 long streams on 512 cells (plain, then dflash): all complete with their solo text, preempted and resumed; drafts shrink, resumed requests draft again"
else
    out=$(soak kv --n-ctx 512); rc=$?
    what="kv: 1 long + 3 short, and 8 long streams on 512 cells: all complete with their solo text, preempted and resumed (dflash not built: no speculator part)"
fi
echo "$out"
[ $rc = 0 ] && ok "$what" || not_ok "$what"
echo "1..$n"
[ $fails = 0 ]
