#!/usr/bin/env python3
"""Draws BENCHMARKS.md's charts (SVG) from the JSON the benchmarks write.

    benches/run.py --json benches/results/echo.json
    cargo bench -p ws-hub --bench fanout -- --json "$PWD/benches/results/fanout.json"
    benches/charts.py [--results benches/results] [--out benches/charts]

Writes one throughput chart per payload size (every server's rate in each cell, as a
ratio to the raw-TCP ceiling of the same run), the idle memory per connection, and the
fan-out comparison. Plain SVG, no dependencies beyond Python's standard library.
"""
import argparse
import json
import math
import os
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))
FONT = 'font-family="sans-serif" font-size="12"'
OURS = ["#08519c", "#2171b5", "#4292c6", "#6baed6", "#9ecae1"]
PEERS = ["#a63603", "#e6550d", "#fdae6b", "#8c6d31", "#d6616b", "#7b4173"]
CEILING = "#444444"


def colours(servers):
    """The raw ceiling in grey, wsdriver's servers in blues, the peers in oranges."""
    out, ours, peers = {}, iter(OURS * 2), iter(PEERS * 2)
    for name in servers:
        if name == "raw TCP ceiling":
            out[name] = CEILING
        elif name.startswith("wsdriver"):
            out[name] = next(ours)
        else:
            out[name] = next(peers)
    return out


def rate(value, unit):
    if unit == "bytes/s":
        return "%.2f GB/s" % (value / 1e9)
    return "%.2f M/s" % (value / 1e6) if value >= 1e6 else "%.0f k/s" % (value / 1e3)


def size_name(payload):
    if payload < 1024:
        return "%d B" % payload
    return "%d KiB" % (payload >> 10) if payload < 1 << 20 else "%d MiB" % (payload >> 20)


class Svg:
    def __init__(self, width):
        self.width, self.parts = width, []

    def text(self, x, y, s, anchor="start", weight="normal", size=12, fill="#000"):
        self.parts.append('<text x="%.1f" y="%.1f" text-anchor="%s" font-weight="%s" font-size="%d" fill="%s">%s</text>'
                          % (x, y, anchor, weight, size, fill, escape(s)))

    def rect(self, x, y, w, h, fill):
        self.parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>' % (x, y, max(w, 0), h, fill))

    def line(self, x1, y1, x2, y2, stroke="#999", dash=None):
        extra = ' stroke-dasharray="%s"' % dash if dash else ""
        self.parts.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"%s/>' % (x1, y1, x2, y2, stroke, extra))

    def write(self, path, height):
        with open(path, "w") as f:
            f.write('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s>\n'
                    % (self.width, height, self.width, height, FONT))
            f.write('<rect width="100%" height="100%" fill="#fff"/>\n')
            f.write("\n".join(self.parts))
            f.write("\n</svg>\n")


def legend(svg, y, entries):
    x = 20
    for name, colour in entries:
        svg.rect(x, y - 10, 12, 12, colour)
        svg.text(x + 16, y, name)
        x += 26 + 7 * len(name)
        if x > svg.width - 160:
            x, y = 20, y + 18
    return y + 24


def throughput_chart(report, payload, path):
    """Bars per cell (connections x in flight), one per server: the ratio to the ceiling."""
    cells = [c for c in report["cells"] if c["payload"] == payload and "results" in c]
    servers = report["servers"]
    colour = colours(servers)
    top = max([1.0] + [c["results"][s]["median"] / c["results"][servers[0]]["median"]
                       for c in cells for s in servers if c["results"][servers[0]]["median"]])
    scale_max = math.ceil(top * 4) / 4
    left, bar_w, bar, gap = 170, 520, 11, 14
    svg = Svg(left + bar_w + 150)
    svg.text(20, 24, "Echo throughput, %s messages: ratio to the raw-TCP ceiling of the same run" % size_name(payload), weight="bold", size=14)
    svg.text(20, 42, report["machine"], size=11, fill="#555")
    y = legend(svg, 64, [(s, colour[s]) for s in servers])
    axis_top = y
    for c in cells:
        ceiling = c["results"][servers[0]]["median"]
        conns = "1 connection" if c["conns"] == 1 else "%d connections" % c["conns"]
        svg.text(20, y + bar * len(servers) / 2 - 3, conns)
        svg.text(20, y + bar * len(servers) / 2 + 12, "x %d in flight" % c["in_flight"])
        for s in servers:
            r = c["results"][s]
            ratio = r["median"] / ceiling if ceiling else 0
            svg.rect(left, y, bar_w * ratio / scale_max, bar - 2, colour[s])
            svg.text(left + bar_w * ratio / scale_max + 4, y + bar - 3, "%.2fx  %s" % (ratio, rate(r["median"], c["unit"])), size=9, fill="#333")
            y += bar
        y += gap
    step = 0.25 if scale_max <= 2 else 0.5
    tick = 0.0
    while tick <= scale_max + 1e-9:
        x = left + bar_w * tick / scale_max
        svg.line(x, axis_top - 6, x, y - gap + 2, stroke="#000" if abs(tick - 1) < 1e-9 else "#ddd",
                 dash=None if abs(tick - 1) < 1e-9 else "2,3")
        svg.text(x, y + 6, "%.2gx" % tick, anchor="middle", size=10)
        tick += step
    svg.write(path, y + 20)


def memory_chart(report, path):
    """Idle memory per connection, both ways of opening the connections, on a log scale."""
    entries = report["idle_memory"]
    left, bar_w, bar = 170, 470, 12
    svg = Svg(left + bar_w + 120)
    svg.text(20, 24, "Idle memory per connection (RSS growth over 10,000 idle connections, log scale)", weight="bold", size=14)
    svg.text(20, 42, report["machine"], size=11, fill="#555")
    y = legend(svg, 64, [("opened 256 at a time", "#2171b5"), ("opened all at once", "#fd8d3c")])
    lo, hi = math.log10(256), math.log10(256 * 1024)

    def width(b):
        return bar_w * (math.log10(max(b, 256)) - lo) / (hi - lo)

    axis_top = y
    for e in entries:
        svg.text(20, y + bar + 4, e["server"])
        for key, fill in (("bytes_256_at_a_time", "#2171b5"), ("bytes_all_at_once", "#fd8d3c")):
            b = e[key]
            svg.rect(left, y, width(b), bar - 2, fill)
            svg.text(left + width(b) + 4, y + bar - 3, "%.2f KiB" % (b / 1024), size=9, fill="#333")
            y += bar
        y += 8
    for label, b in (("256 B", 256), ("1 KiB", 1024), ("4 KiB", 4096), ("16 KiB", 16384), ("64 KiB", 65536), ("256 KiB", 262144)):
        x = left + width(b)
        svg.line(x, axis_top - 6, x, y - 6, stroke="#ddd", dash="2,3")
        svg.text(x, y + 8, label, anchor="middle", size=10)
    svg.write(path, y + 22)


def fanout_chart(fanout, path):
    """Deliveries per second, the hub against a tokio broadcast channel and a task per
    connection; each workload on its own scale."""
    rows = fanout["results"]
    workloads = []
    for r in rows:
        if (r["payload"], r["messages"]) not in workloads:
            workloads.append((r["payload"], r["messages"]))
    left, bar_w, bar = 170, 400, 16
    svg = Svg(left + bar_w + 210)
    svg.text(20, 24, "Fan-out: one publisher to %d subscribers, deliveries per second" % fanout["subscribers"], weight="bold", size=14)
    y = legend(svg, 48, [("hub", "#2171b5"), ("tokio broadcast", "#fd8d3c")])
    for payload, messages in workloads:
        svg.text(20, y + bar + 4, "%s x %d" % (size_name(payload), messages))
        for approach, fill in (("hub", "#2171b5"), ("tokio broadcast", "#fd8d3c")):
            r = next(r for r in rows if r["payload"] == payload and r["messages"] == messages and r["approach"] == approach)
            top = max(o["deliveries_per_sec"] for o in rows if o["payload"] == payload and o["messages"] == messages)
            w = bar_w * r["deliveries_per_sec"] / top
            svg.rect(left, y, w, bar - 2, fill)
            svg.text(left + w + 4, y + bar - 4, "%.2f M/s, %.2f KiB/subscriber" % (r["deliveries_per_sec"] / 1e6, r["kib_per_subscriber"]),
                     size=9, fill="#333")
            y += bar
        y += 10
    svg.write(path, y + 10)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    parser.add_argument("--out", default=os.path.join(HERE, "charts"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    written = []
    echo = os.path.join(args.results, "echo.json")
    if os.path.exists(echo):
        with open(echo) as f:
            report = json.load(f)
        for payload in sorted({c["payload"] for c in report["cells"]}):
            name = "throughput-%s.svg" % size_name(payload).replace(" ", "")
            throughput_chart(report, payload, os.path.join(args.out, name))
            written.append(name)
        if report["idle_memory"]:
            memory_chart(report, os.path.join(args.out, "idle-memory.svg"))
            written.append("idle-memory.svg")
    fanout = os.path.join(args.results, "fanout.json")
    if os.path.exists(fanout):
        with open(fanout) as f:
            fanout_chart(json.load(f), os.path.join(args.out, "fanout.svg"))
        written.append("fanout.svg")
    if not written:
        raise SystemExit("no results in %s: run benches/run.py --json first" % args.results)
    print("wrote " + ", ".join(os.path.join(args.out, w) for w in written))


if __name__ == "__main__":
    main()
