#!/usr/bin/env python3
"""Opens many idle HTTP/1.1 keep-alive connections and holds them.

    conntest.py HOST PORT N SOURCE_IP...

Each connection comes from one of the SOURCE_IPs in turn (a source
address has at most ~64k ports), sends `GET /`, reads the whole response
(Content-Length) and then stays open, idle. When all are done it prints
one line, `READY opened=N failed=F seconds=S`, and holds every connection
until its standard input closes (or gives a line); then it closes them
and prints `CLOSED`. Used by scripts/conntest (run in the lab's client
namespace).
"""
import asyncio
import resource
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: conntest\r\n\r\n"
IN_FLIGHT = 1000
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h


async def one(host, port, source, held, errors, gate):
    loop = asyncio.get_running_loop()
    async with gate:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            # The port is picked at connect, per destination: bind() would
            # search for a port free for every destination, slower and
            # slower as tens of thousands are taken.
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (host, port)), 30)
            except BaseException:
                sock.close()
                raise
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(REQUEST)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            if not head.startswith(b"HTTP/1.1 200 "):
                raise ValueError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await asyncio.wait_for(reader.readexactly(length), 30)
            held.append(writer)
        except Exception as e:  # counted and reported, not fatal
            errors.append(repr(e))


async def main():
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sources = sys.argv[4:]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held, errors, gate = [], [], asyncio.Semaphore(IN_FLIGHT)
    start = time.monotonic()
    await asyncio.gather(
        *(one(host, port, sources[i % len(sources)], held, errors, gate) for i in range(n))
    )
    took = time.monotonic() - start
    for e in sorted(set(errors))[:5]:
        print(f"error: {e} ({errors.count(e)}x)", file=sys.stderr)
    print(f"READY opened={len(held)} failed={len(errors)} seconds={took:.1f}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for w in held:
        w.close()
    print("CLOSED", flush=True)


asyncio.run(main())
