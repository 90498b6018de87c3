#!/usr/bin/env bash
# kvfill-spec.sh: the KV cache fills while speculative decoding runs, with
# concurrent multi-turn chats (TAP), on the hybrid qwen35-tiny target and on
# stories260K, each with the ngram and the draft speculator:
#   - a baseline daemon per model (no speculator, a cache that holds every
#     chat) gives each turn's non-speculative answer;
#   - then a daemon with the speculator, parallel 4 and a unified cache far
#     too small for the chats at once (n_ctx 400; a third turn's prompt is
#     ~270 tokens): 6 chats of 3 turns at once on the 4 slots, greedy. The cache fills while drafts are in flight: requests
#     are preempted and resumed, or drafts cut to the free cells (preemptions + draft KV shrinks > 0); the draft
#     speculator's own cache is small too (opt.n_ctx), so a draft decode
#     can fill it and those slots go on without drafts; the drafter is
#     stories260K for qwen35-tiny (the same vocabulary, almost always
#     wrong: long rollbacks), the distilled one for stories260K;
#   - every turn either completes with the text and finish reason of its
#     non-speculative answer or gets a clean JSON error body; the daemon
#     stays up; afterwards no KV cell is in use and every slot is idle
#     (/metrics, /slots); drafts were made and verified.
# qwen35 runs with n_max 24 (the recurrent state ring is sized from it).
# Needs curl and jq.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
q35=$shared/models/synthetic/qwen35-tiny-F32.gguf
drafter=$shared/models/derived/stories260K-draft-distilled.gguf

need "$model" "$q35" "$drafter"
make_tmp

# mkini NAME MODEL N_CTX [speculator lines...]
mkini() {
    local name=$1 m=$2 ctx=$3
    shift 3
    sed -e "s|^port = .*|port = 0|" -e "s|^path = .*|path = $m|" -e "s|^parallel = .*|parallel = 4|" \
        -e "s|^n_ctx = .*|n_ctx = $ctx|" "$srcdir/conf/clspecd.ini" | sed '/^\[speculator\]/,$d' > "$tmp/$name.ini"
    if [ $# -gt 0 ]; then
        echo "[speculator]" >> "$tmp/$name.ini"
        printf '%s\n' "$@" >> "$tmp/$name.ini"
    fi
}

NCHAT=6
NTURN=3
# chat DIR C: chat C's turns against $url, each turn's answer (the whole
# response) in DIR/C.T.json; a turn that fails ends the chat
chat() {
    local dir=$1 c=$2 t msgs body
    msgs='[]'
    for t in $(seq 1 $NTURN); do
        msgs=$(jq -c --arg u "Chat $c, turn $t: tell me about the little $( [ $((c % 2)) = 0 ] && echo dog || echo cat) \
and the $( [ $t = 2 ] && echo park || echo tree)." '. + [{role:"user",content:$u}]' <<< "$msgs")
        body=$(jq -cn --argjson m "$msgs" '{messages:$m, max_tokens:96, temperature:0}')
        curl -s -o "$dir/$c.$t.json" -w '%{http_code}' "$url/v1/chat/completions" -d "$body" > "$dir/$c.$t.code"
        [ "$(cat "$dir/$c.$t.code")" = 200 ] || return 0
        msgs=$(jq -c --slurpfile r "$dir/$c.$t.json" '. + [{role:"assistant",content:$r[0].choices[0].message.content}]' \
            <<< "$msgs")
    done
}
chats() { # chats DIR: all NCHAT chats at once on the 4 slots (waits for them only, not for the daemon)
    mkdir -p "$1"
    local c cp=()
    for c in $(seq 1 $NCHAT); do
        chat "$1" "$c" &
        cp+=($!)
    done
    wait "${cp[@]}"
}
metric() { # metric NAME: its value from /metrics (summed over labels)
    curl -s "$url/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { print s + 0 }'
}

run_model() { # run_model TAG MODEL SPEC_TYPE N_MAX [DRAFTER]
    local tag=$1 m=$2 type=$3 nmax=$4 dm=${5:-}
    local base=$tmp/base.$tag
    # the non-speculative answers (computed once per model)
    if [ ! -d "$base" ]; then
        mkini "base.$tag" "$m" 4096
        if ! start "base.$tag"; then
            not_ok "$tag: baseline daemon up" "$(tail -5 "$tmp/base.$tag.log")"
            return
        fi
        chats "$base"
        stop
    fi
    local lines=("type = $type" "n_max = $nmax" "controller = acceptance")
    [ "$type" = draft ] && lines+=("model = $dm" "p_min = 0" "opt.n_ctx = 200")
    [ "$type" = ngram ] && lines+=("opt.n_min_ngram = 1")
    local name=$tag.$type
    local dir=$tmp/$name
    mkini "$name" "$m" 400 "${lines[@]}"
    if ! start "$name"; then
        not_ok "$name: daemon with a small cache up" "$(tail -5 "$tmp/$name.log")"
        return
    fi
    chats "$dir"
    local bad= n_ok=0 n_err=0 c t want got
    for c in $(seq 1 $NCHAT); do
        for t in $(seq 1 $NTURN); do
            local r=$dir/$c.$t.json code
            [ -f "$r" ] || continue
            code=$(cat "$dir/$c.$t.code")
            if [ "$code" = 200 ]; then
                want=$(jq -c '[.choices[0].message.content, .choices[0].finish_reason]' "$base/$c.$t.json" 2>/dev/null)
                got=$(jq -c '[.choices[0].message.content, .choices[0].finish_reason]' "$r" 2>/dev/null)
                if [ -n "$got" ] && [ "$got" = "$want" ]; then n_ok=$((n_ok + 1))
                else bad="$bad
chat $c turn $t: $got, without speculation $want"; fi
            elif jq -e '.error.message | type == "string"' "$r" > /dev/null 2>&1; then
                n_err=$((n_err + 1))
                echo "# $name: chat $c turn $t: HTTP $code: $(jq -r .error.message "$r")"
            else
                bad="$bad
chat $c turn $t: HTTP $code without a JSON error: $(head -c 300 "$r")"
            fi
        done
    done
    if [ -z "$bad" ]; then ok "$name: $n_ok turns equal their non-speculative answers, $n_err clean errors"
    else not_ok "$name: every turn equals its non-speculative answer or is a clean error" "$bad"; fi
    check "$name: most turns completed ($n_ok of $((NCHAT * NTURN)))" test "$n_ok" -ge $((NCHAT * NTURN * 2 / 3))
    local pre shrunk drafted
    pre=$(metric clspec_preemptions_total)
    shrunk=$(metric clspec_spec_draft_kv_shrinks_total)
    drafted=$(cat "$dir"/*.json | jq -s '[.[] | .timings.draft_n // 0] | add')
    echo "# $name: $pre preemption(s), $shrunk draft(s) cut for want of cells, $drafted tokens drafted; $(grep -c 'speculation off' "$tmp/$name.log") slot(s) went on without drafts"
    # full while drafting: drafts were cut to the free cells, or a request was preempted (admission
    # holds newcomers back, so which of the two happens depends on timing)
    check "$name: the cache filled while drafting (preemptions $pre, drafts cut $shrunk, drafted $drafted)" \
        test $((pre + shrunk)) -gt 0 -a "$drafted" -gt 0
    if [ "$type" = draft ]; then # its own cache (opt.n_ctx 200) cannot hold a third turn: a draft decode fills it
        check "$name: the drafter's cache filled in a draft decode; those slots went on without drafts" \
            grep -q 'speculation off (the speculator failed: forward: kv cache full' "$tmp/$name.log"
    fi
    check "$name: daemon alive" test "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200
    check "$name: no KV cell left in use" test "$(metric clspec_kv_cells_used)" = 0
    check "$name: every slot idle" \
        test "$(curl -s "$url/slots" | jq '[.[] | select(.is_processing)] | length')" = 0
    check "$name: no crash or internal error in the log" \
        sh -c "! grep -Eiq 'null logits|assert|internal error|segfault' '$tmp/$name.log'"
    stop
    check "$name: drained and exited 0" test $? = 0
}

run_model qwen35 "$q35" ngram 24
run_model qwen35 "$q35" draft 12 "$model"
run_model stories "$model" ngram 16
run_model stories "$model" draft 8 "$drafter"
echo "1..$n"
[ $fails -eq 0 ]
