#!/usr/bin/env bash
# dflash-layouts.sh: DFlash drafters in both GGUF layouts (TAP). The shared
# drafter (layout "dflash") is rewritten by tools/dflash-convert into the
# "dflash-draft" layout of the published Qwen3.6 drafters and back:
#   - the round trip gives back the same metadata and tensors;
#   - with either file, `clspec run --spec dflash` at temperature 0 prints
#     the text of plain decoding (4 prompts x KV f16 / q8_0) and the same
#     drafts and acceptance;
#   - a drafter that does not fit the target is refused at start-up naming
#     both: target layers beyond the target's, a feature count that does
#     not match its layers.
set -u
here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/.." && pwd)
builddir=${CLSPEC_BUILDDIR:-$srcdir}
shared=${CLSPEC_SHARED:-$srcdir/../shared}
model=$shared/models/stories260K.gguf
drafter=$shared/models/derived/stories260K-dflash.gguf
conv=$builddir/tools/dflash-convert
cli=$builddir/clspec
for f in "$model" "$drafter"; do [ -f "$f" ] || { echo "1..0 # SKIP $f missing"; exit 0; }; done
for f in "$conv" "$cli"; do [ -x "$f" ] || { echo "1..0 # SKIP $f not built"; exit 0; }; done
command -v python3 >/dev/null || { echo "1..0 # SKIP python3 missing"; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0 fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; [ $# -gt 1 ] && printf '%s\n' "$2" | sed 's/^/# /'; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else not_ok "$name"; fi; }

"$conv" "$drafter" "$tmp/draft-layout.gguf" > /dev/null && "$conv" "$tmp/draft-layout.gguf" "$tmp/back.gguf" > /dev/null
check "dflash-convert: dflash -> dflash-draft -> dflash" test -s "$tmp/back.gguf"
meta() { "$cli" inspect "$1" | sed -n '/^metadata/,$p' | sort; }
check "the round trip gives back the same metadata and tensors" cmp -s <(meta "$drafter") <(meta "$tmp/back.gguf")
check "the dflash-draft file has the published keys and names" \
    eval '"$cli" inspect "$tmp/draft-layout.gguf" | grep -q "dflash-draft.dflash.target_layer_ids" &&
          "$cli" inspect "$tmp/draft-layout.gguf" | grep -q "dflash_hidden_norm.weight" &&
          "$cli" inspect "$tmp/draft-layout.gguf" | grep -q "blk.0.post_attention_norm.weight"'

prompts=("Once upon a time" "Lily wanted to play" "The little dog" "One day, a big")
run() { # run KV [DRAFTER]: the text and the speculation line of one prompt ($p)
    "$cli" run -m "$model" -p "$p" -n 48 --temp 0 -ctk "$1" -ctv "$1" ${2:+--spec dflash --spec-opt model=$2 --spec-n-max 7 --spec-ctl acceptance} \
        2> "$tmp/err" | head -c 100000
    grep '^speculation:' "$tmp/err"
}
for kv in f16 q8_0; do
    same=1 acc=1
    for p in "${prompts[@]}"; do
        plain=$(run $kv | grep -v '^speculation:')
        a=$(run $kv "$drafter")
        b=$(run $kv "$tmp/draft-layout.gguf")
        [ "$(grep -v '^speculation:' <<<"$a")" = "$plain" ] && [ "$(grep -v '^speculation:' <<<"$b")" = "$plain" ] || same=0
        [ "$(grep '^speculation:' <<<"$a")" = "$(grep '^speculation:' <<<"$b")" ] && grep -q 'draft_n [1-9]' <<<"$a" || acc=0
    done
    check "KV $kv: both layouts give the text of plain decoding (${#prompts[@]} prompts)" test $same = 1
    check "KV $kv: both layouts draft, with the same drafts and acceptance" test $acc = 1
done

# refusals naming both sides
"$cli" synth --dim 64 --layers 2 --heads 8 --kv-heads 4 --ffn 128 --vocab "$model" -q -o "$tmp/small.gguf" 2> "$tmp/synth.err" ||
    cp "$model" "$tmp/small.gguf"
out=$("$cli" run -m "$tmp/small.gguf" -p "x" -n 2 --spec dflash --spec-opt model="$tmp/draft-layout.gguf" 2>&1)
check "a drafter tapping layers the target lacks is refused, naming both ($(grep -o 'target has [0-9]* layers' <<<"$out"))" \
    eval 'grep -q "taps the input of layer [0-9]*; the target has 2 layers" <<<"$out"'
python3 - "$tmp/draft-layout.gguf" "$tmp/badfeat.gguf" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
k = b'dflash-draft.dflash.n_target_features'
i = b.index(k) + len(k)
assert b[i:i + 4] == (4).to_bytes(4, 'little')  # type u32
b[i + 4:i + 8] = (100).to_bytes(4, 'little')
open(sys.argv[2], 'wb').write(bytes(b))
PY
out=$("$cli" run -m "$model" -p "x" -n 2 --spec dflash --spec-opt model="$tmp/badfeat.gguf" 2>&1)
check "a feature count that does not match the target layers is refused, naming both" \
    eval 'grep -q "n_target_features = 100, but 3 target layers of 64 features make 192" <<<"$out"'

echo "1..$n"
[ $fails -eq 0 ]
