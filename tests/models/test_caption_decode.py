"""Captioner `static_decode`: llavaforge's own greedy loop gives generate's captions."""

from __future__ import annotations

import pytest
import torch
import transformers as tf

from llavaforge.models.caption_decode import BlipGreedyDecoder
from llavaforge.models.captioner import CaptionerHandler
from llavaforge.config.annotate import CaptionerConfig
from llavaforge.models.handler import decode_rgb
from llavaforge.models.tiny import _bert_tokenizer, _image_processor_size, _only_words, _small_text, _small_vit
from tests.models.vision_samples import PHOTOS, photo


@pytest.fixture(scope="module")
def blip(tmp_path_factory) -> str:
    """A tiny random BLIP whose captions depend on the image (larger initial weights than the preset's)."""
    folder = tmp_path_factory.mktemp("blip")
    tokenizer = _bert_tokenizer()
    text = _small_text(len(tokenizer), bos_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id,
                       initializer_range=0.3)
    config = tf.BlipConfig(text_config=text, vision_config=_small_vit(initializer_range=0.3), projection_dim=32)
    torch.manual_seed(0)
    _only_words(tf.BlipForConditionalGeneration(config), tokenizer).save_pretrained(folder)
    processor = tf.BlipProcessor(image_processor=tf.BlipImageProcessor(size=_image_processor_size()),
                                 tokenizer=tokenizer)
    processor.save_pretrained(folder)
    return str(folder)


def handler(blip: str, **config) -> CaptionerHandler:
    return CaptionerHandler(CaptionerConfig(model=blip, kind="blip", max_new_tokens=12, max_batch_size=4, **config))


def captions(blip: str, records, **config) -> list[str]:
    captioner = handler(blip, **config)
    return [r.inference[0].text for r in captioner.run_inference(records, captioner.load_model())]


@pytest.fixture(scope="module")
def records():
    return [photo(name) for name in PHOTOS]


def test_static_decode_captions_like_generate_for_full_and_partial_batches(blip, records):
    expected = captions(blip, records, static_decode=False)
    assert len(set(expected)) > 2  # the photos get different captions: the comparison can fail
    assert captions(blip, records, static_decode=True) == expected  # 6 images: more rows than the bucket of 4
    assert captions(blip, records[:3], static_decode=True) == expected[:3]  # padded to the batch size


def test_static_decode_is_the_cuda_default_only_where_it_applies():
    assert CaptionerConfig(device="cuda").uses_static_decode
    assert not CaptionerConfig().uses_static_decode  # cpu
    assert not CaptionerConfig(device="cuda", num_captions=2).uses_static_decode
    assert not CaptionerConfig(device="cuda", kind="git").uses_static_decode
    with pytest.raises(ValueError, match="static_decode"):
        CaptionerConfig(static_decode=True, prompt="a picture of")


@pytest.mark.slow  # CPU inductor builds C++ kernels
def test_compiled_step_captions_like_the_eager_loop(blip, records):
    captioner = handler(blip)
    model = captioner.load_model()
    pixels = captioner._inputs([decode_rgb(r.image.data) for r in records[:4]], model)["pixel_values"]
    eager = BlipGreedyDecoder(model.model, 12, compile=False, rows=4).caption_ids(pixels)
    compiled = BlipGreedyDecoder(model.model, 12, compile=True, rows=4)
    assert compiled.caption_ids(pixels).tolist() == eager.tolist()
    assert compiled.caption_ids(pixels[:2]).tolist() == eager[:2].tolist()
