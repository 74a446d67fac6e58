#!/usr/bin/env bash
# The one GPU check of issue 7, for the lent GPU machine (see /work/.library/device/README.md):
# installs the carried wheels (.whl, listed in bench/device_wheels.txt), checks the imports,
# then runs bench/gpu.py once (about 8 minutes; arguments go to it) and leaves its JSON and log in $OUT.
#   run tool: command "bash bench/device_run.sh", carry [".whl"], timeout_s 590
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT="${OUT:-bench/results}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 -c "import torch, transformers, torchvision; print('torch', torch.__version__, 'transformers', transformers.__version__, 'torchvision', torchvision.__version__)"
python3 bench/device_check_imports.py 2>&1 | tail -15
python3 bench/gpu.py --out "$OUT/gpu.json" "$@" 2>&1 | grep -v -E "Loading weights|Writing model shards" | tee "$OUT/gpu.log"
