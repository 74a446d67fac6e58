import pytest

from llavaforge.models.llm.base import LlmRequest
from llavaforge.config.synthesize import HfBackendConfig, SamplingConfig
from llavaforge.models.llm.hf import HfGenerator, HfLlmHandler, completion_prompt
from llavaforge.config.presets import TINY_QWEN2
from llavaforge.models.llm.local_models import resolve_model
from llavaforge.prompts.library import load_library


@pytest.fixture(scope="module")
def requests_():
    library = load_library()
    out = []
    for i, (task, context) in enumerate([("conversation", "Tags: cat, sofa"),
                                         ("detail", "Captions:\n- a red car parked near a tall building at night"),
                                         ("conversation", "Tags: dog"), ("reasoning", "Tags: cake, candle")]):
        messages = library.task(task).messages(context, 1)
        out.append(LlmRequest(tuple(messages), seed=i, shared_prefix=len(messages) - 1, tag=i))
    return out


def generator(**config) -> HfGenerator:
    return HfGenerator.load(TINY_QWEN2, HfBackendConfig(**config), 12, SamplingConfig())


def test_tiny_model_is_built_once_and_loads_through_from_pretrained():
    path = resolve_model(TINY_QWEN2)
    assert resolve_model(TINY_QWEN2) == path and path.endswith("tiny--qwen2-v2")
    assert resolve_model("some/hub-model") == "some/hub-model"


def test_prefix_reuse_gives_the_same_greedy_output_as_full_prompts(requests_):
    plain = generator(prefix_reuse=False).generate(requests_)
    reused_generator = generator(prefix_reuse=True)
    reused = reused_generator.generate(requests_)
    assert [g.text for g in reused] == [g.text for g in plain]
    assert [g.tokens_in for g in reused] == [g.tokens_in for g in plain]
    assert len(reused_generator._prefix_caches) == 3  # one per task prefix
    same_task = [requests_[0], requests_[2]]  # one shared prefix: placed in every row as a view
    assert [g.text for g in reused_generator.generate(same_task)] == [plain[0].text, plain[2].text]
    assert len({g.text for g in plain}) > 1  # different prompts, different gibberish


def test_results_keep_the_batch_order_and_count_tokens(requests_):
    gen = generator()
    forward = gen.generate(requests_)
    backward = gen.generate(list(reversed(requests_)))
    assert [g.text for g in reversed(backward)] == [g.text for g in forward]
    for request, g in zip(requests_, forward):
        assert g.error == "" and 0 < g.tokens_out <= 12
        assert g.tokens_in >= len(gen.tokenizer(gen.render(request.messages)).input_ids) - 1


def test_seeded_sampling_repeats_and_depends_on_the_seed(requests_):
    gen = HfGenerator.load(TINY_QWEN2, HfBackendConfig(), 12, SamplingConfig(temperature=1.0))
    first = [g.text for g in gen.generate(requests_[:1])]
    assert first == [g.text for g in gen.generate(requests_[:1])]
    other_seed = requests_[0]._replace(seed=12345)
    assert first != [g.text for g in gen.generate([other_seed])]


def test_completion_style_for_base_models(requests_):
    gen = generator(prompt_style="completion")
    prompt = gen.render(requests_[0].messages)
    assert prompt == completion_prompt(requests_[0].messages)
    assert prompt.endswith("### Output\n") and "<|im_start|>" not in prompt
    assert all("\n### " not in g.text for g in gen.generate(requests_))


@pytest.mark.parametrize("prefix_reuse", [True, False])
def test_static_cache_decodes_exactly_what_generate_does(requests_, prefix_reuse):
    expected = [g.text for g in generator(prefix_reuse=False).generate(requests_)]
    static = generator(static_cache=True, prefix_reuse=prefix_reuse)
    assert static.static is not None and static.reuse_prefix is prefix_reuse
    assert [g.text for g in static.generate(requests_)] == expected  # three task prefixes, four rows
    assert [g.text for g in static.generate(requests_[:1] * 3)] == expected[:1] * 3  # one shared prefix


def test_decoding_defaults_follow_the_device():
    assert HfBackendConfig().decoding(on_gpu=True) == (True, True)
    assert HfBackendConfig().decoding(on_gpu=False) == (False, False)
    assert HfBackendConfig(static_cache=True).decoding(on_gpu=False) == (True, False)
    assert HfBackendConfig(compile=False).decoding(on_gpu=True) == (True, False)
    with pytest.raises(ValueError, match="static cache"):
        HfBackendConfig(static_cache=False, compile=True)


def test_handler_runs_a_batch_through_the_beam_interface(requests_):
    handler = HfLlmHandler(TINY_QWEN2, HfBackendConfig(), 8, SamplingConfig(), max_batch_size=4)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 1, "max_batch_size": 4}
    results = list(handler.run_inference(requests_, handler.load_model()))
    assert [r.example.tag for r in results] == [0, 1, 2, 3] and results[0].model_id == TINY_QWEN2
