#!/usr/bin/env bash
# slots-e2e.sh: llama-server's slot cache, slot actions and context shift in
# clspecd, end to end (TAP), greedy on stories260K with 2 slots of 256 cells.
# Daemon A ([slots] keep_cache, [server] slot_save_path, context_shift,
# ngram drafts when built):
# id_slot pins a request to its slot and the slot's cache serves the next
# request on it (same answer, only the last prompt token computed); POST
# /slots/N?action=save writes the slot's tokens, restore recomputes them
# into another slot (the next request there finds them cached, same answer),
# erase empties it; refusals (filename, action, slot, missing file); a
# generation past the slot's context goes on after a shift, and the tokens
# after the shift are those of a fresh request over the shortened history.
# Daemon B (defaults): the slot actions answer 501, and a generation without
# a limit stops when prompt + output fill the slot (truncated, as
# llama-server); without keep_cache nothing is cached.
# Daemon C (a unified cache of 256 cells, keep_cache): an idle slot's cached
# cells are given up to a request that needs them. Daemon D: context_shift
# on a hybrid model (qwen35-tiny) is refused at start-up.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
need "$model"
make_tmp
curl() { command curl --max-time 60 "$@"; }

mkini() { # mkini NAME EXTRA-SERVER-LINES EXTRA-SLOTS-LINES
    printf '[server]\nport = 0\nlog_level = info\n%s\n[model]\npath = %s\n[kv]\nn_ctx = 512\nunified = false\n' \
        "$2" "$model"
    printf '[slots]\nparallel = 2\n%s\n[sampling]\ntemperature = 0\nmax_tokens = 0\n' "$3"
}
mkini a "slot_save_path = $tmp/saved"$'\n'"context_shift = true" "keep_cache = true" > "$tmp/a.ini"
# with ngram drafts when the plugin is built (greedy: the same tokens as without)
[ -f "$builddir/plugins/ngram/.libs/ngram.so" ] && printf '[speculator]\ntype = ngram\nn_max = 8\ncontroller = acceptance\n' >> "$tmp/a.ini"
mkini b "" "" > "$tmp/b.ini"

code() { curl -s -o "$tmp/body" -w '%{http_code}' "$@"; }
post() { code "$url$1" -d "$2"; }
j() { jq -c "$1" "$tmp/body"; }

if ! start a; then
    not_ok "daemon A up" "$(tail -5 "$tmp/a.log")"
    echo "1..$n"
    exit 1
fi
p='Once upon a time, there was a little girl named Lily. She liked to play'
c=$(post /completion "{\"prompt\":\"$p\",\"id_slot\":1,\"n_predict\":16,\"return_tokens\":true}")
n_p=$(j .timings.prompt_n)
first=$(j '[.content, .tokens]')
check "id_slot 1: the request ran on slot 1, its prompt computed ($n_p tokens)" \
    test "$c|$(j .id_slot)|$(j .timings.cache_n)" = "200|1|0" -a "$n_p" -gt 10
c=$(post /completion "{\"prompt\":\"$p\",\"id_slot\":1,\"n_predict\":16,\"return_tokens\":true}")
check "the same prompt on slot 1 again: its cache serves all but the last prompt token, same answer" \
    test "$c|$(j .timings.prompt_n)|$(j .timings.cache_n)|$(j '[.content, .tokens]')" = "200|1|$((n_p - 1))|$first"
c=$(post /completion "{\"prompt\":\"$p\",\"id_slot\":5}")
check "id_slot beyond the slots: 400 naming them" test "$c|$(j .error.message | grep -c 'slots 0..1')" = "400|1"

c=$(post '/slots/1?action=save' '{"filename":"s1.bin"}')
n_s=$((n_p + 16 - 1))
check "save slot 1: n_saved = prompt + output - 1 ($n_s), the file written" \
    test "$c|$(j '[.id_slot, .filename, .n_saved, .n_written]')|$(stat -c %s "$tmp/saved/s1.bin" 2>/dev/null)" = \
    "200|[1,\"s1.bin\",$n_s,$((16 + 4 * n_s))]|$((16 + 4 * n_s))"
check "save: a filename with a path (../x) is refused: 400" \
    test "$(post '/slots/1?action=save' '{"filename":"../x"}')|$(j .error.type)" = '400|"invalid_request_error"'
check "an unknown action: 400" test "$(post '/slots/1?action=copy' '{"filename":"s1.bin"}')" = 400
check "slot 7 (there are 2): 400" test "$(post '/slots/7?action=save' '{"filename":"s7.bin"}')" = 400
check "restore of a missing file: 404" test "$(post '/slots/0?action=restore' '{"filename":"none.bin"}')" = 404
printf 'not a slot file at all' > "$tmp/saved/junk.bin"
check "restore of a file that is not a slot file: 400 naming it" \
    test "$(post '/slots/0?action=restore' '{"filename":"junk.bin"}')|$(j .error.message | grep -c 'not a clspec slot file')" = "400|1"

c=$(post '/slots/0?action=restore' '{"filename":"s1.bin"}')
check "restore s1.bin into slot 0: n_restored $n_s" test "$c|$(j '[.id_slot, .n_restored]')" = "200|[0,$n_s]"
c=$(post /completion "{\"prompt\":\"$p\",\"id_slot\":0,\"n_predict\":16,\"return_tokens\":true}")
check "slot 0 after the restore: the prompt is cached (prompt_n 1), same answer as slot 1 gave" \
    test "$c|$(j .timings.prompt_n)|$(j '[.content, .tokens]')" = "200|1|$first"
c=$(post '/slots/0?action=erase' '')
check "erase slot 0: n_erased $n_s" test "$c|$(j '[.id_slot, .n_erased]')" = "200|[0,$n_s]"
c=$(post /completion "{\"prompt\":\"$p\",\"id_slot\":0,\"n_predict\":16,\"return_tokens\":true}")
check "slot 0 after the erase: the whole prompt is computed again, same answer" \
    test "$c|$(j .timings.prompt_n)|$(j '[.content, .tokens]')" = "200|$n_p|$first"

# ---- context shift: a prompt of ~200 tokens and 120 more on a 256-cell slot
long=$(for _ in 1 2 3 4 5 6 7; do printf '%s ' "$p and run in the park with her dog."; done)
c=$(post /tokenize "{\"content\":\"$long\",\"add_special\":true}")
ids=$(j .tokens)
n_long=$(j '.tokens | length')
c=$(post /completion "{\"prompt\":$ids,\"n_predict\":120,\"ignore_eos\":true,\"return_tokens\":true,\"id_slot\":1}")
out=$(j .tokens)
drafted=$(j '.timings.draft_n // 0')
check "context shift: $n_long prompt tokens + 120 on a 256-cell slot: all 120 come, truncated, prompt_n + cache_n $n_long" \
    test "$c|$(j '[.timings.predicted_n, .truncated, .timings.prompt_n + .timings.cache_n]')" = "200|[120,true,$n_long]" \
    -a "$n_long" -gt 150
if grep -q '^type = ngram' "$tmp/a.ini"; then
    check "the shifted request speculated (ngram: $drafted draft tokens verified)" test "$drafted" -gt 0
fi
check "the log tells the shift (127 tokens dropped after the BOS)" \
    grep -q 'context shift drops 127 token(s) after the first 1' "$tmp/a.log"
# the first shift comes when prompt + output = 256: the history then keeps the BOS and its last 128 tokens
k=$((256 - n_long))
hist=$(jq -c --argjson ids "$ids" --argjson out "$out" --argjson k "$k" -n '($ids + $out[0:$k]) as $h | [$h[0]] + $h[128:]')
rest=$((120 - k))
c=$(post /completion "{\"prompt\":$hist,\"n_predict\":$rest,\"ignore_eos\":true,\"return_tokens\":true,\"id_slot\":0}")
check "the $rest tokens after the shift = a fresh request over the shortened history ($(jq length <<< "$hist") tokens)" \
    test "$c|$(j .tokens)" = "200|$(jq -c --argjson k "$k" '.[$k:]' <<< "$out")"
stop

if ! start b; then
    not_ok "daemon B up" "$(tail -5 "$tmp/b.log")"
    echo "1..$n"
    exit 1
fi
check "without slot_save_path the slot actions answer 501 (not_supported_error)" \
    test "$(post '/slots/0?action=save' '{"filename":"x.bin"}')|$(j .error.type)" = '501|"not_supported_error"'
c=$(post /completion '{"prompt":"Hi how are you","n_predict":-1,"ignore_eos":true}')
check "no limit, no context shift: prompt + output fill the 256-cell slot, truncated" \
    test "$c|$(j '.timings.prompt_n + .timings.predicted_n')|$(j .truncated)|$(j .stop_type)" = "200|256|true|\"limit\""
c=$(post /completion '{"prompt":"Hi how are you","n_predict":-1,"ignore_eos":true}')
check "without keep_cache the same prompt is computed again" test "$c|$(j .timings.cache_n)" = "200|0"
stop

# ---- a unified cache of 256 cells: an idle slot's cache gives its cells up to a request that needs them
mkini c "" "keep_cache = true" | sed -e 's/^n_ctx = 512/n_ctx = 256/' -e 's/^unified = false/unified = true/' > "$tmp/c.ini"
if start c; then
    post /completion "{\"prompt\":\"$p\",\"id_slot\":0,\"n_predict\":100,\"ignore_eos\":true}" > /dev/null
    used=$(curl -s "$url/metrics" | awk '/^clspec_kv_cells_used/ {print $2}')
    big=$(for _ in 1 2 3 4 5; do printf '%s ' "$p and run in the park with her dog."; done)
    c=$(post /completion "{\"prompt\":\"$big\",\"id_slot\":1,\"n_predict\":40,\"ignore_eos\":true}")
    check "unified 256 cells: slot 0 idle with $used cached cells, a request of $(j .timings.prompt_n) + 40 tokens on slot 1 runs" \
        test "$c|$(j .timings.predicted_n)" = "200|40" -a "$used" -ge 100
    c=$(post /completion "{\"prompt\":\"$p\",\"id_slot\":0,\"n_predict\":4}")
    check "slot 0's cache was given up for it: its prompt is computed again" test "$c|$(j .timings.cache_n)" = "200|0"
    stop
else
    not_ok "daemon C up" "$(tail -5 "$tmp/c.log")"
fi

# ---- a hybrid (recurrent) target: context shift is refused at start-up
q35=$shared/models/synthetic/qwen35-tiny-F32.gguf
if [ -f "$q35" ]; then
    mkini d "context_shift = true" "" | sed "s|^path = .*|path = $q35|" > "$tmp/d.ini"
    if start d; then
        not_ok "context_shift on a hybrid model: refused at start-up" "the daemon came up"
        stop
    else
        check "context_shift on a hybrid model: refused at start-up, the log says why" \
            grep -q 'context shift: the model keeps a recurrent state (hybrid)' "$tmp/d.log"
    fi
else
    skip "context_shift on a hybrid model" "no $q35"
fi

echo "1..$n"
[ $fails -eq 0 ]
