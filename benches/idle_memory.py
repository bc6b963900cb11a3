#!/usr/bin/env python3
"""Idle memory per connection: server RSS growth over N idle WebSocket connections / N.

    benches/idle_memory.py [--count N] [--parallel P] SERVER_BINARY [SERVER_BINARY ...]

Each SERVER_BINARY is an echo server taking its listen address as first argument (every
echo example of this project). For each: start it on a free loopback port, open and
close a few connections so the runtime and allocator are warm, read its RSS, open N
connections that complete the WebSocket handshake and then stay idle, read its RSS again,
and print (growth / N). Connections are closed and the server stopped afterwards.

Connections are opened P at a time (default 256). `--parallel 0` opens all N at once,
as clients do after a deploy or a network blip: then every handshake is under way at
the same moment, and what a server allocates during a handshake is all alive at once.
"""
import argparse
import asyncio
import os
import sys

from bench_common import raise_fd_limit, running_server

REQUEST = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def open_one(port, conns):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError("handshake refused: %r" % head[:40])
    conns.append(writer)


async def open_many(port, count, parallel=256):
    conns = []
    sem = asyncio.Semaphore(parallel or count)

    async def guarded():
        async with sem:
            await open_one(port, conns)

    await asyncio.gather(*(guarded() for _ in range(count)))
    return conns


def close_all(conns):
    for w in conns:
        w.close()


def measure(binary, count, parallel):
    with running_server(binary, fds=count + 1024) as (proc, port):
        loop = asyncio.new_event_loop()
        warm = loop.run_until_complete(open_many(port, 200))
        close_all(warm)
        loop.run_until_complete(asyncio.sleep(1.0))  # let the server drop them
        before = rss_kib(proc.pid)
        conns = loop.run_until_complete(open_many(port, count, parallel))
        loop.run_until_complete(asyncio.sleep(1.0))  # settle: every connection idle in its read
        after = rss_kib(proc.pid)
        close_all(conns)
        loop.run_until_complete(asyncio.sleep(0.2))
        loop.close()
        return before, after


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--parallel", type=int, default=256, help="connections opened at a time; 0: all at once")
    parser.add_argument("servers", nargs="+")
    args = parser.parse_args()
    raise_fd_limit(args.count + 1024)
    arrival = "all at once" if args.parallel == 0 else "%d at a time" % args.parallel
    print("| server | RSS before (MiB) | RSS with %d idle, opened %s (MiB) | per connection |" % (args.count, arrival))
    print("| --- | --- | --- | --- |")
    for binary in args.servers:
        before, after = measure(binary, args.count, args.parallel)
        per = (after - before) * 1024.0 / args.count
        print("| %s | %.1f | %.1f | %s |" % (os.path.basename(binary), before / 1024.0, after / 1024.0,
                                              "%.2f KiB" % (per / 1024) if per >= 1024 else "%.0f B" % per), flush=True)


if __name__ == "__main__":
    sys.exit(main())
