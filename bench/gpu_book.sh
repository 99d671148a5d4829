#!/usr/bin/env bash
# Run the whole book (full profile, GPU kernel) and the benchmarks on a machine with CUDA.
#
# Usage (from the repository root, on the GPU machine):
#   bash bench/gpu_book.sh [OUTPUT_DIR] [CHAPTER ...]
# The machine needs Python with torch (CUDA) and the packages of requirements.lock; where it has
# no registry access, carry them as wheels in .whl/ (see README, "GPU runs") and they are installed
# into /tmp/site first. Executed notebooks and the execution report go to OUTPUT_DIR (default
# _build/gpu); copy OUTPUT_DIR/execution_report.json to book/reports/full-gpu.json to publish it.
set -uo pipefail
out=${1:-_build/gpu}; shift || true
start=$(date +%s)
PY=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export BIGMODEL_THREADS=${BIGMODEL_THREADS:-8} KERAS_BACKEND=torch PYTHONUNBUFFERED=1 JUPYTER_PATH=/tmp/jupyter/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}
$PY - <<'PY' || exit 1
import torch
assert torch.cuda.is_available(), "no CUDA device: this script is for GPU machines (use make book on a CPU)"
print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
PY
$PY -m bigmodel_utils.kernels install --prefix /tmp/jupyter
mkdir -p "$out"
$PY -m bigmodel_utils.run --profile full --kernel gpu --output-dir "$out" --no-progress "$@"
rc=$?
if [ -f bench/run_all.py ]; then
  $PY bench/run_all.py --device cuda --output "$out/bench.json" || rc=1
fi
echo "gpu_book.sh: finished in $(( $(date +%s) - start )) s, exit status $rc"
exit $rc
