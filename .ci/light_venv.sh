#!/usr/bin/env bash
# CI job "light venv": the runtime installed alone, as a user would (`pip install "bertdeploy[cpu]"`, then
# `[cpu,serve]`), with no torch / transformers / optimum, predicting and serving a bundle that the full
# environment built earlier in the run. Usage: bash .ci/light_venv.sh (from the repository root, after make test).
set -euo pipefail
PYTHON=${PYTHON:-python3}
repo=$(pwd)
work=$(mktemp -d)
trap 'kill "${server:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
say() { echo "light-venv: $*"; }

say "building a tiny bundle with the full environment"
"$PYTHON" .ci/make_tiny_bundle.py "$work/tiny" >/dev/null
"$PYTHON" -m bertdeploy.cli.__main__ predict "$work/tiny/bundle" -i "$work/tiny/texts.txt" -o "$work/full.jsonl" -q

say "pip install .[cpu] into a fresh venv (no constraints file)"
"$PYTHON" -m venv "$work/v"
start=$SECONDS
"$work/v/bin/pip" install -q "$repo[cpu]" 2>&1 | grep -v "^WARNING: Location" || true
say "installed in $((SECONDS - start)) s; site-packages $(du -sh "$work"/v/lib/python3*/site-packages | cut -f1)"
cd "$work"  # not the checkout: its bertdeploy/ must not shadow the installed one
"$work/v/bin/python" - <<'PY'
import importlib.util

heavy = ["torch", "transformers", "optimum", "datasets", "sklearn", "matplotlib", "pandas", "pyarrow", "ray"]
present = [m for m in heavy if importlib.util.find_spec(m) is not None]
assert not present, f"the [cpu] profile installed {present}"
import bertdeploy.runtime  # noqa: F401

print("light-venv: none of", ", ".join(heavy), "is importable")
PY
bd="$work/v/bin/bertdeploy"
"$bd" predict "$work/tiny/bundle" -i "$work/tiny/texts.txt" -o "$work/light.jsonl" -q
cmp "$work/full.jsonl" "$work/light.jsonl"
say "bertdeploy predict: $(wc -l < "$work/light.jsonl") rows, identical to the full environment's"

expect_missing() {  # command args... -> exit 2 and one line naming the extra
  local needle=$1; shift
  set +e; err=$("$bd" "$@" 2>&1 >/dev/null); rc=$?; set -e
  [[ $rc == 2 && $err == "error: "*"$needle"* && $(wc -l <<<"$err") == 1 ]] || { echo "$* -> rc $rc: $err"; exit 1; }
  say "bertdeploy $1 without its extra: $err"
}
expect_missing 'bertdeploy[serve,cpu]' serve "$work/tiny/bundle"
expect_missing 'bertdeploy[train,cpu]' train --model bert-tiny
expect_missing 'bertdeploy[train,cpu]' export "$work/tiny/model" -o "$work/x"

say "pip install .[cpu,serve]"
"$work/v/bin/pip" install -q "$repo[cpu,serve]" 2>&1 | grep -v "^WARNING: Location" || true
port=$("$work/v/bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$bd" serve "$work/tiny/bundle" --port "$port" 2>"$work/serve.log" &
server=$!
for _ in $(seq 100); do
  "$work/v/bin/python" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/health', timeout=2)" \
    2>/dev/null && break
  sleep 0.2
done
answer=$("$work/v/bin/python" - "$port" <<'PY'
import json, sys, urllib.request

req = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/predict",
    data=json.dumps({"inputs": ["a good day", "a bad day"], "top_k": 1}).encode(),
    headers={"Content-Type": "application/json"},
)
body = json.load(urllib.request.urlopen(req, timeout=30))
assert len(body) == 2 and {"label", "score"} == set(body[0][0]), body
print(json.dumps(body))
PY
)
say "POST /predict -> $answer"
kill -TERM "$server"
set +e; wait "$server"; rc=$?; set -e
server=
[[ $rc == 0 || $rc == 143 ]] || { cat "$work/serve.log"; exit 1; }
grep -q "Shutting down" "$work/serve.log"
say "serve drained on SIGTERM (exit $rc)"
# 7 checks: heavy stack absent, predict identical, 3 missing extras named, /predict answered, SIGTERM drained
echo "light-venv: 7 passed, 0 failed"
