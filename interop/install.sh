#!/usr/bin/env bash
# Installs the third-party peers the interop tests drive, once: Node `ws` and
# playwright-core (interop/node_modules), Python `websockets` (a virtualenv in
# ~/.cache/wsdriver-interop), Debian's Chromium, Debian's redis-server (the hub's
# backplane tests start their own on a loopback port), and Debian's tinyproxy and
# microsocks (the client's proxy tests start their own), tmux (the terminal test of
# `wsdriver connect`), haproxy (the chat failover tests, and scripts/chat-cluster) and
# nats-server (the NATS backplane's tests start their own). Safe to run again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
[ -x /usr/bin/tinyproxy ] || missing+=(tinyproxy)
[ -x /usr/bin/microsocks ] || missing+=(microsocks)
[ -x /usr/bin/tmux ] || missing+=(tmux)
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)
[ -x /usr/sbin/nats-server ] || missing+=(nats-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "interop: installing Debian's ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -d "$here/node_modules/ws" ] || [ ! -d "$here/node_modules/playwright-core" ]; then
  echo "interop: installing node peers"
  (cd "$here" && npm ci --no-audit --no-fund --silent)
fi

venv="$HOME/.cache/wsdriver-interop/venv"
if ! "$venv/bin/python" -c 'import websockets' 2>/dev/null; then
  echo "interop: installing python websockets into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r "$here/requirements.txt"
fi
