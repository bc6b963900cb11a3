#!/usr/bin/env bash
# Runs the Autobahn|Testsuite in client mode: the suite's fuzzingserver against
# examples/autobahn_client, and fails unless every case is OK or INFORMATIONAL.
#
#   autobahn/run-client.sh [CASES]   (default: groups 1-10)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cases=${1:-1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*}

. "$here/lib.sh"
"$here/install.sh"
wstest="$HOME/.cache/autobahn-testsuite/bin/wstest"
cd "$root"
cargo build --quiet --release --example autobahn_client
port=$(free_port)
outdir="$here/reports/client"
rm -rf "$outdir"
mkdir -p "$outdir"
python3 - "$outdir/spec.json" "$outdir" "$port" "$cases" <<'PY'
import json, sys
spec, outdir, port, cases = sys.argv[1:]
json.dump({"url": "ws://127.0.0.1:%s" % port, "outdir": outdir, "cases": cases.split(","),
           "exclude-cases": [], "exclude-agent-cases": {}}, open(spec, "w"))
PY
(cd "$outdir" && exec "$wstest" -m fuzzingserver -s spec.json >"$outdir/wstest.log" 2>&1) &
fuzzer=$!
trap 'kill $fuzzer 2>/dev/null || true' EXIT
wait_listening "$port" "$fuzzer" "$outdir/wstest.log"
echo "autobahn: running cases $cases against the client"
timeout 3600 target/release/examples/autobahn_client "ws://127.0.0.1:$port" wsdriver >"$outdir/client.log" 2>&1 || { tail -20 "$outdir/client.log"; exit 1; }
python3 "$here/summarize.py" "$outdir/index.json" wsdriver
