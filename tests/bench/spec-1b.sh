#!/usr/bin/env bash
# spec-1b.sh: issue 17's measurements on the 1.1B synthetic models, where
# verifying several rows in one forward should cost far less than decoding
# them one by one:
#  1. the verify cost curve c(k) = t(k+1 rows) / t(1 row), k = 1..8, from
#     `clspec bench -p R -n 0` (one forward of R prompt rows, the mean of
#     REPS runs after a warm-up; t(R) = R / tokens per second);
#  2. ngram speculation against plain decoding (`clspec bench --spec ngram`,
#     greedy, TG tokens, speedup = tokens/s with / without in the same run)
#     on a prompt whose greedy continuation repeats itself, with the
#     cost-aware controller and with the acceptance one. The default prompt
#     is "Once upon a time" followed by the q8_0 model's own greedy output up
#     to where it loops (" Forum" again and again), so the loop runs from the
#     first step. The ngram plugin continues a match past the history's
#     end (a copy with overlap), so a loop of any period drafts up to n_max
#     tokens a step; the other types loop differently (PROMPT). The
#     controller line of each
#     run gives its own c(k) (fitted to the step times it measured; "~"
#     marks row counts it never ran), acceptance and theoretical speedup.
# Prints markdown. Run from the build directory after make.
#
#   tests/bench/spec-1b.sh [MODELDIR]
#
# MODELDIR (or $MODELDIR): where synth-1.1b-{q8_0,q4_0,f16}.gguf are
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/clspec-bench, as kernels-1b.sh; it or
# `clspec synth --preset 1.1b --type T` writes them). Environment:
#   CLSPEC   the clspec binary (default ./clspec)
#   TYPES    models to run (default "q8_0 q4_0 f16"; a missing file is skipped)
#   TG       tokens per slot of the speculation runs (default 64)
#   REPS     repetitions (default 3)
#   KMAX     the longest draft / the curve's last k (default 8)
#   PROMPT   the speculation prompt (default below)
set -u
clspec=${CLSPEC:-./clspec}
dir=${1:-${MODELDIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/clspec-bench}}
types=${TYPES:-q8_0 q4_0 f16}
tg=${TG:-64}
reps=${REPS:-3}
kmax=${KMAX:-8}
prompt=${PROMPT:-Once upon a time interpreter rate Ill interpreter Forum Ill Forum Forum Forum Forum Forum}
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-/work/.kcache}
echo "## spec-1b.sh $(date -u +%FT%TZ) on $(uname -n): $(uptime | sed 's/.*load/load/')"

# the tokens/s of a prompt call of $2 rows on model $1 (the pp row of bench)
pp_tps() {
    "$clspec" bench -m "$1" -p "$2" -n 0 -r "$reps" 2>/dev/null |
        awk -F'|' -v t="pp$2" '{ gsub(/ /, "", $8); if ($8 == t) { split($9, v, " "); print v[1] } }'
}

declare -A curve spec_cost spec_acc
for ty in $types; do
    m="$dir/synth-1.1b-$ty.gguf"
    if [ ! -f "$m" ]; then
        echo "skipped $ty: no $m"
        continue
    fi
    echo
    echo "### $ty: verify cost curve (one forward of R rows, R = k + 1)"
    echo
    t1=
    line="| $ty |"
    for r in $(seq 1 $((kmax + 1))); do
        tps=$(pp_tps "$m" "$r")
        if [ -z "$tps" ]; then
            echo "bench -p $r failed on $m"
            line="$line ? |"
            continue
        fi
        t=$(awk -v r="$r" -v s="$tps" 'BEGIN { printf "%.6f", r / s }')
        echo "R = $r: $tps rows/s, $(awk -v t="$t" 'BEGIN { printf "%.1f", t * 1e3 }') ms per forward"
        if [ "$r" = 1 ]; then
            t1=$t
        elif [ -n "$t1" ]; then
            line="$line $(awk -v t="$t" -v u="$t1" 'BEGIN { printf "%.2f", t / u }') |"
        fi
    done
    curve[$ty]=$line
    for ctl in cost acceptance; do
        echo
        echo "### $ty: ngram, controller = $ctl, $tg tokens, prompt \"$prompt\""
        echo
        out=$("$clspec" bench -m "$m" -n "$tg" -r "$reps" --spec ngram --spec-n-max "$kmax" --spec-ctl "$ctl" \
            --spec-prompt "$prompt" 2>/dev/null)
        echo "$out"
        sp=$(echo "$out" | awk -F'|' '$2 ~ /ngram/ { gsub(/ /, "", $12); gsub(/ /, "", $13); print $12 " (pair med " $13 ")" }')
        if [ "$ctl" = cost ]; then spec_cost[$ty]=${sp:-?}; else spec_acc[$ty]=${sp:-?}; fi
    done
done

echo
echo "### Summary ($(uptime | sed 's/.*load/load/'))"
echo
hdr="| model |"
sep="|---|"
for k in $(seq 1 "$kmax"); do hdr="$hdr c($k) |"; sep="$sep---|"; done
echo "$hdr"
echo "$sep"
for ty in $types; do [ -n "${curve[$ty]:-}" ] && echo "${curve[$ty]}"; done
echo
echo "| model | ngram speedup, cost controller | ngram speedup, acceptance controller |"
echo "|---|---|---|"
for ty in $types; do
    [ -n "${curve[$ty]:-}" ] && echo "| $ty | ${spec_cost[$ty]:-?} | ${spec_acc[$ty]:-?} |"
done
