#!/usr/bin/env bash
# Installs the Autobahn|Testsuite into ~/.cache/autobahn-testsuite, once. It runs only on
# Python 2.7, which these machines have under pyenv.
set -euo pipefail
venv="$HOME/.cache/autobahn-testsuite"
if [ -x "$venv/bin/wstest" ]; then exit 0; fi
py=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python 2>/dev/null | tail -n1 || true)
if [ -z "$py" ]; then
  echo "autobahn: no Python 2.7 under ${PYENV_ROOT:-$HOME/.pyenv}/versions; the suite needs one" >&2
  exit 1
fi
echo "autobahn: installing autobahntestsuite 25.10.1 into $venv"
"$py" -m pip install --quiet --user 'virtualenv<20.22'
"$py" -m virtualenv --quiet "$venv"
"$venv/bin/pip" install --quiet autobahntestsuite==25.10.1
