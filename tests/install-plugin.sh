#!/bin/sh
# install-plugin.sh: `make install DESTDIR=...`, then build tests/plugins/minimal.c
# out of tree with only the installed header and `pkg-config --cflags clspec`,
# and run it through `clspec run --spec /path/minimal.so`; the same for the
# mtp speculator (plugins/mtp with plugins/common: its head runs on the
# device compute service, so it needs no engine header). TAP output.
set -u
echo "1..6"
tmp_name=install . "$(dirname "$0")/install-lib.sh"
hdr=$(find "$tmp/root" -path '*/include/clspec/speculator.h' | head -n 1)
ngram=$(find "$tmp/root" -path '*/clspec/plugins/ngram.so' | head -n 1)
[ -n "$pc" ] && [ -n "$hdr" ] && [ -n "$ngram" ] || fail 1 "installed clspec.pc, speculator.h, plugins/ngram.so"
echo "ok 1 - make install DESTDIR: clspec.pc, include/clspec/speculator.h, clspec/plugins/ngram.so"

# the .pc file names the real prefix; point pkg-config at the staged tree
export PKG_CONFIG_PATH="$(dirname "$pc")"
export PKG_CONFIG_SYSROOT_DIR="$tmp/root"
cflags=$(pkg-config --cflags clspec) || fail 2 "pkg-config --cflags clspec"
mkdir -p "$tmp/oot" && cp "$top_srcdir/tests/plugins/minimal.c" "$tmp/oot/"
(cd "$tmp/oot" && ${CC:-cc} -std=c11 -Wall -Wextra -Werror -shared -fPIC $cflags minimal.c -o minimal.so) \
  >"$tmp/log" 2>&1 || fail 2 "build minimal.c out of tree with $cflags"
echo "ok 2 - minimal.c built out of tree with: $cflags"

model="$shared/models/stories260K.gguf"
"$builddir/clspec" run -m "$model" -p "Once upon a time" -n 24 --temp 0 --spec "$tmp/oot/minimal.so" \
  --spec-opt max=4 >"$tmp/out" 2>"$tmp/log" || fail 3 "clspec run --spec minimal.so"
grep -q "speculator minimal: info: ready (max 4)" "$tmp/log" || fail 3 "the plugin's init did not log"
grep -q "speculation: draft_n" "$tmp/log" || fail 3 "no speculation statistics"
"$builddir/clspec" run -m "$model" -p "Once upon a time" -n 24 --temp 0 >"$tmp/plain" 2>/dev/null
cmp -s "$tmp/out" "$tmp/plain" || fail 3 "output with minimal.so differs from plain decoding"
echo "ok 3 - clspec run --spec minimal.so: loads, drafts, output equals plain decoding"

"$builddir/clspec" run -m "$model" -p "x" -n 4 --temp 0 --spec ngram --plugin-dir "$(dirname "$ngram")" \
  >/dev/null 2>"$tmp/log" || fail 4 "the installed ngram.so via --plugin-dir"
echo "ok 4 - installed ngram.so loads by name from plugin_dir"

# plugins/mtp out of tree: its own sources and plugins/common only, the installed headers for the rest
mkdir -p "$tmp/oot/mtp" "$tmp/oot/common"
cp "$top_srcdir"/plugins/mtp/*.c "$top_srcdir"/plugins/mtp/*.h "$tmp/oot/mtp/"
cp "$top_srcdir"/plugins/common/*.h "$tmp/oot/common/"
bad=$(grep -h '^#include "' "$tmp/oot/mtp/"*.c "$tmp/oot/mtp/"*.h "$tmp/oot/common/"*.h |
      grep -v -E '"(mtp_head\.h|\.\./common/[a-z_]+\.h)"')
[ -z "$bad" ] || { echo "$bad" >"$tmp/log"; fail 5 "plugins/mtp includes only its own headers, plugins/common and <clspec/...>"; }
(cd "$tmp/oot/mtp" && ${CC:-cc} -std=c11 -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden $cflags *.c \
  -o mtp.so -lm) >"$tmp/log" 2>&1 || fail 5 "build plugins/mtp out of tree with $cflags"
echo "ok 5 - plugins/mtp built out of tree from the installed headers only"

mtp_model="$shared/models/derived/stories260K-mtp.gguf"
"$builddir/clspec" run -m "$mtp_model" -p "Once upon a time" -n 32 --temp 0 --spec "$tmp/oot/mtp/mtp.so" \
  >"$tmp/out" 2>"$tmp/log" || fail 6 "clspec run --spec mtp.so (out of tree)"
grep -q "speculator mtp: info: head the target's nextn blocks on device" "$tmp/log" || fail 6 "the head did not load"
grep -q "speculation: draft_n" "$tmp/log" || fail 6 "no speculation statistics"
"$builddir/clspec" run -m "$mtp_model" -p "Once upon a time" -n 32 --temp 0 >"$tmp/plain" 2>/dev/null
cmp -s "$tmp/out" "$tmp/plain" || fail 6 "output with the out-of-tree mtp.so differs from plain decoding"
echo "ok 6 - clspec run --spec mtp.so (out of tree): the head loads, drafts, output equals plain decoding"
