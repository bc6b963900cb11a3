"""Summarizes an Autobahn index.json; exits non-zero unless every case passed.

A case passes when both its behavior and its close behavior are OK or INFORMATIONAL;
NON-STRICT, FAILED, UNIMPLEMENTED and UNCLEAN all fail.
"""
import collections
import json
import sys

path, agent = sys.argv[1], sys.argv[2]
results = json.load(open(path))[agent]
counts = collections.Counter()
bad = []
for case, r in results.items():
    behavior, close = r["behavior"], r["behaviorClose"]
    worst = behavior if behavior != "OK" else close
    if behavior == "OK" and close == "INFORMATIONAL":
        worst = "OK"
    counts[worst] += 1
    if behavior not in ("OK", "INFORMATIONAL") or close not in ("OK", "INFORMATIONAL"):
        bad.append((case, behavior, close))

key = lambda c: [int(p) for p in c[0].split(".")]
print("autobahn %s: %d cases: %s" % (agent, len(results), ", ".join("%d %s" % (n, b) for b, n in sorted(counts.items()))))
for case, behavior, close in sorted(bad, key=key):
    print("  %s: behavior %s, close %s" % (case, behavior, close))
if bad or not results:
    sys.exit(1)
