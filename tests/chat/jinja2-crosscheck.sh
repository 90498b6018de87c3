#!/bin/sh
# jinja2-crosscheck.sh: renders every chat template fixture of tests/chat/
# with every conversation (conv-*.json) through clspec's Jinja interpreter
# (tests/jinja-render) and through Python's jinja2 in transformers'
# environment (jinja2_render.py); each fixture is one TAP test that fails on
# any difference in the text, or when one side fails and the other does not
# (both refusing, e.g. a system message the template rejects, is agreement).
# Skipped without python3-jinja2 (tools/bootstrap.sh installs it).
set -u
builddir=${CLSPEC_BUILDDIR:-$(pwd)}
dir=$(cd "$(dirname "$0")" && pwd)
render="$builddir/tests/jinja-render"
n=$(ls "$dir"/*.jinja | wc -l)
echo "1..$n"
if ! python3 -c 'import jinja2' 2>/dev/null || [ ! -x "$render" ]; then
    i=1
    while [ $i -le $n ]; do
        echo "ok $i # SKIP python3-jinja2 not installed (apt-get install python3-jinja2) or no $render"
        i=$((i + 1))
    done
    exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/clspec-jinja.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
i=0
for t in "$dir"/*.jinja; do
    i=$((i + 1))
    bad=0 same=0 refused=0
    for c in "$dir"/conv-*.json; do
        "$render" "$t" "$c" 1700000000 >"$tmp/a" 2>"$tmp/ae"; ra=$?
        python3 "$dir/jinja2_render.py" "$t" "$c" 1700000000 >"$tmp/b" 2>"$tmp/be"; rb=$?
        if [ $ra -ne $rb ]; then
            echo "# $(basename "$c"): clspec rc=$ra ($(cat "$tmp/ae")), jinja2 rc=$rb ($(cat "$tmp/be"))"
            bad=$((bad + 1))
        elif [ $ra -ne 0 ]; then
            refused=$((refused + 1))
        elif ! cmp -s "$tmp/a" "$tmp/b"; then
            echo "# $(basename "$c"): the texts differ:"
            diff "$tmp/a" "$tmp/b" | head -20 | sed 's/^/#   /'
            bad=$((bad + 1))
        else
            same=$((same + 1))
        fi
    done
    if [ $bad -eq 0 ]; then
        echo "ok $i - $(basename "$t"): $same identical, $refused refused by both"
    else
        echo "not ok $i - $(basename "$t"): $bad differ from jinja2"
    fi
done
