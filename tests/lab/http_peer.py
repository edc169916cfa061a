#!/usr/bin/env python3
"""Raw-socket HTTP checks against bypass serve, run from bpx-cli.

Each command prints one line and exits 0 when the server behaved exactly as
RFC 9112 asks (status codes compared exactly), 1 otherwise.

  http_peer.py pipeline N        N GETs in one write, N responses in order
  http_peer.py bytewise          one request sent one byte per segment
  http_peer.py status CODE RAW   RAW (Python escapes, e.g. \\r\\n) gets CODE, then close
  http_peer.py keepalive N       N requests one after another on one connection
  http_peer.py halfclose N       N requests then the client's FIN: all N answered
"""
import socket
import sys
import time

HOST = "10.99.0.1"
PORT = 80


def connect():
    s = socket.create_connection((HOST, PORT), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_response(f):
    """Reads one response from a file object; returns (status, headers, body)."""
    line = f.readline()
    if not line:
        return None
    parts = line.decode("latin-1").split(" ", 2)
    status = int(parts[1])
    headers = {}
    while True:
        h = f.readline()
        if h in (b"\r\n", b""):
            break
        k, v = h.decode("latin-1").split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    body = f.read(n) if n else b""
    return status, headers, body


# Targets that answer differently, so that responses in the wrong order
# cannot pass: (target, status, a byte string the body holds).
PIPELINE = [
    (b"/style.css", 200, b"font-family"),
    (b"/about/", 200, b"About this demo"),
    (b"/no-such-page", 404, b"404 Not Found"),
    (b"/bypass.png", 200, b"\x89PNG"),
    (b"/", 200, b"<h1>bypass</h1>"),
]


def pipeline(n):
    s = connect()
    plan = [PIPELINE[(i * 7 + i // 3) % len(PIPELINE)] for i in range(n)]
    req = b"".join(b"GET %s?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (t, i) for i, (t, _, _) in enumerate(plan[:-1]))
    req += b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % plan[-1][0]
    s.sendall(req)
    f = s.makefile("rb")
    got = []
    while True:
        r = read_response(f)
        if r is None:
            break
        got.append(r)
    ok = len(got) == n and all(
        r[0] == status and marker in r[2] for r, (_, status, marker) in zip(got, plan)
    )
    print(f"pipeline: {len(got)}/{n} responses, {'each to its request, in order' if ok else 'NOT in order or wrong'}")
    return ok


def bytewise():
    s = connect()
    req = b"GET /about/ HTTP/1.1\r\nHost: 10.99.0.1\r\nUser-Agent: bytewise\r\nConnection: close\r\n\r\n"
    for b in req:
        s.send(bytes([b]))
        time.sleep(0.002)
    r = read_response(s.makefile("rb"))
    ok = r is not None and r[0] == 200 and b"About this demo" in r[2]
    print(f"bytewise: {len(req)} segments, status {r[0] if r else None}")
    return ok


def status(code, raw):
    s = connect()
    s.sendall(raw.encode("latin-1").decode("unicode_escape").encode("latin-1"))
    f = s.makefile("rb")
    r = read_response(f)
    got = r[0] if r else None
    # A rejection (and a request that asked for it) says Connection: close
    # and then closes: both must hold, the header alone proves nothing.
    lowered = raw.lower()
    must_close = (
        int(code) in REJECTIONS
        or "connection: close" in lowered
        # HTTP/1.0 closes unless it asks to keep the connection.
        or ("http/1.0" in lowered and "keep-alive" not in lowered)
    )
    closed = None
    if must_close:
        says_close = bool(r) and r[1].get("connection", "").lower() == "close"
        s.settimeout(5)
        try:
            closed = says_close and f.read(1) == b""
        except (socket.timeout, ConnectionResetError):
            closed = False
    note = "" if closed is None else (" and closed" if closed else " (NOT closed as it must be)")
    print(f"status: expected {code}, got {got}{note}")
    return got == int(code) and closed is not False


# Statuses the server answers a request it refuses with, and then closes.
REJECTIONS = {400, 408, 413, 414, 417, 431, 501, 503, 505}


def halfclose(n):
    """N requests, then our FIN at once: all N must still be answered."""
    s = connect()
    s.sendall(b"".join(b"GET /about/?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(n)))
    s.shutdown(socket.SHUT_WR)
    f = s.makefile("rb")
    got = 0
    while True:
        r = read_response(f)
        if r is None:
            break
        if r[0] != 200 or b"About this demo" not in r[2]:
            print(f"halfclose: response {got} wrong: {r[0]}")
            return False
        got += 1
    print(f"halfclose: {got}/{n} answered after the client's FIN")
    return got == n


def keepalive(n):
    s = connect()
    f = s.makefile("rb")
    for i in range(n):
        s.sendall(b"GET /bypass.png HTTP/1.1\r\nHost: x\r\n\r\n")
        r = read_response(f)
        if r is None or r[0] != 200 or r[2][:8] != b"\x89PNG\r\n\x1a\n":
            print(f"keepalive: request {i} failed: {r and r[0]}")
            return False
    print(f"keepalive: {n} requests on one connection")
    return True


def main():
    cmd = sys.argv[1]
    if cmd == "pipeline":
        ok = pipeline(int(sys.argv[2]))
    elif cmd == "bytewise":
        ok = bytewise()
    elif cmd == "status":
        ok = status(sys.argv[2], sys.argv[3])
    elif cmd == "halfclose":
        ok = halfclose(int(sys.argv[2]))
    elif cmd == "keepalive":
        ok = keepalive(int(sys.argv[2]))
    else:
        sys.exit(f"unknown command {cmd}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
