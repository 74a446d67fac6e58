"""The embedding-prefilled static loop decodes what `generate` decodes, token for token, for
every architecture it serves: SmolVLM (Idefics3, through the tiny preset's model and processor)
and Qwen2-VL / Qwen2.5-VL (random small models fed hand-built inputs: their processors need
torchvision, which CPU test machines lack)."""

from __future__ import annotations

import pytest
import torch
import transformers as tf

from llavaforge.config.recipe import load_recipe
from llavaforge.models.vlm.base import GenerationSettings, VlmRequest
from llavaforge.models.vlm.handler import load_engine
from llavaforge.models.vlm.hf import split_per_image
from llavaforge.models.vlm.static_decode import (VlmStaticDecoder, prompt_embeddings, prompt_positions,
                                                 static_decode_refusal)
from tests.conftest import make_record

IMAGE, VIDEO, START, END, PAD, EOS = 250, 251, 252, 253, 0, 2


def tiny_vlm_config(**hf):
    config = load_recipe(None, {"preset": "tiny"}).synthesize.vlm
    return config.model_copy(update={"hf": config.hf.model_copy(update=hf)})


def requests(n: int) -> list[VlmRequest]:
    # prompts of different lengths: left padding differs per row
    return [VlmRequest(messages=({"role": "system", "content": "You describe photos."},
                                 {"role": "user", "content": "Describe this photo" + " please" * i}),
                       image=make_record(key=f"{i:032x}", seed=i).image, seed=i) for i in range(n)]


@pytest.mark.parametrize("sampling", [{}, {"repetition_penalty": 1.3}])
def test_smolvlm_static_loop_matches_generate(sampling):
    config = tiny_vlm_config(static_decode=False)
    settings = GenerationSettings(20, config.sampling.model_copy(update=sampling))
    reference = load_engine(config, "test").run(requests(5), settings)
    engine = load_engine(tiny_vlm_config(static_decode=True), "test")
    assert engine.static is not None and not engine.static.compiled  # no compiling on CPU
    decoded = engine.run(requests(5), settings)
    assert [g.text for g in decoded] == [g.text for g in reference]
    assert [g.tokens_out for g in decoded] == [g.tokens_out for g in reference] == [20] * 5
    again = engine.run(requests(5)[:3], settings)  # a partial batch reuses the cache (padded rows)
    assert [g.text for g in again] == [g.text for g in reference[:3]]


def qwen_vl(config_class, model_class, **vision):
    text = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=4096, eos_token_id=EOS, pad_token_id=PAD,
                bos_token_id=None, initializer_range=0.5,
                rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0})
    config = config_class(text_config=text, vision_config=vision, image_token_id=IMAGE, video_token_id=VIDEO,
                          vision_start_token_id=START, vision_end_token_id=END)
    torch.manual_seed(0)
    return model_class(config).eval()


def qwen_inputs(grids: list[list[int]], temporal: int = 2, patch: int = 14) -> dict:
    """Two left-padded prompts of different lengths, one image each, as Qwen2-VL's processor lays them out."""
    rows = []
    for i, (t, h, w) in enumerate(grids):
        rows.append([5 + i, 6, 7, START] + [IMAGE] * (t * h * w // 4) + [END] + [8 + i, 9, 10] * (i + 1))
    width = max(map(len, rows))
    ids = torch.tensor([[PAD] * (width - len(r)) + r for r in rows])
    patches = sum(t * h * w for t, h, w in grids)
    return {"input_ids": ids, "attention_mask": (ids != PAD).long(), "image_grid_thw": torch.tensor(grids),
            "mm_token_type_ids": (ids == IMAGE).int(),
            "pixel_values": torch.randn(patches, 3 * temporal * patch * patch, generator=torch.Generator().manual_seed(1))}


@pytest.mark.parametrize("name", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen_vl_static_loop_matches_generate(name):
    if name == "qwen2_vl":
        model = qwen_vl(tf.Qwen2VLConfig, tf.Qwen2VLForConditionalGeneration, depth=2, embed_dim=32, hidden_size=64,
                        num_heads=2, mlp_ratio=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    else:
        model = qwen_vl(tf.Qwen2_5_VLConfig, tf.Qwen2_5_VLForConditionalGeneration, depth=2, hidden_size=32,
                        out_hidden_size=64, intermediate_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
                        temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1])
    inputs = qwen_inputs([[1, 4, 4], [1, 4, 6]])
    with torch.inference_mode():
        reference = model.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=PAD,
                                   eos_token_id=[EOS])[:, inputs["input_ids"].shape[1]:]
        assert static_decode_refusal(model) is None
        encoded = model.get_image_features(pixel_values=inputs["pixel_values"],
                                           image_grid_thw=inputs["image_grid_thw"], return_dict=True).pooler_output
        encodings, _ = split_per_image(encoded, 2)
        decoder = VlmStaticDecoder(model, PAD, {EOS}, compile=False, rows=4)
        embeds = prompt_embeddings(model, inputs["input_ids"], encodings)
        positions, offsets = prompt_positions(model, inputs)
        assert positions.shape[0] == 3 and offsets.shape == (2, 1)
        decoded = decoder.decode_embedded(embeds, inputs["attention_mask"], positions, offsets, 12)
    for row, expected in zip(decoded, reference.tolist()):
        end = next((i + 1 for i, t in enumerate(expected) if t == EOS), len(expected))
        assert row[:end] == expected[:end]


def test_architectures_the_loop_was_not_checked_on_use_generate():
    llava = tf.LlavaForConditionalGeneration(tf.LlavaConfig(
        text_config=dict(model_type="llama", vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2),
        vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=28, patch_size=14)))
    assert "llava" in static_decode_refusal(llava)
