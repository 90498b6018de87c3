#!/usr/bin/env python3
"""rawhttp.py PORT REQUEST [SECONDS]: sends REQUEST (Python escapes such as
\\r\\n and \\x00 are decoded) on one loopback connection, then prints what
comes back until the server closes or SECONDS (default 5) pass, CRs removed;
a reset by the server ends the output with a line "RESET"."""
import socket
import sys
import time

port, req = int(sys.argv[1]), sys.argv[2].encode().decode("unicode_escape").encode("latin-1")
limit = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
s = socket.create_connection(("127.0.0.1", port))
s.sendall(req)
out, end = b"", time.time() + limit
try:
    while time.time() < end:
        s.settimeout(max(0.01, end - time.time()))
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        if not b:
            break
        out += b
except ConnectionResetError:
    out += b"\nRESET\n"
sys.stdout.write(out.replace(b"\r", b"").decode("latin-1"))
