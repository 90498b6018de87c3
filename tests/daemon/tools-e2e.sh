#!/bin/bash
# tools-e2e.sh: clspecd with a model that carries a Jinja chat template (the
# shared stories260K given Qwen 2.5's template by gguf-set-template.py): the
# template renders tools and a tool round trip (an assistant tool call and
# a role "tool" result, which lengthen the prompt), chat_template_kwargs and
# reasoning_format are taken, tool_choice "required" is refused naming
# grammar sampling, streamed content equals the whole, and the official
# openai npm client does the same round trip. The tiny model never writes a
# tool call itself: parsing is tested by test-toolcall and test-chatout.
# TAP output.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
need "$model"
command -v python3 >/dev/null || { echo "1..0 # SKIP python3 not installed"; exit 0; }
echo "1..10"
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
code=$(post /v1/chat/completions "{\"messages\":[$user],\"tools\":$tools,\"tool_choice\":\"required\"}")
check "tool_choice required: 400 naming grammar sampling" test "$code" = 400 \
    -a "$(jq -r .error.param "$tmp/body")" = tool_choice -a -n "$(jq -r .error.message "$tmp/body" | grep grammar)"
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
    check "openai client: tools and a tool round trip (the result rendered), streamed equals whole, required refused" \
        test "$(jq -r .first.message.role "$tmp/oa.json")" = assistant \
        -a "$(jq .second.usage.prompt_tokens "$tmp/oa.json")" -gt "$(jq .first.usage.prompt_tokens "$tmp/oa.json")" \
        -a "$(jq -r .second_stream "$tmp/oa.json")" = "$(jq -r .second.message.content "$tmp/oa.json")" \
        -a "$(jq -r .required.status "$tmp/oa.json")" = 400
else
    not_ok "openai client: tools and a tool round trip" "$(tail -5 "$tmp/oa.err")"
fi
stop
check "drained and stopped" test $? -eq 0
exit $((fails > 0))
