#!/usr/bin/env bash
# conn.sh: clspecd's connections and request framing (TAP), on loopback:
#   idle: 1,000 idle connections (no request) stay open while 16 clients
#     run completions (streamed and whole) with 0 failures, and /health
#     answers; the idle ones are still open afterwards (no reset);
#   cap: with max_connections = 40 and 40 idle connections open, a new
#     connection's request gets 503 naming the count (not a reset), /health
#     on such a connection still answers 200, and once the idle ones close
#     requests succeed again;
#   per-ip: with max_connections_per_ip = 4 a fifth connection from
#     127.0.0.1 gets 429 while 127.0.0.2 is served;
#   idle timeout: with idle_timeout_s = 1 an idle connection is closed by the
#     server (within 20 s), while a streamed request slower than that does not
#     time out (suspended connections do not);
#   framing: Content-Length with Transfer-Encoding, a Transfer-Encoding other
#     than chunked, and a control byte in a header get 400 and a closed
#     connection; a chunked body over max_body_bytes gets 413; three
#     pipelined requests on one connection get three answers in order;
#   gate (gate.c, checked before libmicrohttpd parses): a NUL in a header
#     value, a NUL in a header name, a malformed request line and a folded
#     header get 400; a chunk size of 2^64-1 followed by silence gets 413 at
#     once (not after the idle timeout); a lone request's answer says
#     Connection: close (a later request would not be checked); of two
#     pipelined requests, a NUL in the second one gets the first answered and
#     the connection closed before the second; with idle_timeout_s = 1 a
#     header block or a (small) body that stops halfway gets 408; a request
#     with Expect: 100-continue is served;
#   --check: GGUFs whose vocabulary the server refuses at start (a token that
#     is invalid UTF-8, a token type out of range) are refused by --check too.
# Needs curl, jq, python3 (rawhttp.py) and the built daemon; bash's /dev/tcp for idle sockets.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
model=$srcdir/models/stories260K.gguf
need "$model"
command -v python3 >/dev/null || { echo "1..0 # SKIP python3 not installed"; exit 0; }
curl() { command curl --max-time 60 "$@"; }
make_tmp

mkini() { # mkini NAME [server lines...]
    local name=$1; shift
    {
        echo "[server]"; echo "port = 0"; echo "max_body_bytes = 1024"
        for l in "$@"; do echo "$l"; done
        echo "[model]"; echo "path = $model"
        echo "[kv]"; echo "n_ctx = 1024"
    } > "$tmp/$name.ini"
}

# open_idle N [SRC]: N idle connections to $port (fds in the array idle)
idle=()
open_idle() {
    local i fd
    for ((i = 0; i < $1; i++)); do
        exec {fd}<>/dev/tcp/127.0.0.1/$port || return 1
        idle+=("$fd")
    done
}
close_idle() {
    local fd
    for fd in "${idle[@]}"; do exec {fd}<&-; done
    idle=()
}
# still_open FD: the server has not closed FD (a read times out instead of EOF)
still_open() {
    local b
    read -r -t 0.001 -u "$1" b
    [ $? -gt 128 ]
}
# raw REQ [SECONDS]: REQ (Python escapes: \r\n, \x01) on a fresh connection; prints the answer (CR removed)
raw() { python3 "$here/rawhttp.py" "$port" "$@"; }
complete() { # complete STREAM: one completion; prints the HTTP status
    curl -s -o "$tmp/out.$BASHPID" -w '%{http_code}' "$url/v1/completions" \
        -d "{\"prompt\":\"Once upon a time\",\"max_tokens\":16,\"temperature\":0,\"stream\":$1}"
}
# clients N K: N clients, K completions each (streamed and whole alternate); prints the failures
clients() {
    local c
    for ((c = 0; c < $1; c++)); do
        (
            f=0
            for ((k = 0; k < $2; k++)); do
                s=false; [ $(((c + k) % 2)) = 1 ] && s=true
                [ "$(complete $s)" = 200 ] || f=$((f + 1))
            done
            echo $f
        ) > "$tmp/cl.$c" &
    done
    wait
    cat "$tmp"/cl.* | awk '{s += $1} END {print s + 0}'
    rm -f "$tmp"/cl.*
}

# ---- idle connections with normal clients
mkini idle "max_connections = 2000" "idle_timeout_s = 600"
start idle || { echo "1..0 # SKIP the daemon did not start"; exit 0; }
if open_idle 1000; then ok "idle: 1000 idle connections opened"; else not_ok "idle: 1000 idle connections opened"; fi
nfail=$(clients 16 4)
[ "$nfail" = 0 ] && ok "idle: 16 clients x 4 completions beside 1000 idle connections: 0 failures" \
    || not_ok "idle: 16 clients x 4 completions beside 1000 idle connections: 0 failures" "$nfail failed"
check "idle: /health answers 200" test "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200
open=0
for fd in "${idle[@]}"; do still_open "$fd" && open=$((open + 1)); done
[ "$open" = 1000 ] && ok "idle: the idle connections are still open" \
    || not_ok "idle: the idle connections are still open" "$open of 1000"
close_idle
stop

# ---- the total cap
mkini cap "max_connections = 40"
start cap
open_idle 40
code=$(curl -s -o "$tmp/cap.json" -w '%{http_code}' "$url/v1/completions" -d '{"prompt":"x","max_tokens":1}')
[ "$code" = 503 ] && grep -q 'too many connections: 41 were open' "$tmp/cap.json" \
    && ok "cap: the 41st connection's request gets 503 naming the count" \
    || not_ok "cap: the 41st connection's request gets 503 naming the count" "$code $(cat "$tmp/cap.json")"
check "cap: /health on a connection over the cap answers 200" \
    test "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200
close_idle
sleep 0.3
check "cap: after the idle ones close, a completion succeeds" test "$(complete false)" = 200
stop

# ---- per address
mkini perip "max_connections_per_ip = 4"
start perip
open_idle 4
code=$(curl -s -o "$tmp/ip.json" -w '%{http_code}' "$url/v1/completions" -d '{"prompt":"x","max_tokens":1}')
[ "$code" = 429 ] && grep -q 'from your address: 5 were open' "$tmp/ip.json" \
    && ok "per-ip: a fifth connection from 127.0.0.1 gets 429" \
    || not_ok "per-ip: a fifth connection from 127.0.0.1 gets 429" "$code $(cat "$tmp/ip.json")"
code=$(curl -s --interface 127.0.0.2 -o /dev/null -w '%{http_code}' "$url/v1/completions" \
    -d '{"prompt":"x","max_tokens":1}')
if [ "$code" = 000 ]; then
    skip "per-ip: 127.0.0.2 is served meanwhile" "cannot bind 127.0.0.2"
else
    check "per-ip: 127.0.0.2 is served meanwhile" test "$code" = 200
fi
close_idle
stop

# ---- idle timeout
mkini tmo "idle_timeout_s = 1"
start tmo
open_idle 1
closed=no
for _ in $(seq 1 100); do
    read -r -t 0.2 -u "${idle[0]}" _; rc=$?
    [ $rc -le 128 ] && { closed=yes; break; }
done
check "idle timeout: the server closes an idle connection" test $closed = yes
close_idle
# a stream of 120 tokens at most 1 token per... the stream is suspended between events; it must end with [DONE]
curl -sN "$url/v1/completions" -d '{"prompt":"Once","max_tokens":120,"temperature":0,"stream":true,"ignore_eos":true}' \
    > "$tmp/tmo.sse"
check "idle timeout: a streamed request completes (ends with [DONE])" grep -q '^data: \[DONE\]' "$tmp/tmo.sse"
out=$(raw 'GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: a' 8)
echo "$out" | grep -q '^HTTP/1.1 408' && echo "$out" | grep -q 'did not arrive within 1 s' \
    && ok "gate: a header block that stops halfway: 408" || not_ok "gate: a header block that stops halfway: 408" "$out"
out=$(raw 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{"prompt":' 8)
echo "$out" | grep -q '^HTTP/1.1 408' && echo "$out" | grep -q 'body did not arrive within 1 s' \
    && ok "gate: a body that stops halfway: 408" || not_ok "gate: a body that stops halfway: 408" "$out"
stop

# ---- framing
mkini frame
start frame
out=$(raw 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')
echo "$out" | grep -q '^HTTP/1.1 400' && echo "$out" | grep -q 'Content-Length and Transfer-Encoding' \
    && echo "$out" | grep -qi '^connection: close' \
    && ok "framing: Content-Length with Transfer-Encoding: 400, connection closed" \
    || not_ok "framing: Content-Length with Transfer-Encoding: 400, connection closed" "$out"
out=$(raw 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n')
echo "$out" | grep -q '^HTTP/1.1 400' && echo "$out" | grep -q "Transfer-Encoding 'gzip, chunked' is not supported" \
    && ok "framing: Transfer-Encoding gzip, chunked: 400" || not_ok "framing: Transfer-Encoding gzip, chunked: 400" "$out"
out=$(raw 'GET /health HTTP/1.1\r\nHost: x\r\nX-Evil: a\x01b\r\n\r\n')
echo "$out" | grep -q '^HTTP/1.1 400' && echo "$out" | grep -q "header 'X-Evil' holds a control byte" \
    && ok "framing: a control byte in a header: 400" || not_ok "framing: a control byte in a header: 400" "$out"
body=$(head -c 1100 /dev/zero | tr '\0' a)
out=$(raw "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n44c\r\n$body\r\n0\r\n\r\n")
echo "$out" | grep -q '^HTTP/1.1 413' && echo "$out" | grep -q 'over the limit of 1024 bytes' \
    && ok "framing: a chunked body over max_body_bytes: 413" \
    || not_ok "framing: a chunked body over max_body_bytes: 413" "$out"
out=$(raw 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1FFFFFFFFFFFFFFFF\r\nabc\r\n')
echo "$out" | grep -q '^HTTP/1.1 4[01][03]' && ok "framing: a chunk size over 2^64: a 4xx answer" \
    || not_ok "framing: a chunk size over 2^64: a 4xx answer" "$out"
gate400() { # gate400 NAME REQUEST WANT: a 400 naming WANT, and the connection closed
    local out
    out=$(raw "$2")
    echo "$out" | grep -q '^HTTP/1.1 400' && echo "$out" | grep -q "$3" && echo "$out" | grep -qi '^connection: close' \
        && ok "gate: $1: 400" || not_ok "gate: $1: 400" "$out"
}
gate400 "a NUL in a header value" 'GET /health HTTP/1.1\r\nHost: x\r\nX-Evil: a\x00b\r\n\r\n' 'a NUL byte'
gate400 "a NUL in a header name" 'GET /health HTTP/1.1\r\nHost: x\r\nX-E\x00vil: ab\r\n\r\n' 'a NUL byte'
gate400 "a malformed request line" 'GET /health\r\nHost: x\r\n\r\n' 'malformed request line'
gate400 "a folded header" 'GET /health HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n' 'folded header'
t0=$(date +%s)
out=$(raw 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n' 30)
t1=$(date +%s)
echo "$out" | grep -q '^HTTP/1.1 413' && echo "$out" | grep -q 'over the limit of 1024 bytes' && [ $((t1 - t0)) -lt 20 ] \
    && ok "gate: a chunk size of 2^64-1, then silence: 413 (not a wait for the idle timeout)" \
    || not_ok "gate: a chunk size of 2^64-1, then silence: 413 (not a wait for the idle timeout)" "$((t1 - t0)) s: $out"
code=$(curl -s -o "$tmp/expect.json" -w '%{http_code}' -H 'Expect: 100-continue' "$url/v1/completions" \
    -d '{"prompt":"Once","max_tokens":2,"temperature":0}')
check "gate: a request with Expect: 100-continue is served" test "$code" = 200
out=$(raw 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
echo "$out" | grep -q '^HTTP/1.1 200' && echo "$out" | grep -qi '^connection: close' \
    && ok "gate: a lone request's answer closes the connection" \
    || not_ok "gate: a lone request's answer closes the connection" "$out"
out=$(raw 'GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: x\r\nX-Evil: a\x00b\r\n\r\n')
codes=$(echo "$out" | grep -ao 'HTTP/1.1 [0-9]*' | tr '\n' ' ')
[ "$codes" = "HTTP/1.1 200 " ] && echo "$out" | grep -q '"status":"ok"' && echo "$out" | grep -qi '^connection: close' \
    && ok "gate: a NUL in the second of two pipelined requests: the first answered, closed before the second" \
    || not_ok "gate: a NUL in the second of two pipelined requests: the first answered, closed before the second" "$out"
req='{"prompt":"Once","max_tokens":4,"temperature":0}'
out=$(raw "GET /health HTTP/1.1\r\nHost: x\r\n\r\nPOST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ${#req}\r\n\r\n${req}GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" 10)
codes=$(echo "$out" | grep -ao 'HTTP/1.1 [0-9]*' | tr '\n' ' ')
[ "$codes" = "HTTP/1.1 200 HTTP/1.1 200 HTTP/1.1 200 " ] && echo "$out" | grep -q '"status":"ok"' \
    && echo "$out" | grep -q '"text_completion"' && echo "$out" | grep -q '"object":"list"' \
    && ok "framing: three pipelined requests get three answers in order" \
    || not_ok "framing: three pipelined requests get three answers in order" "$codes"
check "framing: the daemon still serves" test "$(complete false)" = 200
stop
check "framing: SIGTERM: exit code 0" test $? = 0

# ---- --check refuses the vocabularies the server refuses at start
python3 - "$model" "$tmp" <<'PY'
import struct, sys
src = open(sys.argv[1], "rb").read()
def array_at(key):
    off = src.find(key) + len(key)
    return off + 16  # array type, element type, count
pos = array_at(b"tokenizer.ggml.tokens")
for _ in range(300):  # token 300: its first byte becomes 0xff (invalid UTF-8)
    pos += 8 + struct.unpack_from("<Q", src, pos)[0]
b = bytearray(src); b[pos + 8] = 0xFF
open(sys.argv[2] + "/bad-utf8.gguf", "wb").write(b)
b = bytearray(src); struct.pack_into("<i", b, array_at(b"tokenizer.ggml.token_type") + 4 * 10, 99)
open(sys.argv[2] + "/bad-type.gguf", "wb").write(b)
PY
for bad in "bad-utf8:tokenizer.ggml.tokens\[300\]: invalid UTF-8" "bad-type:token_type\[10\] = 99 is not a token type"; do
    f=${bad%%:*}; want=${bad#*:}
    printf '[server]\nport = 0\n[model]\npath = %s\n' "$tmp/$f.gguf" > "$tmp/$f.ini"
    "$bin" -c "$tmp/$f.ini" --check > "$tmp/$f.check" 2>&1; crc=$?
    timeout 60 "$bin" -c "$tmp/$f.ini" > "$tmp/$f.run" 2>&1; src=$?
    [ $crc = 1 ] && grep -q "\[model\] path: the vocabulary: .*$want" "$tmp/$f.check" && [ $src = 1 ] \
        && grep -q "$want" "$tmp/$f.run" \
        && ok "--check refuses $f.gguf as the server does (exit 1, naming the token)" \
        || not_ok "--check refuses $f.gguf as the server does (exit 1, naming the token)" \
            "check rc $crc: $(cat "$tmp/$f.check"); server rc $src: $(tail -n 2 "$tmp/$f.run")"
done

echo "1..$n"
[ $fails = 0 ]
