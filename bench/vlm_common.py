"""What the VLM benchmarks (bench/gpu_vlm.py, bench/vlm_cpu.py) share.

Random models of real VLM shapes built in memory from their configs (speed depends on shapes,
not values) with the project's tiny tokenizer and the architecture's own processor; synthetic
JPEGs; the requests of two roles (dense caption, verification) from the packaged prompts; and
the baseline every ratio is measured against: plain batched `generate` (Pillow decode, the
processor, one left-padded `generate` call per batch), on images fitted to the same size.

Output rows of tokens the tokenizer lacks, and of its special tokens, are zeroed: every row
then writes exactly `new_tokens` decodable tokens with every method (equal work, comparable text).
"""

from __future__ import annotations

import io
import os
import time
from typing import Any, Callable

import numpy as np
import torch
import transformers as tf
from PIL import Image

from llavaforge.config.vlm import VlmConfig
from llavaforge.models.handler import decode_images
from llavaforge.models.llm.local_models import END_OF_TEXT, IM_END, build_tiny_tokenizer
from llavaforge.models.tiny import CONTENT_PARTS_CHAT_TEMPLATE, IDEFICS3_TOKENS
from llavaforge.models.vlm.base import GenerationSettings, VlmRequest, chat_messages
from llavaforge.models.vlm.hf import IMAGE_PART, HfVlmEngine
from llavaforge.models.vlm.images import fit_pil
from llavaforge.prompts.vision import load_vision_prompt, render_answers
from llavaforge.schemas.record import ImageInfo, content_key

QWEN_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_CHAT_TEMPLATE = CONTENT_PARTS_CHAT_TEMPLATE.replace("'<image>'", "'<|vision_start|><|image_pad|><|vision_end|>'")
MROPE = {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0}
QWEN2_VL_VISION = dict(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4, patch_size=14, spatial_merge_size=2,
                       temporal_patch_size=2)
SHAPES: dict[str, dict[str, Any]] = {
    # Qwen/Qwen2-VL-2B-Instruct and -7B-Instruct (config.json of each)
    "qwen2-vl-2b": {"family": "qwen2-vl", "vision": dict(QWEN2_VL_VISION, hidden_size=1536),
                    "text": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)},
    "qwen2-vl-7b": {"family": "qwen2-vl", "vision": dict(QWEN2_VL_VISION, hidden_size=3584),
                    "text": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                                 num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False)},
    # HuggingFaceTB/SmolVLM-Instruct (the hub preset's VLM option): SigLIP-so400m, 384 px crops, Llama 1.7B
    "smolvlm-2b": {"family": "smolvlm", "scale_factor": 3,
                   "vision": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                                  image_size=384, patch_size=14),
                   "text": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                                num_key_value_heads=32, vocab_size=49155)},
    # CPU: a SmolVLM layout small enough for a 2-core VM, large enough that encoding an image costs
    "smolvlm-cpu": {"family": "smolvlm", "scale_factor": 2,
                    "vision": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=4,
                                   image_size=224, patch_size=14),
                    "text": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                                 num_key_value_heads=2, vocab_size=2048)},
    "smolvlm-smoke": {"family": "smolvlm", "scale_factor": 2,
                      "vision": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                     image_size=56, patch_size=14),
                      "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                   num_key_value_heads=1, vocab_size=2048)},
}
VERIFY_ANSWERS = [
    ("What is on the table?", "A white cup of coffee on a saucer, with a spoon beside it."),
    ("How many people are in the picture?", "Two people sit at the table, one of them reading a newspaper."),
    ("What might happen next?", "The man will probably finish his coffee and leave for work, since he has his coat on."),
]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(device: str, fn: Callable[[], Any]) -> tuple[Any, float]:
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return result, time.perf_counter() - start


def _tokenizer(extra_tokens: list[str], template: str):
    tokenizer = build_tiny_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": extra_tokens})
    tokenizer.chat_template = template
    return tokenizer


def _silence_specials(model, tokenizer) -> None:
    """Zero the output rows of tokens the tokenizer lacks and of its special tokens (EOS included):
    greedy decoding then always writes `new_tokens` decodable tokens."""
    with torch.no_grad():
        weight = model.get_output_embeddings().weight
        weight[len(tokenizer):] = 0
        weight[tokenizer.all_special_ids] = 0
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids(IM_END)
    model.generation_config.pad_token_id = tokenizer.convert_tokens_to_ids(END_OF_TEXT)


def _image_processor_class(name: str):
    """The torchvision-backed image processor when torchvision imports (it runs on GPU tensors),
    else the Pillow one, across transformers versions: 5.2x names them `X` (torchvision) and
    `XPil`; earlier 5.x `XFast` (torchvision) and `X` (Pillow)."""
    import importlib.util

    has_torchvision = importlib.util.find_spec("torchvision") is not None
    if hasattr(tf, f"{name}Pil"):
        return getattr(tf, name) if has_torchvision else getattr(tf, f"{name}Pil")
    return getattr(tf, f"{name}Fast") if has_torchvision and hasattr(tf, f"{name}Fast") else getattr(tf, name)


def build(name: str, device: str, dtype: torch.dtype, max_image_side: int) -> tuple[Any, Any]:
    """(model, processor) of shape `name`, random weights, on `device`; SmolVLM's processor splits
    images of up to `max_image_side` into crops of its encoder's size."""
    shape = SHAPES[name]
    torch.manual_seed(0)
    if shape["family"] == "qwen2-vl":
        tokenizer = _tokenizer(QWEN_TOKENS, QWEN_CHAT_TEMPLATE)
        ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_TOKENS}
        config = tf.Qwen2VLConfig(
            text_config=dict(max_position_embeddings=32768, rope_parameters=dict(MROPE), **shape["text"]),
            vision_config=shape["vision"], image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
            tie_word_embeddings=shape["text"]["tie_word_embeddings"])
        image_processor = _image_processor_class("Qwen2VLImageProcessor")()
        processor = tf.Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        video_processor=tf.Qwen2VLVideoProcessor(), chat_template=QWEN_CHAT_TEMPLATE)
    else:
        tokenizer = _tokenizer(IDEFICS3_TOKENS, CONTENT_PARTS_CHAT_TEMPLATE)
        vision = shape["vision"]
        config = tf.Idefics3Config(text_config=dict(model_type="llama", max_position_embeddings=16384, **shape["text"]),
                                   vision_config=vision, scale_factor=shape["scale_factor"],
                                   image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
        size = vision["image_size"]
        image_processor = _image_processor_class("Idefics3ImageProcessor")(
            size={"longest_edge": max(size, max_image_side // size * size)}, max_image_size={"longest_edge": size})
        processor = tf.Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                         image_seq_len=(size // vision["patch_size"]) ** 2 // shape["scale_factor"] ** 2,
                                         chat_template=CONTENT_PARTS_CHAT_TEMPLATE)
    with torch.device(device):
        model = tf.AutoModelForImageTextToText.from_config(config, dtype=dtype)
    _silence_specials(model, tokenizer)
    model.set_attn_implementation("sdpa")  # the baseline runs transformers as shipped
    return model.eval(), processor


def jpegs(n: int, width: int = 640, height: int = 480) -> list[ImageInfo]:
    """Distinct synthetic photos-like JPEGs (smooth noise upscaled, so they compress like photos)."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(n):
        small = Image.fromarray(rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8))
        out = io.BytesIO()
        small.resize((width, height), Image.Resampling.BICUBIC).save(out, format="JPEG", quality=90)
        data = out.getvalue()
        images.append(ImageInfo(data, "jpg", width, height, content_key(data) * 2, ""))
    return images


def caption_requests(images: list[ImageInfo]) -> list[VlmRequest]:
    messages = tuple(load_vision_prompt("dense_caption").messages())
    return [VlmRequest(messages=messages, image=image) for image in images]


def verify_requests(images: list[ImageInfo]) -> list[VlmRequest]:
    messages = tuple(load_vision_prompt("verify").messages(render_answers(VERIFY_ANSWERS, 1200)))
    return [VlmRequest(messages=messages, image=image) for image in images]


def plain(model, processor, requests: list[VlmRequest], max_image_side: int, new_tokens: int,
          batch: int) -> list[str]:
    """The baseline: Pillow decode, the processor and one `generate` call per batch (greedy)."""
    processor.tokenizer.padding_side = "left"
    texts = []
    for start in range(0, len(requests), batch):
        chunk = requests[start:start + batch]
        images = [fit_pil(image, max_image_side) for image in decode_images([r.image for r in chunk])]
        prompts = [processor.apply_chat_template(chat_messages(r, IMAGE_PART, parts_everywhere=True), tokenize=False,
                                                 add_generation_prompt=True) for r in chunk]
        inputs = processor(text=prompts, images=[[image] for image in images], padding=True,
                           return_tensors="pt").to(model.device)
        inputs = {k: (v.to(model.dtype) if torch.is_floating_point(v) else v) for k, v in inputs.items()}
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=model.generation_config.pad_token_id)
        generated = out[:, inputs["input_ids"].shape[1]:]
        texts += [t.strip() for t in processor.tokenizer.batch_decode(generated, skip_special_tokens=True)]
    return texts


def engine(model, processor, device: str, max_image_side: int, batch: int, **hf: Any) -> HfVlmEngine:
    """llavaforge's hf VLM backend around the already-built model (what `load_engine` would load)."""
    config = VlmConfig(model="bench", device=device, dtype="bf16" if device == "cuda" else "fp32",
                       max_image_side=max_image_side, max_batch_size=batch, hf=hf)
    return HfVlmEngine(model, processor, config)


def run_engine(vlm: HfVlmEngine, requests: list[VlmRequest], new_tokens: int, batch: int) -> list[str]:
    settings = GenerationSettings(new_tokens, VlmConfig().sampling)
    texts = []
    for start in range(0, len(requests), batch):
        texts += [g.text for g in vlm.run(requests[start:start + batch], settings)]
    return texts


def agreement(texts: list[str], reference: list[str]) -> dict[str, float]:
    """How far texts match the baseline's (same requests): share equal, mean leading share equal."""
    pairs = list(zip(texts, reference))
    if not pairs:
        return {}
    leading = [len(os.path.commonprefix([a, b])) / max(1, len(b)) for a, b in pairs]
    return {"texts_equal_plain": round(sum(a == b for a, b in pairs) / len(pairs), 3),
            "leading_chars_equal_plain": round(sum(leading) / len(leading), 3)}
