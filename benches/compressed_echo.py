#!/usr/bin/env python3
"""Compressed echo benchmark: wsdriver's echo example against yawc's, with
permessage-deflate negotiated, on text-like (JSON) payloads.

    benches/compressed_echo.py [--rounds 3] [--secs 5]

Each server runs pinned to core 0 and `wsdriver bench` to core 1; servers are interleaved round
by round; the table gives the median messages/s of each cell and the ratio. Builds what it
runs (the peers in benches/peers, outside the workspace).
"""
import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_common import running_server  # noqa: E402
CELLS = [  # (payload bytes, connections, messages in flight per connection)
    (1024, 16, 16),
    (16 << 10, 16, 4),
    (256 << 10, 4, 1),
]
SERVERS = [
    ("wsdriver", os.path.join(ROOT, "target/release/examples/echo")),
    ("yawc", os.path.join(ROOT, "benches/peers/target/release/peer_yawc")),
]
WSDRIVER = os.path.join(ROOT, "target/release/wsdriver")


def build():
    subprocess.check_call(["cargo", "build", "--quiet", "--release", "--example", "echo", "--bin", "wsdriver", "-p", "wsdriver-cli", "-p", "wsdriver"], cwd=ROOT)
    subprocess.check_call(["cargo", "build", "--quiet", "--release", "--bin", "peer_yawc"], cwd=os.path.join(ROOT, "benches/peers"))


def run_cell(binary, cell, secs):
    size, conns, inflight = cell
    with running_server(binary, cpu=0) as (_, port):
        out = subprocess.check_output(["taskset", "-c", "1", WSDRIVER, "bench", "ws://127.0.0.1:%d/" % port, "--conns", str(conns),
                                       "--inflight", str(inflight), "--size", str(size), "--duration", "%gs" % secs, "--deflate",
                                       "--quiet"], timeout=secs + 60)
        return float(out.split()[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--secs", type=float, default=5)
    args = parser.parse_args()
    build()
    results = {}
    for r in range(args.rounds):
        for cell in CELLS:
            for name, binary in SERVERS:
                rate = run_cell(binary, cell, args.secs)
                results.setdefault((cell, name), []).append(rate)
                print("round %d %s %s: %.0f msg/s" % (r + 1, name, cell, rate), file=sys.stderr, flush=True)
    print("| payload, connections x in flight | wsdriver (msg/s) | yawc (msg/s) | wsdriver / yawc |")
    print("| --- | --- | --- | --- |")
    for cell in CELLS:
        ours = statistics.median(results[(cell, "wsdriver")])
        theirs = statistics.median(results[(cell, "yawc")])
        size, conns, inflight = cell
        label = "%s, %d x %d" % ("%d KiB" % (size >> 10), conns, inflight)
        print("| %s | %.0f | %.0f | %.2f |" % (label, ours, theirs, ours / theirs if theirs else float("inf")))


if __name__ == "__main__":
    main()
