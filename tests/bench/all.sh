#!/usr/bin/env bash
# all.sh: the benchmark set the issues' notes report, in one run (from the
# build directory, after make): device bandwidth; decode of the 110M models
# as a fraction of it (decode-bw.sh); prefill/decode of the 110M
# synthetic model in Q8_0 and F16; aggregate decode of 1/2/4/8 sequences and
# KV bytes per token; speculation (ngram, draft, mtp, dflash) against plain
# decode on stories260K at parallel 1 and 4; the daemon's tokens/s and time
# to first token with 1, 4 and 16 clients on stories260K and 110M Q8_0.
# Output: markdown on stdout. Speed is only meaningful on a quiet machine:
# `uptime` is printed first.
#
#   tests/bench/all.sh [--quick]     # --quick: fewer repetitions
set -u
cd "$(dirname "$0")/../.."
shared="${CLSPEC_SHARED:-../shared}"
reps=3
[ "${1:-}" = "--quick" ] && reps=1
models=tests/bench/models
q8="$models/synth-110m-Q8_0.gguf"
f16="$models/synth-110m-F16.gguf"
s260="$shared/models/stories260K.gguf"

echo "## $(date -u +%FT%TZ) on $(uname -n): $(uptime | sed 's/.*load/load/')"
tests/bench/make-models.sh >/dev/null || exit 1

echo; echo '### Devices'; echo '```'
./clspec devices --bandwidth
echo '```'

echo; echo '### Decode against the read bandwidth (tests/bench/decode-bw.sh)'; echo; echo '```'
ROUNDS="$reps" tests/bench/decode-bw.sh "$q8"
ROUNDS="$reps" tests/bench/decode-bw.sh "$f16"
echo '```'

echo; echo '### Prefill / decode (clspec bench)'; echo
./clspec bench -m "$q8" -p 512 -n 128 -r "$reps"
./clspec bench -m "$f16" -p 512 -n 128 -r "$reps" | tail -n +3

echo; echo '### Sequences decoded together (110M Q8_0)'; echo
./clspec bench -m "$q8" -p 64 -n 32 -r "$reps" --parallel 1,2,4,8

echo; echo '### Speculation (stories260K, greedy)'; echo
story='Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big red ball.'
rep="$story $story $story"
for par in 1 4; do
    ./clspec bench -m "$s260" -n 128 -r "$reps" --parallel "$par" --spec ngram
    ./clspec bench -m "$s260" -n 128 -r "$reps" --parallel "$par" --spec ngram --spec-prompt "$rep"
    ./clspec bench -m "$s260" -n 128 -r "$reps" --parallel "$par" --spec draft \
        --spec-opt "model=$shared/models/derived/stories260K-draft-distilled.gguf"
    ./clspec bench -m "$shared/models/derived/stories260K-mtp.gguf" -n 128 -r "$reps" --parallel "$par" \
        --spec mtp --spec-n-max 3
    if [ -f plugins/dflash/.libs/dflash.so ]; then
        ./clspec bench -m "$s260" -n 128 -r "$reps" --parallel "$par" --spec dflash --spec-n-max 7 \
            --spec-opt "model=$shared/models/derived/stories260K-dflash.gguf"
    fi
done

echo; echo '### Daemon (parallel 4, streamed, tests/bench/daemon-load.js)'; echo
command -v node >/dev/null || { echo 'node missing: skipped'; exit 0; }
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for m in "$s260" "$q8"; do
    port=$((20000 + RANDOM % 20000))
    sed -e "s|^path = .*|path = $(cd "$(dirname "$m")" && pwd)/$(basename "$m")|" -e "s|^port = .*|port = $port|" \
        -e "s|^parallel = .*|parallel = 4|" conf/clspecd.ini > "$tmp/d.ini"
    ./clspecd -c "$tmp/d.ini" 2>"$tmp/log" &
    pid=$!
    for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.5; done
    n=128; r=4
    case "$m" in *110m*) n=64; r=2 ;; esac
    echo "$(basename "$m"): $n tokens per request, $r requests per client"; echo
    node tests/bench/daemon-load.js --url "http://127.0.0.1:$port" --clients 1,4,16 --requests "$r" --max-tokens "$n"
    echo
    kill "$pid"; wait "$pid" 2>/dev/null
done
