"""The `tiny` preset's models: random-initialised small models of the hub architectures.

Each is built from its transformers config with a fixed seed, saved with `save_pretrained`
(model, image processor, tokenizer) into `cache_dir("tiny", name)` once, and then loaded
through the same `from_pretrained` path hub models use. Tokenizers are built from a small
word list written here, so nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable

import torch
import transformers as tf

from llavaforge.config.presets import TINY_PREFIX
from llavaforge.models.cache import cache_dir
from llavaforge.models.labels import coco_classes

TINY_SEED = 0
IMAGE_SIZE = 32  # pixels: small enough that CPU tests run in milliseconds per image
_BUILD_VERSION = "3"  # bump when a builder changes, so cached folders are rebuilt

WORDS = (
    "a an the of on in with and at near next to is are two three small large red blue green "
    "white black brown photo picture image view close up man woman people dog cat bird car bus "
    "street road table cup coffee plate food tree sky water building room sitting standing "
    "holding looking playing walking grass field city wall window light sign book"
).split() + [w for label in coco_classes() for w in label.split()]


def _bert_tokenizer() -> tf.BertTokenizer:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(WORDS))
    return tf.BertTokenizer(vocab={tok: i for i, tok in enumerate(vocab)})


def _clip_tokenizer() -> tf.CLIPTokenizer:
    """Byte-level BPE with single-byte tokens only (no merges): any text tokenizes."""
    from tokenizers.pre_tokenizers import ByteLevel

    chars = sorted(ByteLevel.alphabet())
    # specials last: OWL-ViT/OWLv2 treat a query whose first id is 0 as padding
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return tf.CLIPTokenizer(vocab={tok: i for i, tok in enumerate(tokens)}, merges=[])


def _only_words(model: torch.nn.Module, tokenizer) -> torch.nn.Module:
    """Random weights emit special tokens (an empty caption) and stop early; pushing their
    output bias down makes a tiny captioner write words until `max_new_tokens`."""
    vocab_size = len(tokenizer)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") and param.shape == (vocab_size,):
                param[tokenizer.all_special_ids] = -1e4
    return model


def _small_vit(**extra) -> dict:
    return dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                image_size=IMAGE_SIZE, patch_size=8, **extra)


def _small_text(vocab_size: int, **extra) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=64, **extra)


def _image_processor_size() -> dict:
    return {"height": IMAGE_SIZE, "width": IMAGE_SIZE}


def _build_blip(folder: Path) -> None:
    tokenizer = _bert_tokenizer()
    text = _small_text(len(tokenizer), bos_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id)
    config = tf.BlipConfig(text_config=text, vision_config=_small_vit(), projection_dim=32)
    _only_words(tf.BlipForConditionalGeneration(config), tokenizer).save_pretrained(folder)
    image_processor = tf.BlipImageProcessor(size=_image_processor_size())
    tf.BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def _build_git(folder: Path) -> None:
    tokenizer = _bert_tokenizer()
    config = tf.GitConfig(vision_config=_small_vit(), **_small_text(
        len(tokenizer), bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id))
    _only_words(tf.GitForCausalLM(config), tokenizer).save_pretrained(folder)
    image_processor = tf.CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size=_image_processor_size())
    tf.GitProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def _build_vision_encoder_decoder(folder: Path) -> None:
    tokenizer = _bert_tokenizer()
    decoder = tf.BertConfig(**_small_text(len(tokenizer), is_decoder=True, add_cross_attention=True))
    config = tf.VisionEncoderDecoderConfig.from_encoder_decoder_configs(tf.ViTConfig(**_small_vit()), decoder)
    config.decoder_start_token_id = tokenizer.cls_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.sep_token_id
    _only_words(tf.VisionEncoderDecoderModel(config=config), tokenizer).save_pretrained(folder)
    tf.ViTImageProcessor(size=_image_processor_size()).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _coco_labels() -> dict:
    return {"id2label": dict(enumerate(coco_classes())), "label2id": {n: i for i, n in enumerate(coco_classes())}}


def _small_resnet() -> tf.ResNetConfig:
    return tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1],
                           out_features=["stage4"])


def _build_detr(folder: Path) -> None:
    config = tf.DetrConfig(
        use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=_small_resnet(),
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=10, **_coco_labels())
    tf.DetrForObjectDetection(config).save_pretrained(folder)
    tf.DetrImageProcessor(size={"shortest_edge": IMAGE_SIZE, "longest_edge": 2 * IMAGE_SIZE}).save_pretrained(folder)


def _build_rt_detr(folder: Path) -> None:
    backbone = tf.RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1],
                                     out_features=["stage2", "stage3", "stage4"])
    config = tf.RTDetrConfig(
        backbone_config=backbone, use_pretrained_backbone=False, d_model=32, encoder_hidden_dim=32,
        encoder_in_channels=[16, 16, 16], decoder_in_channels=[32, 32, 32], encoder_ffn_dim=64,
        encoder_attention_heads=2, decoder_layers=1, decoder_ffn_dim=64, decoder_attention_heads=2,
        num_queries=10, **_coco_labels())
    tf.RTDetrForObjectDetection(config).save_pretrained(folder)
    tf.RTDetrImageProcessor(size=_image_processor_size()).save_pretrained(folder)


def _build_owlv2(folder: Path) -> None:
    tokenizer = _clip_tokenizer()
    config = tf.Owlv2Config(
        text_config=_small_text(len(tokenizer),
                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                pad_token_id=tokenizer.eos_token_id),
        vision_config=_small_vit(), projection_dim=32)
    tf.Owlv2ForObjectDetection(config).save_pretrained(folder)
    image_processor = tf.Owlv2ImageProcessor(size=_image_processor_size())
    tf.Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def _build_clip(folder: Path) -> None:
    tokenizer = _clip_tokenizer()
    config = tf.CLIPConfig(
        text_config=_small_text(len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id),
        vision_config=_small_vit(), projection_dim=32)
    tf.CLIPModel(config).save_pretrained(folder)
    image_processor = tf.CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size=_image_processor_size())
    tf.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def _build_classifier(folder: Path) -> None:
    config = tf.ViTConfig(**_small_vit(), **_coco_labels())
    tf.ViTForImageClassification(config).save_pretrained(folder)
    tf.ViTImageProcessor(size=_image_processor_size()).save_pretrained(folder)


# SmolVLM's layout (Idefics3): the image as `<image>` in the chat, expanded by the processor.
IDEFICS3_TOKENS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
CONTENT_PARTS_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
VLM_IMAGE_SIZE = 56  # 16 patches of 14 px, merged 2x2: 4 image tokens per image


def _build_smolvlm(folder: Path) -> None:
    """A random SmolVLM-shaped (Idefics3: SigLIP-style encoder, pixel shuffle, Llama decoder)
    chat model with the tiny LLM's tokenizer; special tokens get zero output weights, so it
    writes words until `max_new_tokens` instead of stopping at once."""
    from llavaforge.models.llm.local_models import END_OF_TEXT, IM_END, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": IDEFICS3_TOKENS})
    tokenizer.chat_template = CONTENT_PARTS_CHAT_TEMPLATE
    text = dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                initializer_range=0.5, tie_word_embeddings=True, bos_token_id=None,
                eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
                pad_token_id=tokenizer.convert_tokens_to_ids(END_OF_TEXT))
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  image_size=VLM_IMAGE_SIZE, patch_size=14)
    config = tf.Idefics3Config(text_config=text, vision_config=vision, scale_factor=2, tie_word_embeddings=True,
                               image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    model = tf.Idefics3ForConditionalGeneration(config)
    with torch.no_grad():
        model.get_output_embeddings().weight[tokenizer.all_special_ids] = 0
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.save_pretrained(folder)
    # Pillow backend whatever is installed: tiny models are for CPU runs
    image_processor_class = getattr(tf, "Idefics3ImageProcessorPil", None) or tf.Idefics3ImageProcessor
    image_processor = image_processor_class(size={"longest_edge": VLM_IMAGE_SIZE}, do_image_splitting=False,
                                                max_image_size={"longest_edge": VLM_IMAGE_SIZE})
    tokens_per_image = (VLM_IMAGE_SIZE // 14) ** 2 // 4
    tf.Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=tokens_per_image,
                         chat_template=CONTENT_PARTS_CHAT_TEMPLATE).save_pretrained(folder)


BUILDERS: dict[str, Callable[[Path], None]] = {
    "blip": _build_blip,
    "git": _build_git,
    "vit-bert": _build_vision_encoder_decoder,
    "detr": _build_detr,
    "rt-detr": _build_rt_detr,
    "owlv2": _build_owlv2,
    "clip": _build_clip,
    "vit-classifier": _build_classifier,
    "smolvlm": _build_smolvlm,
}

_build_lock = threading.Lock()


def tiny_model_path(model_id: str) -> Path:
    """The local folder of a `llavaforge-tiny/NAME` model, built on first use (seeded)."""
    name = model_id[len(TINY_PREFIX):]
    if name not in BUILDERS:
        raise ValueError(f"unknown tiny model {model_id!r} (known: {', '.join(TINY_PREFIX + n for n in BUILDERS)})")
    parent = cache_dir("tiny")
    folder = parent / f"{name}-v{_BUILD_VERSION}"
    with _build_lock:
        if not folder.exists():
            # Build into a temporary sibling and rename: a half-built folder is never loaded,
            # and of two processes building at once the second rename fails harmlessly.
            staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=parent))
            torch.manual_seed(TINY_SEED)
            try:
                BUILDERS[name](staging)
                os.rename(staging, folder)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return folder


def is_tiny(model_id: str) -> bool:
    return model_id.startswith(TINY_PREFIX)
