#!/usr/bin/env bash
# never-fail.sh: the never-fail cases 1-4 of MISSION §5 end to end through
# clspecd (TAP). Every check is named after its case:
#   never-fail-1: dflash with quantized KV (target and drafter KV q8_0):
#     serves, temperature-0 text byte-identical to clspecd without
#     speculation on the same KV types, acceptance equal (within a stated
#     margin) to the f16-KV run;
#   never-fail-2: dflash with parallel slots (parallel 1, 2, 4, 8): lossless,
#     no crash on the first multi-slot decode, acceptance independent of the
#     slot count, per-slot drafter state reset on every new request (the same
#     prompt twice on a reused slot: same text, same draft counts), the block
#     seeded at the slot's true position (prompts of different lengths decode
#     together, and requests join while slot 0 is tens of positions
#     ahead, with the acceptance each has alone); every request speculates
#     (requests sharing a running one's prompt start once lost speculation:
#     their taps began at the shared cells);
#   never-fail-3: mtp head across devices (two PoCL devices, the target split
#     over both): the default placement and the head pinned ([speculator]
#     device) on the device that does not hold the target's last layer serve
#     losslessly; a device the target does not use is refused at start-up
#     with a message naming both devices and the key;
#   never-fail-4: speculation disabled leaves no half state: type = none with
#     a drafter named, "speculative": false on a speculating server, a plugin
#     whose init fails (the test plugin and dflash with a drafter that is not
#     one), and the server keeps serving afterwards.
# Every daemon of a case is checked to have no leaked KV cells once its
# requests are done (/slots all idle with n_past 0, /metrics
# clspec_kv_cells_used 0) and never to have crashed (alive until SIGTERM,
# exit 0 on drain).
# Needs curl and jq, the plugins (make) and tests/plugins/initfail.so (make check).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
dflash=$shared/models/derived/stories260K-dflash.gguf
mtpmodel=$shared/models/derived/stories260K-mtp.gguf
drafter=$shared/models/derived/stories260K-draft-distilled.gguf
golden=$shared/reference/greedy-stories260K.json
tplug=$builddir/tests/plugins/.libs

# acceptance margins ("equal within noise"): the drafting is deterministic, so
# the runs compared differ only by floating-point order (batched decodes) and
# the KV quantization. Measured on stories260K: parallel 2/4/8 and joining
# slots equal parallel 1 exactly (198 of 470); q8_0 KV 79 of 173 vs f16 80 of
# 173 on the prompts whose text q8_0 leaves unchanged (3 of 4); mtp pinned on
# device 0 equals the default placement exactly (115 of 177).
rate_margin=0.05 # absolute, on the acceptance rate over all prompts
tau_margin=0.10  # relative, on each prompt's mean accepted length

need "$model" "$dflash" "$mtpmodel" "$drafter" "$golden"

# no request may hang the suite
curl() { command curl --max-time 60 "$@"; }

make_tmp

# mkini NAME [lines...]: $tmp/NAME.ini from the shipped configuration on a free port;
# "kv:K = V", "devices:K = V", "slots:K = V", "model:K = V" lines go to that section, the others to [speculator]
sed -e "s|^port = .*|port = 0|" -e "s|^path = .*|path = $model|" -e "s|^parallel = .*|parallel = 1|" \
    -e "s|^n_ctx = .*|n_ctx = 1024|" "$srcdir/conf/clspecd.ini" | sed '/^\[speculator\]/,$d' > "$tmp/base.ini"
mkini() {
    local name=$1; shift
    local f=$tmp/$name.ini
    cp "$tmp/base.ini" "$f"
    printf '[speculator]\ncontroller = acceptance\n' >> "$f" # deterministic drafts (runs are compared)
    for l in "$@"; do
        case $l in
        kv:* | devices:* | slots:*) # a key set in the shipped file is replaced (keys are unique before [speculator])
            local kv=${l#*:}
            sed -i -e "/^${kv%% *} = /d" -e "/^\[${l%%:*}\]/a $kv" "$f" ;;
        model:*) sed -i "s|^path = .*|${l#model:}|" "$f" ;;
        *) echo "$l" >> "$f" ;;
        esac
    done
}

# healthy_stop CASE WHAT: the daemon's requests are done: no KV cell leaked (every slot idle with
# n_past 0 in /slots, clspec_kv_cells_used 0), it is still alive, and SIGTERM drains it with exit 0
healthy_stop() {
    local c=$1 what=$2 slots= bad=x cells= alive=no rc
    for _ in $(seq 1 50); do
        slots=$(curl -s "$url/slots")
        bad=$(echo "$slots" | jq '[.[] | select(.busy or .n_past != 0)] | length' 2>/dev/null)
        [ "$bad" = 0 ] && break
        sleep 0.1
    done
    cells=$(curl -s "$url/metrics" | grep '^clspec_kv_cells_used' | awk '{print $2}')
    if [ "$bad" = 0 ] && [ "$cells" = 0 ]; then
        ok "$c: $what: no leaked KV cells ($(echo "$slots" | jq length) slots idle with n_past 0, kv_cells_used 0)"
    else
        not_ok "$c: $what: no leaked KV cells" "slots: $slots; clspec_kv_cells_used: $cells"
    fi
    kill -0 "$pid" 2>/dev/null && alive=yes
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    if [ $alive = yes ] && [ $rc -eq 0 ]; then ok "$c: $what: never crashed (alive until SIGTERM, exit 0 on drain)"
    else not_ok "$c: $what: never crashed (alive until SIGTERM, exit 0 on drain)" \
        "alive before SIGTERM: $alive, exit $rc; $(grep -i 'segmentation\|abort\|assert\|error' "$log" | tail -3)"; fi
}
comp() { # comp PROMPT [SPECULATIVE] -> the response JSON (temperature 0, 48 tokens)
    curl -s "$url/v1/completions" -d "$(jq -cn --arg p "$1" --argjson s "${2:-true}" \
        '{prompt:$p,max_tokens:48,temperature:0,speculative:$s}')"
}
nprompts=$(jq '.cases | length' "$golden")
prompt() { jq -r ".cases[$1].prompt" "$golden"; }
text() { jq -r '.choices[0].text' "$1" 2>/dev/null || echo "(no JSON: $(head -c 200 "$1"))"; }

# run_prompts TAG COPIES: every prompt COPIES times, all at once, against $url;
# responses in $tmp/TAG.I.C.json (prompt I, copy C)
run_prompts() {
    local tag=$1 copies=$2 i c cp=()
    for ((c = 0; c < copies; c++)); do
        for ((i = 0; i < nprompts; i++)); do
            comp "$(prompt $i)" > "$tmp/$tag.$i.$c.json" &
            cp+=($!)
        done
    done
    for p in "${cp[@]}"; do wait "$p"; done
}
same_texts() { # same_texts TAG REF: every response of TAG has REF's text for its prompt
    local f i
    for f in "$tmp/$1".*.json; do
        i=${f#"$tmp/$1."}
        i=${i%%.*}
        [ "$(text "$f")" = "$(text "$tmp/$2.$i.0.json")" ] || {
            echo "# prompt $i: $2: $(text "$tmp/$2.$i.0.json")"
            echo "# prompt $i: ${f##*/}: $(text "$f")"
            return 1
        }
    done
}
acc() { # acc TAG: "accepted drafted" over TAG's responses
    jq -s '"\([.[] | .timings.draft_accepted] | add) \([.[] | .timings.draft_n] | add)"' -r "$tmp/$1".*.json
}
# same_acceptance TAG REF: acceptance of TAG equals REF's (noise margins above) on the prompts whose
# text is the same in both (a different KV type may change the target's own text, and acceptance
# on another text is another measurement): the rate over them within rate_margin, each one's mean
# accepted length within tau_margin (relative); at least 2 prompts compared. Prints what it compared.
same_acceptance() {
    local f i ta tb na=0 da=0 nb=0 db=0 k=0 bad=
    for f in "$tmp/$1".*.json; do
        i=${f#"$tmp/$1."}
        i=${i%%.*}
        [ "$(text "$f")" = "$(text "$tmp/$2.$i.0.json")" ] || continue
        k=$((k + 1))
        na=$((na + $(jq .timings.draft_accepted "$f"))); da=$((da + $(jq .timings.draft_n "$f")))
        nb=$((nb + $(jq .timings.draft_accepted "$tmp/$2.$i.0.json"))); db=$((db + $(jq .timings.draft_n "$tmp/$2.$i.0.json")))
        ta=$(jq .timings.mean_accepted_length "$f")
        tb=$(jq .timings.mean_accepted_length "$tmp/$2.$i.0.json")
        [ "$(jq -n "($ta - $tb) | fabs <= $tau_margin * $tb")" = true ] ||
            bad="$bad prompt $i: mean accepted length ${f##*/} $ta, $2 $tb;"
    done
    echo "$k responses compared: $1 $na of $da accepted, $2 $nb of $db"
    [ $k -ge 2 ] && [ $da -gt 0 ] && [ $db -gt 0 ] && [ -z "$bad" ] &&
        [ "$(jq -n "($na / $da - $nb / $db) | fabs <= $rate_margin")" = true ] || { echo "$bad"; return 1; }
}
acc_check() { # acc_check NAME TAG REF: same_acceptance as a check, with what it compared
    local out
    if out=$(same_acceptance "$2" "$3"); then ok "$1 (rate within $rate_margin, mean accepted length within $tau_margin relative; $(echo "$out" | head -1))"
    else not_ok "$1 (rate within $rate_margin, mean accepted length within $tau_margin relative)" "$out"; fi
}
speculated() { # speculated TAG: every response of TAG decoded with drafts, some accepted
    [ "$(jq -s '[.[] | select(.timings.speculative != true or .timings.draft_n <= 0)] | length' "$tmp/$1".*.json)" = 0 ] &&
        [ "$(jq -s '[.[] | .timings.draft_accepted] | add' "$tmp/$1".*.json)" -gt 0 ]
}

# the reference: the plain daemon (no speculation, the configuration given), prompts one at a time
plain_ref() { # plain_ref CASE TAG [mkini lines...]
    local what=$1 tag=$2 i
    shift 2
    mkini "$tag" "type = none" "$@"
    start "$tag" || return 1
    for ((i = 0; i < nprompts; i++)); do comp "$(prompt $i)" > "$tmp/$tag.$i.0.json"; done
    healthy_stop "$what" "the reference without speculation"
    [ "$(jq -s '[.[] | select(.timings.speculative == false and (.choices[0].text | length) > 0)] | length' \
        "$tmp/$tag".*.json)" = "$nprompts" ]
}

log=/dev/null
dflash_ini() { # dflash_ini NAME PARALLEL KVTYPE
    mkini "$1" "slots:parallel = $2" "kv:type_k = $3" "kv:type_v = $3" \
        "type = dflash" "model = $dflash" "n_max = 7" "type_k = $3" "type_v = $3"
}

# ---- references without speculation: f16 KV, q8_0 KV
plain_ref "never-fail-2: dflash with parallel slots" plain || { not_ok "reference daemon (no speculation, f16 KV) serves" "$(tail -5 "$tmp/plain.log")"; echo "1..$n"; exit 1; }

# =============================================================================================
# never-fail-1: dflash with quantized KV
c1="never-fail-1: dflash with quantized KV"
# the f16-KV run at parallel 1 (also never-fail-2's parallel 1)
dflash_ini df1 1 f16
log=$tmp/df1.log
if start df1; then
    run_prompts df1 1
    # the same prompt again on the reused slot (never-fail-2)
    comp "$(prompt 0)" > "$tmp/df1again.0.0.json"
    healthy_stop "never-fail-2: dflash with parallel slots" "parallel 1"
else
    not_ok "never-fail-2: dflash with parallel slots: parallel 1: daemon up" "$(tail -5 "$tmp/df1.log")"
fi

if plain_ref "$c1" q8plain "kv:type_k = q8_0" "kv:type_v = q8_0"; then
    ok "$c1: clspecd without speculation serves with q8_0 KV (the reference)"
else
    not_ok "$c1: clspecd without speculation serves with q8_0 KV (the reference)" "$(tail -3 "$tmp/q8plain.log")"
fi
dflash_ini dfq8 1 q8_0
log=$tmp/dfq8.log
if start dfq8; then
    ok "$c1: clspecd serves with target KV q8_0 and drafter KV q8_0"
    run_prompts dfq8 1
    check "$c1: the drafter runs with q8_0 K and V (its init log)" grep -q 'KV q8_0/q8_0' "$tmp/dfq8.log"
    check "$c1: every request speculated, drafts accepted ($(acc dfq8) accepted/drafted)" speculated dfq8
    check "$c1: lossless: temperature-0 text byte-identical to no speculation with q8_0 KV ($nprompts prompts)" \
        same_texts dfq8 q8plain
    acc_check "$c1: acceptance equal to f16 KV" dfq8 df1
    healthy_stop "$c1" "q8_0 KV"
else
    not_ok "$c1: clspecd serves with target KV q8_0 and drafter KV q8_0" "$(grep -v '^ *$' "$tmp/dfq8.log" | tail -3)"
fi


# =============================================================================================
# never-fail-2: dflash with parallel slots
c2="never-fail-2: dflash with parallel slots"
# same_counts A B: responses A and B have the same text and the same draft counts
same_counts() {
    [ "$(jq -c '[.choices[0].text, .timings.draft_n, .timings.draft_accepted]' "$1")" = \
        "$(jq -c '[.choices[0].text, .timings.draft_n, .timings.draft_accepted]' "$2")" ] ||
        { echo "# ${1##*/}: $(jq -c '.timings' "$1")"; echo "# ${2##*/}: $(jq -c '.timings' "$2")"; return 1; }
}
# slot_of REQ-ID LOG: the slot its "speculation on" line names
last_slots() { # last_slots LOG K: the slots of the last K "speculation on|off" lines
    grep -o 'slot [0-9]*: speculation [a-z]*' "$1" | tail -n "$2" | awk '{print $2 $4}' | tr '\n' ' '
}
for P in 1 2 4 8; do
    tag=df$P
    if [ $P != 1 ]; then
        dflash_ini $tag $P f16
        log=$tmp/$tag.log
        if ! start $tag; then
            not_ok "$c2: parallel $P: daemon up" "$(grep -v '^ *$' "$tmp/$tag.log" | tail -3)"
            continue
        fi
        # 2 x the prompts at once: with P >= 2 the first decode already holds several slots.
        # The kernels are ready before "ready", so a request takes milliseconds: the daemon is
        # stopped while the clients connect (the kernel queues them), and all arrive together
        # resumed once every client is connected (its request waits in the socket), or after 15 s
        ( n=$((2 * nprompts)); for _ in $(seq 150); do
              [ "$(ss -Htn state established "( dport = :$port )" 2>/dev/null | wc -l)" -ge $n ] && break
              sleep 0.1; done; sleep 0.2; kill -CONT "$pid" ) &
        kill -STOP "$pid"
        run_prompts $tag 2
        alive=no
        kill -0 "$pid" 2>/dev/null && alive=yes
        check "$c2: parallel $P: no crash on the first multi-slot decode ($((2 * nprompts)) requests at once all answered, daemon alive)" \
            test $alive = yes -a "$(jq -s '[.[] | select(.choices[0].finish_reason == "length")] | length' \
                "$tmp/$tag".*.json 2>/dev/null)" = $((2 * nprompts))
        used=$(grep -o 'slot [0-9]*: speculation on' "$tmp/$tag.log" | sort -u | wc -l)
        want=$((P < 2 * nprompts ? P : 2 * nprompts))
        check "$c2: parallel $P: the requests ran on $want slots together ($used distinct slots logged speculation on)" \
            test "$used" = "$want"
        if [ $P = 4 ]; then
            # slots far apart: the others join while slot 0 is 30+ positions into a long request
            # (its prompt is in, so every joiner's block starts at another position than slot 0's).
            # On a loaded machine the long request can end before the others arrive (then one of
            # them takes slot 0 and the scenario did not happen): try it up to 5 times.
            for attempt in 1 2 3 4 5; do
                command curl -s --max-time 60 "$url/v1/completions" -d "$(jq -cn --arg p "$(prompt 1)" \
                    '{prompt:$p,max_tokens:600,temperature:0,ignore_eos:true}')" > "$tmp/long.json" &
                jp=($!)
                for _ in $(seq 1 300); do
                    [ "$(curl -s "$url/slots" | jq '.[0].n_past')" -ge 30 ] 2>/dev/null && break
                    sleep 0.01
                done
                at=$(curl -s "$url/slots" | jq '.[0].n_past')
                for ((i = 0; i < nprompts - 1; i++)); do
                    comp "$(prompt $i)" > "$tmp/join.$i.0.json" &
                    jp+=($!)
                done
                for p in "${jp[@]}"; do wait "$p"; done
                joined=$(last_slots "$tmp/$tag.log" $((nprompts - 1)))
                [ -z "$(echo "$joined" | grep -o '0:')" ] && break
                echo "# attempt $attempt: slot 0 was free again before the others joined ($joined); retrying"
            done
            joined_ok() { # on other slots than 0, while it ran; lossless
                [ -z "$(echo "$joined" | grep -o '0:')" ] && [ "$(jq -r .choices[0].finish_reason "$tmp/long.json")" = length ] &&
                    same_texts join plain
            }
            check "$c2: parallel 4: block seeded at the slot's true position: requests joining slots $joined while slot 0 is at position $at: all lossless" \
                joined_ok
            acc_check "$c2: parallel 4: block seeded at the slot's true position: requests joining while slot 0 is at position $at: acceptance as at parallel 1" join df1
        fi
        # the same prompt twice, one after the other: both on slot 0, which served another request before
        comp "$(prompt 0)" > "$tmp/$tag.again.a.json"
        comp "$(prompt 0)" > "$tmp/${tag}again.0.0.json"
        mv "$tmp/$tag.again.a.json" "$tmp/${tag}first.0.0.json"
    else
        mv "$tmp/df1again.0.0.json" "$tmp/df1again.tmp" 2>/dev/null
        cp "$tmp/df1.0.0.json" "$tmp/df1first.0.0.json" 2>/dev/null
        mv "$tmp/df1again.tmp" "$tmp/df1again.0.0.json" 2>/dev/null
    fi
    [ -f "$tmp/$tag.0.0.json" ] || continue
    check "$c2: parallel $P: every request speculated with drafts accepted, also those starting like a running one (no prefix reuse without the prompt rows' target states) ($(acc $tag) accepted/drafted)" speculated $tag
    check "$c2: parallel $P: lossless: temperature-0 text equals no speculation (all requests)" same_texts $tag plain
    if [ $P != 1 ]; then
        acc_check "$c2: parallel $P: acceptance independent of the slot count: equal to parallel 1; prompts of different lengths decoding together, each block seeded at its slot's true position" $tag df1
    fi
    check "$c2: parallel $P: per-slot state reset on a new request: the same prompt again on the reused slot gives the same text and draft counts ($(last_slots "$tmp/$tag.log" 2))" \
        same_counts "$tmp/${tag}first.0.0.json" "$tmp/${tag}again.0.0.json"
    check "$c2: parallel $P: ... and the same draft counts as at parallel 1" \
        same_counts "$tmp/${tag}again.0.0.json" "$tmp/df1.0.0.json"
    [ $P != 1 ] && healthy_stop "$c2" "parallel $P"
done


# =============================================================================================
# never-fail-3: mtp head across devices (two PoCL CPU devices; the target's 5 layers split over
# both, its last layer and output on device 1; the head is the target file's own nextn block)
c3="never-fail-3: mtp head across devices"
pocl="pthread pthread"
mtp_lines=("model:path = $mtpmodel" "devices:devices = 0,1" "slots:parallel = 2")
if plain_ref "$c3" mtpplain "${mtp_lines[@]}"; then
    ok "$c3: the target split over devices 0,1 serves without speculation (the reference)"
else
    not_ok "$c3: the target split over devices 0,1 serves without speculation (the reference)" \
        "$(grep -v '^ *$' "$tmp/mtpplain.log" | tail -3)"
fi
for where in default 0; do
    tag=mtp$where
    if [ $where = default ]; then mkini $tag "${mtp_lines[@]}" "type = mtp" "n_max = 3" "p_min = 0"
    else mkini $tag "${mtp_lines[@]}" "type = mtp" "n_max = 3" "p_min = 0" "device = $where"; fi
    log=$tmp/$tag.log
    if ! start $tag; then
        not_ok "$c3: head on device $where: daemon up" "$(grep -v '^ *$' "$tmp/$tag.log" | tail -3)"
        continue
    fi
    run_prompts $tag 1
    if [ $where = default ]; then
        what="default placement (the device of the target's last layer)"
        check "$c3: $what: the head on device 1 with the target's output (no cross-device note logged)" \
            test -n "$(grep "head the target's nextn blocks on device 1 (pthread" "$tmp/$tag.log")" \
            -a -z "$(grep 'head on device' "$tmp/$tag.log")"
    else
        what="head pinned with [speculator] device = 0, the target's last layer on device 1"
        check "$c3: $what: start-up says where each is and that the shared tensors were copied" \
            test -n "$(grep "head the target's nextn blocks on device 0 (pthread" "$tmp/$tag.log")" \
            -a -n "$(grep "head on device 0 (pthread.*), the target's output on device 1 (pthread.*): the shared tensors were copied to the head's device and the hidden states cross through the host" "$tmp/$tag.log")"
    fi
    check "$c3: $what: every request speculated, drafts accepted ($(acc $tag) accepted/drafted)" speculated $tag
    check "$c3: $what: lossless: temperature-0 text equals the split target without speculation" same_texts $tag mtpplain
    [ $where = 0 ] && acc_check "$c3: $what: acceptance equal to the default placement" $tag mtpdefault
    healthy_stop "$c3" "$what"
done
# a device the target does not use: refused at start-up, naming both devices and the key
pocl="pthread pthread pthread"
mkini mtpfar "${mtp_lines[@]}" "type = mtp" "n_max = 3" "p_min = 0" "device = 2"
timeout 60 env POCL_DEVICES="$pocl" "$bin" -c "$tmp/mtpfar.ini" > "$tmp/mtpfar.log" 2>&1
rc=$?
msg=$(grep '^clspecd: ' "$tmp/mtpfar.log" | tail -1)
check "$c3: head pinned on device 2, which the target (devices 0,1) does not use: start-up refused, exit 1, naming [speculator] device = 2 and the target's last-layer device 1" \
    test $rc -eq 1 -a -n "$(echo "$msg" | grep -F "mtpfar.ini:" | grep -F "[speculator] type: speculator plugin" |
        grep -F "(mtp): init failed: mtp: [speculator] device = 2: not one of the target's devices; the head can go to the target's last-layer device 1 (pthread" |
        grep -F ") (the default) or another device the target uses")"
[ $rc -eq 1 ] || echo "# rc $rc: $(tail -3 "$tmp/mtpfar.log")"
pocl=

# =============================================================================================
# never-fail-4: speculation disabled leaves no half state
c4="never-fail-4: speculation disabled leaves no half state"
# (a) a drafter named while type = none: warned about, nothing of it loaded, plain decoding
mkini nonemodel "type = none" "model = $dflash" "type_k = q8_0"
log=$tmp/nonemodel.log
if start nonemodel; then
    run_prompts nonemodel 1
    check "$c4: type = none with a drafter model set: warned, no plugin loaded, every slot logs speculation off, plain text" \
        test -n "$(grep '\[speculator\] model: ignored because type = none' "$tmp/nonemodel.log")" \
        -a -n "$(grep 'speculation: off (\[speculator\] type = none)' "$tmp/nonemodel.log")" \
        -a -z "$(grep 'speculator dflash\|dflash.so' "$tmp/nonemodel.log")" \
        -a "$(grep -c 'speculation off (no speculator configured' "$tmp/nonemodel.log")" = "$nprompts" \
        -a "$(jq -s '[.[] | select(.timings.speculative == false and .timings.draft_n == 0)] | length' \
            "$tmp"/nonemodel.*.json)" = "$nprompts"
    check "$c4: type = none with a drafter model set: text equals no speculation" same_texts nonemodel plain
    healthy_stop "$c4" "type = none with a drafter model set"
else
    not_ok "$c4: type = none with a drafter model set: daemon up" "$(grep -v '^ *$' "$tmp/nonemodel.log" | tail -3)"
fi
# (b) requests that switch speculation off on a speculating server (dflash, parallel 2), and
# (d) the server keeps serving: the slot speculates again for the next request, as if fresh
dflash_ini offreq 2 f16
log=$tmp/offreq.log
if start offreq; then
    comp "$(prompt 1)" false > "$tmp/off.1.0.json"
    check "$c4: \"speculative\": false on a speculating server: served, the plain text, no drafts, the slot logs speculation off" \
        test "$(text "$tmp/off.1.0.json")" = "$(text "$tmp/plain.1.0.json")" \
        -a "$(jq -c '[.timings.speculative, .timings.draft_n]' "$tmp/off.1.0.json")" = '[false,0]' \
        -a -n "$(grep 'slot 0: speculation off (the request says "speculative": false)' "$tmp/offreq.log")"
    curl -s "$url/v1/completions" -d "$(jq -cn --arg p "$(prompt 2)" \
        '{prompt:$p,max_tokens:48,temperature:0,logprobs:1}')" > "$tmp/lp.2.0.json"
    check "$c4: a request with logprobs on a speculating server: the plain text, no drafts, the slot logs speculation off" \
        test "$(text "$tmp/lp.2.0.json")" = "$(text "$tmp/plain.2.0.json")" \
        -a "$(jq -c '[.timings.speculative, .timings.draft_n]' "$tmp/lp.2.0.json")" = '[false,0]' \
        -a -n "$(grep 'slot 0: speculation off (the request asks for logprobs)' "$tmp/offreq.log")"
    comp "$(prompt 1)" > "$tmp/on.1.0.json"
    check "$c4: the server keeps serving: the next request on the same slot speculates, same text and draft counts as a fresh server" \
        test "$(grep -o 'slot [0-9]: speculation on' "$tmp/offreq.log" | tail -1)" = "slot 0: speculation on" -a \
        "$(jq -c '[.choices[0].text, .timings.speculative, .timings.draft_n, .timings.draft_accepted]' "$tmp/on.1.0.json")" = \
        "$(jq -c '[.choices[0].text, .timings.speculative, .timings.draft_n, .timings.draft_accepted]' "$tmp/df1.1.0.json")"
    # on and off together, on both slots, twice
    for r in 0 1; do
        comp "$(prompt 3)" false > "$tmp/mix.3.$r.json" &
        cp1=$!
        comp "$(prompt 3)" true > "$tmp/mixon.3.$r.json" &
        wait $cp1 $!
    done
    check "$c4: speculating and non-speculating requests side by side, slots swapped: all the plain text; drafts only where asked" \
        test "$(jq -s -c '[.[] | .timings.draft_n > 0]' "$tmp"/mix.3.*.json "$tmp"/mixon.3.*.json)" = '[false,false,true,true]' \
        -a "$(jq -r '.choices[0].text' "$tmp"/mix.3.*.json "$tmp"/mixon.3.*.json | sort -u | wc -l)" = \
        "$(jq -r '.choices[0].text' "$tmp/plain.3.0.json" | wc -l)" \
        -a "$(jq -r '.choices[0].text' "$tmp/mix.3.0.json")" = "$(text "$tmp/plain.3.0.json")"
    healthy_stop "$c4" "requests switching speculation off on a dflash server"
else
    not_ok "$c4: dflash server up" "$(grep -v '^ *$' "$tmp/offreq.log" | tail -3)"
fi
# (c) a speculator whose init fails, or that would run on half-valid parameters: a clear
# start-up error, exit 1, never a crash (no signal, nothing served half set up)
init_fail() { # init_fail TAG WHAT PATTERN SPECULATOR-LINES...
    local name=$1 what=$2 pat=$3 rc msg
    shift 3
    mkini "$name" "$@"
    timeout 60 "$bin" -c "$tmp/$name.ini" > "$tmp/$name.log" 2>&1
    rc=$?
    msg=$(grep '^clspecd: ' "$tmp/$name.log" | tail -1)
    if [ $rc -eq 1 ] && echo "$msg" | grep -q -- "$pat" && [ -z "$(grep -i 'segmentation\|abort\|core dumped\|speculation on' "$tmp/$name.log")" ]; then
        ok "$c4: $what: start-up stops with a clear error, exit 1, no crash"
    else
        not_ok "$c4: $what: start-up stops with a clear error, exit 1, no crash" "rc $rc: $(tail -3 "$tmp/$name.log")"
    fi
}
if [ -f "$tplug/initfail.so" ]; then
    init_fail initfail "a plugin whose init fails (tests/plugins initfail.so)" \
        "\[speculator\] type: speculator plugin .*initfail.so (broken): init failed: broken: the frobnicator is not configured" \
        "type = $tplug/initfail.so"
else
    skip "$c4: a plugin whose init fails" "tests/plugins/.libs/initfail.so not built (make check builds it)"
fi
init_fail dfbadmodel "dflash whose init fails (its model is a plain llama drafter)" \
    "\[speculator\] type: speculator plugin .*dflash.so (dflash): init failed: dflash: .*stories260K-draft-distilled.gguf: general.architecture is 'llama', not 'dflash'" \
    "type = dflash" "model = $drafter"
init_fail dfnomodel "dflash without its model (init never runs on half-valid parameters)" \
    "\.ini:[0-9]*: \[speculator\] model: dflash needs a drafter model; set model" "type = dflash"

echo "1..$n"
[ $fails -eq 0 ]
