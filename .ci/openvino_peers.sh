#!/usr/bin/env bash
# CI job "openvino peers": the OpenVINO / NNCF bench backends (extra `[openvino]`) and the OpenVINO execution
# provider plugin (extra `[openvino-ep]`: the fp32_ov_bf16 / qint8_static_ov variants) are skipped by `make test`,
# whose environment does not have them (they stay out of the default install). Here they get a venv of their own
# on top of the test environment, as a user adds the extras, and their tests run with them present.
# Usage: bash .ci/openvino_peers.sh (from the repository root, after make test).
set -euo pipefail
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv --system-site-packages "$work/v"
"$work/v/bin/pip" install -q -c constraints.txt openvino nncf onnxruntime-ep-openvino 2>&1 | grep -v "^WARNING: Location" || true
"$work/v/bin/python" -c "import nncf, openvino, onnxruntime_ep_openvino; print('openvino-peers:', openvino.__version__, 'nncf', nncf.__version__)"
# -rs: a skip here means the extra did not install, which must fail the job, not pass it quietly
out=$("$work/v/bin/python" -m pytest -q -rs tests/test_bench_peers.py tests/test_execution_variants.py 2>&1) || { echo "$out"; exit 1; }
echo "$out" | tail -1
# the one accepted skip: a real-plugin test meant for the other kind of CPU (the plugin serves Intel CPUs only, so an
# AMD machine runs test_the_real_plugin_on_a_cpu_it_does_not_serve and skips TestOpenVINO; an Intel one the reverse)
if echo "$out" | grep "SKIPPED" | grep -v -q "not on this kind of CPU"; then
  echo "openvino-peers: a test skipped with the extra installed"; exit 1
fi
echo "$out" | grep "SKIPPED" || true
