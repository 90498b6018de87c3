#!/usr/bin/env bash
# spec.sh: speculation against plain decoding on stories260K (greedy, 128
# tokens per slot), every shipped speculator at parallel 1 and 4, on the
# bench's default prompts and on another story prompt, with the draft length
# chosen from acceptance alone and by the cost-aware controller (each
# `clspec bench --spec` row's speedup is tokens/s with / without speculation
# in the same run; the controller line gives the measured acceptance, the
# verify cost curve c(k), draft costs and the theoretical speedup).
# Run from the build directory, after make. Output: markdown on stdout.
#
#   tests/bench/spec.sh [REPS]     # default 3 repetitions per row
set -u
cd "$(dirname "$0")/../.."
shared="${CLSPEC_SHARED:-../shared}"
reps="${1:-3}"
m="$shared/models"
s260="$m/stories260K.gguf"
story='Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big red ball.'
other='Tom had a small dog called Max. Every morning they walked to the river to watch the ducks.'
rep="$story $story $story"
echo "## $(date -u +%FT%TZ) on $(uname -n): $(uptime | sed 's/.*load/load/')"
row() { # speculator args...: one bench per controller
    for ctl in acceptance cost; do
        echo; echo "controller = $ctl: $*"; echo
        ./clspec bench -n 128 -r "$reps" --spec-ctl "$ctl" "$@" 2>/dev/null
    done
}
for par in 1 4; do
    for prompt in default other; do
        pa=(); [ "$prompt" = other ] && pa=(--spec-prompt "$other")
        echo; echo "### parallel $par, prompt: $prompt"
        row -m "$s260" --parallel "$par" --spec ngram "${pa[@]}"
        row -m "$s260" --parallel "$par" --spec draft "${pa[@]}" \
            --spec-opt "model=$m/derived/stories260K-draft-distilled.gguf"
        row -m "$m/derived/stories260K-mtp.gguf" --parallel "$par" --spec mtp --spec-n-max 3 "${pa[@]}"
        row -m "$s260" --parallel "$par" --spec dflash --spec-n-max 7 "${pa[@]}" \
            --spec-opt "model=$m/derived/stories260K-dflash.gguf"
    done
    echo; echo "### parallel $par, repetitive prompt"
    row -m "$s260" --parallel "$par" --spec ngram --spec-prompt "$rep"
done
