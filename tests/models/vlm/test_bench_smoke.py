"""bench/gpu_vlm.py, the GPU benchmark of the VLM backend, runs end to end on a CPU (--smoke:
a tiny SmolVLM shape) and writes every measure; it is meant for a GPU machine (not run here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_gpu_vlm_benchmark_smoke_run_writes_every_measure(tmp_path):
    out = tmp_path / "gpu_vlm.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_vlm.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    shape = json.loads(out.read_text())["shapes"]["smolvlm-smoke"]
    for label in ("plain_caption", "plain_verify", "lf_caption_first_call", "lf_caption", "lf_verify",
                  "lf_verify_uncached", "lf_generate_caption"):
        assert "img_s" in shape[label], (label, shape[label])
        assert shape[label]["texts_equal_plain"] == 1.0, label  # float32 on CPU: the same text as generate
    assert shape["lf_verify"]["encodings_reused_so_far"] == 8  # the caption pass's encodings
    assert shape["engine"]["static_decode"] and shape["engine"]["encoding_cache"]
