#!/usr/bin/env bash
# pool.sh: the HAProxy failover scenario of tests/soak/soak.py (TAP, about
# 40 s): three clspecd behind Debian's haproxy with deploy/haproxy/haproxy.cfg
# (its ports replaced), 12 streaming clients; SIGTERM one daemon (its streams
# finish, it exits 0, no request reaches it 3 s later, 0 client errors),
# restart it (it serves again), SIGKILL another (only its in-flight requests
# fail, none started afterwards), restart it (it serves again). soak.py's
# table is passed on as comments. Skipped without haproxy or python3.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
model=$srcdir/models/stories260K.gguf
[ -x "$bin" ] || { echo "1..0 # SKIP $bin not built"; exit 0; }
[ -f "$model" ] || { echo "1..0 # SKIP $model missing"; exit 0; }
command -v python3 >/dev/null || { echo "1..0 # SKIP python3 not installed"; exit 0; }
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || { echo "1..0 # SKIP haproxy not installed"; exit 0; }
out=$(CLSPECD=$bin timeout 300 python3 "$srcdir/tests/soak/soak.py" --model "$model" pool --clients 12 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
[ $rc = 0 ] && ok "pool: SIGTERM drains with 0 client errors, SIGKILL loses only in-flight requests, restarts rejoin" \
    || not_ok "pool: SIGTERM drains with 0 client errors, SIGKILL loses only in-flight requests, restarts rejoin"
echo "1..$n"
[ $fails = 0 ]
