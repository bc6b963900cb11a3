#!/usr/bin/env python3
"""Instructions per echoed message: each echo server under valgrind's callgrind while
`wsdriver bench` drives it, the count divided by the messages echoed.

    benches/instructions.py [--secs 3] [SERVER_BINARY ...]

Instruction counts are what a noisy, shared machine measures repeatably: the same binary
and load give the same count whatever else runs (wall-clock rates here move by 10-40 %).
Counting starts once the server listens (`--instr-atstart=no`, switched on with
callgrind_control), so start-up is left out; the 64 or 16 handshakes are counted, a few
instructions per message. Cells: 16 B with 64 connections x 16 in flight, and 1 KiB with
16 x 16 (the small-message cells of the targets). Without arguments: the standalone,
hyper and axum echo examples (built in release first).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_common import free_port, wait_listening  # noqa: E402

EX = os.path.join(ROOT, "target/release/examples")
WSDRIVER = os.path.join(ROOT, "target/release/wsdriver")
CELLS = [(16, 64, 16), (1024, 16, 16)]


def count(binary, size, conns, inflight, secs):
    """Instructions per message for one cell: (per message, messages echoed)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "callgrind.log")
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=" + os.path.join(tmp, "out"),
             "--log-file=" + log, binary, "127.0.0.1:%d" % port],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(port, server, deadline=60)
            subprocess.check_call(["callgrind_control", "-i", "on", str(server.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out = subprocess.check_output(
                [WSDRIVER, "bench", "ws://127.0.0.1:%d" % port, "--conns", str(conns), "--inflight", str(inflight),
                 "--size", str(size), "--duration", "%gs" % secs, "--binary", "--quiet"], text=True)
            subprocess.check_call(["callgrind_control", "-i", "off", str(server.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            server.terminate()
            server.wait()
        rate = float(out.split()[1])
        for _ in range(50):  # the log is complete once valgrind has exited
            collected = re.search(r"Collected : (\d+)", open(log).read())
            if collected:
                break
            time.sleep(0.1)
        messages = rate * secs
        return int(collected.group(1)) / messages, int(messages)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--secs", type=float, default=3.0)
    parser.add_argument("servers", nargs="*")
    args = parser.parse_args()
    servers = args.servers
    if not servers:
        subprocess.check_call(["cargo", "build", "--quiet", "--release", "--example", "echo", "--example", "echo_hyper",
                               "--example", "echo_axum", "--bin", "wsdriver", "-p", "wsdriver", "-p", "wsdriver-cli"], cwd=ROOT)
        servers = [os.path.join(EX, name) for name in ("echo", "echo_hyper", "echo_axum")]
    print("| server | %s |" % " | ".join("%s x %d x %d" % ("16 B" if s == 16 else "1 KiB", c, i) for s, c, i in CELLS))
    print("| --- |%s" % (" --- |" * len(CELLS)))
    for binary in servers:
        cells = []
        for size, conns, inflight in CELLS:
            per, messages = count(binary, size, conns, inflight, args.secs)
            cells.append("%d instructions (%d k messages)" % (round(per), messages // 1000))
        print("| %s | %s |" % (os.path.basename(binary), " | ".join(cells)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
