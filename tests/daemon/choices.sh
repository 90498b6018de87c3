#!/usr/bin/env bash
# choices.sh: OpenAI's "n" > 1 (not streamed) end to end (TAP). The choices
# run as requests of their own side by side (src/daemon/http.c
# handle_choices): the first alone until its prompt is in, then the others,
# which share its prompt's KV cells (prefix reuse). Checks, on
# /v1/completions and /v1/chat/completions:
#   greedy n = 3: 3 choices, indexes 0 1 2, each text equal to one plain
#     request's, usage summed (completion_tokens 3 x the single's, prompt
#     tokens once), the same keys as a single answer;
#   the choices overlapped (every choice was submitted before the first one
#     ended, in the daemon's log) and shared the prompt (the cached-prompt
#     counter of /metrics grew by 2 x (prompt - 1));
#   sampled n = 3 with seed s: choice i equals a single request with seed
#     s + i;
#   a daemon with 1 slot and queue_max 1: n = 4 still answers all 4 (a
#     choice the queue refuses waits for an earlier one).
# Needs curl and jq and the built daemon; uses the model in models/.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
model=$srcdir/models/stories260K.gguf
need "$model"
make_tmp
curl() { command curl --max-time 60 "$@"; }

# mkini NAME PARALLEL QUEUE_MAX: the shipped configuration on the bundled model, port 0 (its log: lib.sh's
# start writes it to $tmp/NAME.log)
mkini() {
    sed -e "s|^port = .*|port = 0|" -e "s|^path = .*|path = $model|" -e "s|^parallel = .*|parallel = $2|" \
        -e "s|^n_ctx = .*|n_ctx = 2048|" "$srcdir/conf/clspecd.ini" > "$tmp/$1.ini"
    printf 'queue_max = %s\n' "$3" > "$tmp/$1.add"
    awk -v add="$tmp/$1.add" '{print} /^\[server\]/{while((getline l < add) > 0) print l}' "$tmp/$1.ini" \
        > "$tmp/$1.new" && mv "$tmp/$1.new" "$tmp/$1.ini"
}
post() { curl -s "$url$1" -H 'Content-Type: application/json' -d "$2"; }
cached() { curl -s "$url/metrics" | awk '/^clspec_cached_prompt_tokens_total/ {print $2}'; }

mkini four 4 8
if ! start four; then
    not_ok "daemon up (4 slots)" "$(tail -20 "$tmp/four.log")"
    echo "1..$n"
    exit 1
fi
ok "daemon up (4 slots)"
prompt="Once upon a time, there was a little dog"
for route in completions chat; do
    if [ $route = chat ]; then
        path=/v1/chat/completions
        body=$(jq -nc --arg p "$prompt" '{messages:[{role:"user",content:$p}],max_tokens:24,temperature:0}')
        text='.message.content'
    else
        path=/v1/completions
        body=$(jq -nc --arg p "$prompt" '{prompt:$p,max_tokens:24,temperature:0}')
        text='.text'
    fi
    one=$(post $path "$body")
    c0=$(cached)
    log0=$(wc -l < "$tmp/four.log")
    three=$(post $path "$(echo "$body" | jq -c '.n = 3')")
    c1=$(cached)
    want=$(echo "$one" | jq -r ".choices[0]$text")
    check "$route greedy n = 3: choices 0 1 2, each the single request's text" test "$(echo "$three" |
        jq -c --arg w "$want" "[.choices[] | [.index, ($text == \$w)]]")" = '[[0,true],[1,true],[2,true]]'
    check "$route n = 3: usage summed over the choices, the prompt once" test "$(echo "$three" |
        jq -c '[.usage.prompt_tokens, .usage.completion_tokens, .usage.total_tokens]')" = "$(echo "$one" |
        jq -c '[.usage.prompt_tokens, 3 * .usage.completion_tokens, .usage.prompt_tokens + 3 * .usage.completion_tokens]')"
    check "$route n = 3: the answer's keys and each choice's are a single answer's" test "$(echo "$three" |
        jq -c '[keys, (.choices | map(keys) | unique)]')" = "$(echo "$one" | jq -c '[keys, [.choices[0] | keys]]')"
    # the three requests of the choices: the last one's POST line comes before the first one's end
    ids=$(tail -n +$((log0 + 1)) "$tmp/four.log" | grep -o '\[req-[0-9]*\] POST' | grep -o 'req-[0-9]*' | head -3)
    first=$(echo "$ids" | head -1)
    last=$(echo "$ids" | tail -1)
    order=$(tail -n +$((log0 + 1)) "$tmp/four.log" | awk -v f="[$first] done" -v l="[$last] POST" \
        'index($0, l) && !pl {pl = NR} index($0, f) && !fd {fd = NR} END {print (pl && fd && pl < fd) ? "yes" : "no"}')
    check "$route n = 3: every choice submitted before the first one ended (side by side)" test "$order" = yes
    p=$(echo "$one" | jq '.usage.prompt_tokens')
    check "$route n = 3: the two later choices reuse the prompt's cells ($c0 -> $c1 cached prompt tokens)" \
        test "$((c1 - c0))" = "$((2 * (p - 1)))"
done

# sampled: choice i is the single request with seed s + i
body=$(jq -nc --arg p "$prompt" '{prompt:$p,max_tokens:24,temperature:0.9,seed:41}')
three=$(post /v1/completions "$(echo "$body" | jq -c '.n = 3')")
same=true
for i in 0 1 2; do
    single=$(post /v1/completions "$(echo "$body" | jq -c --argjson s $((41 + i)) '.seed = $s')" | jq -r '.choices[0].text')
    [ "$(echo "$three" | jq -r ".choices[$i].text")" = "$single" ] || same=false
done
check "sampled n = 3 with seed 41: choice i equals the request with seed 41 + i" $same
stop

mkini one 1 1
if start one; then
    ok "daemon up (1 slot, queue_max 1)"
    four=$(post /v1/completions "$(jq -nc --arg p "$prompt" '{prompt:$p,max_tokens:16,temperature:0,n:4}')")
    check "1 slot, queue_max 1: n = 4 answers 4 equal choices" test "$(echo "$four" |
        jq -c '[(.choices | map(.index)), (.choices | map(.text) | unique | length)]')" = '[[0,1,2,3],1]'
    stop
else
    not_ok "daemon up (1 slot, queue_max 1)" "$(tail -20 "$tmp/one.log")"
fi
echo "1..$n"
[ $fails = 0 ]
