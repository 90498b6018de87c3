#!/bin/sh
# cli-qwen35.sh: `clspec run -m qwen35-tiny-F32.gguf --temp 0 -n 64` prints
# llama.cpp's greedy text for the 4 prompts of
# reference/qwen35/greedy-qwen35-tiny-F32.json (the hybrid model end to end:
# tokenizer, prompt as one batch, one-token decode steps). The reference
# writes ill-formed UTF-8 and the byte 0x00 as U+FFFD, so the output is
# decoded the same way before the comparison. TAP output.
set -u
builddir=${CLSPEC_BUILDDIR:-$(pwd)}
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
shared=${CLSPEC_SHARED:-$top_srcdir/../shared}
clspec="$builddir/clspec"
model="$shared/models/synthetic/qwen35-tiny-F32.gguf"
json="$shared/reference/qwen35/greedy-qwen35-tiny-F32.json"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/clspec-q35.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "1..4"
if [ ! -f "$model" ] || [ ! -f "$json" ] || ! command -v python3 >/dev/null; then
    for i in 1 2 3 4; do echo "ok $i # SKIP no qwen35 model/reference or no python3"; done
    exit 0
fi
for k in 0 1 2 3; do
    python3 -c 'import json,sys; sys.stdout.write(json.load(open(sys.argv[1]))["cases"][int(sys.argv[2])]["prompt"])' \
        "$json" $k >"$tmp/prompt"
    "$clspec" run -m "$model" -p "$(cat "$tmp/prompt")" -n 64 --temp 0 >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -eq 0 ] && python3 - "$json" $k "$tmp/out" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["cases"][int(sys.argv[2])]
out = open(sys.argv[3], "rb").read().rstrip(b"\n").decode("utf-8", "replace").replace("\x00", "\ufffd")
sys.exit(0 if out == c["prompt"] + c["text"] else 1)
PY
    then
        echo "ok $((k + 1)) - qwen35-tiny-F32 prompt $k '$(cat "$tmp/prompt")' --temp 0: llama.cpp's 64 tokens"
    else
        echo "not ok $((k + 1)) - qwen35-tiny-F32 prompt $k (rc $rc)"
        sed 's/^/# stderr: /' "$tmp/err" | tail -n 5
    fi
done
