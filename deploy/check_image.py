"""Build-time check of the llavaforge image: deploy/Dockerfile runs it after the install, and
tests/runners/test_deploy.py runs it on the test machine.

- every module of the llavaforge package imports;
- every model role loads through its Beam ModelHandler and annotates (or writes for) one
  image on CPU: the `tiny` preset's captioner, detector, tagger, dense captioner (a VLM) and LLM (built from configs,
  no network) and the `offline` preset's tagger and OCR (the roles `tiny` lacks);
- the `offline` LLM's GGUF is in the model cache (fetched there on first use);
- `--vllm`: the `hub` preset's LLM backend, vLLM, imports and takes llavaforge's sampling
  arguments (a GPU is needed to load the model itself: not here).

Prints one line per check; exits 1 naming every check that failed.
"""

from __future__ import annotations

import argparse
import importlib
import io
import pkgutil
import sys
import traceback
from typing import Callable

import numpy as np
from PIL import Image

import llavaforge
from llavaforge.models.llm.backends import make_llm_handler
from llavaforge.models.llm.base import LlmRequest
from llavaforge.models.llm.local_models import smollm2_gguf_path
from llavaforge.config.annotate import ROLES
from llavaforge.config.recipe import load_recipe
from llavaforge.schemas.record import ImageInfo, ImageRecord, Source
from llavaforge.transforms.annotate import make_handler

# The preset each vision role is checked with: tiny where it has the role, else offline.
VISION_ROLE_PRESETS = {"captioner": "tiny", "detector": "tiny", "tagger": "tiny", "ocr": "offline",
                      "dense_captioner": "tiny"}
EXTRA_VISION_CHECKS = [("tagger", "offline")]  # a second real architecture for the same role
GGUF_MAGIC = b"GGUF"


def runtime_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(llavaforge.__path__, llavaforge.__name__ + "."))


def import_modules() -> str:
    modules = runtime_modules()
    for name in modules:
        importlib.import_module(name)
    return f"{len(modules)} modules"


def sample_record() -> ImageRecord:
    rgb = np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, format="JPEG")
    return ImageRecord(key="0" * 32, source=Source(url="check", member="0.jpg"),
                       image=ImageInfo(data=out.getvalue(), format="jpg", width=64, height=48,
                                       sha256="0" * 64, phash="0" * 16))


def vision_role(role: str, preset: str) -> Callable[[], str]:
    def check() -> str:
        config = getattr(load_recipe(None, {"preset": preset}).annotate, role)
        handler = make_handler(role, config)
        (result,) = handler.run_inference([sample_record()], handler.load_model())
        return f"{config.model} ({config.kind}): {len(result.inference)} annotations"
    return check


def llm_role(preset: str) -> Callable[[], str]:
    def check() -> str:
        config = load_recipe(None, {"preset": preset}).synthesize
        handler = make_llm_handler(config)
        request = LlmRequest(messages=({"role": "user", "content": "Describe a red bus on a street."},))
        (result,) = handler.run_inference([request], handler.load_model())
        if result.inference.error:
            raise RuntimeError(result.inference.error)
        return f"{config.model} ({config.backend}): {result.inference.tokens_out} tokens"
    return check


def offline_llm_weights() -> str:
    path = smollm2_gguf_path()
    with open(path, "rb") as f:
        if f.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
            raise ValueError(f"{path} is not a GGUF file")
    return str(path)


def vllm_backend() -> str:
    import vllm

    from llavaforge.models.llm.vllm_backend import vllm_sampling_kwargs

    config = load_recipe(None, {"preset": "hub"}).synthesize
    vllm.SamplingParams(**vllm_sampling_kwargs(config.max_new_tokens, config.sampling, seed=0))
    return f"vllm {vllm.__version__} for {config.model}"


def checks(with_vllm: bool) -> dict[str, Callable[[], str]]:
    found: dict[str, Callable[[], str]] = {"import llavaforge.*": import_modules}
    for role in ROLES:
        found[f"{VISION_ROLE_PRESETS[role]} {role}"] = vision_role(role, VISION_ROLE_PRESETS[role])
    for role, preset in EXTRA_VISION_CHECKS:
        found[f"{preset} {role}"] = vision_role(role, preset)
    found["tiny llm"] = llm_role("tiny")
    found["offline llm weights"] = offline_llm_weights
    if with_vllm:
        found["hub llm backend"] = vllm_backend
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vllm", action="store_true", help="also check the vLLM backend (the image's `vllm` extra)")
    args = p.parse_args(argv)
    failed = []
    for name, check in checks(args.vllm).items():
        try:
            print(f"ok    {name}: {check()}", flush=True)
        except Exception:  # noqa: BLE001 -- every failure is reported, then the exit code says it
            failed.append(name)
            print(f"FAIL  {name}\n{traceback.format_exc()}", flush=True)
    if failed:
        print(f"{len(failed)} check(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
