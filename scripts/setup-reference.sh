#!/usr/bin/env bash
# Creates a small Python environment with TSB-AD 1.5's evaluation code (no PyTorch), used by
# `lara bench metrics` as the reference implementation and to regenerate test fixtures.
# Prints the interpreter's path. Not needed by the tests or CI.
set -euo pipefail
VENV=${LARA_REFERENCE_VENV:-$HOME/.cache/lara-peers/metrics-venv}
if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c "import TSB_AD.evaluation.metrics" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "tsb-ad==1.5" --no-deps
  "$VENV/bin/pip" install -q "numpy<2" "scikit-learn<1.6" scipy statsmodels pandas
fi
echo "$VENV/bin/python"
