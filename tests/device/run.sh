#!/usr/bin/env bash
# run.sh: the one-command device check. On a fresh machine with an OpenCL
# device and its vendor's driver (e.g. a GPU with NVIDIA's ICD under
# ocl-icd), from a copy of the source tree:
#   1. installs what is missing (tools/bootstrap.sh's Debian packages) when
#      the package servers can be reached; offline it says so and goes on
#      with what is there;
#   2. builds clspec in $OUT/src, a copy of the tree's sources;
#   3. lists the devices (`clspec devices`) and picks the first GPU (else
#      device 0; DEVICE=SEL picks another: an index or a name substring);
#   4. runs the kernel harness (tests/test-kernels, -fused, -step, -ops, -attn,
#      test-kernels-tiled: both kernel families on that device) and the
#      golden tests (test-golden, test-lcpp) with CLSPEC_KFAMILY=gpu on it;
#   5. measures `clspec devices --bandwidth` and runs `clspec bench` on the
#      110M model and a 1.1B model that `clspec synth` writes on the spot;
#   6. prints ONE table (also in $OUT/table.md).
# Everything it writes goes under one folder: $OUT when set, else a new
# temporary directory whose name it prints (logs per step, the models, the
# build). Exit status 0 when every check passed.
#
#   tests/device/run.sh                       # the whole check, < 10 minutes on a GPU machine
#   PP=64 TG=16 tests/device/run.sh           # shorter benches (slow devices)
# Environment: OUT, DEVICE, PP (512; 64 on a CPU device: PoCL with the GPU
# family), TG (128; 16 on a CPU device), TYPE_1B (q4_0), JOBS (nproc),
# CLSPEC_SHARED (default ../shared next to the tree), NO_INSTALL=1 (skip step 1),
# STEP_TIMEOUT (seconds per test or bench, default 240; 600 on a CPU device).
set -u
src=$(cd "$(dirname "$0")/../.." && pwd)
shared=${CLSPEC_SHARED:-$(cd "$src/.." && pwd)/shared}
if [ -z "${OUT:-}" ]; then
    OUT=$(mktemp -d "${TMPDIR:-/tmp}/clspec-device.XXXXXX") || { echo "run.sh: mktemp failed" >&2; exit 1; }
fi
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
pp=${PP:-}
tg=${TG:-}
type1b=${TYPE_1B:-q4_0}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
tmo=${STEP_TIMEOUT:-}
t_start=$(date +%s)
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-$OUT/cache}
export CLSPEC_SHARED=$shared
echo "run.sh: writing under $OUT"

rows=() # table rows "| check | result | s |"
fails=0
row() { rows+=("| $1 | $2 | $3 |"); }
# step NAME LOG CMD...: runs CMD with its output in $OUT/LOG, under the step
# timeout; sets step_rc and step_s
step() {
    local name=$1 log=$OUT/$2 t0
    shift 2
    t0=$(date +%s)
    echo "run.sh: $name ..."
    timeout "$tmo" "$@" >"$log" 2>&1
    step_rc=$?
    step_s=$(($(date +%s) - t0))
}

# ---- 1. dependencies ----
if [ "${NO_INSTALL:-0}" = 1 ]; then
    row "install" "skipped (NO_INSTALL=1)" 0
elif ! command -v apt-get >/dev/null || [ "$(id -u)" -ne 0 ]; then
    row "install" "skipped (no apt-get or not root)" 0
else
    t0=$(date +%s)
    if timeout 60 apt-get update -qq >"$OUT/apt-update.log" 2>&1 && ! grep -q '^[WE]:' "$OUT/apt-update.log"; then
        pkgs=(build-essential autoconf automake libtool pkg-config ocl-icd-opencl-dev opencl-c-headers clinfo
              libinih-dev libmicrohttpd-dev libjansson-dev libcmocka-dev python3)
        missing=()
        for p in "${pkgs[@]}"; do
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
        done
        if [ ${#missing[@]} -gt 0 ]; then
            DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends \
                "${missing[@]}" >"$OUT/apt-install.log" 2>&1 &&
                row "install" "installed ${missing[*]}" $(($(date +%s) - t0)) ||
                row "install" "apt-get install failed ($OUT/apt-install.log); going on" $(($(date +%s) - t0))
        else
            row "install" "nothing missing" $(($(date +%s) - t0))
        fi
    else
        row "install" "offline (apt-get update failed): using what is installed" $(($(date +%s) - t0))
    fi
fi
for tool in autoreconf make cc pkg-config; do
    command -v "$tool" >/dev/null || { row "install" "missing $tool: cannot build" 0; fails=$((fails + 1)); }
done

# ---- 2. build in $OUT/src ----
b=$OUT/src
mkdir -p "$b"
# the sources only: git's files (tracked, and untracked ones it does not
# ignore) when the tree is a checkout, else everything but .git and earlier
# device-check folders, a configured tree's outputs then cleaned
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$src" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) | tar -C "$b" -xf -
else
    tar -C "$src" --exclude=.git --exclude=node_modules --exclude='clspec-device.*' -cf - . | tar -C "$b" -xf -
    [ -f "$b/Makefile" ] && (cd "$b" && make distclean >/dev/null 2>&1)
fi
ln -sfn "$shared" "$OUT/shared" # the tests find ../shared next to the tree
build() {
    cd "$b" || return 1
    if [ ! -f Makefile ]; then
        autoreconf -fi && ./configure || return 1
    fi
    # clspec and the eight test programs of step 4 only (not the daemon's or
    # the plugins' tests: a third of the build time on 2 cores)
    make -j"$jobs" clspec tests/test-kernels tests/test-kernels-fused tests/test-kernels-step tests/test-kernels-ops \
        tests/test-kernels-attn tests/test-kernels-tiled tests/test-golden tests/test-lcpp
}
t0=$(date +%s)
echo "run.sh: build ..."
(build) >"$OUT/build.log" 2>&1
brc=$?
if [ $brc -eq 0 ] && [ -x "$b/clspec" ]; then
    row "build" "ok ($jobs jobs)" $(($(date +%s) - t0))
else
    row "build" "FAILED ($OUT/build.log: $(grep -m1 -E 'error|Error' "$OUT/build.log" | cut -c1-80))" \
        $(($(date +%s) - t0))
    fails=$((fails + 1))
fi
clspec=$b/clspec

# ---- 3. devices ----
dev=${DEVICE:-}
devname="?"
if [ -x "$clspec" ]; then
    "$clspec" devices >"$OUT/devices.txt" 2>&1
    ndev=$(grep -c '^device [0-9]*:' "$OUT/devices.txt")
    if [ -z "$dev" ]; then # the first GPU, else device 0
        dev=$(awk '/^device [0-9]+:/ { d = $2; sub(":", "", d) } /^  type +GPU/ && !f { print d; f = 1 }' \
            "$OUT/devices.txt")
        dev=${dev:-0}
    fi
    devname=$("$clspec" devices --device "$dev" 2>/dev/null | sed -n 's/^device [0-9]*: //p' | head -1)
    devtype=$("$clspec" devices --device "$dev" 2>/dev/null | sed -n 's/^  type *//p' | head -1)
    row "devices" "$ndev listed; using $dev: ${devname:-none} (${devtype:-?})" 0
    [ -n "$devname" ] || fails=$((fails + 1))
fi
# a CPU device runs the GPU family slowly (PoCL: the GPU kernels emulated
# work-item by work-item, and a cold cache compiles every attention variant
# for minutes): shorter benches and a longer limit per step unless PP/TG/
# STEP_TIMEOUT say otherwise
if [ "${devtype:-}" = CPU ]; then
    pp=${pp:-64}
    tg=${tg:-16}
    tmo=${tmo:-600}
else
    pp=${pp:-512}
    tg=${tg:-128}
    tmo=${tmo:-240}
fi

# ---- 4. kernel harness and golden tests, GPU family ----
# test-kernels, -fused, -step, -tiled and test-lcpp select by CLSPEC_TEST_DEVICE,
# test-kernels-ops and -attn by CLSPEC_DEVICE; test-golden opens device 0 (its row says so when that is
# not the chosen one)
export CLSPEC_KFAMILY=gpu CLSPEC_TEST_DEVICE="$dev" CLSPEC_DEVICE="$dev"
for t in test-kernels test-kernels-fused test-kernels-step test-kernels-ops test-kernels-attn test-kernels-tiled \
    test-golden test-lcpp; do
    if [ ! -x "$b/tests/$t" ]; then
        row "$t" "not built" 0
        fails=$((fails + 1))
        continue
    fi
    step "$t" "$t.log" bash -c "cd '$b' && ./tests/$t"
    res=$(grep -E '^\[  (PASSED|FAILED) *\]' "$OUT/$t.log" | tr -s ' ' | tr '\n' ' ')
    [ "$t" = test-golden ] && [ "$dev" != 0 ] && res="$res (on device 0, not $dev)"
    if [ $step_rc -eq 0 ]; then
        row "$t (KFAMILY=gpu)" "pass: ${res:-ok}" "$step_s"
    else
        row "$t (KFAMILY=gpu)" "FAIL rc=$step_rc ${res} ($t.log)" "$step_s"
        fails=$((fails + 1))
    fi
done

# ---- 5. bandwidth and benches ----
bw=
if [ -x "$clspec" ]; then
    step "bandwidth" bandwidth.txt "$clspec" devices --bandwidth --device "$dev"
    bw=$(sed -n 's/^  read bandwidth *\([0-9.]*\) GB\/s.*/\1/p' "$OUT/bandwidth.txt" | head -1)
    row "read bandwidth" "${bw:-FAILED} GB/s" "$step_s"
    [ -n "$bw" ] || fails=$((fails + 1))
fi
vocab=$shared/models/vocab/ggml-vocab-llama-spm.gguf
# bench LABEL PRESET TYPE: writes the model with clspec synth, then pp and tg
bench() {
    local label=$1 f=$OUT/models/synth-$2-$3.gguf
    mkdir -p "$OUT/models"
    if [ ! -e "$f" ]; then
        step "synth $label" "synth-$2-$3.log" "$clspec" synth --preset "$2" --type "$3" --seed 1 --vocab "$vocab" \
            -q -o "$f"
        if [ $step_rc -ne 0 ]; then
            row "bench $label" "synth FAILED (synth-$2-$3.log)" "$step_s"
            fails=$((fails + 1))
            return
        fi
    fi
    step "bench $label" "bench-$2-$3.log" "$clspec" bench -m "$f" -p "$pp" -n "$tg" -r 1 --device "$dev"
    local ppt tgt mib gbs
    ppt=$(awk -F'|' '$8 ~ /pp[0-9]/ { split($9, a, " "); print a[1] }' "$OUT/bench-$2-$3.log")
    tgt=$(awk -F'|' '$8 ~ /tg[0-9]/ { split($9, a, " "); print a[1] }' "$OUT/bench-$2-$3.log")
    mib=$(awk -F'|' '$8 ~ /tg[0-9]/ { split($4, a, " "); print a[1] }' "$OUT/bench-$2-$3.log")
    if [ $step_rc -ne 0 ] || [ -z "$ppt" ] || [ -z "$tgt" ]; then
        row "bench $label" "FAILED rc=$step_rc (bench-$2-$3.log)" "$step_s"
        fails=$((fails + 1))
        return
    fi
    # the decode's bytes per token ~ the file's tensor bytes (upper bound: the embedding is gathered)
    gbs=$(awk -v m="$mib" -v t="$tgt" -v b="${bw:-0}" 'BEGIN {
        g = m * 1048576 * t / 1e9; if (b > 0) printf "%.1f GB/s, %.0f%% of read bw", g, 100 * g / b; else printf "%.1f GB/s", g }')
    row "bench $label" "pp$pp $ppt t/s, tg$tg $tgt t/s (decode ~$gbs)" "$step_s"
}
if [ -x "$clspec" ]; then
    bench "110M q8_0" 110m q8_0
    bench "1.1B $type1b" 1.1b "$type1b"
fi

# ---- 6. the table ----
{
    echo "# clspec device check, $(date -u +%FT%TZ), $(uname -n), $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo 'no git')"
    echo "# device $dev: ${devname:-?}; CLSPEC_KFAMILY=gpu; $(uptime | sed 's/.*load/load/')"
    echo
    echo "| check | result | s |"
    echo "|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "total $(($(date +%s) - t_start)) s; $fails failed; everything under $OUT"
} | tee "$OUT/table.md"
[ $fails -eq 0 ]
