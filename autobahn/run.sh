#!/usr/bin/env bash
# Runs the Autobahn|Testsuite (the reference RFC 6455 conformance suite) in server mode
# against one of this project's echo examples, and fails unless every case is OK or
# INFORMATIONAL.
#
#   autobahn/run.sh [EXAMPLE] [CASES]
#     EXAMPLE  an echo example taking its listen address as first argument (default: echo)
#     CASES    comma-separated case patterns (default: groups 1-10)
#
# Reports land in autobahn/reports/EXAMPLE/ (index.html for people, index.json for tools).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
example=${1:-echo}
cases=${2:-1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*}

. "$here/lib.sh"
"$here/install.sh"
wstest="$HOME/.cache/autobahn-testsuite/bin/wstest"

cd "$root"
cargo build --quiet --release --example "$example"
port=$(free_port)
outdir="$here/reports/$example"
rm -rf "$outdir"
mkdir -p "$outdir"
log="$outdir/server.log"
"target/release/examples/$example" "127.0.0.1:$port" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT

wait_listening "$port" "$server" "$log"

spec="$outdir/spec.json"
python3 - "$spec" "$outdir" "$example" "$port" "$cases" <<'PY'
import json, sys
spec, outdir, agent, port, cases = sys.argv[1:]
json.dump({"outdir": outdir, "servers": [{"agent": agent, "url": "ws://127.0.0.1:%s" % port}],
           "cases": cases.split(","), "exclude-cases": [], "exclude-agent-cases": {}}, open(spec, "w"))
PY
echo "autobahn: running cases $cases against $example on 127.0.0.1:$port"
timeout 3600 "$wstest" -m fuzzingclient -s "$spec" >"$outdir/wstest.log" 2>&1 || { tail -20 "$outdir/wstest.log"; exit 1; }
kill -0 $server 2>/dev/null || { echo "autobahn: $example died during the run:"; tail -20 "$log"; exit 1; }
python3 "$here/summarize.py" "$outdir/index.json" "$example"
