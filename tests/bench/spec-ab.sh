#!/usr/bin/env bash
# spec-ab.sh: two builds of clspec side by side on the speculation bench
# (stories260K targets and the shared drafters, greedy, 128 tokens a slot):
# for every speculator, parallel 1 and 4, the bench's default prompt and
# another one, `clspec bench --spec` of build A then build B, alternated
# ROUNDS times (a loaded machine slows both alike). Per row: each build's
# speedup (the bench's "pair med": tokens/s with / without speculation,
# median of back-to-back pairs in one process), B's syncs per step (B
# prints them; builds without the counter show "-"), and B / A tokens/s of
# the plain and the speculating runs (medians over the rounds).
#
#   tests/bench/spec-ab.sh A_DIR B_DIR [REPS [ROUNDS [CTL]]]   # 5 reps, 3 rounds, acceptance
set -u
A="$1"; B="$2"; reps="${3:-5}"; rounds="${4:-3}"; ctl="${5:-acceptance}"
shared="${CLSPEC_SHARED:-$(cd "$(dirname "$0")/../../.." && pwd)/shared}"
m="$shared/models"
s260="$m/stories260K.gguf"
story='Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big red ball.'
other='Tom had a small dog called Max. Every morning they walked to the river to watch the ducks.'
rep="$story $story $story"
med() { sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2}'; }
echo "## $(date -u +%FT%TZ) on $(uname -n): $(uptime | sed 's/.*load/load/'); controller $ctl, $reps reps x $rounds rounds"
echo
echo "| speculator | par | prompt | A speedup | B speedup | B syncs/step (drafting) | B/A plain tok/s | B/A spec tok/s |"
echo "|---|---|---|---|---|---|---|---|"
one() { # name par prompt-label args...
    local name="$1" par="$2" pl="$3"; shift 3
    local r dir out
    : > /tmp/spec-ab.$$.A; : > /tmp/spec-ab.$$.B
    for r in $(seq "$rounds"); do
        for dir in A B; do
            local bin; [ "$dir" = A ] && bin="$A" || bin="$B"
            out=$( cd "$bin" && ./clspec bench -n 128 -r "$reps" --spec-ctl "$ctl" --parallel "$par" "$@" 2>/dev/null )
            # plain tok/s, spec tok/s, pair med
            echo "$out" | awk -F'|' '/^\| none /{p=$6} /^\| [a-z]/ && !/none|speculator/{s=$6; pm=$13}
                END {gsub(/[ x]/,"",pm); print p+0, s+0, pm}' >> /tmp/spec-ab.$$.$dir
            # syncs per step and of them drafting: a line per mode, the speculating one last
            echo "$out" | awk '/^syncs:/{v=$2; d=$5; sub(/\(/,"",d)} END {print v, d}' >> /tmp/spec-ab.$$.$dir.s
        done
    done
    local pa pb sa sb ma mb sy dr
    pa=$(awk '{print $1}' /tmp/spec-ab.$$.A | med); pb=$(awk '{print $1}' /tmp/spec-ab.$$.B | med)
    sa=$(awk '{print $2}' /tmp/spec-ab.$$.A | med); sb=$(awk '{print $2}' /tmp/spec-ab.$$.B | med)
    ma=$(awk '{print $3}' /tmp/spec-ab.$$.A | med); mb=$(awk '{print $3}' /tmp/spec-ab.$$.B | med)
    sy=$(awk '{print $1}' /tmp/spec-ab.$$.B.s | med); dr=$(awk '{print $2}' /tmp/spec-ab.$$.B.s | med)
    printf '| %s | %s | %s | %sx | %sx | %s (%s) | %.2f | %.2f |\n' "$name" "$par" "$pl" "$ma" "$mb" "$sy" "$dr" \
        "$(echo "$pb $pa" | awk '{print ($2 > 0 ? $1 / $2 : 0)}')" "$(echo "$sb $sa" | awk '{print ($2 > 0 ? $1 / $2 : 0)}')"
    rm -f /tmp/spec-ab.$$.A /tmp/spec-ab.$$.B /tmp/spec-ab.$$.A.s /tmp/spec-ab.$$.B.s
}
for par in 1 4; do
    for prompt in default other; do
        pa=(); [ "$prompt" = other ] && pa=(--spec-prompt "$other")
        one mtp "$par" "$prompt" -m "$m/derived/stories260K-mtp.gguf" --spec mtp --spec-n-max 3 "${pa[@]}"
        one dflash "$par" "$prompt" -m "$s260" --spec dflash --spec-n-max 7 "${pa[@]}" \
            --spec-opt "model=$m/derived/stories260K-dflash.gguf"
        one draft "$par" "$prompt" -m "$s260" --spec draft "${pa[@]}" \
            --spec-opt "model=$m/derived/stories260K-draft-distilled.gguf"
        one ngram "$par" "$prompt" -m "$s260" --spec ngram "${pa[@]}"
    done
    one ngram "$par" repetitive -m "$s260" --spec ngram --spec-prompt "$rep"
done
