#!/bin/sh
# cli-run.sh: `clspec run` prints llama.cpp's greedy text: the stories260K
# story of issue 3 ("Once upon a time", 64 tokens, --temp 0), and with
# --numerics llamacpp the 64-token continuation of every TinyStories-656K-Q8_0
# reference prompt; a bad --numerics value is refused with the choices, and
# --numerics llamacpp with --spec (not lossless: batches round differently). TAP output.
set -u
builddir=${CLSPEC_BUILDDIR:-$(pwd)}
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
shared=${CLSPEC_SHARED:-$top_srcdir/../shared}
clspec="$builddir/clspec"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/clspec-cli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "1..7"
if [ ! -f "$shared/models/stories260K.gguf" ] || ! command -v python3 >/dev/null; then
    for i in 1 2 3 4 5 6 7; do echo "ok $i # SKIP no ../shared models or no python3"; done
    exit 0
fi

# case K of reference JSON: prompt on line 1 of $tmp/prompt, text in $tmp/ref
ref_case() {
    python3 - "$1" "$2" "$tmp" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["cases"][int(sys.argv[2])]
open(sys.argv[3] + "/prompt", "w").write(c["prompt"])
open(sys.argv[3] + "/ref", "w").write(c["text"])
PY
}

# runs clspec run for $tmp/prompt with extra args; ok N if stdout = prompt + reference text
check() {
    n=$1; label=$2; shift 2
    "$clspec" run -p "$(cat "$tmp/prompt")" -n 64 --temp 0 "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -eq 0 ] && python3 - "$tmp" <<'PY'
import sys
t = sys.argv[1]
p, ref, out = (open(t + "/" + f).read() for f in ("prompt", "ref", "out"))
sys.exit(0 if out.rstrip("\n") == (p + ref).rstrip("\n") else 1)
PY
    then
        echo "ok $n - $label"
    else
        echo "not ok $n - $label (rc $rc)"
        sed 's/^/# got: /' "$tmp/out" | head -n 5
        sed 's/^/# want: /' "$tmp/ref" | head -n 5
        sed 's/^/# stderr: /' "$tmp/err" | tail -n 5
    fi
}

ref_case "$shared/reference/greedy-stories260K.json" 0
check 1 "stories260K 'Once upon a time' -n 64 --temp 0 prints the reference story" -m "$shared/models/stories260K.gguf"
for k in 0 1 2 3; do
    ref_case "$shared/reference/greedy-TinyStories-656K-Q8_0.json" $k
    check $((k + 2)) "TinyStories-656K-Q8_0 prompt $k '$(cat "$tmp/prompt")' --numerics llamacpp: llama.cpp's text" \
        -m "$shared/models/TinyStories-656K-Q8_0.gguf" --numerics llamacpp
done
if "$clspec" run -m "$shared/models/stories260K.gguf" -p x -n 1 --numerics exact >"$tmp/out" 2>"$tmp/err"; then
    echo "not ok 6 - --numerics exact refused"
elif grep -q "numerics needs default or llamacpp" "$tmp/err"; then
    echo "ok 6 - --numerics exact refused: $(cat "$tmp/err" | head -n 1)"
else
    echo "not ok 6 - --numerics exact: the message names the choices"; sed 's/^/# /' "$tmp/err"
fi
if "$clspec" run -m "$shared/models/stories260K.gguf" -p x -n 4 --temp 0 --spec ngram --numerics llamacpp \
    >"$tmp/out" 2>"$tmp/err"; then
    echo "not ok 7 - --spec with --numerics llamacpp refused"
elif grep -q "drop --spec or --numerics" "$tmp/err"; then
    echo "ok 7 - --spec with --numerics llamacpp refused: $(head -n 1 "$tmp/err" | cut -c1-90)..."
else
    echo "not ok 7 - --spec with --numerics llamacpp: the message names the fix"; sed 's/^/# /' "$tmp/err"
fi
