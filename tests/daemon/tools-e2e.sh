#!/bin/bash
# tools-e2e.sh: clspecd with a model that carries a Jinja chat template (the
# shared stories260K given Qwen 2.5's template by gguf-set-template.py): the
# template renders tools and a tool round trip (an assistant tool call and
# a role "tool" result, which lengthen the prompt), chat_template_kwargs and
# reasoning_format are taken, streamed content equals the whole, and the
# official openai npm client does the same round trip. tool_choice
# "required" and a named function force a call through a grammar: the tiny
# model then writes one, and the answer carries parsed tool_calls whose
# arguments fit the tool's schema, streamed (the deltas add up to the same
# calls) and not, and under speculation (ngram, draft: the same calls as
# without). Parsing of every format is tested by test-toolcall and
# test-chatout. TAP output.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
need "$model"
command -v python3 >/dev/null || { echo "1..0 # SKIP python3 not installed"; exit 0; }
echo "1..19"
make_tmp
curl() { command curl --max-time 60 "$@"; }
key=tools-secret
post() { # post PATH BODY: the status; the body in $tmp/body
    curl -s -o "$tmp/body" -w '%{http_code}' -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
        -d "$2" "$url$1"
}

tmodel=$tmp/stories260K-qwen-template.gguf
python3 "$here/gguf-set-template.py" "$model" "$srcdir/tests/chat/qwen2.5-7b-instruct.jinja" "$tmodel"
sed -e "s|^port = .*|port = 0|" -e "s|^path = .*|path = $tmodel|" -e "s|^n_ctx = .*|n_ctx = 2048|" \
    "$srcdir/conf/clspecd.ini" > "$tmp/t.ini"
sed -i "s|^\[server\]|[server]\napi_key = $key\nlog_level = debug|" "$tmp/t.ini"
if ! start t; then
    not_ok "daemon up with the templated model" "$(tail -5 "$tmp/t.log")"
    exit 1
fi
check "daemon up; it renders chats with the GGUF's Jinja template" grep -q "chat template: jinja" "$tmp/t.log"

tools='[{"type":"function","function":{"name":"get_weather","description":"Current weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]'
user='{"role":"user","content":"Weather in Paris?"}'
code=$(post /v1/chat/completions "{\"messages\":[$user],\"max_tokens\":4,\"temperature\":0}")
plain=$(jq .usage.prompt_tokens "$tmp/body")
code2=$(post /v1/chat/completions "{\"messages\":[$user],\"tools\":$tools,\"max_tokens\":4,\"temperature\":0}")
with_tools=$(jq .usage.prompt_tokens "$tmp/body")
check "tools: 200, rendered into the prompt ($plain -> $with_tools prompt tokens)" \
    test "$code" = 200 -a "$code2" = 200 -a "$with_tools" -gt "$plain"
check "tools: the answer is an assistant message with string content" \
    test "$(jq -r '.choices[0].message.role + " " + (.choices[0].message.content|type)' "$tmp/body")" = "assistant string"

call='{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]}'
result='{"role":"tool","tool_call_id":"call_1","content":"{\"temp\": 21}"}'
code=$(post /v1/chat/completions "{\"messages\":[$user,$call,$result],\"tools\":$tools,\"max_tokens\":4,\"temperature\":0}")
round=$(jq .usage.prompt_tokens "$tmp/body")
whole=$(jq -r .choices[0].message.content "$tmp/body")
check "tool round trip: 200, the call and the result rendered ($with_tools -> $round prompt tokens)" \
    test "$code" = 200 -a "$round" -gt "$with_tools"
curl -sN -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d "{\"messages\":[$user,$call,$result],\"tools\":$tools,\"max_tokens\":4,\"temperature\":0,\"stream\":true}" \
    "$url/v1/chat/completions" > "$tmp/sse"
streamed=$(sed -n 's/^data: //p' "$tmp/sse" | grep -v '^\[DONE\]' | jq -rj '.choices[0].delta.content // empty')
check "tool round trip streamed: the deltas add up to the whole content" test "$streamed" = "$whole"

code=$(post /v1/chat/completions "{\"messages\":[$user],\"chat_template_kwargs\":{\"enable_thinking\":false},\"reasoning_format\":\"none\",\"max_tokens\":2}")
check "chat_template_kwargs and reasoning_format none: 200" test "$code" = 200
# forced calls: get_weather (a city of up to 16 characters) or now (no arguments)
ftools='[{"type":"function","function":{"name":"get_weather","description":"Current weather","parameters":{"type":"object","properties":{"city":{"type":"string","maxLength":16}},"required":["city"]}}},{"type":"function","function":{"name":"now","description":"The time","parameters":{"type":"object","properties":{}}}}]'
valid_calls() { # valid_calls FILE [NAME]: the message has tool calls of ftools (all NAME when given) whose arguments fit
    jq -e --arg only "${2:-}" '.choices[0].message.tool_calls | length > 0 and all(.[]; .type == "function"
        and ($only == "" or .function.name == $only) and ((.function.arguments | fromjson) as $a
        | if .function.name == "get_weather" then ($a | keys) == ["city"] and ($a.city | type) == "string"
            and ($a.city | length) <= 16
          elif .function.name == "now" then $a == {} else false end))' "$1" > /dev/null
}
calls_of() { jq -c '[.choices[0].message.tool_calls[] | {name: .function.name, arguments: .function.arguments}]' "$1"; }
forced() { # forced TOOL_CHOICE [EXTRA [MAX_TOKENS]]: the request body
    echo "{\"messages\":[$user],\"tools\":$ftools,\"tool_choice\":$1,\"max_tokens\":${3:-200},\"temperature\":0${2:-}}"
}
code=$(post /v1/chat/completions "$(forced '"required"' ',"parallel_tool_calls":false')")
cp "$tmp/body" "$tmp/required.json"
check "tool_choice required: the model writes one call (finish tool_calls, content null), its arguments fit the schema" \
    test "$code" = 200 -a "$(jq -r '.choices[0].finish_reason + " " + (.choices[0].message.content|type)' \
    "$tmp/body")" = "tool_calls null" -a "$(jq '.choices[0].message.tool_calls | length' "$tmp/body")" = 1
check "tool_choice required: $(calls_of "$tmp/required.json")" valid_calls "$tmp/required.json"
curl -sN -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d "$(forced '"required"' ',"parallel_tool_calls":false,"stream":true')" "$url/v1/chat/completions" > "$tmp/sse"
stream_calls() { # stream_calls SSE_FILE: the tool calls its deltas add up to
    sed -n 's/^data: //p' "$1" | grep -v '^\[DONE\]' | jq -sc '[.[].choices[0].delta.tool_calls // empty | .[]]
        | group_by(.index) | map({name: (map(.function.name // empty) | first),
          arguments: (map(.function.arguments // "") | join(""))})'
}
sc=$(stream_calls "$tmp/sse")
fin=$(sed -n 's/^data: //p' "$tmp/sse" | grep -v '^\[DONE\]' | jq -r '.choices[0].finish_reason // empty' | tail -1)
check "tool_choice required streamed: name and argument deltas add up to the same call, finish tool_calls" \
    test "$sc" = "$(calls_of "$tmp/required.json")" -a "$fin" = tool_calls
code=$(post /v1/chat/completions "$(forced '{"type":"function","function":{"name":"get_weather"}}')")
cp "$tmp/body" "$tmp/named.json"
check "tool_choice naming get_weather: every call is get_weather with valid arguments" \
    test "$code" = 200 -a "$(jq -r .choices[0].finish_reason "$tmp/named.json")" != null
check "tool_choice naming get_weather: $(calls_of "$tmp/named.json" | cut -c1-160)" valid_calls "$tmp/named.json" get_weather
code=$(post /v1/chat/completions "$(forced '"required"' ',"response_format":{"type":"json_object"}')")
code2=$(post /v1/chat/completions "$(forced '{"type":"function","function":{"name":"get_time"}}')")
msg2=$(jq -r .error.message "$tmp/body")
code3=$(post /v1/chat/completions "{\"messages\":[$user],\"tool_choice\":\"required\"}")
check "tool_choice refusals: with a grammar of its own, an unknown function ($msg2), without tools: 400" \
    test "$code" = 400 -a "$code2" = 400 -a "$code3" = 400 -a "$(jq -r .error.param "$tmp/body")" = tool_choice
code=$(post /v1/chat/completions "{\"messages\":[$user],\"reasoning_format\":\"qwen\"}")
check "reasoning_format qwen: 400 naming it" test "$code" = 400 -a "$(jq -r .error.param "$tmp/body")" = reasoning_format

# the official openai client (pinned; installed like e2e.sh does)
client=
if [ -d "$here/node_modules/openai" ]; then
    client=$here/openai-tools.mjs
elif command -v npm >/dev/null && command -v node >/dev/null; then
    mkdir -p "$tmp/npm" && cp "$here/package.json" "$here/package-lock.json" "$here/openai-tools.mjs" "$tmp/npm/"
    timeout 300 npm ci --prefix "$tmp/npm" --prefer-offline --no-audit --no-fund --loglevel=error \
        > "$tmp/npm.log" 2>&1 && client=$tmp/npm/openai-tools.mjs
fi
if [ -z "$client" ] || ! command -v node >/dev/null; then
    skip "openai client: tools and a tool round trip" "node/npm or the pinned client not available"
elif node "$client" "$url/v1" "$key" > "$tmp/oa.json" 2> "$tmp/oa.err"; then
    # get_weather's parameters here: {"city": string}, required
    check "openai client: a tool round trip (the result rendered), streamed equals whole, a forced call parsed \
($(jq -c '[.required.message.tool_calls[0].function, .named_stream.calls]' "$tmp/oa.json" | cut -c1-200))" \
        test "$(jq -r .first.message.role "$tmp/oa.json")" = assistant \
        -a "$(jq .second.usage.prompt_tokens "$tmp/oa.json")" -gt "$(jq .first.usage.prompt_tokens "$tmp/oa.json")" \
        -a "$(jq -r .second_stream "$tmp/oa.json")" = "$(jq -r .second.message.content "$tmp/oa.json")" \
        -a "$(jq -r '.required.finish + " " + .named_stream.finish' "$tmp/oa.json")" = "tool_calls tool_calls" \
        -a "$(jq '.required.message.tool_calls | length' "$tmp/oa.json")" = 1 \
        -a "$(jq -r '.named_stream.calls | map(.name) | join(",")' "$tmp/oa.json")" = get_weather \
        -a "$(jq -r '[.required.message.tool_calls[0].function.arguments, .named_stream.calls[0].arguments]
            | map(fromjson | (keys == ["city"]) and (.city | type) == "string") | all' "$tmp/oa.json")" = true
else
    not_ok "openai client: tools and a tool round trip" "$(tail -5 "$tmp/oa.err")"
fi
stop
check "drained and stopped" test $? -eq 0

# under speculation: the same forced calls (greedy, so the same text) as without
for kind in ngram draft; do
    sed '/^\[speculator\]/,$d' "$tmp/t.ini" > "$tmp/$kind.ini"
    { echo "[speculator]"; spec_lines $kind; } >> "$tmp/$kind.ini"
    if ! start $kind; then
        not_ok "speculation $kind: daemon up" "$(tail -5 "$tmp/$kind.log")"
        continue
    fi
    post /v1/chat/completions "$(forced '"required"' ',"parallel_tool_calls":false')" > /dev/null
    cp "$tmp/body" "$tmp/$kind-required.json"
    post /v1/chat/completions "$(forced '{"type":"function","function":{"name":"get_weather"}}')" > /dev/null
    cp "$tmp/body" "$tmp/$kind-named.json"
    curl -sN -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
        -d "$(forced '"required"' ',"parallel_tool_calls":false,"stream":true')" "$url/v1/chat/completions" > "$tmp/$kind.sse"
    check "speculation $kind (drafted $(jq .timings.draft_n "$tmp/$kind-named.json"), accepted $(jq \
        .timings.draft_accepted "$tmp/$kind-named.json")): the same forced calls as without speculation, streamed too" \
        test "$(calls_of "$tmp/$kind-required.json")" = "$(calls_of "$tmp/required.json")" \
        -a "$(stream_calls "$tmp/$kind.sse")" = "$(calls_of "$tmp/required.json")" \
        -a "$(calls_of "$tmp/$kind-named.json")" = "$(calls_of "$tmp/named.json")" \
        -a "$(jq .timings.speculative "$tmp/$kind-named.json")" = true
    stop
done

# the Qwen3.5/3.6 template: XML calls (qwen3-coder format), a thinking block opened by the generation prompt
qmodel=$tmp/stories260K-qwen36-template.gguf
python3 "$here/gguf-set-template.py" "$model" "$srcdir/tests/chat/qwen3.6-27b.jinja" "$qmodel"
sed -e "s|^path = .*|path = $qmodel|" "$tmp/t.ini" > "$tmp/q.ini"
if start q; then
    post /v1/chat/completions "$(forced '"required"' ',"parallel_tool_calls":false,"chat_template_kwargs":{"enable_thinking":false}')" > /dev/null
    cp "$tmp/body" "$tmp/q-required.json"
    check "qwen3.6 template, thinking off: the forced call in its XML format parses, arguments fit ($(calls_of "$tmp/q-required.json"))" \
        eval 'valid_calls "$tmp/q-required.json" && test "$(jq -r .choices[0].finish_reason "$tmp/q-required.json")" = tool_calls'
    code=$(post /v1/chat/completions "$(forced '"required"' '' 24)")
    check "qwen3.6 template, thinking on: the forced answer first ends the opened reasoning (reasoning_content, no call yet at 24 tokens)" \
        test "$code" = 200 -a "$(jq -r '.choices[0].message.reasoning_content | type' "$tmp/body")" = string \
        -a "$(jq -r '.choices[0].message.tool_calls | length' "$tmp/body")" = 0
    stop
else
    not_ok "qwen3.6 template: daemon up" "$(tail -5 "$tmp/q.log")"
    not_ok "qwen3.6 template: daemon up"
fi
exit $((fails > 0))
