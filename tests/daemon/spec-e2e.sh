#!/usr/bin/env bash
# spec-e2e.sh: speculative decoding in clspecd end to end (TAP). Starts the
# daemon on free loopback ports (port = 0, read from its log) with temporary
# INIs derived from conf/clspecd.ini and the bundled stories260K, and checks:
#   - lossless: at temperature 0, [speculator] type = ngram, draft (the
#     distilled stories260K drafter), mtp (the sidecar head) and dflash (the
#     trained drafter; these two through the core's prefill, for their taps)
#     return the same text as the daemon
#     without speculation for every prompt of reference/greedy-stories260K.json,
#     with 4 concurrent requests on parallel = 4, KV f16 (and q8_0 when the
#     engine accepts it for this model; otherwise its clear start-up refusal);
#   - timings (draft_n, draft_accepted, acceptance rate, mean accepted length),
#     /metrics counters per speculator, /slots;
#   - configuration refusals with file:line: [speculator] key: ...;
#   - each loader failure (missing file, not a shared object, missing symbol,
#     ABI mismatch, vtable too small, missing capability, init failure) gives
#     its own start-up message and a non-zero exit;
#   - a request with "speculative": false on a speculating server (the
#     never-fail cases of MISSION §5, 4 included, are tests/daemon/never-fail.sh);
#   - a plugin built out of tree against the installed header (pkg-config)
#     runs in the daemon.
#   - [speculator] controller = cost (draft, mtp, dflash): lossless, timings and /metrics report
#     its choices; "speculative.n_max" caps a request's drafts, refused beyond 64;
#   - /metrics counts the forwards and the blocking syncs in them (and drafting),
#     timings give syncs per step;
# Needs curl and jq; the test plugins of tests/plugins (built by make check).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
drafter=$shared/models/derived/stories260K-draft-distilled.gguf
golden=$shared/reference/greedy-stories260K.json
tplug=$builddir/tests/plugins/.libs

need "$model" "$drafter" "$golden"
make_tmp

# base.ini: the shipped configuration on a free port with the bundled model, no [speculator] section
sed -e "s|^port = .*|port = 0|" -e "s|^path = .*|path = $model|" -e "s|^parallel = .*|parallel = 4|" \
    -e "s|^n_ctx = .*|n_ctx = 1024|" "$srcdir/conf/clspecd.ini" | sed '/^\[speculator\]/,$d' > "$tmp/base.ini"
mkini() { # mkini NAME [kv lines...] [-- speculator lines...]: $tmp/NAME.ini; "kv:" lines go to [kv]
    local name=$1; shift
    local f=$tmp/$name.ini
    cp "$tmp/base.ini" "$f"
    echo "[speculator]" >> "$f"
    for l in "$@"; do
        case $l in
        kv:*) sed -i "/^\[kv\]/a ${l#kv:}" "$f" ;;
        *) echo "$l" >> "$f" ;;
        esac
    done
}

comp() { # comp PROMPT [SPECULATIVE] -> the response JSON (temperature 0, 48 tokens)
    curl -s "$url/v1/completions" -d "$(jq -cn --arg p "$1" --argjson s "${2:-true}" \
        '{prompt:$p,max_tokens:48,temperature:0,speculative:$s}')"
}
nprompts=$(jq '.cases | length' "$golden")
prompt() { jq -r ".cases[$1].prompt" "$golden"; }

# runs all prompts concurrently against $url; texts in $tmp/$1.$i.txt, responses in $tmp/$1.$i.json
run_prompts() {
    local tag=$1 i cp=()
    for ((i = 0; i < nprompts; i++)); do
        comp "$(prompt $i)" > "$tmp/$tag.$i.json" &
        cp+=($!)
    done
    for p in "${cp[@]}"; do wait "$p"; done
    for ((i = 0; i < nprompts; i++)); do
        jq -r '.choices[0].text' "$tmp/$tag.$i.json" > "$tmp/$tag.$i.txt" 2>/dev/null || echo "(no JSON)" > "$tmp/$tag.$i.txt"
    done
}
same_texts() { # same_texts TAG: every prompt's text equals the plain daemon's
    local i
    for ((i = 0; i < nprompts; i++)); do
        [ -s "$tmp/plain.$i.txt" ] && cmp -s "$tmp/plain.$i.txt" "$tmp/$1.$i.txt" || {
            echo "# prompt $i: plain: $(cat "$tmp/plain.$i.txt")"
            echo "# prompt $i: $1:  $(cat "$tmp/$1.$i.txt")"
            return 1
        }
    done
}

# ---- the reference: no speculation (one request at a time)
mkini plain "type = none"
if ! start plain; then
    not_ok "plain daemon up" "$(tail -5 "$tmp/plain.log")"
    echo "1..$n"
    exit 1
fi
for ((i = 0; i < nprompts; i++)); do
    comp "$(prompt $i)" > "$tmp/plain.$i.json"
    jq -r '.choices[0].text' "$tmp/plain.$i.json" > "$tmp/plain.$i.txt"
done
check "plain daemon: $nprompts reference prompts answered, timings.speculative false" \
    test "$(jq -s '[.[] | select(.timings.speculative == false and .timings.draft_n == 0)] | length' \
        "$tmp"/plain.*.json)" = "$nprompts"
check "plain daemon: /metrics has no speculator counters" \
    test -z "$(curl -s "$url/metrics" | grep clspec_spec_)"
stop

# ---- lossless: ngram and draft, f16 KV, 4 concurrent requests on parallel = 4
for kind in ngram draft mtp dflash; do
    mapfile -t lines < <(spec_lines $kind)
    mkini $kind "${lines[@]}"
    if [ $kind = mtp -o $kind = dflash ] && [ ! -f "$builddir/plugins/$kind/.libs/$kind.so" ]; then
        skip "lossless: type = $kind" "plugin not built"
        continue
    fi
    if ! start $kind; then
        not_ok "$kind daemon up" "$(tail -5 "$tmp/$kind.log")"
        continue
    fi
    run_prompts $kind
    check "lossless: type = $kind, f16 KV, parallel 4: temperature-0 text equals no speculation ($nprompts prompts)" \
        same_texts $kind
    check "$kind: timings has speculative, spec_steps, draft_n, draft_accepted, draft_acceptance_rate, mean_accepted_length" \
        test "$(jq -s '[.[] | .timings | select(.speculative == true and (.draft_n|type) == "number"
            and (.draft_accepted|type) == "number" and .draft_accepted <= .draft_n
            and (.draft_acceptance_rate|type) == "number" and .mean_accepted_length >= 1 and .spec_steps > 0)] | length' \
            "$tmp"/$kind.*.json)" = "$nprompts"
    drafted=$(jq -s '[.[] | .timings.draft_n] | add' "$tmp"/$kind.*.json)
    accepted=$(jq -s '[.[] | .timings.draft_accepted] | add' "$tmp"/$kind.*.json)
    echo "# $kind: $drafted drafted, $accepted accepted over $nprompts prompts"
    if [ $kind != ngram ]; then
        check "$kind: the speculator drafts and some drafts are accepted" test "$drafted" -gt 0 -a "$accepted" -gt 0
    fi
    m=$(curl -s "$url/metrics")
    check "$kind: /metrics counts drafted and accepted tokens per speculator" \
        test "$(echo "$m" | grep "^clspec_spec_draft_tokens_total{.*speculator=\"$kind\"}" | awk '{print $2}')" = "$drafted" \
        -a "$(echo "$m" | grep "^clspec_spec_draft_accepted_total{.*speculator=\"$kind\"}" | awk '{print $2}')" = "$accepted" \
        -a "$(echo "$m" | grep -c "^clspec_spec_requests_total{.*speculator=\"$kind\"} $nprompts\$")" = 1
    fw=$(echo "$m" | grep "^clspec_spec_forwards_total{.*speculator=\"$kind\"}" | awk '{print $2}')
    sy=$(echo "$m" | grep "^clspec_spec_syncs_total{.*speculator=\"$kind\"}" | awk '{print $2}')
    syd=$(echo "$m" | grep "^clspec_spec_draft_syncs_total{.*speculator=\"$kind\"}" | awk '{print $2}')
    echo "# $kind: ${fw:-?} forwards, ${sy:-?} syncs (${syd:-?} drafting)"
    check "$kind: /metrics counts forwards and syncs (at least one per forward; none drafting for ngram)" \
        test "${fw:-0}" -gt 0 -a "${sy:-0}" -ge "${fw:-1}" -a "${syd:-0}" -le "${sy:-0}" \
        -a \( $kind != ngram -o "${syd:-1}" = 0 \)
    check "$kind: timings.syncs_per_step is at least 1 for every request" \
        test "$(jq -s '[.[] | .timings | select((.syncs_per_step|type) == "number" and .syncs_per_step >= 1)] | length' \
            "$tmp"/$kind.*.json)" = "$nprompts"
    check "$kind: every slot logged whether speculation is on" \
        test "$(grep -c "slot [0-9]: speculation on ($kind" "$tmp/$kind.log")" -ge "$nprompts"
    if [ $kind = ngram ]; then
        # a request with speculative = false on a speculating server (never-fail.sh: never-fail-4 on dflash)
        comp "$(prompt 0)" false > "$tmp/off.json"
        check "$kind: \"speculative\": false serves the same text, no drafts" \
            test "$(jq -r '.choices[0].text' "$tmp/off.json")" = "$(cat "$tmp/plain.0.txt")" \
            -a "$(jq -r '.timings.speculative, .timings.draft_n' "$tmp/off.json" | tr '\n' ' ')" = "false 0 " \
            -a -n "$(grep 'speculation off (the request says "speculative": false)' "$tmp/$kind.log")"
        # a cancelled streaming request mid-speculation: the slot comes back, nothing held
        curl -sN -m 0.3 "$url/v1/completions" -d "$(jq -cn --arg p "$(prompt 0)" \
            '{prompt:$p,max_tokens:900,temperature:0,ignore_eos:true,stream:true}')" > /dev/null 2>&1
        sleep 0.5
        comp "$(prompt 1)" > "$tmp/after.json"
        check "$kind: after a client left mid-speculation the next request gives the same text" \
            test "$(jq -r '.choices[0].text' "$tmp/after.json")" = "$(cat "$tmp/plain.1.txt")"
        busy=1
        for _ in $(seq 1 50); do
            busy=$(curl -s "$url/slots" | jq '[.[] | select(.busy)] | length')
            [ "$busy" = 0 ] && break
            sleep 0.1
        done
        check "$kind: all slots idle again, no KV cell held (/metrics clspec_kv_cells_used 0)" \
            test "$busy" = 0 -a -n "$(curl -s "$url/metrics" | grep '^clspec_kv_cells_used{.*} 0$')"
    fi
    stop
    check "$kind: SIGTERM exit 0" test $? -eq 0
done

# ---- the cost-aware controller ([speculator] controller = cost) and "speculative.n_max"
mkini ctl "type = draft" "model = $drafter" "n_max = 8" "p_min = 0" "controller = cost"
if ! start ctl; then
    not_ok "controller = cost daemon up" "$(tail -5 "$tmp/ctl.log")"
else
    run_prompts ctl
    check "lossless: controller = cost, draft, parallel 4: temperature-0 text equals no speculation" same_texts ctl
    check "controller = cost: timings report the controller, the mean chosen length and the plain steps" \
        test "$(jq -s '[.[] | .timings | select(.draft_controller == "cost" and (.draft_length_mean|type) == "number"
            and .draft_length_mean >= 0 and .draft_length_mean <= 8 and (.draft_steps_plain|type) == "number")]
            | length' "$tmp"/ctl.*.json)" = "$nprompts"
    m=$(curl -s "$url/metrics")
    check "controller = cost: /metrics has the chosen lengths and the plain steps" \
        test -n "$(echo "$m" | grep '^clspec_spec_draft_asked_tokens_total{.*speculator="draft"}')" \
        -a -n "$(echo "$m" | grep '^clspec_spec_plain_steps_total{.*speculator="draft"}')"
    curl -s "$url/v1/completions" -d "$(jq -cn --arg p "$(prompt 0)" \
        '{prompt:$p,max_tokens:48,temperature:0,"speculative.n_max":1}')" > "$tmp/nmax1.json"
    check "\"speculative.n_max\": 1: the same text, at most one draft token per step" \
        test "$(jq -r '.choices[0].text' "$tmp/nmax1.json")" = "$(cat "$tmp/plain.0.txt")" \
        -a "$(jq '.timings.draft_length_mean <= 1' "$tmp/nmax1.json")" = true
    code=$(curl -s -o "$tmp/nmax65.json" -w '%{http_code}' "$url/v1/completions" \
        -d '{"prompt":"x","max_tokens":4,"speculative.n_max":65}')
    check "\"speculative.n_max\": 65 is refused (400, names the field)" \
        test "$code" = 400 -a -n "$(grep -o 'speculative.n_max' "$tmp/nmax65.json")"
    stop
fi
# mtp and dflash under the cost controller (clspecd's default): slots it keeps plain are detached from
# the plugin (ABI 1.8) and caught up when they draft again; the text stays that of no speculation
for kind in mtp dflash; do
    [ -f "$builddir/plugins/$kind/.libs/$kind.so" ] || { skip "lossless: controller = cost, $kind" "plugin not built"; continue; }
    mapfile -t lines < <(spec_lines $kind | grep -v '^controller')
    mkini ctl$kind "${lines[@]}" "controller = cost"
    if ! start ctl$kind; then
        not_ok "controller = cost, $kind daemon up" "$(tail -5 "$tmp/ctl$kind.log")"
        continue
    fi
    run_prompts ctl$kind
    check "lossless: controller = cost, $kind, parallel 4: temperature-0 text equals no speculation" same_texts ctl$kind
    echo "# $kind, cost: draft_n, accepted, plain steps: $(jq -s -c '[.[] | .timings | [.draft_n, .draft_accepted,
        .draft_steps_plain]]' "$tmp"/ctl$kind.*.json)"
    stop
done

# ---- quantized KV (q8_0): lossless when the engine takes it, else a clear start-up refusal
mkini q8 "kv:type_k = q8_0" "kv:type_v = q8_0" "type = ngram" "controller = acceptance"
if "$bin" -c "$tmp/q8.ini" --check > "$tmp/q8.check" 2>&1; then
    mkini q8plain "kv:type_k = q8_0" "kv:type_v = q8_0" "type = none"
    if start q8plain; then
        for ((i = 0; i < nprompts; i++)); do comp "$(prompt $i)" | jq -r '.choices[0].text' > "$tmp/q8plain.$i.txt"; done
        stop
        if start q8; then
            run_prompts q8
            ok=yes
            for ((i = 0; i < nprompts; i++)); do cmp -s "$tmp/q8plain.$i.txt" "$tmp/q8.$i.txt" || ok=no; done
            check "lossless: type = ngram, q8_0 KV: text equals no speculation with q8_0 KV" test $ok = yes
            stop
        else
            not_ok "q8_0 daemon up" "$(tail -3 "$tmp/q8.log")"
        fi
        # the distilled drafter (2 kv heads x 8 = 16 values a cell row: q8_0/q4_0
        # rows padded to a whole block of 32) with its own q8_0 / q4_0 KV
        mkini q8draft "kv:type_k = q8_0" "kv:type_v = q8_0" "type = draft" "model = $drafter" \
            "type_k = q8_0" "type_v = q4_0" "n_max = 8" "p_min = 0" "controller = acceptance"
        if start q8draft; then
            run_prompts q8draft
            ok=yes
            for ((i = 0; i < nprompts; i++)); do cmp -s "$tmp/q8plain.$i.txt" "$tmp/q8draft.$i.txt" || ok=no; done
            check "lossless: type = draft, drafter KV q8_0/q4_0 (cell row of 16 values, padded), q8_0 KV: text equals no speculation" \
                test $ok = yes
            check "q8draft: the drafter drafts and some drafts are accepted" \
                test "$(jq -s '[.[] | .timings.draft_accepted] | add' "$tmp"/q8draft.*.json)" -gt 0
            stop
        else
            not_ok "q8_0 drafter daemon up" "$(tail -3 "$tmp/q8draft.log")"
        fi
    else
        not_ok "q8_0 plain daemon up" "$(tail -3 "$tmp/q8plain.log")"
    fi
else
    check "q8_0 KV on stories260K (head size 8): refused at start-up with file:line: [kv] type_k and the fix" \
        grep -q "q8.ini:[0-9]*: \[kv\] type_k: .*use f16" "$tmp/q8.check"
fi

# ---- configuration refusals: file:line: [speculator] key: problem; how to fix (exit 1)
refuse() { # refuse NAME PATTERN LINES...: --check exits 1 with PATTERN
    local name=$1 pat=$2; shift 2
    mkini "$name" "$@"
    local msg rc
    msg=$("$bin" -c "$tmp/$name.ini" --check 2>&1); rc=$?
    if [ $rc -eq 1 ] && echo "$msg" | grep -q -- "$pat"; then ok "config refused: $name"; else
        not_ok "config refused: $name" "rc $rc: $msg"; fi
}
refuse "type = draft without model names the key (the draft plugin's own check)" "\.ini:[0-9]*: \[speculator\] model: draft needs a drafter model; set model" "type = draft"
refuse "a plugin's own key, checked by the plugin" "\.ini:[0-9]*: \[speculator\] opt.n_max_ngram: ngram: bad value for n_max_ngram" \
    "type = ngram" "opt.n_max_ngram = 99"
refuse "misspelt type" "\[speculator\] type: unknown speculator 'ngarm' (did you mean ngram?)" "type = ngarm"
refuse "n_max over 64" "\[speculator\] n_max: 65 is out of range" "type = ngram" "n_max = 65"
refuse "n_min over n_max" "\[speculator\] n_min: n_min = 6 is above n_max = 4" "type = ngram" "n_max = 4" "n_min = 6"
refuse "misspelt key" "\[speculator\] n_mxa: unknown key; did you mean n_max?" "type = ngram" "n_mxa = 4"
refuse "opt.KEY shadowing a schema key" "\[speculator\] opt.model: model is a key of \[speculator\] itself" \
    "type = ngram" "opt.model = x"
refuse "plugin file missing" "\[speculator\] type: speculator plugin $tmp/nope.so: no such file" "type = $tmp/nope.so"
refuse "drafter not a GGUF" "\[speculator\] model: .* is not a usable GGUF" "type = draft" "model = $tmp/base.ini"
mkini printed "type = ngram" "opt.n_max_ngram = 3"
"$bin" -c "$tmp/printed.ini" --print-config > "$tmp/p1.ini" 2>&1
"$bin" -c "$tmp/p1.ini" --print-config > "$tmp/p2.ini" 2>&1
check "--print-config keeps opt.KEY and loads back to the same" \
    test -n "$(grep -x 'opt.n_max_ngram = 3' "$tmp/p1.ini")" -a "$(grep -v '^#' "$tmp/p1.ini")" = "$(grep -v '^#' "$tmp/p2.ini")"

# ---- loader failures: each its own start-up message, exit 1 (never a crash)
loader_fail() { # loader_fail NAME TYPE PATTERN [more speculator lines]
    local name=$1 type=$2 pat=$3
    shift 3
    mkini "lf-$name" "type = $type" "$@"
    timeout 60 "$bin" -c "$tmp/lf-$name.ini" > "$tmp/lf-$name.out" 2>&1
    local rc=$?
    grep "^clspecd: " "$tmp/lf-$name.out" | tail -1 > "$tmp/lf-$name.msg"
    if [ $rc -eq 1 ] && grep -q -- "$pat" "$tmp/lf-$name.msg"; then ok "loader failure at start-up, exit 1: $name"
    else not_ok "loader failure at start-up, exit 1: $name" "rc $rc: $(tail -3 "$tmp/lf-$name.out")"; fi
}
if [ -f "$tplug/initfail.so" ]; then
    loader_fail "missing file" "$tmp/gone/x.so" "\[speculator\] type: speculator plugin $tmp/gone/x.so: no such file"
    loader_fail "not a shared object" "$srcdir/README.md" "\[speculator\] type: speculator plugin .*README.md: cannot load"
    loader_fail "missing entry symbol" "$tplug/nosym.so" "nosym.so: missing entry symbol clspec_speculator_entry"
    loader_fail "ABI major mismatch" "$tplug/badabi.so" "badabi.so: ABI major version 99"
    loader_fail "vtable too small" "$tplug/small.so" "small.so: vtable too small"
    loader_fail "missing capability" "$tplug/caps.so" "caps.so (broken) needs .*, which this clspec (ABI [0-9.]*) does not provide"
    loader_fail "init failure (with the plugin's message)" "$tplug/initfail.so" \
        "init failed: broken: the frobnicator is not configured"
    check "the loader messages are all different" \
        test "$(cat "$tmp"/lf-*.msg | sed 's/^.*\[speculator\] type: //' | sort -u | wc -l)" = 7
    loader_fail "drafter KV type that no KV cache holds (file:line: [speculator] type_k and the choices)" draft \
        "\[speculator\] type_k: 'q4_K' is not a KV cache type; use one of f32|f16|bf16|q8_0|q4_0" "model = $drafter" "type_k = q4_K"
else
    skip "loader failures" "test plugins not built (make check builds them)"
fi

# ---- a plugin built out of tree against the installed header, in the daemon
if command -v pkg-config >/dev/null && [ -f "$srcdir/tests/plugins/minimal.c" ]; then
    if ${MAKE:-make} -C "$builddir" install-clspecincludeHEADERS install-pkgconfigDATA DESTDIR="$tmp/root" \
        > "$tmp/install.log" 2>&1; then
        pc=$(find "$tmp/root" -name clspec.pc | head -n 1)
        cflags=$(PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$tmp/root pkg-config --cflags clspec)
        mkdir -p "$tmp/oot" && cp "$srcdir/tests/plugins/minimal.c" "$tmp/oot/"
        if (cd "$tmp/oot" && ${CC:-cc} -std=c11 -Wall -Wextra -Werror -shared -fPIC $cflags minimal.c -o minimal.so) \
            > "$tmp/oot.log" 2>&1; then
            mkini oot "type = $tmp/oot/minimal.so" "opt.max = 4"
            if start oot; then
                run_prompts oot
                check "out-of-tree plugin (installed header, pkg-config $cflags) runs in the daemon: lossless" \
                    same_texts oot
                check "out-of-tree plugin: its init read opt.max, its drafts were verified" \
                    test -n "$(grep 'speculator minimal: info: ready (max 4)' "$tmp/oot.log")" \
                    -a "$(jq -s '[.[] | .timings.draft_n] | add' "$tmp"/oot.*.json)" -gt 0
                stop
            else
                not_ok "out-of-tree plugin: daemon up" "$(tail -3 "$tmp/oot.log")"
            fi
        else
            not_ok "out-of-tree plugin built with $cflags" "$(tail -5 "$tmp/oot.log")"
        fi
    else
        not_ok "make install of the header and clspec.pc" "$(tail -5 "$tmp/install.log")"
    fi
else
    skip "out-of-tree plugin in the daemon" "no pkg-config"
fi

echo "1..$n"
[ $fails -eq 0 ]
