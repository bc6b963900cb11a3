#!/usr/bin/env python3
"""The side-by-side benchmark: wsdriver on every server against its peers and a raw-TCP
ceiling, one command, under ten minutes on two cores.

    benches/run.py [--rounds 3] [--secs 0.5] [--targets] [--no-memory] [--http2] [--only NAMES] [--json PATH]

Each echo server runs pinned to core 0 and `wsdriver bench` to core 1; servers are interleaved
round by round (in each round every server is started once and runs every cell, in
turn); the loader starts its clock once all its connections are open; the tables give
medians, ratios to the raw ceiling measured in the same run, the server's CPU use during
the run (it should sit near 100% of its core: otherwise the loader is the bottleneck),
and idle memory per connection (RSS growth over 10,000 idle connections).

It runs the whole matrix (16 B, 1 KiB, 64 KiB, 1 MiB payloads; 1, 64 and 512
connections; 1 and 16 messages in flight); `--targets` runs only the five cells the
performance targets are set on. `--http2` adds our servers over HTTP/2 (`... h2c`: each
connection an h2c connection, prior knowledge, carrying one WebSocket opened by an
extended CONNECT), beside their HTTP/1.1 figures.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import idle_memory  # noqa: E402
from bench_common import raise_fd_limit, running_server  # noqa: E402

EX = os.path.join(ROOT, "target/release/examples")
PEERS = os.path.join(HERE, "peers/target/release")
WSDRIVER = os.path.join(ROOT, "target/release/wsdriver")
SERVERS = [
    ("raw TCP ceiling", os.path.join(PEERS, "peer_raw")),
    ("wsdriver standalone", os.path.join(EX, "echo")),
    ("wsdriver hyper", os.path.join(EX, "echo_hyper")),
    ("wsdriver tower", os.path.join(EX, "echo_tower")),
    ("wsdriver axum", os.path.join(EX, "echo_axum")),
    ("wsdriver actix", os.path.join(EX, "echo_actix")),
    ("actix-ws", os.path.join(PEERS, "peer_actix_ws")),
    ("fastwebsockets", os.path.join(PEERS, "peer_fastwebsockets")),
    ("yawc", os.path.join(PEERS, "peer_yawc")),
    ("tokio-tungstenite", os.path.join(PEERS, "peer_tungstenite")),
    ("axum ws", os.path.join(PEERS, "peer_axum")),
]
# Our servers again, loaded over HTTP/2 (RFC 8441, h2c) with `--http2`.
H2C_SERVERS = [
    ("wsdriver standalone h2c", os.path.join(EX, "echo")),
    ("wsdriver hyper h2c", os.path.join(EX, "echo_hyper")),
    ("wsdriver tower h2c", os.path.join(EX, "echo_tower")),
    ("wsdriver axum h2c", os.path.join(EX, "echo_axum")),
]
# (payload bytes, connections, in flight, unit)
TARGET_CELLS = [(16, 64, 16, "msg"), (1024, 16, 16, "msg"), (16, 512, 1, "msg"), (64 << 10, 64, 1, "GB"), (1 << 20, 8, 1, "GB")]


# Cells with more than this in flight (payload x connections x messages) are listed but
# not run: gigabytes in flight measure the machine's memory, not the server.
MAX_IN_FLIGHT = 256 << 20


def in_flight(cell):
    return cell[0] * cell[1] * cell[2]


def full_cells():
    return [(p, c, f, "GB" if p >= 64 << 10 else "msg") for p in (16, 1024, 64 << 10, 1 << 20) for c in (1, 64, 512) for f in (1, 16)]


def build():
    subprocess.check_call(["cargo", "build", "--quiet", "--release", "--examples", "--bins", "-p", "wsdriver", "-p", "wsdriver-cli"], cwd=ROOT)
    subprocess.check_call(["cargo", "build", "--quiet", "--release"], cwd=os.path.join(HERE, "peers"))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(server, port, cell, secs, http2=False):
    """Runs `wsdriver bench` on core 1 against a running server (over HTTP/2 with `http2`);
    returns (msg/s, bytes/s, the server's CPU use while loaded)."""
    size, conns, inflight, _ = cell
    cpu0, t0 = cpu_seconds(server.pid), time.time()
    out = subprocess.check_output(["taskset", "-c", "1", WSDRIVER, "bench", "ws://127.0.0.1:%d/" % port, "--conns", str(conns),
                                   "--inflight", str(inflight), "--size", str(size), "--duration", "%gs" % secs, "--binary", "--quiet"]
                                  + (["--http2"] if http2 else []),
                                  timeout=secs + 60, preexec_fn=lambda: raise_fd_limit(4096))
    cpu = (cpu_seconds(server.pid) - cpu0) / (time.time() - t0)
    words = out.split()
    return float(words[1]), float(words[3]), cpu


def run_cell(binary, cell, secs):
    """One cell on a freshly started server."""
    with running_server(binary, cpu=0) as (server, port):
        return load(server, port, cell, secs)


def label(cell):
    size, conns, inflight, unit = cell
    size_s = "%d B" % size if size < 1024 else ("%d KiB" % (size >> 10) if size < 1 << 20 else "%d MiB" % (size >> 20))
    return "%s, %d conns x %d in flight (%s)" % (size_s, conns, inflight, "msg/s" if unit == "msg" else "GB/s")


def machine():
    def first(cmd):
        try:
            return subprocess.check_output(cmd, text=True, stderr=subprocess.DEVNULL).strip().splitlines()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            return "?"
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return "Machine: %s, %d cores, %s; %s; %s\n" % (model, os.cpu_count() or 0, first(["uname", "-sr"]), first(["rustc", "-V"]),
                                                  time.strftime("%Y-%m-%d"))


def fmt(value, unit):
    if unit == "GB":
        return "%.2f" % (value / 1e9)
    return "%.2f M" % (value / 1e6) if value >= 1e6 else "%.0f k" % (value / 1e3)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--secs", type=float, default=0.5)
    parser.add_argument("--targets", action="store_true", help="only the five target cells")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--http2", action="store_true", help="also our servers over HTTP/2 (h2c)")
    parser.add_argument("--only", help="comma-separated server names to run (the raw ceiling always runs)")
    parser.add_argument("--json", metavar="PATH", help="also write every sample to PATH (benches/charts.py draws from it)")
    args = parser.parse_args()
    build()
    servers = SERVERS + (H2C_SERVERS if args.http2 else [])
    if args.only:
        keep = set(args.only.split(","))
        servers = [s for s in servers if s[0] in keep or s[0] == "raw TCP ceiling"]
    cells = TARGET_CELLS if args.targets else full_cells()
    print(machine())
    report = {"machine": machine().strip(), "rounds": args.rounds, "secs": args.secs, "servers": [n for n, _ in servers],
              "cells": [], "idle_memory": []}
    results = {}
    for r in range(args.rounds):
        # Each round runs every server in turn, each once through every cell.
        for name, binary in servers:
            with running_server(binary, cpu=0) as (server, port):
                for cell in cells:
                    if in_flight(cell) > MAX_IN_FLIGHT:
                        continue
                    msgs, bytes_, cpu = load(server, port, cell, args.secs, http2=name.endswith(" h2c"))
                    value = bytes_ if cell[3] == "GB" else msgs
                    results.setdefault((cell, name), []).append((value, cpu))
                    print("round %d | %s | %s | %s | cpu %.0f%%" % (r + 1, label(cell), name, fmt(value, cell[3]), cpu * 100), file=sys.stderr, flush=True)

    print("## Throughput (medians of %d interleaved rounds, %.1f s each; server on core 0, `wsdriver bench` on core 1)\n" % (args.rounds, args.secs))
    print("| cell | " + " | ".join(n for n, _ in servers) + " |")
    print("| --- |" + " --- |" * len(servers))
    for cell in cells:
        if in_flight(cell) > MAX_IN_FLIGHT:
            print("| %s | not run: %d MiB in flight |%s" % (label(cell), in_flight(cell) >> 20, " |" * (len(servers) - 1)))
            continue
        row = []
        ceiling = statistics.median(v for v, _ in results[(cell, servers[0][0])])
        for name, _ in servers:
            value = statistics.median(v for v, _ in results[(cell, name)])
            cpu = statistics.median(c for _, c in results[(cell, name)])
            ratio = "" if name == servers[0][0] else " (%.2fx)" % (value / ceiling if ceiling else 0)
            row.append("%s%s, cpu %.0f%%" % (fmt(value, cell[3]), ratio, cpu * 100))
        print("| %s | %s |" % (label(cell), " | ".join(row)))
        report["cells"].append({
            "label": label(cell), "payload": cell[0], "conns": cell[1], "in_flight": cell[2],
            "unit": "bytes/s" if cell[3] == "GB" else "msg/s",
            "results": {name: {"median": statistics.median(v for v, _ in results[(cell, name)]),
                               "cpu": statistics.median(c for _, c in results[(cell, name)]),
                               "samples": [v for v, _ in results[(cell, name)]]} for name, _ in servers}})

    if not args.no_memory:
        print("\n## Idle memory per connection (RSS growth over 10,000 idle connections)\n")
        print("| server | opened 256 at a time | opened all at once |")
        print("| --- | --- | --- |")
        for name, binary in servers:
            if name.endswith(" h2c"):
                continue  # the idle connections are HTTP/1.1 upgrades
            cells, entry = [], {"server": name}
            for parallel, key in ((256, "bytes_256_at_a_time"), (0, "bytes_all_at_once")):
                before, after = idle_memory.measure(binary, 10000, parallel)
                per = (after - before) * 1024.0 / 10000
                entry[key] = per
                cells.append("%.2f KiB" % (per / 1024) if per >= 1024 else "%.0f B" % per)
            report["idle_memory"].append(entry)
            print("| %s | %s |" % (name, " | ".join(cells)), flush=True)

    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
