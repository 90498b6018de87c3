#!/bin/sh
# make-models.sh: writes the benchmark models with `clspec synth` (seeded random
# weights, real shapes) into a build-local directory, skipping files already there.
#
#   tests/bench/make-models.sh [OUTDIR]      (run from the build directory)
#
# OUTDIR defaults to tests/bench/models (gitignored). Environment:
#   CLSPEC         the clspec binary (default ./clspec)
#   CLSPEC_SHARED  the shared directory holding models/vocab (default: ../shared
#                  next to the source tree)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
srcroot=$(cd "$here/../.." && pwd)
out=${1:-tests/bench/models}
clspec=${CLSPEC:-./clspec}
shared=${CLSPEC_SHARED:-$srcroot/../shared}
vocab=$shared/models/vocab/ggml-vocab-llama-spm.gguf

if [ ! -x "$clspec" ]; then
    echo "make-models.sh: $clspec not found or not executable (build first, or set CLSPEC)" >&2
    exit 1
fi
if [ ! -r "$vocab" ]; then
    echo "make-models.sh: vocabulary $vocab not found (set CLSPEC_SHARED)" >&2
    exit 1
fi
mkdir -p "$out"

# name preset type: one model per line
while read -r name preset type; do
    dst=$out/$name
    if [ -e "$dst" ]; then
        echo "$dst: present, skipped"
        continue
    fi
    # write under a temporary name so that an interrupted run leaves nothing to skip
    "$clspec" synth --preset "$preset" --type "$type" --seed 1 --vocab "$vocab" \
        --name "${name%.gguf}" -o "$dst.tmp"
    mv "$dst.tmp" "$dst"
done <<MODELS
synth-110m-Q8_0.gguf 110m q8_0
synth-110m-F16.gguf 110m f16
synth-1.1b-Q4_0.gguf 1.1b q4_0
MODELS
