#!/usr/bin/env bash
# grammar-e2e.sh: constrained output in clspecd end to end (TAP), on the
# bundled stories260K with the draft speculator (parallel = 4):
#   - 20 requests, 4 at a time, half /v1/chat/completions with
#     response_format json_schema (both shapes: {"json_schema":{"schema":..}}
#     and llama-server's {"schema":..}), half /v1/completions with
#     "json_schema"; temperature 0.8 (rejection sampling against the
#     drafter's probabilities) and 0: every answer parses as JSON (jq) and
#     satisfies the schema (types, required, no other keys, enum, maxLength,
#     maxItems, minimum); drafts were rejected and rolled back;
#   - a streamed answer put together is valid as well;
#   - response_format json_object gives a JSON object; a GBNF "grammar" gives
#     one of its sentences; greedy grammar output is the same with and
#     without speculation;
#   - a bad grammar and a bad schema get 400 naming line:column / the JSON
#     pointer, with param set;
#   - the hybrid qwen35-tiny target with the draft speculator: 8 json_schema
#     answers (4 at a time) are valid and equal those without speculation.
# Needs curl and jq.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
drafter=$shared/models/derived/stories260K-draft-distilled.gguf

need "$model" "$drafter"
make_tmp

sed -e "s|^port = .*|port = 0|" -e "s|^path = .*|path = $model|" -e "s|^parallel = .*|parallel = 4|" \
    -e "s|^n_ctx = .*|n_ctx = 2048|" "$srcdir/conf/clspecd.ini" | sed '/^\[speculator\]/,$d' > "$tmp/draft.ini"
printf '[speculator]\ntype = draft\nmodel = %s\nn_max = 6\np_min = 0\ncontroller = acceptance\n' "$drafter" >> "$tmp/draft.ini"

if ! start draft; then
    not_ok "daemon with the draft speculator up" "$(tail -5 "$tmp/draft.log")"
    echo "1..$n"
    exit 1
fi
ok "daemon with the draft speculator up"

schema='{"type":"object","properties":{"name":{"type":"string","maxLength":12},"age":{"type":"integer","minimum":0},
 "tags":{"type":"array","items":{"enum":["red","blue"]},"maxItems":3},"happy":{"type":"boolean"}},
 "required":["name","age","happy"],"additionalProperties":false}'
# the schema, as a jq predicate over the parsed answer
valid='type == "object" and (keys - ["name","age","tags","happy"] | length == 0)
  and (.name | type == "string" and length <= 12) and (.age | type == "number" and . >= 0 and . == floor)
  and (.happy | type == "boolean")
  and ((.tags // []) | type == "array" and length <= 3 and all(.[]; . == "red" or . == "blue"))'

req() { # req I: request I's body and route into $tmp/req.I.{body,route}
    local i=$1 t
    t=$([ $((i % 4)) -lt 2 ] && echo 0.8 || echo 0)
    case $((i % 3)) in
    0) echo /v1/chat/completions > "$tmp/req.$i.route"
       jq -cn --argjson s "$schema" --argjson t "$t" --argjson i "$i" '{messages:[{role:"user",
           content:("Tell me about person " + ($i|tostring))}], max_tokens:300, temperature:$t, seed:(100+$i),
           response_format:{type:"json_schema", json_schema:{name:"person", schema:$s}}}' ;;
    1) echo /v1/chat/completions > "$tmp/req.$i.route"
       jq -cn --argjson s "$schema" --argjson t "$t" --argjson i "$i" '{messages:[{role:"user",
           content:"Once upon a time"}], max_tokens:300, temperature:$t, seed:(100+$i),
           response_format:{type:"json_schema", schema:$s}}' ;;
    2) echo /v1/completions > "$tmp/req.$i.route"
       jq -cn --argjson s "$schema" --argjson t "$t" --argjson i "$i" '{prompt:("Lily had " + ($i|tostring)),
           max_tokens:300, temperature:$t, seed:(100+$i), json_schema:$s}' ;;
    esac > "$tmp/req.$i.body"
}
export -f req
for i in $(seq 0 19); do req "$i"; done
seq 0 19 | xargs -P 4 -I{} sh -c "curl -s '$url'\$(cat '$tmp/req.{}.route') -d @'$tmp/req.{}.body' > '$tmp/resp.{}.json'"

bad=
for i in $(seq 0 19); do
    r=$tmp/resp.$i.json
    text=$(jq -r '.choices[0].message.content // .choices[0].text' "$r" 2>/dev/null)
    fin=$(jq -r '.choices[0].finish_reason' "$r" 2>/dev/null)
    if [ "$fin" != stop ] || ! printf '%s' "$text" | jq -e "$valid" > /dev/null 2>&1; then
        bad="$bad
request $i ($(cat "$tmp/req.$i.route")): finish $fin: $(head -c 400 "$r")"
    fi
done
if [ -z "$bad" ]; then ok "20 JSON-schema requests (4 at a time, draft speculator): valid JSON satisfying the schema"
else not_ok "20 JSON-schema requests (4 at a time, draft speculator): valid JSON satisfying the schema" "$bad"; fi
echo "# e.g. $(jq -c '.choices[0].message.content // .choices[0].text' "$tmp/resp.0.json")"
drafted=$(jq -s '[.[] | .timings.draft_n // 0] | add' "$tmp"/resp.*.json)
accepted=$(jq -s '[.[] | .timings.draft_accepted // 0] | add' "$tmp"/resp.*.json)
echo "# $drafted drafted, $accepted accepted"
check "drafts under the grammar: some accepted, some rejected (rolled back)" \
    test "$drafted" -gt "$accepted" -a "$accepted" -gt 0

# streamed: the deltas put together are valid too
curl -s -N "$url/v1/chat/completions" -d "$(jq -cn --argjson s "$schema" '{messages:[{role:"user",content:"hi"}],
    max_tokens:300, temperature:0.8, seed:5, stream:true, response_format:{type:"json_schema", json_schema:{schema:$s}}}')" \
    > "$tmp/stream.txt"
sed -n 's/^data: //p' "$tmp/stream.txt" | grep -v '^\[DONE\]' | jq -j '.choices[0].delta.content // empty' > "$tmp/stream.json"
check "streamed json_schema answer: valid JSON satisfying the schema ($(head -c 120 "$tmp/stream.json"))" \
    sh -c "jq -e '$valid' '$tmp/stream.json' > /dev/null"

# json_object
curl -s "$url/v1/chat/completions" -d '{"messages":[{"role":"user","content":"hi"}],"max_tokens":200,
    "temperature":0,"response_format":{"type":"json_object"}}' > "$tmp/obj.json"
fin=$(jq -r '.choices[0].finish_reason' "$tmp/obj.json")
if [ "$fin" = stop ]; then
    check "response_format json_object: a JSON object" \
        sh -c "jq -r '.choices[0].message.content' '$tmp/obj.json' | jq -e 'type == \"object\"' > /dev/null"
else # the generic grammar has no length bound: a truncated object is a prefix of one
    check "response_format json_object: starts an object (finish $fin)" \
        sh -c "jq -r '.choices[0].message.content' '$tmp/obj.json' | grep -q '^{'"
fi

# GBNF, and the same greedy text without speculation
g='root ::= " "? ("yes" | "no") "." [ ]? "The end."'
for s in true false; do
    curl -s "$url/v1/completions" -d "$(jq -cn --arg g "$g" --argjson s $s \
        '{prompt:"Is the sky blue?",max_tokens:40,temperature:0,grammar:$g,speculative:$s}')" > "$tmp/gbnf.$s.json"
done
t=$(jq -r '.choices[0].text' "$tmp/gbnf.true.json")
echo "# grammar answer: '$t'"
check "grammar: the answer is a sentence of the GBNF ('$t')" \
    sh -c "printf '%s' '$t' | grep -Eqx ' ?(yes|no)\\. ?The end\\.'"
check "grammar: the same text with and without speculation" \
    test "$t" = "$(jq -r '.choices[0].text' "$tmp/gbnf.false.json")"

# errors: 400 with the position
code=$(curl -s -o "$tmp/e1.json" -w '%{http_code}' "$url/v1/completions" \
    -d '{"prompt":"x","grammar":"root ::= \"a\" |\n  [b-a]"}')
msg=$(jq -r '.error.message' "$tmp/e1.json")
check "bad grammar: 400 with line:column ($code: $msg)" \
    test "$code" = 400 -a "$(jq -r '.error.param' "$tmp/e1.json")" = grammar -a -n "$(echo "$msg" | grep '2:6')"
code=$(curl -s -o "$tmp/e2.json" -w '%{http_code}' "$url/v1/chat/completions" -d '{"messages":[{"role":"user",
    "content":"x"}],"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object",
    "properties":{"a":{"type":"string","pattern":"(?=x)"}}}}}}')
msg=$(jq -r '.error.message' "$tmp/e2.json")
check "bad schema: 400 with the JSON pointer ($code: $msg)" \
    test "$code" = 400 -a "$(jq -r '.error.param' "$tmp/e2.json")" = response_format \
    -a -n "$(echo "$msg" | grep '/properties/a')"
code=$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/completions" -d '{"prompt":"x","json_schema":{"type":"objekt"}}')
check "unknown schema type: 400" test "$code" = 400
check "daemon still serves after the refusals" \
    test "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200
stop

# the hybrid qwen35-tiny target with the draft speculator (stories260K: same vocabulary) and a schema:
# 8 requests, 4 at a time, valid and equal to the answers without speculation
q35=$shared/models/synthetic/qwen35-tiny-F32.gguf
if [ -f "$q35" ]; then
    sed -e "s|^path = .*|path = $q35|" "$tmp/draft.ini" | sed '/^\[speculator\]/,$d' > "$tmp/q35.ini"
    printf '[speculator]\ntype = draft\nmodel = %s\nn_max = 12\np_min = 0\ncontroller = acceptance\n' "$model" >> "$tmp/q35.ini"
    if start q35; then
        qs='{"type":"object","properties":{"ok":{"type":"boolean"},"n":{"type":"integer","minimum":0,"maximum":99},
          "tag":{"enum":["red","blue"]}},"required":["ok","n","tag"],"additionalProperties":false}'
        qvalid='type == "object" and (keys == ["n","ok","tag"]) and (.ok | type == "boolean")
          and (.n | type == "number" and . >= 0 and . <= 99 and . == floor) and (.tag == "red" or .tag == "blue")'
        for sp in true false; do
            for i in $(seq 1 8); do
                jq -cn --argjson s "$qs" --argjson sp $sp --arg u "Question $i" '{messages:[{role:"user",content:$u}],
                    max_tokens:200, temperature:0, speculative:$sp, response_format:{type:"json_schema",
                    json_schema:{schema:$s}}}' > "$tmp/q35.$sp.$i.body"
            done
            seq 1 8 | xargs -P 4 -I{} sh -c "curl -s '$url/v1/chat/completions' -d @'$tmp/q35.$sp.{}.body' \
                > '$tmp/q35.$sp.{}.json'"
        done
        bad=
        for i in $(seq 1 8); do
            a=$(jq -c '[.choices[0].message.content, .choices[0].finish_reason]' "$tmp/q35.true.$i.json" 2>/dev/null)
            b=$(jq -c '[.choices[0].message.content, .choices[0].finish_reason]' "$tmp/q35.false.$i.json" 2>/dev/null)
            if [ -z "$a" ] || [ "$a" != "$b" ] || ! jq -r '.choices[0].message.content' "$tmp/q35.true.$i.json" \
                | jq -e "$qvalid" > /dev/null 2>&1; then
                bad="$bad
request $i: $a, without speculation $b"
            fi
        done
        qd=$(jq -s '[.[] | .timings.draft_n // 0] | add' "$tmp"/q35.true.*.json)
        echo "# qwen35-tiny: e.g. $(jq -c '.choices[0].message.content' "$tmp/q35.true.1.json"); $qd drafted"
        if [ -z "$bad" ]; then ok "qwen35-tiny (hybrid) with the draft speculator: 8 schema answers valid, equal without speculation"
        else not_ok "qwen35-tiny (hybrid) with the draft speculator: 8 schema answers valid, equal without speculation" "$bad"; fi
        check "qwen35-tiny: drafts were verified under the grammar ($qd)" test "$qd" -gt 0
        stop
    else
        not_ok "qwen35-tiny daemon with the draft speculator up" "$(tail -5 "$tmp/q35.log")"
    fi
else
    skip "qwen35-tiny with the draft speculator" "$q35 missing"
fi
echo "1..$n"
[ $fails -eq 0 ]
