import pytest
import torch
import transformers as tf
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from llavaforge.models.llm.base import LlmRequest
from llavaforge.config.synthesize import HfBackendConfig, SamplingConfig
from llavaforge.models.llm.hf import HfGenerator
from llavaforge.config.presets import TINY_QWEN2
from llavaforge.models.llm.static_decode import TokenPicker, batch_bucket, grouped_sdpa, unsupported_reason
from llavaforge.prompts.library import load_library


@pytest.fixture(scope="module")
def requests_():
    library = load_library()
    contexts = [("conversation", "Tags: cat, sofa"), ("detail", "Captions:\n- a red car at night"),
                ("reasoning", "Tags: cake, candle")]
    return [LlmRequest(tuple(m), seed=i, shared_prefix=len(m) - 1)
            for i, m in enumerate(library.task(t).messages(c, 1) for t, c in contexts)]


def static_generator(sampling: SamplingConfig, **config) -> HfGenerator:
    return HfGenerator.load(TINY_QWEN2, HfBackendConfig(static_cache=True, **config), 10, sampling)


class _Module(torch.nn.Module):
    is_causal = True
    num_key_value_groups = 4  # transformers repeats each key/value head this often


def test_grouped_decoding_attention_equals_sdpa_with_repeated_heads():
    torch.manual_seed(0)
    query, key, value = torch.randn(3, 8, 1, 16), torch.randn(3, 2, 40, 16), torch.randn(3, 2, 40, 16)
    mask = torch.rand(3, 1, 1, 40) > 0.3
    mask[..., 0] = True
    expected, _ = sdpa_attention_forward(_Module(), query, key, value, mask, scaling=0.25)
    grouped, _ = grouped_sdpa(_Module(), query, key, value, mask, scaling=0.25)
    assert grouped.shape == expected.shape == (3, 1, 8, 16)
    torch.testing.assert_close(grouped, expected, rtol=1e-5, atol=1e-5)


def test_models_the_loop_cannot_serve_exactly_are_named():
    def model(**config):
        return tf.Qwen2ForCausalLM(tf.Qwen2Config(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                  num_attention_heads=2, num_key_value_heads=1, vocab_size=64,
                                                  **config))
    assert unsupported_reason(model()) is None
    assert unsupported_reason(model(use_sliding_window=True, sliding_window=8)) is not None
    assert [batch_bucket(n) for n in (1, 2, 3, 8, 9, 256)] == [1, 2, 4, 8, 16, 256]


def test_sampled_static_decoding_repeats_with_its_seed_and_changes_with_another(requests_):
    gen = static_generator(SamplingConfig(temperature=1.0, top_p=0.9))
    first = [g.text for g in gen.generate(requests_)]
    assert first == [g.text for g in gen.generate(requests_)]
    reseeded = [r._replace(seed=r.seed + 100) for r in requests_]
    assert first != [g.text for g in gen.generate(reseeded)]


def test_repetition_penalty_steers_away_from_prompt_and_generated_tokens():
    logits = torch.tensor([[5.0, 4.0, 1.0], [5.0, 4.0, 1.0]])
    picker = TokenPicker([[0], [2]], temperature=0.0, top_p=1.0, repetition_penalty=2.0, seed=0)
    assert picker(logits, 0).tolist() == [1, 0]  # row 0 saw token 0 in its prompt: 5/2 < 4
    # row 0 has now seen 0 and 1 (2.5, 2.0, 1.0); row 1 has seen 2 and 0 (2.5, 4.0, 0.5)
    assert picker(logits, 1).tolist() == [0, 1]


@pytest.mark.slow
def test_compiled_step_decodes_what_the_eager_loop_does(requests_):
    eager = [g.text for g in static_generator(SamplingConfig(), compile=False).generate(requests_)]
    compiled = static_generator(SamplingConfig(), compile=True)
    assert compiled.static.compiled
    assert [g.text for g in compiled.generate(requests_)] == eager
    assert [g.text for g in compiled.generate(requests_)] == eager  # the second batch replays the compiled step
