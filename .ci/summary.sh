#!/bin/sh
# Sums automake's per-test .trs files into the closing line "N passed, N failed".
# Usage: summary.sh BUILD_DIR
dir=${1:-.}
find "$dir" -name '*.trs' -print0 2>/dev/null | xargs -0 cat 2>/dev/null | awk '
  /^:test-result: (PASS|XFAIL)/ {p++}
  /^:test-result: SKIP/ {s++}
  /^:test-result: (FAIL|XPASS|ERROR)/ {f++}
  END {printf "%d passed, %d failed, %d skipped\n", p, f, s}'
