#!/usr/bin/env bash
# ready.sh: clspecd is ready only once nothing is left to compile, and the
# shipped configuration works from a lone clone (TAP). Checks:
#   lone-clone: conf/clspecd.ini and models/ copied alone (no ../shared
#     beside them, CLSPEC_SHARED pointing nowhere) pass `clspecd --check`;
#     so does `./clspecd -c conf/clspecd.ini --check` in the source tree
#     (skipped when port 8080 is taken on this machine);
#   cold start: with an empty kernel cache (a private XDG_CACHE_HOME, which
#     also empties PoCL's own cache) /health answers 503 "loading" while the
#     kernels compile, the log shows each program prepared before "ready",
#     then 200; the first completion runs with no program built or loaded
#     after "ready" (the daemon logs each one as a warning "after ready");
#     its wall time is printed as a comment;
#   warm start: a second daemon on the same cache loads every program from
#     the binary cache (none built) and is ready;
#   drafter: with [speculator] type = draft and drafter KV types other than
#     the target's (q8_0 / bf16), the drafter's programs too are ready before
#     "ready" (none after; skipped without ../shared's distilled drafter).
# Needs curl and jq and the built daemon; uses only the model in models/
# (and ../shared or $CLSPEC_SHARED for the drafter).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
model=$srcdir/models/stories260K.gguf
need "$model"
make_tmp
ms() { echo $(($(date +%s%N) / 1000000)); }
# spawn INI LOG: the daemon on INI in the background; sets pid, port and url once it listens,
# without waiting for the model (lib.sh's start waits for /health 200)
spawn() {
    "$bin" -c "$1" > "$2" 2>&1 &
    pid=$!
    pids+=("$pid")
    port=
    for _ in $(seq 1 300); do
        port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$2" 2>/dev/null | grep -o '[0-9]*$')
        [ -n "$port" ] && break
        sleep 0.1
    done
    url=http://127.0.0.1:$port
}
# wait_ready LOG: until LOG says "ready" (at most 5 minutes: PoCL may compile everything), or the daemon exits
wait_ready() {
    for _ in $(seq 1 3000); do
        grep -q ' ready: ' "$1" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
echo "1..11"

# ---- lone clone
mkdir -p "$tmp/clone/conf" "$tmp/clone/models"
cp "$srcdir/conf/clspecd.ini" "$tmp/clone/conf/"
cp "$model" "$srcdir/models/README.md" "$tmp/clone/models/"
sed -i "s|^port = .*|port = 0|" "$tmp/clone/conf/clspecd.ini"
out=$(cd "$tmp/clone" && CLSPEC_SHARED=$tmp/nowhere "$bin" -c conf/clspecd.ini --check 2>&1)
if [ $? -eq 0 ]; then ok "lone-clone: clspecd --check on a copy of conf/ and models/ alone"
else not_ok "lone-clone: clspecd --check on a copy of conf/ and models/ alone" "$out"; fi
out=$(cd "$srcdir" && CLSPEC_SHARED=$tmp/nowhere "$bin" -c conf/clspecd.ini --check 2>&1)
rc=$?
if [ $rc -eq 0 ]; then ok "lone-clone: ./clspecd -c conf/clspecd.ini --check with CLSPEC_SHARED pointing nowhere"
elif printf '%s' "$out" | grep -q 'already in use'; then
    skip "lone-clone: ./clspecd -c conf/clspecd.ini --check" "port 8080 is taken here"
else not_ok "lone-clone: ./clspecd -c conf/clspecd.ini --check with CLSPEC_SHARED pointing nowhere" "$out"; fi

# ---- cold start: an empty kernel cache
export XDG_CACHE_HOME=$tmp/cache
mkdir -p "$XDG_CACHE_HOME"
sed -e "s|^port = .*|port = 0|" -e "s|^n_ctx = .*|n_ctx = 1024|" -e "s|^parallel = .*|parallel = 2|" \
    "$tmp/clone/conf/clspecd.ini" > "$tmp/clone/conf/cold.ini"
log=$tmp/cold.log
spawn "$tmp/clone/conf/cold.ini" "$log"
body=$(curl -s -w ' %{http_code}' "$url/health")
case $body in
*'"loading"'*' 503') ok "cold: /health answers 503 loading while the kernels compile" ;;
*) not_ok "cold: /health answers 503 loading while the kernels compile" "got: $body" ;;
esac
t0=$(ms)
code=
for _ in $(seq 1 3000); do # up to 5 minutes: PoCL compiles every program from source
    code=$(curl -s -o /dev/null -w '%{http_code}' "$url/health")
    [ "$code" = 200 ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
load_ms=$(($(ms) - t0))
check "cold: /health 200 once loaded" [ "$code" = 200 ]
echo "# cold load: ready after $load_ms ms of polling"
before=$(sed -n '/ ready: /q;p' "$log")
n_prep=$(printf '%s\n' "$before" | grep -c 'kernels: cl/.*\.cl built in')
if [ "$n_prep" -ge 9 ]; then ok "cold: $n_prep programs built and logged before ready"
else not_ok "cold: at least 9 programs built and logged before ready" "$(cat "$log")"; fi
check "cold: the summary line counts them" grep -q "kernels: $n_prep programs built, 0 loaded from the binary cache" "$log"

req='{"prompt": "Once upon a time", "max_tokens": 32, "temperature": 0}'
t1=$(ms)
text=$(curl -s "$url/v1/completions" -H 'Content-Type: application/json' -d "$req" | jq -r '.choices[0].text')
echo "# first completion after a cold start: $(($(ms) - t1)) ms (load $load_ms ms)"
check "cold: the first completion answers" [ -n "$text" -a "$text" != null ]
# both batch paths: a prompt chunk with 2 slots decoding together
curl -s "$url/v1/completions" -H 'Content-Type: application/json' -d "$req" > /dev/null &
c1=$!
curl -s "$url/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt": "Lily and Tom went to the park to play with a big red ball", "max_tokens": 16}' > /dev/null
wait $c1
after=$(sed -n '/ ready: /,$p' "$log" | grep 'after ready')
if [ -z "$after" ]; then ok "cold: no program built or loaded after ready (one token, prompts, two slots)"
else not_ok "cold: no program built or loaded after ready (one token, prompts, two slots)" "$after"; fi
kill -TERM "$pid"; wait "$pid"
check "cold: SIGTERM exits 0" [ $? -eq 0 ]

# ---- warm start: the same cache
log=$tmp/warm.log
spawn "$tmp/clone/conf/cold.ini" "$log"
wait_ready "$log"
if grep -Eq 'kernels: 0 programs built, (9|[1-9][0-9]) loaded from the binary cache' "$log"; then
    ok "warm: every program loaded from the binary cache, none built"
else not_ok "warm: every program loaded from the binary cache, none built" "$(cat "$log")"; fi
kill -TERM "$pid"; wait "$pid"

# ---- a drafter with KV types of its own
drafter=$shared/models/derived/stories260K-draft-distilled.gguf
if [ -f "$drafter" ]; then
    log=$tmp/draft.log
    { cat "$tmp/clone/conf/cold.ini"; printf 'type = draft\nmodel = %s\ntype_k = q8_0\ntype_v = bf16\n' "$drafter"; } \
        > "$tmp/clone/conf/draft.ini"
    spawn "$tmp/clone/conf/draft.ini" "$log"
    wait_ready "$log"
    drafted=$(curl -s "$url/v1/completions" -H 'Content-Type: application/json' -d "$req" |
        jq '.timings.draft_n')
    after=$(sed -n '/ ready: /,$p' "$log" | grep 'after ready')
    if [ -n "$drafted" ] && [ "$drafted" != null ] && [ "$drafted" -gt 0 ] && [ -z "$after" ]; then
        ok "drafter: its programs (KV q8_0 / bf16) ready before ready, none after ($drafted tokens drafted)"
    else not_ok "drafter: its programs (KV q8_0 / bf16) ready before ready, none after" "drafted: $drafted
$after
$(tail -5 "$log")"; fi
    kill -TERM "$pid"; wait "$pid"
else
    skip "drafter: its programs ready before ready" "$drafter missing (set CLSPEC_SHARED)"
fi
exit $((fails > 0))
