#!/usr/bin/env bash
# decode-bw.sh: decode speed of a model as a fraction of the device's read
# bandwidth, both measured in the same run (from the build directory, after
# make). The machine is shared and noisy, so the two are measured in
# alternation, ROUNDS times (default 5): each round runs `clspec devices
# --bandwidth` and `clspec bench -p 0 -n 128 -r 1` back to back and prints
# the effective bandwidth (weight bytes of the file x tokens/s) against the
# probe; the last lines give the median of the rounds' ratios and the best
# decode against the best probe (each at its least disturbed).
#
#   tests/bench/decode-bw.sh [MODEL] [DEVICE]
#   default MODEL tests/bench/models/synth-110m-Q8_0.gguf, DEVICE 0
set -u
cd "$(dirname "$0")/../.."
model="${1:-tests/bench/models/synth-110m-Q8_0.gguf}"
dev="${2:-0}"
rounds="${ROUNDS:-5}"
[ -f "$model" ] || { echo "decode-bw.sh: $model missing (tests/bench/make-models.sh writes it)" >&2; exit 1; }
echo "# $(date -u +%FT%TZ) $(uname -n): $(uptime | sed 's/.*load/load/'); $model on device $dev"
ratios=()
best_bw=0
best_eff=0
for r in $(seq 1 "$rounds"); do
    bw=$(./clspec devices --bandwidth --device "$dev" 2>/dev/null | sed -n 's/^  read bandwidth *\([0-9.]*\) GB\/s.*/\1/p' | head -1)
    line=$(./clspec bench -m "$model" -p 0 -n 128 -r 1 --device "$dev" 2>/dev/null | grep 'tg128')
    mib=$(echo "$line" | awk -F'|' '{print $4}' | sed 's/ MiB//;s/ //g')
    tps=$(echo "$line" | awk -F'|' '{print $9}' | awk '{print $1}')
    if [ -z "$bw" ] || [ -z "$mib" ] || [ -z "$tps" ]; then
        echo "decode-bw.sh: round $r: could not read the probe or the bench" >&2
        exit 1
    fi
    ratio=$(awk -v m="$mib" -v t="$tps" -v b="$bw" 'BEGIN { printf "%.3f", m * 1048576 * t / 1e9 / b }')
    awk -v r="$r" -v m="$mib" -v t="$tps" -v b="$bw" -v q="$ratio" 'BEGIN {
        printf "round %d: probe %.1f GB/s, tg128 %.2f t/s x %.1f MB = %.2f GB/s -> %.0f%%\n",
               r, b, t, m * 1.048576, m * 1048576 * t / 1e9, q * 100 }'
    ratios+=("$ratio")
    best_bw=$(awk -v a="$best_bw" -v b="$bw" 'BEGIN { print (b > a ? b : a) }')
    best_eff=$(awk -v a="$best_eff" -v m="$mib" -v t="$tps" 'BEGIN { e = m * 1048576 * t / 1e9; print (e > a ? e : a) }')
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END {
    printf "median of %d rounds: %.0f%% of the measured read bandwidth\n", NR, 100 * a[int((NR + 1) / 2)] }'
awk -v e="$best_eff" -v b="$best_bw" 'BEGIN {
    printf "best decode %.2f GB/s against the best probe %.1f GB/s: %.0f%%\n", e, b, 100 * e / b }'
