#!/usr/bin/env python3
"""The kernel's side of the TCP lab tests: clients for the stack's echo,
discard, chargen and reset services, and an echo server for the stack's
active opens. Each client prints one line of facts and exits non-zero when
a check fails. Also reads TCP_INFO's tcpi_options (byte 5: 1 timestamps,
2 SACK, 4 window scaling) to show what was negotiated."""

import hashlib
import socket
import sys
import threading

SERVER = "10.99.0.1"
TIMEOUT = 60


def pattern(n):
    """n bytes that no simple off-by-one can match."""
    block = bytes((i * 31 + (i >> 8) * 7) & 0xFF for i in range(1 << 16))
    out = bytearray()
    while len(out) < n:
        out += block[: n - len(out)]
    return bytes(out)


def options(s):
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return info[5]


def echo(n):
    data = pattern(min(n, 1 << 20))
    s = socket.create_connection((SERVER, 7), timeout=TIMEOUT)
    got = hashlib.sha256()
    received = [0]

    def reader():
        while True:
            b = s.recv(1 << 16)
            if not b:
                return
            got.update(b)
            received[0] += len(b)

    t = threading.Thread(target=reader)
    t.start()
    want = hashlib.sha256()
    sent = 0
    while sent < n:
        chunk = data[: min(len(data), n - sent)]
        s.sendall(chunk)
        want.update(chunk)
        sent += len(chunk)
    opts = options(s)
    s.shutdown(socket.SHUT_WR)
    t.join(TIMEOUT)
    s.close()
    ok = received[0] == n and got.hexdigest() == want.hexdigest()
    print(f"echo {n} bytes: received {received[0]}, sha256 {'match' if ok else 'MISMATCH'}, tcpi_options {opts}")
    return ok


def discard(n):
    s = socket.create_connection((SERVER, 9), timeout=TIMEOUT)
    data = pattern(min(n, 1 << 20))
    sent = 0
    while sent < n:
        chunk = data[: min(len(data), n - sent)]
        s.sendall(chunk)
        sent += len(chunk)
    s.shutdown(socket.SHUT_WR)
    rest = s.recv(1)  # the server closes after our FIN: EOF, no data
    s.close()
    ok = rest == b""
    print(f"discard {n} bytes: {'graceful close' if ok else 'unexpected data'}")
    return ok


def chargen_line(n):
    return bytes(32 + (n + c) % 95 for c in range(72)) + b"\r\n"


def chargen(n):
    s = socket.create_connection((SERVER, 19), timeout=TIMEOUT)
    buf = bytearray()
    while len(buf) < n:
        b = s.recv(1 << 16)
        if not b:
            break
        buf += b
    s.close()
    want = bytearray()
    line = 0
    while len(want) < n:
        want += chargen_line(line)
        line += 1
    ok = bytes(buf[:n]) == bytes(want[:n])
    print(f"chargen {n} bytes: {'RFC 864 pattern' if ok else 'WRONG PATTERN'}")
    return ok


def reset():
    try:
        s = socket.create_connection((SERVER, 10), timeout=TIMEOUT)
        data = s.recv(16)
        print(f"reset: got {data!r} instead of a reset")
        return False
    except ConnectionResetError:
        print("reset: connection reset by peer")
        return True


def closed_port():
    try:
        socket.create_connection((SERVER, 4444), timeout=TIMEOUT)
    except ConnectionRefusedError:
        print("closed port: connection refused")
        return True
    print("closed port: connected?!")
    return False


def echo_server(port, count):
    """Serves `count` echo connections on 10.99.0.2:port, at once (a
    thread each), then exits."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(128)
    print("listening", flush=True)

    def serve(c, addr):
        total = 0
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            c.sendall(b)
            total += len(b)
        opts = options(c)
        c.close()
        # One line per connection, whole: threads print under a lock.
        with printing:
            print(f"echo server: {total} bytes from {addr[0]}:{addr[1]}, graceful close, tcpi_options {opts}", flush=True)

    printing = threading.Lock()
    threads = []
    for _ in range(count):
        c, addr = ls.accept()
        t = threading.Thread(target=serve, args=(c, addr))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    return True


def main():
    cmd = sys.argv[1]
    if cmd == "echo":
        ok = echo(int(sys.argv[2]))
    elif cmd == "discard":
        ok = discard(int(sys.argv[2]))
    elif cmd == "chargen":
        ok = chargen(int(sys.argv[2]))
    elif cmd == "reset":
        ok = reset()
    elif cmd == "closed":
        ok = closed_port()
    elif cmd == "echo-server":
        ok = echo_server(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(f"unknown command {cmd}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
