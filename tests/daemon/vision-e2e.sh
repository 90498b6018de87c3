#!/usr/bin/env bash
# vision-e2e.sh: images through clspecd end to end (TAP), on stories260K with
# the tiny LLaVA-style projector of ../shared/reference/mm:
#   - llama-server's prompt object {prompt_string: "<__media__>Once upon a
#     time", multimodal_data: [base64]} answers, at temperature 0, exactly the
#     32 tokens of llama.cpp's reference for both images (F32 projector);
#   - through a chat with the reference's pass-through template, image_url
#     gives the same 32 tokens for both images;
#   - an OpenAI chat image_url part (data: URI) is decoded and placed (16 image
#     rows in usage.prompt_tokens), deterministic, and differs from the same
#     chat without the image; two images in one request;
#   - remote image URLs are fetched only with [model] remote_images = true;
#   - hostile input gets 400 and the daemon keeps serving: truncated PNG, a
#     30000 x 30000 header, bytes that are not an image, a data: URI of
#     another MIME type, a remote URL, markers and images that do not pair up,
#     and images sent to a server without a projector;
#   - speculation with images, per request: each speculator either speculates
#     on the image request or sits out that request with a logged reason, and
#     the text equals the plain daemon's (temperature 0, parallel 4), text-only
#     requests keep speculating beside them.
# Needs curl, jq, base64, python3 (to craft the hostile PNG).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
mm=$shared/reference/mm
proj=$shared/models/synthetic/mm/mmproj-tiny-F32.gguf
golden=$mm/greedy-mmproj-tiny-F32.json
need "$model" "$proj" "$golden" "$mm/gradient-64x64.png" "$mm/checker-48x80.png"
command -v python3 >/dev/null || { echo "1..0 # SKIP python3 not installed"; exit 0; }
make_tmp

sed -e "s|^port = .*|port = 0|" -e "s|^path = .*|path = $model|" -e "s|^parallel = .*|parallel = 4|" \
    -e "s|^n_ctx = .*|n_ctx = 1024|" "$srcdir/conf/clspecd.ini" | sed '/^\[speculator\]/,$d' > "$tmp/noimg.ini"
sed "/^\[model\]/a mmproj = $proj" "$tmp/noimg.ini" > "$tmp/base.ini"
mkini() { # mkini NAME [speculator lines...]: base.ini + a [speculator] section
    local name=$1; shift
    cp "$tmp/base.ini" "$tmp/$name.ini"
    echo "[speculator]" >> "$tmp/$name.ini"
    for l in "$@"; do echo "$l" >> "$tmp/$name.ini"; done
}

b64() { base64 -w0 "$1"; }
grad=$(b64 "$mm/gradient-64x64.png")
check64=$(b64 "$mm/checker-48x80.png")
# img_req B64 [MAX] [TEXT]: a /v1/completions body with one image before TEXT
img_req() {
    jq -cn --arg b "$1" --argjson m "${2:-32}" --arg t "${3:-Once upon a time}" \
        '{prompt:{prompt_string:("<__media__>" + $t),multimodal_data:[$b]},max_tokens:$m,temperature:0}'
}
post() { curl -s "$url/v1/completions" -H 'Content-Type: application/json' -d @-; }
code() { curl -s -o "$tmp/last.json" -w '%{http_code}' "$url$1" -H 'Content-Type: application/json' -d @-; }
chat() { curl -s "$url/v1/chat/completions" -H 'Content-Type: application/json' -d @-; }

mkini plain "type = none"
if ! start plain; then
    not_ok "daemon with a projector up" "$(tail -5 "$tmp/plain.log")"
    echo "1..$n"
    exit 1
fi
check "the projector is loaded before ready (logged)" grep -q 'vision projector: .*16 rows of 64 per image' "$tmp/plain.log"

# ---- the references, both images
for i in 0 1; do
    name=$(jq -r ".cases[$i].image" "$golden")
    want=$(jq -r ".cases[$i].text" "$golden")
    got=$(img_req "$(b64 "$mm/$name")" | post)
    check "prompt object with $name: 32 greedy tokens equal llama.cpp's" \
        test "$(jq -r '.choices[0].text' <<<"$got")" = "$want"
    check "prompt object with $name: 21 prompt tokens (BOS, 16 image rows, 4 text)" \
        test "$(jq '.usage.prompt_tokens' <<<"$got")" = 21
done

# ---- chat image_url
chat_body() { # chat_body [DATA_URI]: a user message with the image (if any) and text
    jq -cn --arg u "${1:-}" '{messages:[{role:"user",content:([if $u == "" then empty else
        {type:"image_url",image_url:{url:$u}} end] + [{type:"text",text:"Once upon a time"}])}],
        max_tokens:24,temperature:0}'
}
c1=$(chat_body "data:image/png;base64,$grad" | chat)
c2=$(chat_body "data:image/png;base64,$grad" | chat)
c0=$(chat_body | chat)
pt1=$(jq '.usage.prompt_tokens' <<<"$c1") pt0=$(jq '.usage.prompt_tokens' <<<"$c0")
# (the text beside the image tokenizes apart from chatml's "user\n" before it: a few tokens more or fewer)
check "chat image_url: the image's 16 rows in the prompt (logged; $pt1 prompt tokens, $pt0 without it)" \
    eval 'grep -q "(16 image rows of 1 images)" "$tmp/plain.log" && [ $((pt1 - pt0)) -ge 12 ] && [ $((pt1 - pt0)) -le 18 ]' 
check "chat image_url: deterministic at temperature 0" \
    test "$(jq -r '.choices[0].message.content' <<<"$c1")" = "$(jq -r '.choices[0].message.content' <<<"$c2")"
check "chat image_url: the image changes the answer" \
    test "$(jq -r '.choices[0].message.content' <<<"$c1")" != "$(jq -r '.choices[0].message.content' <<<"$c0")"
two=$(jq -cn --arg a "$grad" --arg b "$check64" \
    '{prompt:{prompt_string:"<__media__> and <__media__>. Once upon a time",multimodal_data:[$a,$b]},max_tokens:8,temperature:0}' | post)
check "two images in one request: 32 image rows in the prompt" \
    test "$(jq '.usage.prompt_tokens' <<<"$two")" -ge 34

# (prefix reuse keyed by the image's content is checked deterministically at the
# engine door in tests/test-vision.c, test_prefix_images: here it would hang on timing)

# ---- hostile images: 400, and the daemon keeps serving
head -c 300 "$mm/gradient-64x64.png" | base64 -w0 > "$tmp/trunc.b64"
python3 - "$mm/gradient-64x64.png" "$tmp/huge.png" <<'EOF'
import struct, sys, zlib
b = bytearray(open(sys.argv[1], 'rb').read())
b[16:24] = struct.pack('>II', 30000, 30000)  # IHDR width, height
b[29:33] = struct.pack('>I', zlib.crc32(bytes(b[12:29])) & 0xffffffff)
open(sys.argv[2], 'wb').write(bytes(b))
EOF
hostile() { # hostile NAME BODY_COMMAND ROUTE WANT_SUBSTRING
    local c
    c=$(eval "$2" | code "$3")
    if [ "$c" = 400 ] && grep -qi -- "$4" "$tmp/last.json"; then ok "$1: 400 ($(jq -r .error.message "$tmp/last.json"))"
    else not_ok "$1: 400 naming '$4'" "HTTP $c: $(cat "$tmp/last.json")"; fi
}
hostile "truncated PNG" 'img_req "$(cat $tmp/trunc.b64)"' /v1/completions "PNG"
hostile "a 30000 x 30000 header" 'img_req "$(b64 $tmp/huge.png)"' /v1/completions "30000"
hostile "not an image" 'img_req "$(printf "GIF89a not really" | base64 -w0)"' /v1/completions "not a PNG or JPEG"
hostile "not base64" 'img_req "!!!!"' /v1/completions "base64"
hostile "a data: URI of another type" 'chat_body "data:text/plain;base64,$grad"' /v1/chat/completions "image/png"
hostile "a remote URL" 'chat_body "https://example.com/cat.png"' /v1/chat/completions "remote"
hostile "a marker without its image" \
    "jq -cn '{prompt:{prompt_string:\"<__media__><__media__>x\",multimodal_data:[\"$grad\"]}}'" /v1/completions "marker"
check "still serving after the hostile images" \
    test "$(img_req "$grad" 4 | post | jq '.usage.completion_tokens')" = 4
stop

# ---- chat image_url against llama.cpp's reference: stories260K given the pass-through Jinja
# template the reference used ({% for message in messages %}{{ message['content'] }}{% endfor %})
printf '%s' "{% for message in messages %}{{ message['content'] }}{% endfor %}" > "$tmp/pass.jinja"
if python3 "$here/gguf-set-template.py" "$model" "$tmp/pass.jinja" "$tmp/pass.gguf" > /dev/null 2>&1; then
    sed -e "s|^path = .*|path = $tmp/pass.gguf|" "$tmp/base.ini" > "$tmp/passchat.ini"
    sed -i "/^\[model\]/a chat_template = jinja" "$tmp/passchat.ini"
    if start passchat; then
        for i in 0 1; do
            name=$(jq -r ".cases[$i].image" "$golden")
            want=$(jq -r ".cases[$i].text" "$golden")
            got=$(jq -cn --arg u "data:image/png;base64,$(b64 "$mm/$name")" '{messages:[{role:"user",content:[
                {type:"image_url",image_url:{url:$u}},{type:"text",text:"Once upon a time"}]}],max_tokens:32,
                temperature:0}' | chat)
            check "chat image_url with $name (pass-through template): 32 greedy tokens equal llama.cpp's" \
                test "$(jq -r '.choices[0].message.content' <<<"$got")" = "$want"
        done
        stop
    else
        not_ok "daemon with the pass-through template up" "$(tail -3 "$tmp/passchat.log")"
    fi
else
    skip "chat image_url against the reference" "gguf-set-template.py failed"
fi

# ---- remote image URLs: fetched only with [model] remote_images = true (a local HTTP server here)
if command -v python3 >/dev/null; then
    python3 -m http.server 0 --bind 127.0.0.1 --directory "$mm" > "$tmp/web.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 50); do
        wport=$(grep -o 'port [0-9]*' "$tmp/web.log" | grep -o '[0-9]*$')
        [ -n "$wport" ] && break
        sleep 0.1
    done
    sed "/^\[model\]/a remote_images = true" "$tmp/base.ini" > "$tmp/remote.ini"
    if [ -n "${wport:-}" ] && start remote; then
        r1=$(chat_body "http://127.0.0.1:$wport/gradient-64x64.png" | chat)
        check "remote_images = true: an http image URL is fetched and answers as its data: URI does" \
            test "$(jq -r '.choices[0].message.content' <<<"$r1")" = "$(jq -r '.choices[0].message.content' <<<"$c1")"
        hostile "remote_images = true: a missing remote image" \
            'chat_body "http://127.0.0.1:$wport/nothing-here.png"' /v1/chat/completions "nothing-here.png"
        hostile "remote_images = true: a URL scheme other than http(s)" 'chat_body "ftp://127.0.0.1/x.png"' \
            /v1/chat/completions "data: URI"
        stop
    else
        not_ok "daemon with remote_images up (web server port ${wport:-none})" "$(tail -3 "$tmp/remote.log" 2>/dev/null)"
    fi
fi

start noimg || not_ok "daemon without a projector up"
hostile "images on a server without a projector" 'img_req "$grad"' /v1/completions "mmproj"
stop

# ---- speculation with images: per request, lossless
prompts=("Once upon a time" "Lily wanted to play with her friend" "The sun was")
reference=()
start plain || not_ok "plain daemon up again"
for p in "${prompts[@]}"; do reference+=("$(img_req "$grad" 48 "$p" | post | jq -r '.choices[0].text')"); done
text_ref=$(curl -s "$url/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":48,"temperature":0}' |
    jq -r '.choices[0].text')
stop
for kind in ngram draft mtp dflash; do
    mapfile -t lines < <(spec_lines $kind)
    mkini $kind "${lines[@]}"
    if ! start $kind; then
        not_ok "$kind daemon with a projector up" "$(tail -5 "$tmp/$kind.log")"
        continue
    fi
    cps=()
    for i in 0 1 2; do img_req "$grad" 48 "${prompts[$i]}" | post > "$tmp/$kind.$i.json" & cps+=($!); done
    curl -s "$url/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":48,"temperature":0}' > "$tmp/$kind.t.json" &
    cps+=($!)
    for p in "${cps[@]}"; do wait "$p"; done
    same=1
    for i in 0 1 2; do
        [ "$(jq -r '.choices[0].text' "$tmp/$kind.$i.json")" = "${reference[$i]}" ] || same=0
    done
    check "$kind: image requests (3 concurrent + a text one, parallel 4) equal the plain daemon's text" test $same = 1
    check "$kind: the text request beside them equals the plain daemon's and speculated" \
        test "$(jq -r '.choices[0].text' "$tmp/$kind.t.json")" = "$text_ref" -a \
        "$(jq '.timings.speculative' "$tmp/$kind.t.json")" = true
    spec_img=$(jq -s '[.[] | select(.timings.speculative == true and .timings.draft_n > 0)] | length' "$tmp"/$kind.[012].json)
    if [ "$spec_img" = 3 ]; then
        ok "$kind: speculated on the image requests (draft_n > 0 on all 3)"
    elif grep -q "sits out this request" "$tmp/$kind.log"; then
        ok "$kind: sits out the image requests, logged ($(grep -o 'speculator [a-z]* does not take them' "$tmp/$kind.log" | head -1))"
    else
        not_ok "$kind: neither speculated on the image requests nor said why" "$(grep -i 'slot' "$tmp/$kind.log" | tail -5)"
    fi
    stop
done

# ---- the seed scenario of MISSION §5: a target with its own MTP head + the projector + type = mtp
mtpmodel=$shared/models/derived/stories260K-mtp.gguf
if [ -f "$mtpmodel" ]; then
    sed -e "s|^path = .*|path = $mtpmodel|" "$tmp/base.ini" > "$tmp/seed.ini"
    printf '[speculator]\ntype = mtp\nn_max = 3\ncontroller = acceptance\n' >> "$tmp/seed.ini"
    if start seed; then
        want=$(jq -r ".cases[0].text" "$golden")
        got=$(img_req "$grad" | post)
        check "seed scenario (stories260K-mtp + projector + mtp): the image request equals llama.cpp's 32 tokens" \
            test "$(jq -r '.choices[0].text' <<<"$got")" = "$want"
        check "seed scenario: and it speculated (draft_n > 0)" \
            test "$(jq '.timings.draft_n > 0 and .timings.speculative' <<<"$got")" = true
        txt=$(curl -s "$url/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":48,"temperature":0}')
        check "seed scenario: a text request speculates too and equals the plain daemon's text" \
            test "$(jq -r '.choices[0].text' <<<"$txt")" = "$text_ref" -a "$(jq '.timings.draft_n > 0' <<<"$txt")" = true
        stop
    else
        not_ok "seed scenario daemon up" "$(tail -5 "$tmp/seed.log")"
    fi
else
    skip "seed scenario" "$mtpmodel missing"
fi

echo "1..$n"
[ $fails -eq 0 ]
