#!/usr/bin/env bash
# The tracker (pure numpy + lap) also runs on numpy 1.x: its tests in a small venv with numpy 1.26,
# the checkout installed editable without dependencies. Exit 3 = the venv could not be built (a registry problem, reported).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${KPRTRACK_NUMPY1_VENV:-/tmp/kprtrack-numpy1-venv}"
if ! "$venv/bin/python" -c "import numpy, lap, scipy, hydra, pytest; assert numpy.__version__.startswith('1.26')" 2>/dev/null; then
  python3 -m venv "$venv" || exit 3
  "$venv/bin/pip" install --quiet "numpy==1.26.4" lap scipy pytest "hydra-core>=1.3,<1.4" || exit 3
fi
# The install maps tracker/ to kprtrack.tracker (a bare checkout on PYTHONPATH does not import as kprtrack.*).
"$venv/bin/pip" install --quiet --no-deps -e . || exit 3
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_tracker_*.py
