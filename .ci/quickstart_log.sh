#!/usr/bin/env bash
# CI: the README's first command as a non-TTY user runs it (output to a file), then the log must hold no progress-bar
# redraws (tqdm's "it/s]" / "%|", from datasets, Trainer or the Hub): bars are drawn only on a terminal
# (bertdeploy/progress.py). Also checks that the run ended with its summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
log="${QUICKSTART_LOG:-$out/quickstart.log}"
"${PYTHON:-python3}" -m bertdeploy quickstart --output "$out/quickstart" >"$log" 2>&1 </dev/null
if grep -n -E 'it/s\]|%\|' "$log"; then
  echo "FAIL: the quickstart log (not a terminal) holds progress-bar lines (above)" >&2
  exit 1
fi
grep -q '^done in ' "$log" || { echo "FAIL: no 'done in' summary in the quickstart log" >&2; tail -20 "$log" >&2; exit 1; }
echo "quickstart log: $(wc -l <"$log") lines, no progress-bar lines"
