"""The tiny preset's VLM: a random SmolVLM-shaped (Idefics3) model built from its config with an
offline tokenizer, saved as safetensors and loaded back through from_pretrained."""

from __future__ import annotations

import transformers as tf

from llavaforge.config.presets import HUB_VLM, PRESETS, TINY_SMOLVLM, VLM_ROLE
from llavaforge.models.tiny import tiny_model_path


def test_tiny_vlm_has_the_hub_option_architecture_and_loads_from_safetensors():
    folder = tiny_model_path(TINY_SMOLVLM)
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    model = tf.AutoModelForImageTextToText.from_pretrained(folder, use_safetensors=True)
    processor = tf.AutoProcessor.from_pretrained(folder)
    assert model.config.model_type == "idefics3"  # SmolVLM-Instruct's architecture
    assert PRESETS["hub"].roles[VLM_ROLE].config["model"] == HUB_VLM
    assert type(processor).__name__ == "Idefics3Processor"
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}],
        tokenize=False, add_generation_prompt=True)
    assert "<image>" in text and text.endswith("assistant\n")
    assert model.generation_config.eos_token_id == processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
