# install-lib.sh: what install-example.sh and install-plugin.sh share (sourced
# by /bin/sh after `set -u`, with $tmp_name naming the temporary directory): the
# paths, a temporary directory removed at exit, fail() for a TAP failure
# with the end of the last log, and `make install DESTDIR=$tmp/root` (check 1
# fails when it does). After it: $top_srcdir, $builddir, $shared, $tmp, $pc
# (the staged clspec.pc).
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
builddir=${CLSPEC_BUILDDIR:-$(pwd)}
shared=${CLSPEC_SHARED:-$top_srcdir/../shared}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/clspec-$tmp_name.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "not ok $1 - $2"; [ -f "$tmp/log" ] && sed 's/^/# /' "$tmp/log" | tail -n 30; exit 1; }
${MAKE:-make} -C "$builddir" install DESTDIR="$tmp/root" >"$tmp/log" 2>&1 || fail 1 "make install DESTDIR"
pc=$(find "$tmp/root" -name clspec.pc | head -n 1)
