#!/usr/bin/env bash
# kernels-1b.sh: prefill and decode speed of the 1.1B synthetic models (F16,
# Q8_0, Q4_0, Q4_K_M) and the 110M ones (F16, Q8_0), and the fraction of the
# device's read bandwidth that decode reaches; with a llama.cpp peer, its
# speed on the same files and the ratio, the two runs alternated per model.
# Prints one table (the whole table of issue 16 in one run).
#
#   tests/bench/kernels-1b.sh [MODELDIR]        (from the build directory)
#
# MODELDIR (or $MODELDIR): where the models are found or written (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/clspec-bench; never the source tree); a
# colon-separated list is searched in order (synth-PRESET-TYPE.gguf, TYPE as
# given or in lower case) and missing models are written into the first. A
# model already there is reused. Environment:
#   CLSPEC         the clspec binary (default ./clspec)
#   CLSPEC_SHARED  the shared directory holding models/vocab (default ../shared
#                  next to the source tree)
#   MODELS         PRESET:TYPE entries to run (default "1.1b:F16 1.1b:Q8_0
#                  1.1b:Q4_0 1.1b:Q4_K_M 110m:F16 110m:Q8_0")
#   TYPES, PRESET  the older form: TYPES (e.g. "F16 Q4_0") of one PRESET
#                  (default 1.1b); used when MODELS is not set and either is
#   PP, TG         prompt and decode lengths (default 512, 128)
#   REPS           repetitions per clspec/llama-bench test (default 1)
#   DEVICE         clspec device selector (default 0)
#   LLAMA_BENCH    a llama.cpp llama-bench binary: also run it (-t $THREADS)
#   LLAMA_QUANTIZE llama-quantize (default: next to LLAMA_BENCH); makes the
#                  Q4_K_M file from the F16 one when `clspec synth` cannot
#   LLAMA_LIBS     a directory put first on LD_LIBRARY_PATH for the llama.cpp
#                  tools only (e.g. a libggml-cpu built without AMX); the
#                  caller's LD_LIBRARY_PATH passes through to every tool
#   THREADS        llama.cpp threads (default: nproc)
# Q4_K_M comes from `clspec synth --type q4_K_M` when the binary supports it,
# else from llama-quantize, else it is skipped with a message.
set -u
here=$(cd "$(dirname "$0")" && pwd)
srcroot=$(cd "$here/../.." && pwd)
clspec=${CLSPEC:-./clspec}
shared=${CLSPEC_SHARED:-$srcroot/../shared}
vocab=$shared/models/vocab/ggml-vocab-llama-spm.gguf
dirs=${1:-${MODELDIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/clspec-bench}}
dir=${dirs%%:*} # where missing models are written
if [ -n "${MODELS:-}" ]; then
    models=$MODELS
elif [ -n "${TYPES:-}" ] || [ -n "${PRESET:-}" ]; then
    models=$(for t in ${TYPES:-F16 Q8_0 Q4_0 Q4_K_M}; do printf '%s:%s ' "${PRESET:-1.1b}" "$t"; done)
else
    models="1.1b:F16 1.1b:Q8_0 1.1b:Q4_0 1.1b:Q4_K_M 110m:F16 110m:Q8_0"
fi
preset= # set per model entry below
pp=${PP:-512}
tg=${TG:-128}
reps=${REPS:-1}
dev=${DEVICE:-0}
lbench=${LLAMA_BENCH:-}
lquant=${LLAMA_QUANTIZE:-}
llibs=${LLAMA_LIBS:-}
threads=${THREADS:-$(nproc 2>/dev/null || echo 2)}
if [ -z "$lquant" ] && [ -n "$lbench" ] && [ -x "$(dirname "$lbench")/llama-quantize" ]; then
    lquant=$(dirname "$lbench")/llama-quantize
fi

die() { echo "kernels-1b.sh: $*" >&2; exit 1; }
# llama_env CMD...: runs a llama.cpp tool with LLAMA_LIBS first on LD_LIBRARY_PATH
llama_env() {
    if [ -n "$llibs" ]; then
        LD_LIBRARY_PATH="$llibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"
    else
        "$@"
    fi
}
[ -x "$clspec" ] || die "$clspec not found or not executable (run from the build directory, or set CLSPEC)"
[ -r "$vocab" ] || die "vocabulary $vocab not found (set CLSPEC_SHARED)"
[ -z "$lbench" ] || [ -x "$lbench" ] || die "LLAMA_BENCH=$lbench is not executable"
case "$(cd "$(dirname "$dir")" 2>/dev/null && pwd)/" in
"$srcroot"/*) die "$dir is inside the source tree; give a directory outside it" ;;
esac
mkdir -p "$dir" || die "cannot create $dir"
log=$(mktemp -d "${TMPDIR:-/tmp}/kernels-1b.XXXXXX") || die "mktemp failed" # the tools' stderr

# synth TYPE DST: writes DST with clspec synth (under a temporary name, so an
# interrupted run leaves nothing to reuse); 0 when the file is there
synth() {
    [ -e "$2" ] && return 0
    "$clspec" synth --preset "$preset" --type "$1" --seed 1 --vocab "$vocab" -q \
        --name "synth-$preset-$1" -o "$2.tmp.$$" 2>"$2.err.$$" && mv "$2.tmp.$$" "$2"
    local rc=$?
    rm -f "$2.tmp.$$"
    [ $rc -eq 0 ] && rm -f "$2.err.$$"
    return $rc
}

# model TYPE: prints the path of the model of TYPE, making it when missing;
# prints nothing (and a reason on stderr) when it cannot be made
model() {
    local t=$1 f=$dir/synth-$preset-$1.gguf d lc
    lc=$(echo "$t" | tr 'A-Z' 'a-z' | sed 's/_k/_K/; s/_m$/_M/; s/_s$/_S/') # q4_K_M
    local IFS=:
    for d in $dirs; do
        for f in "$d/synth-$preset-$t.gguf" "$d/synth-$preset-$lc.gguf"; do
            [ -e "$f" ] && { echo "$f"; return; }
        done
    done
    unset IFS
    f=$dir/synth-$preset-$t.gguf
    if synth "$lc" "$f"; then
        echo "$f"
        return
    fi
    rm -f "$f".err.*
    case $t in
    Q4_K_M | Q4_K_S | Q5_K_M | Q6_K)
        if [ -z "$lquant" ] || [ ! -x "$lquant" ]; then
            echo "kernels-1b.sh: $t skipped: clspec synth cannot write it and no llama-quantize (LLAMA_QUANTIZE or LLAMA_BENCH)" >&2
            return
        fi
        local src
        f=$dir/synth-$preset-$t-llq.gguf # llama-quantize's, named apart from clspec's
        [ -e "$f" ] && { echo "$f"; return; }
        src=$(model F16)
        [ -n "$src" ] || return
        llama_env "$lquant" "$src" "$f.tmp.$$" "$t" >"$log/quantize-$t.log" 2>&1 && mv "$f.tmp.$$" "$f" && echo "$f" ||
            { rm -f "$f.tmp.$$"; echo "kernels-1b.sh: $t skipped: llama-quantize failed ($log/quantize-$t.log)" >&2; } ;;
    *) echo "kernels-1b.sh: $t skipped: clspec synth --type failed" >&2 ;;
    esac
}

# bytes a decode step streams: every tensor but token_embd (a gathered row),
# plus token_embd when there is no output.weight (tied output)
stream_bytes() {
    "$clspec" inspect "$1" 2>/dev/null | awk '
        /^tensors/ { t = 1; next }
        t && $1 ~ /\.weight$|\.bias$/ { b = $NF; if ($1 == "token_embd.weight") e = b; else s += b; if ($1 == "output.weight") o = 1 }
        END { printf "%.0f\n", s + (o ? 0 : e) }'
}

# clspec_tps MODEL TEST(pp|tg): tokens/s of one clspec bench test
clspec_tps() {
    local args
    if [ "$2" = pp ]; then args="-p $pp -n 0"; else args="-p 0 -n $tg"; fi
    # shellcheck disable=SC2086
    "$clspec" bench -m "$1" $args -r "$reps" --device "$dev" 2>"$log/clspec-bench.err" |
        awk -F'|' -v t="$2" '$8 ~ "^ *" t "[0-9]+ *$" { split($9, a, " "); print a[1] }'
}

# llama_tps MODEL: "pp tg" tokens/s of llama-bench
llama_tps() {
    llama_env "$lbench" -m "$1" -t "$threads" -p "$pp" -n "$tg" -r "$reps" -o csv 2>"$log/llama-bench.err" | awk -F, '
        NR == 1 { for (i = 1; i <= NF; i++) { gsub(/"/, "", $i); c[$i] = i }; next }
        { gsub(/"/, ""); if ($c["n_gen"] == 0) p = $c["avg_ts"]; else g = $c["avg_ts"] }
        END { printf "%s %s\n", p == "" ? "-" : p, g == "" ? "-" : g }'
}

bw=$("$clspec" devices --bandwidth --device "$dev" 2>/dev/null |
    sed -n 's/^  read bandwidth *\([0-9.]*\) GB\/s.*/\1/p' | head -1)
devname=$("$clspec" devices --device "$dev" 2>/dev/null | sed -n 's/^device [0-9]*: //p' | head -1)
echo "# $(date -u +%FT%TZ) $(uname -n): $(uptime | sed 's/.*load/load/')"
echo "# device $dev: ${devname:-?}; read bandwidth ${bw:-?} GB/s (clspec devices --bandwidth); models in $dirs"
[ -n "$lbench" ] && echo "# llama.cpp: $lbench -t $threads${llibs:+ (LD_LIBRARY_PATH $llibs first)} (alternated with clspec per model)"
echo
if [ -n "$lbench" ]; then
    echo "| model | pp$pp t/s | tg$tg t/s | decode GB/s | % read bw | llama.cpp pp$pp | llama.cpp tg$tg | pp ratio | tg ratio |"
    echo "|---|---|---|---|---|---|---|---|---|"
else
    echo "| model | pp$pp t/s | tg$tg t/s | decode GB/s | % read bw |"
    echo "|---|---|---|---|---|"
fi
status=0
for e in $models; do
    preset=${e%%:*}
    t=${e#*:}
    [ "$preset" != "$e" ] && [ -n "$t" ] || die "MODELS entry '$e' is not PRESET:TYPE"
    f=$(model "$t")
    [ -n "$f" ] || continue
    sb=$(stream_bytes "$f")
    ppt=$(clspec_tps "$f" pp)
    lt="- -"
    [ -n "$lbench" ] && lt=$(llama_tps "$f")
    tgt=$(clspec_tps "$f" tg)
    if [ -z "$ppt" ] || [ -z "$tgt" ]; then
        echo "kernels-1b.sh: clspec bench failed on $f: $(tail -1 "$log/clspec-bench.err")" >&2
        status=1
        continue
    fi
    gbs=$(awk -v b="$sb" -v t="$tgt" 'BEGIN { printf "%.2f", b * t / 1e9 }')
    frac=$(awk -v g="$gbs" -v b="${bw:-0}" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * g / b; else print "-" }')
    row="| $(basename "$f" .gguf) | $ppt | $tgt | $gbs | $frac |"
    if [ -n "$lbench" ]; then
        set -- $lt
        rp=$(awk -v a="$ppt" -v b="$1" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "-" }')
        rg=$(awk -v a="$tgt" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "-" }')
        row="$row $1 | $2 | $rp | $rg |"
    fi
    echo "$row"
done
exit $status
