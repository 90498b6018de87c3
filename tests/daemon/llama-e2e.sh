#!/usr/bin/env bash
# llama-e2e.sh: llama-server's API, CORS and the chat page of clspecd, end to
# end (TAP). Daemon A: API key, [server] cors_origins = one origin,
# [speculator] type = ngram (when the plugin is built). Daemon B: webui and
# slots off, no CORS. Checks with curl: the API key on everything but /health
# and the page, OPTIONS preflight and CORS headers (allowed origin only),
# /completion refusals in llama-server's error shape, logit_bias (id, text,
# object and list forms; the same tokens with and without ngram drafts,
# greedy and sampled), speculation counts in
# /completion's timings, /slots, /props (POST 501), /embeddings 501; then
# llama-client.mjs (node fetch + SSE parsing, the way llama-server's clients
# call it) and webui-chromium.mjs (the page in headless Chromium with
# playwright-core: send a message, see the streamed answer and the stats).
# The Chromium check is skipped only when no chromium binary is installed
# (Debian: apt-get install chromium; CHROMIUM=path overrides) or
# playwright-core cannot be installed (tests/daemon/node_modules from
# `npm ci --prefix tests/daemon`, else npm ci into a temporary directory).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
need "$model"
make_tmp
curl() { command curl --max-time 60 "$@"; }

key=llama-e2e-key
origin=http://allowed.example
spec="type = none"
[ -f "$builddir/plugins/ngram/.libs/ngram.so" ] && spec=$'type = ngram\nn_max = 8\ncontroller = acceptance'
base() { # the shipped configuration on a free port with the test model
    sed -e "s|^port = .*|port = 0|" -e "s|^path = .*|path = $model|" -e "s|^parallel = .*|parallel = 2|" \
        -e "s|^n_ctx = .*|n_ctx = 2048|" "$srcdir/conf/clspecd.ini" | sed '/^\[speculator\]/,$d'
}
{ base | awk -v k="$key" -v o="$origin" '{print} /^\[server\]/{print "api_key = " k; print "cors_origins = " o; print "embeddings = true"}'
  printf '[speculator]\n%s\n' "$spec"; } > "$tmp/a.ini"
# daemon B renders chats with a template file that shows what llama-server hands templates
printf '%s' '{{ date_string }}|{{ datetime }}|{{ enable_thinking }}|{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}{% if add_generation_prompt %}<gen>{% endif %}' > "$tmp/show.jinja"
base | sed -e 's|^n_ctx = .*|n_ctx = 512|' |
    awk -v t="$tmp/show.jinja" '{print} /^\[server\]/{print "webui = false"; print "slots = false"} /^\[slots\]/{print "truncate_prompt = true"}
         /^\[model\]/{print "chat_template_file = " t; print "chat_template = jinja"; print "reasoning = off";
                       print "name = code"; print "aliases = tinyllama-2, fim, code"; print "tags = chat,fim,small"}' > "$tmp/b.ini"

if ! start a; then
    not_ok "daemon A up" "$(tail -5 "$tmp/a.log")"
    echo "1..$n"
    exit 1
fi
auth=(-H "Authorization: Bearer $key")
code() { curl -s -o "$tmp/body" -D "$tmp/hdr" -w '%{http_code}' "$@"; }
hdr() { grep -i "^$1:" "$tmp/hdr" | head -1 | cut -d' ' -f2- | tr -d '\r'; }

# ---- API key: everything but /health and the page
check "GET / (the chat page) needs no key: 200 text/html" \
    test "$(code "$url/")" = 200 -a -n "$(hdr Content-Type | grep text/html)"
check "the page holds the chat form (#input, #send)" grep -q 'id="send"' "$tmp/body"
check "GET /health needs no key" test "$(code "$url/health")" = 200
check "GET /props without the key: 401 in llama-server's error shape" \
    test "$(code "$url/props")" = 401 -a "$(jq -r '.error.code, .error.type' "$tmp/body" | tr '\n' ' ')" = \
    "401 authentication_error "
check "POST /completion without the key: 401" test "$(code "$url/completion" -d '{"prompt":"a"}')" = 401
check "POST /v1/chat/completions with a wrong key: 401" \
    test "$(code -H 'Authorization: Bearer nope' "$url/v1/chat/completions" -d '{}')" = 401
check "the key in X-Api-Key (Anthropic's clients) is accepted; a wrong one is not" \
    test "$(code -H "X-Api-Key: $key" "$url/props")$(code -H "X-Api-Key: nope" "$url/props")" = 200401

# ---- CORS
c=$(code -X OPTIONS -H "Origin: $origin" -H 'Access-Control-Request-Method: POST' \
    -H 'Access-Control-Request-Headers: authorization, content-type' "$url/v1/chat/completions")
check "OPTIONS preflight from the allowed origin (no key): 200" test "$c" = 200
check "preflight: Allow-Origin the origin, Allow-Credentials true, Allow-Methods llama-server's, Allow-Headers echoed" \
    test "$(hdr Access-Control-Allow-Origin)|$(hdr Access-Control-Allow-Credentials)|$(hdr Access-Control-Allow-Methods)|$(hdr Access-Control-Allow-Headers)" \
    = "$origin|true|GET, POST, DELETE, OPTIONS|authorization, content-type"
code -X OPTIONS -H "Origin: http://other.example" "$url/v1/chat/completions" > /dev/null
check "preflight from another origin: no Access-Control-Allow-Origin" test -z "$(hdr Access-Control-Allow-Origin)"
check "OPTIONS on an unknown path: 404" test "$(code -X OPTIONS -H "Origin: $origin" "$url/nope")" = 404
c=$(code "${auth[@]}" -H "Origin: $origin" "$url/completion" -d '{"prompt":"Once","n_predict":2}')
check "POST /completion from the allowed origin: 200 with Access-Control-Allow-Origin" \
    test "$c|$(hdr Access-Control-Allow-Origin)" = "200|$origin"
c=$(code -H "Origin: $origin" "$url/completion" -d '{"prompt":"Once"}')
check "a 401 carries the CORS header too (the page can read the error)" \
    test "$c|$(hdr Access-Control-Allow-Origin)" = "401|$origin"
curl -s -D "$tmp/hdr" -o /dev/null "${auth[@]}" -H "Origin: $origin" "$url/completion" \
    -d '{"prompt":"Once","n_predict":3,"stream":true}'
check "a streamed answer carries the CORS header" test "$(hdr Access-Control-Allow-Origin)" = "$origin"

# ---- /completion: refusals in llama-server's shape, fields
refused() { # refused FIELD BODY: 400, error.code 400 and the message names FIELD
    local c
    c=$(code "${auth[@]}" "$url/completion" -d "$2")
    [ "$c" = 400 ] && [ "$(jq -r .error.code "$tmp/body")" = 400 ] && grep -q "$1" "$tmp/body"
}
check "logit_bias: a token outside the vocabulary, a bias of true, a bad shape: 400 naming it" \
    eval "refused logit_bias '{\"prompt\":\"a\",\"logit_bias\":[[99999,-5]]}' &&
          refused logit_bias '{\"prompt\":\"a\",\"logit_bias\":{\"5\":true}}' &&
          refused logit_bias '{\"prompt\":\"a\",\"logit_bias\":[[5]]}'"
toks() { # toks BODY-JSON: the token ids /completion answers (greedy unless the body says otherwise)
    code "${auth[@]}" "$url/completion" -d "$1" > /dev/null && jq -c .tokens "$tmp/body"
}
lb_p='"prompt":"one two three one two three one two three one two","n_predict":24,"return_tokens":true'
t0=$(toks "{$lb_p,\"temperature\":0,\"speculative\":false}")
first=$(jq '.[0]' <<< "$t0")
t_obj=$(toks "{$lb_p,\"temperature\":0,\"speculative\":false,\"logit_bias\":{\"$first\":false}}")
t_arr=$(toks "{$lb_p,\"temperature\":0,\"speculative\":false,\"logit_bias\":[[$first,false]]}")
check "logit_bias false bans a token (greedy): never produced; {id: false} and [[id, false]] agree" \
    test "$(jq --argjson f "$first" 'index($f) == null' <<< "$t_obj")|$t_obj" = "true|$t_arr" -a "$t_obj" != "$t0"
jq '{generation_settings}' "$tmp/body" > "$tmp/gs"
check "generation_settings.logit_bias lists it as llama-server does ({bias: null for -inf, token})" \
    test "$(jq -c .generation_settings.logit_bias "$tmp/gs")" = "[{\"bias\":null,\"token\":$first}]"
piece=$(code "${auth[@]}" "$url/detokenize" -d "{\"tokens\":[$first]}" > /dev/null; jq -r .content "$tmp/body")
t_txt=$(toks "{$lb_p,\"temperature\":0,\"speculative\":false,\"logit_bias\":[[$(jq -n --arg s "$piece" '$s'),false]]}")
check "logit_bias with a text key ('$piece') bans its tokens as the id does" test "$t_txt" = "$t_obj"
if [ "$spec" != "type = none" ]; then
    # greedy: one token banned, another lowered; sampled (several seeds, drafts depend on what the
    # ngram tables saw): one raised, one banned. Every pair the same; drafts verified in some.
    same=0 runs=0 dn_sum=0
    for samp in '"temperature":0' '"temperature":0.5,"seed":1' '"temperature":0.5,"seed":2' \
                '"temperature":0.5,"seed":3' '"temperature":0.5,"seed":4' '"temperature":0.5,"seed":5'; do
        ban="\"logit_bias\":[[$first,false],[$(jq '.[1]' <<< "$t0"),-3.5]]"
        [ "$samp" = '"temperature":0' ] || ban="\"logit_bias\":{\"$first\":2.5,\"300\":false}"
        t_off=$(toks "{$lb_p,$samp,$ban,\"speculative\":false}")
        t_on=$(toks "{$lb_p,$samp,$ban}")
        dn=$(jq '.timings.draft_n // 0' "$tmp/body")
        runs=$((runs + 1)); dn_sum=$((dn_sum + dn))
        [ "$t_on" = "$t_off" ] && [ "$(jq --argjson f "$first" 'index($f) == null' <<< "$t_on")" = true -o \
            "$samp" != '"temperature":0' ] && same=$((same + 1))
    done
    check "logit_bias under ngram speculation, greedy and 5 sampled seeds: the same tokens as without drafts ($same of $runs; $dn_sum drafts verified)" \
        test "$same" = "$runs" -a "$dn_sum" -gt 0
else
    skip "logit_bias under speculation" "ngram plugin not built"
fi
c=$(code "${auth[@]}" "$url/v1/completions" -d "{\"prompt\":\"one two three one two three one two three one two\",\"max_tokens\":24,\"temperature\":0,\"logit_bias\":{\"$first\":-100}}")
check "/v1/completions takes OpenAI's logit_bias object (-100 bans the token: the text differs from unbiased)" \
    test "$c|$(jq -r '.choices[0].text' "$tmp/body" | grep -c .)" = "200|1" -a \
    "$(jq -r '.choices[0].text' "$tmp/body")" != "$(code "${auth[@]}" "$url/v1/completions" -d '{"prompt":"one two three one two three one two three one two","max_tokens":24,"temperature":0}' >/dev/null; jq -r '.choices[0].text' "$tmp/body")"
c=$(code "${auth[@]}" "$url/completion" -d '{"prompt":"Once","n_predict":2,"ignore_eos":true}')
check "ignore_eos: generation_settings.logit_bias holds the end-of-generation tokens at null (-inf)" \
    test "$c|$(jq '[.generation_settings.logit_bias[] | .bias == null] | (length > 0 and all)' "$tmp/body")" = "200|true"
check "n_predict 0: 400 naming it" refused n_predict '{"prompt":"a","n_predict":0}'
check "post_sampling_probs not a boolean: 400 naming it" refused post_sampling_probs '{"prompt":"a","post_sampling_probs":1}'
c=$(code "${auth[@]}" "$url/completion" -d '{"prompt":"Once upon a time","n_predict":6,"n_probs":5,"post_sampling_probs":true,"top_k":3,"temperature":1,"seed":3}')
check "post_sampling_probs with top_k 3: each token's top_probs are the sampler's (at most 3, summing to 1, the token among them)" \
    test "$c|$(jq -c '[.completion_probabilities[] | (.top_probs | length <= 3 and length >= 1), ((.top_probs | map(.prob) | add) - 1 | fabs < 0.001), (.id as $t | .prob as $p | any(.top_probs[]; .id == $t and .prob == $p)), (has("logprob") | not)] | unique' "$tmp/body")" \
    = '200|[true]'
c=$(code "${auth[@]}" "$url/completion" -d '{"prompt":"Once upon a time","n_predict":4,"n_probs":3,"post_sampling_probs":true,"temperature":0}')
check "post_sampling_probs, greedy: the chosen token has probability 1 and is the only alternative" \
    test "$c|$(jq -c '[.completion_probabilities[] | [.prob, (.top_probs | length), .top_probs[0].prob]] | unique' "$tmp/body")" = '200|[[1,1,1]]'
check "several prompts in a streamed request: 400" refused prompt '{"prompt":["a","b"],"stream":true}'
c=$(code "${auth[@]}" "$url/completion" -d '{"prompt":["Once upon a time",[1,403,407,261,378],{"prompt_string":"Once upon a time"}],"n_predict":6,"temperature":0}')
check "several prompts: an array of answers in order, index set, same prompt same text" \
    test "$c|$(jq -c '[length, [.[].index], (.[0].content == .[1].content and .[0].content == .[2].content), [.[].tokens_predicted]]' "$tmp/body")" \
    = '200|[3,[0,1,2],true,[6,6,6]]'
check "several prompts, one bad: the error of that one" refused 'prompt\[0\]' '{"prompt":["a",[99999]]}'
check "n_probs 99: 400 naming it" refused n_probs '{"prompt":"a","n_probs":99}'
check "a token id out of range in a mixed prompt: 400" refused 'prompt\[0\]' '{"prompt":[99999,"a"]}'
c=$(code "${auth[@]}" "$url/completion" -d '{"prompt":{"prompt_string":"Once upon"},"n_predict":3,"response_fields":["content","generation_settings/n_predict","prompt"]}')
check "prompt as {prompt_string}; response_fields cut the answer to the named paths; prompt shows <s>" \
    test "$c|$(jq -c 'keys' "$tmp/body")|$(jq -r '."generation_settings/n_predict"' "$tmp/body")|$(jq -r .prompt "$tmp/body")" \
    = '200|["content","generation_settings/n_predict","prompt"]|3|<s> Once upon'
check "prompt with multimodal_data on a server without a projector: 400" refused mmproj \
    '{"prompt":{"prompt_string":"<__media__>a","multimodal_data":["x"]}}'
check "GET /completion: 405" test "$(code "${auth[@]}" "$url/completion")" = 405
check "POST /props: 501 not_supported_error" \
    test "$(code "${auth[@]}" -X POST "$url/props" -d '{}')|$(jq -r .error.type "$tmp/body")" = "501|not_supported_error"
c=$(code "${auth[@]}" "$url/v1/embeddings" -d '{"input":["Once upon a time","Once upon a time",[1,403,407],"The cat sat"]}')
check "/v1/embeddings: one unit-length vector of n_embd per input, usage counted" \
    test "$c|$(jq -c '[.object, (.data | length), ([.data[] | .embedding | length] | unique), ([.data[] | ([.embedding[] | . * .] | add) | . * 1000 | round] | unique), .usage.prompt_tokens > 0]' "$tmp/body")" \
    = '200|["list",4,[64],[1000],true]'
check "/v1/embeddings: the same input gives the same vector, another input another" \
    test "$(jq '(.data[0].embedding == .data[1].embedding) and (.data[0].embedding != .data[3].embedding)' "$tmp/body")" = true
cp "$tmp/body" "$tmp/emb1"
c=$(code "${auth[@]}" "$url/embeddings" -d '{"content":"Once upon a time"}')
check "/embeddings (llama-server's content field) answers as /v1/embeddings" \
    test "$c|$(jq -c .data[0].embedding "$tmp/body")" = "200|$(jq -c .data[0].embedding "$tmp/emb1")"
check "/v1/embeddings refusals: empty input, encoding_format base64, bad token id" \
    test "$(code "${auth[@]}" "$url/v1/embeddings" -d '{"input":""}')$(code "${auth[@]}" "$url/v1/embeddings" -d '{"input":"a","encoding_format":"base64"}')$(code "${auth[@]}" "$url/v1/embeddings" -d '{"input":[99999]}')" = 400400400
c=$(code "${auth[@]}" "$url/completion" -d '{"prompt":"Once upon a time","n_predict":6,"seed":-1,"cache_prompt":true,"id_slot":1,"ignore_eos":true,"repeat_last_n":-1}')
check "seed -1, cache_prompt, id_slot, ignore_eos, repeat_last_n -1 accepted; seed drawn and reported" \
    test "$c|$(jq '.tokens_predicted, (.generation_settings.seed > 0), .generation_settings.ignore_eos' "$tmp/body" | tr '\n' ' ')" \
    = "200|6 true true "
if [ "$spec" != "type = none" ]; then
    code "${auth[@]}" "$url/completion" -d '{"prompt":"one two three one two three one two three one two","n_predict":48,"temperature":0}' > /dev/null
    check "ngram speculator: /completion timings report draft_n > 0 and draft_n_accepted <= draft_n" \
        test "$(jq '.timings.draft_n > 0 and .timings.draft_n_accepted <= .timings.draft_n' "$tmp/body")" = true
    echo "# draft_n $(jq .timings.draft_n "$tmp/body"), accepted $(jq .timings.draft_n_accepted "$tmp/body")"
    code "${auth[@]}" "$url/v1/chat/completions" -d '{"messages":[{"role":"user","content":"one two three one two three one two three"}],"max_tokens":48,"temperature":0}' > /dev/null
    check "/v1/chat/completions timings carry llama-server's draft_n_accepted (= draft_accepted)" \
        test "$(jq '.timings.draft_n_accepted == .timings.draft_accepted and .timings.draft_n >= .timings.draft_n_accepted' "$tmp/body")" = true
else
    skip "speculation counts in /completion timings" "ngram plugin not built"
fi
big=$(jq -cn --arg p "$(printf 'Once upon a time %.0s' $(seq 1 700))" '{prompt:$p,n_predict:4}')
slot_ctx=$(code "${auth[@]}" "$url/props" > /dev/null; jq .default_generation_settings.n_ctx "$tmp/body")
c=$(code "${auth[@]}" "$url/completion" -d "$big")
check "a prompt over the slot's context: 400 exceed_context_size_error with n_prompt_tokens and n_ctx (llama-server's)" \
    test "$c|$(jq -r --argjson n "$slot_ctx" '.error.type, (.error.n_prompt_tokens > $n), .error.n_ctx' "$tmp/body" | tr '\n' ' ')" = \
    "400|exceed_context_size_error true $slot_ctx " -a -n "$(jq -r .error.message "$tmp/body" | grep 'exceeds the available context size')"
c=$(code "${auth[@]}" "$url/v1/chat/completions" -d "$(jq -c '{messages:[{role:"user",content:.prompt}],stream:true}' <<< "$big")")
check "the same on the OpenAI chat route, streamed or not" \
    test "$c|$(jq -r '.error.type, .error.n_ctx' "$tmp/body" | tr '\n' ' ')" = "400|exceed_context_size_error $slot_ctx "
curl -s -N "${auth[@]}" "$url/v1/chat/completions" -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":3,"stream":true,"stream_options":{"include_usage":true}}' > "$tmp/sse"
check "chat stream: the first chunk has the role and content null; the usage chunk llama-server's timings" \
    test "$(grep -m1 '^data: {' "$tmp/sse" | sed 's/^data: //' | jq -c '.choices[0].delta')|$(grep '^data: {' "$tmp/sse" | tail -1 | sed 's/^data: //' | jq -c '.timings | [.prompt_n > 0, .predicted_n, (.prompt_per_second | type), (.predicted_per_second | type)]')" \
    = '{"role":"assistant","content":null}|[true,3,"number","number"]'
# return_progress (llama-server's): a prompt_progress chunk when the slot starts (processed = cache) and after
# each chunk of the prompt, the last with processed = total = the prompt's tokens
prog() { grep '^data: {' "$tmp/sse" | sed 's/^data: //' | jq -c 'select(.prompt_progress) | .prompt_progress' |
    jq -s -c '[length >= 2, .[0].processed == .[0].cache, .[-1].processed == .[-1].total, ([.[].total] | unique | length),
               (. as $a | [range(1; $a | length)] | all($a[.].processed > $a[. - 1].processed)), .[-1].total]'; }
curl -s -N "${auth[@]}" "$url/v1/chat/completions" -d '{"messages":[{"role":"user","content":"Tell me a story about a cat"}],"max_tokens":3,"stream":true,"return_progress":true,"stream_options":{"include_usage":true}}' > "$tmp/sse"
n_pp=$(grep '^data: {' "$tmp/sse" | tail -1 | sed 's/^data: //' | jq .usage.prompt_tokens)
check "return_progress, chat stream: prompt_progress chunks from the start to processed = total = prompt_tokens ($n_pp)" \
    test "$(prog)|$(grep -m1 '^data: {' "$tmp/sse" | sed 's/^data: //' | jq -c '.choices[0].delta')" = "[true,true,true,1,true,$n_pp]|"'{"role":"assistant","content":null}'
curl -s -N "${auth[@]}" "$url/completion" -d '{"prompt":"Once upon a time","n_predict":2,"stream":true,"return_progress":true}' > "$tmp/sse"
check "return_progress, /completion stream: the same chunks ({content: \"\", stop: false, prompt_progress})" \
    test "$(prog)|$(grep -m1 '^data: {' "$tmp/sse" | sed 's/^data: //' | jq -c '[.content, .stop]')" = "[true,true,true,1,true,$(grep '^data: {' "$tmp/sse" | tail -1 | sed 's/^data: //' | jq .tokens_evaluated)]|[\"\",false]"
curl -s -N "${auth[@]}" "$url/v1/chat/completions" -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"stream":true}' > "$tmp/sse"
check "without return_progress: no prompt_progress" test -z "$(grep prompt_progress "$tmp/sse")"
code "${auth[@]}" "$url/v1/chat/completions" -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"verbose":true}' > /dev/null
check "\"verbose\": true: __verbose.prompt, the prompt's text (llama-server's debug dump); absent otherwise" \
    test "$(jq -c .__verbose.prompt "$tmp/body")|$(code "${auth[@]}" "$url/v1/chat/completions" -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2}')$(jq 'has("__verbose")' "$tmp/body")" \
    = '"<s> <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"|200false'
ch='"messages":[{"role":"user","content":"Hi"}],"max_tokens":6,"temperature":0.9'
c=$(code "${auth[@]}" "$url/v1/chat/completions" -d "{$ch,\"n\":3,\"seed\":5}")
cp "$tmp/body" "$tmp/n3"
code "${auth[@]}" "$url/v1/chat/completions" -d "{$ch,\"seed\":7}" > /dev/null
check "n = 3: three choices (index 0..2), choice i as a single request with seed + i, completion_tokens summed" \
    test "$c|$(jq -c '[[.choices[].index], ([.choices[].message.role] | unique), .usage.completion_tokens == 18]' "$tmp/n3")|$(jq -r '.choices[2].message.content' "$tmp/n3")" \
    = "200|[[0,1,2],[\"assistant\"],true]|$(jq -r '.choices[0].message.content' "$tmp/body")"
check "n = 2 streamed: 400 naming n" \
    test "$(code "${auth[@]}" "$url/v1/chat/completions" -d "{$ch,\"n\":2,\"stream\":true}")|$(jq -r .error.param "$tmp/body")" = "400|n"
check "two assistant messages at the end of the list: 400 naming messages (as llama-server)" \
    test "$(code "${auth[@]}" "$url/v1/chat/completions" -d '{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"assistant","content":"c"}]}')|$(jq -r .error.param "$tmp/body")" = "400|messages"
check "continue_final_message: with add_generation_prompt a 400 naming it; after a user message a 400; continuing an assistant message 200" \
    test "$(code "${auth[@]}" "$url/v1/chat/completions" -d '{"messages":[{"role":"assistant","content":"a"}],"continue_final_message":true,"add_generation_prompt":true}')$(jq -r .error.param "$tmp/body")$(code "${auth[@]}" "$url/v1/chat/completions" -d '{"messages":[{"role":"user","content":"a"}],"continue_final_message":true,"add_generation_prompt":false}')$(code "${auth[@]}" "$url/v1/chat/completions" -d '{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}],"continue_final_message":true,"add_generation_prompt":false,"max_tokens":2}')" \
    = 400continue_final_message400200
# a final assistant message is continued (llama-server's prefill_assistant): no end of turn, no new turn
# (the model has no template: chatml, llama-server's fallback); content parts joined by a blank line
pre='{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":'
check "assistant prefill: /apply-template ends with the assistant text, its turn open (string and parts)" \
    test "$(code "${auth[@]}" "$url/apply-template" -d "$pre\"Once\"}]}")|$(jq -r .prompt "$tmp/body")|$(code "${auth[@]}" "$url/apply-template" -d "$pre[{\"type\":\"text\",\"text\":\"A\"},{\"type\":\"text\",\"text\":\"B\"}]}],\"continue_final_message\":true,\"add_generation_prompt\":false}")|$(jq -r .prompt "$tmp/body")" \
    = "200|<|im_start|>user"$'\n'"Hi<|im_end|>"$'\n'"<|im_start|>assistant"$'\n'"Once|200|<|im_start|>user"$'\n'"Hi<|im_end|>"$'\n'"<|im_start|>assistant"$'\n'"A"$'\n\n'"B"
check "GET /slots: one entry per slot with is_processing" \
    test "$(code "${auth[@]}" "$url/slots")|$(jq '[.[] | select(.is_processing == false)] | length' "$tmp/body")" = "200|2"

# ---- docs/api.md's curl examples: each line run, its status as its comment says
awk '/^## curl examples/{f=1} f&&/^```sh/{g=1;next} g&&/^```/{exit} g' "$srcdir/docs/api.md" > "$tmp/curls"
bad=
while read -r line; do
    want=${line##*# }
    want=${want%% *}
    got=$(URL=$url KEY=$key bash -c "${line%%#*} -o /dev/null -w '%{http_code}'" 2>/dev/null)
    [ "$got" = "$want" ] || bad+="$got (want $want): ${line%%#*}"$'\n'
done < "$tmp/curls"
check "docs/api.md: every curl example ($(wc -l < "$tmp/curls") lines) answers its status" test -z "$bad" -a -s "$tmp/curls"
[ -n "$bad" ] && printf '%s' "$bad" | sed 's/^/# /'
routes=$(grep -o '{"/[^"]*", R_' "$srcdir/src/daemon/http.c" | cut -d'"' -f2 | sort -u)
missing=
for r in $routes; do grep -qF "\$URL$r\"" "$tmp/curls" || grep -qF "\$URL$r " "$tmp/curls" || missing+=" $r"; done
missing=${missing/ \/index.html/}
check "docs/api.md: a curl example for every route of http.c" test -z "$missing"
[ -n "$missing" ] && echo "# no example:$missing"

# ---- clients: node fetch + SSE, and the page in headless Chromium
tap_json() { # the JSON lines of a node check script as TAP
    local line
    while read -r line; do
        case $line in
        '{'*) if [ "$(jq -r .ok <<< "$line")" = true ]; then ok "$(jq -r .name <<< "$line")"
              else not_ok "$(jq -r .name <<< "$line")" "$(jq -c .detail <<< "$line" | cut -c1-600)"; fi ;;
        esac
    done
}
if command -v node >/dev/null; then
    node "$here/llama-client.mjs" "$url" "$key" > "$tmp/lc.out" 2> "$tmp/lc.err" ||
        not_ok "llama-client.mjs ran" "$(tail -5 "$tmp/lc.err")"
    tap_json < "$tmp/lc.out"
else
    skip "llama-server client checks (node fetch)" "node not installed"
fi

chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
modules=
if [ -d "$here/node_modules/playwright-core" ]; then
    modules=$here
elif command -v npm >/dev/null && command -v node >/dev/null && [ -n "$chromium" ]; then
    mkdir -p "$tmp/npm" && cp "$here/package.json" "$here/package-lock.json" "$tmp/npm/"
    timeout 300 npm ci --prefix "$tmp/npm" --prefer-offline --no-audit --no-fund --loglevel=error \
        > "$tmp/npm.log" 2>&1 && modules=$tmp/npm
fi
if [ -z "$chromium" ]; then
    skip "chat page in headless Chromium" "no chromium binary (apt-get install chromium, or set CHROMIUM)"
elif [ -z "$modules" ]; then
    skip "chat page in headless Chromium" "playwright-core not installed (npm ci --prefix tests/daemon)"
else
    cp "$here/webui-chromium.mjs" "$modules/" 2>/dev/null || true
    EXPECT_SPEC=$([ "$spec" != "type = none" ] && echo 1) timeout 120 node "$modules/webui-chromium.mjs" \
        "$chromium" "$url" "$key" > "$tmp/wc.out" 2> "$tmp/wc.err" ||
        not_ok "webui-chromium.mjs ran" "$(tail -5 "$tmp/wc.err")"
    grep '^#' "$tmp/wc.err" | cut -c1-300
    tap_json < "$tmp/wc.out"
fi
stop

# ---- daemon B: webui = false, slots = false, no cors_origins
if ! start b; then
    not_ok "daemon B up" "$(tail -5 "$tmp/b.log")"
    echo "1..$n"
    exit 1
fi
check "webui = false: GET / answers 404" test "$(code "$url/")" = 404
check "[model] aliases and tags: /models lists the id, every alias once and the tags (llama-server's --alias, --tags)" \
    test "$(code "$url/models")|$(jq -c '.data | length, .[0].id, (.[0].aliases | sort), .[0].tags' "$tmp/body" | tr '\n' ' ')" = \
        '200|1 "code" ["code","fim","tinyllama-2"] ["chat","fim","small"] '
long=$(printf 'Once upon a time %.0s' $(seq 1 150))
c=$(code "$url/completion" -d "$(jq -cn --arg p "$long" '{prompt:$p,n_predict:4}')")
check "truncate_prompt: a prompt over the slot's context answers truncated: true" \
    test "$c|$(jq '.truncated, .tokens_evaluated < 512' "$tmp/body" | tr '\n' ' ')" = "200|true true "
c=$(code "$url/completion" -d '{"prompt":"Once upon a time","n_predict":4}')
check "a prompt that fits: truncated: false" test "$c|$(jq .truncated "$tmp/body")" = "200|false"
check "embeddings off (default): POST /v1/embeddings answers 501 not_supported_error" \
    test "$(code "$url/v1/embeddings" -d '{"input":"a"}')|$(jq -r .error.type "$tmp/body")" = "501|not_supported_error"
check "slots = false: GET /slots answers 501 not_supported_error" \
    test "$(code "$url/slots")|$(jq -r .error.type "$tmp/body")" = "501|not_supported_error"
code -X OPTIONS -H "Origin: $origin" "$url/completion" > /dev/null
check "no cors_origins: a preflight gets no Access-Control-Allow-Origin" test -z "$(hdr Access-Control-Allow-Origin)"
code -H "Origin: $origin" "$url/completion" -d '{"prompt":"Once","n_predict":2}' > /dev/null
check "no cors_origins: answers carry no Access-Control-Allow-Origin" test -z "$(hdr Access-Control-Allow-Origin)"
today=$(date -u '+%d %b %Y|%b %d %Y')
msgs='"messages":[{"role":"user","content":"hi"}]'
c=$(code "$url/apply-template" -d "{$msgs}")
check "chat_template_file + reasoning = off: the template sees date_string, datetime (today) and enable_thinking false" \
    test "$c|$(jq -r .prompt "$tmp/body")" = "200|$today|False|user:hi;<gen>"
code "$url/apply-template" -d "{$msgs,\"add_generation_prompt\":false,\"chat_template_kwargs\":{\"enable_thinking\":true}}" > /dev/null
check "/apply-template: add_generation_prompt false and chat_template_kwargs as a chat request has them" \
    test "$(jq -r .prompt "$tmp/body")" = "$today|True|user:hi;"
c=$(code "$url/chat/completions/input_tokens" -d "{$msgs}")
n_in=$(jq .input_tokens "$tmp/body")
code "$url/v1/chat/completions" -d "{$msgs,\"max_tokens\":2}" > /dev/null
check "/chat/completions/input_tokens ($n_in) = the chat's usage.prompt_tokens" \
    test "$c|$n_in" = "200|$(jq .usage.prompt_tokens "$tmp/body")" -a "$n_in" -gt 5
stop

echo "1..$n"
[ $fails -eq 0 ]
