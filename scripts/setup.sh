#!/usr/bin/env bash
# Create .venv and install llavaforge with everything the tests and the demo need:
# the dev, offline and gcp extras. On a machine without a GPU, torch's CPU build goes in
# first: a bare `torch` requirement would otherwise pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --progress-bar off)

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${PIP[@]}" "torch==$TORCH_VERSION"
  else
    # A CPU wheel already on this machine (pip's find-links) if there is one (its
    # dependencies come with the install below), else PyTorch's CPU index.
    "${PIP[@]}" --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null \
      || "${PIP[@]}" "torch==$TORCH_VERSION" --index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
  fi
fi
"${PIP[@]}" -e ".[dev,offline,gcp]"
"$VENV/bin/python" -m pip check
# The report's browser test opens the page in Debian's chromium (driven by Playwright, which
# then downloads no browser of its own). Installed where this script can; else that test skips.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    APT=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium)
    { "${APT[@]}" >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && "${APT[@]}" >/dev/null 2>&1; }; } \
      || echo "setup: could not install chromium; the report's browser test will be skipped" >&2
  else
    echo "setup: no chromium and no root apt-get to install it; the report's browser test will be skipped" >&2
  fi
fi
"$VENV/bin/python" -c "import torch, apache_beam, llavaforge; print('llavaforge', llavaforge.__version__, '| torch', torch.__version__, '| beam', apache_beam.__version__)"
