"""The hf backend of the VLM roles on the tiny preset's random SmolVLM: batched output equals
one request at a time, one engine (and one cache of image encodings) serves every role that
names the same model, and a failed GPU decode falls back to Pillow."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llavaforge.config.recipe import load_recipe
from llavaforge.models.vlm import handler, hf
from llavaforge.models.vlm.base import GenerationSettings, VlmRequest
from llavaforge.models.vlm.handler import VlmHandler, load_engine, shared_engine
from llavaforge.models.vlm.hf import EncodingCache, split_per_image
from llavaforge.models.vlm.roles import DenseCaptionerHandler, VerifierHandler
from llavaforge.schemas.record import Conversation, Turn
from tests.conftest import make_record

ALL_ROLES = {"preset": "tiny", "annotate.dense_captioner.enabled": True, "verify.enabled": True,
             "synthesize.task_modes": {"detail": "vlm"}}


@pytest.fixture
def recipe():
    return load_recipe(None, ALL_ROLES)


def requests(n: int, offset: int = 0) -> list[VlmRequest]:
    return [VlmRequest(messages=({"role": "system", "content": "You describe photos."},
                                 {"role": "user", "content": "Describe this photo" + "!" * i}),
                       image=make_record(key=f"{i + offset:032x}", seed=i + offset).image, seed=i)
            for i in range(n)]


def test_a_batch_decodes_what_each_request_decodes_alone(recipe):
    config = recipe.synthesize.vlm.model_copy(update={"hf": recipe.synthesize.vlm.hf.model_copy(
        update={"image_cache_mb": 0})})
    engine = load_engine(config, "synthesize.vlm")
    settings = GenerationSettings(12, config.sampling)
    batched = engine.run(requests(4), settings)
    alone = [engine.run([r], settings)[0] for r in requests(4)]
    assert [g.text for g in batched] == [g.text for g in alone]
    assert all(g.text and g.tokens_out == 12 and g.tokens_in > 10 for g in batched)
    assert len(engine.encodings) == 0  # a 0 MB cache keeps nothing


def test_roles_naming_one_model_share_its_engine_and_encode_an_image_once(recipe, monkeypatch):
    monkeypatch.setattr(handler, "_engines", {})
    captioner = DenseCaptionerHandler(recipe.annotate.dense_captioner)
    verifier = VerifierHandler(recipe.verify)
    synthesizer = VlmHandler(recipe.synthesize.vlm, "synthesize.vlm", "synthesizer")
    engine = captioner.load_model()
    assert verifier.load_model() is engine and synthesizer.load_model() is engine
    records = [make_record(key=f"{i:032x}", seed=i) for i in range(3)]
    captions = captioner.run_inference(records, engine)
    assert all(len(result.inference) == 1 and result.inference[0].text for result in captions)
    assert (engine.encodings.misses, engine.encodings.hits) == (3, 0)
    judged = [r.replace(conversations=[Conversation("detail", [Turn("human", "<image>\nDescribe."),
                                                               Turn("gpt", "A photo.")])]) for r in records]
    verdicts = verifier.run_inference(judged, engine)
    assert (engine.encodings.misses, engine.encodings.hits) == (3, 3)  # the captioner's encodings, reused
    assert all(result.example is record for result, record in zip(verdicts, judged))


def test_cached_encodings_give_the_same_text(recipe):
    engine = load_engine(recipe.synthesize.vlm, "synthesize.vlm")
    settings = GenerationSettings(12, recipe.synthesize.vlm.sampling)
    first = engine.run(requests(3), settings)
    second = engine.run(requests(3), settings)
    assert engine.encodings.hits == 3 and [g.text for g in first] == [g.text for g in second]


def test_encoding_cache_drops_the_least_recently_used_past_its_budget():
    cache = EncodingCache(max_bytes=3 * 16)
    for key in "abc":
        cache.put(key, torch.zeros(4))  # 16 bytes each
    assert cache.get("a") is not None  # now the most recent
    cache.put("d", torch.zeros(4))
    assert cache.get("b") is None and cache.get("a") is not None and len(cache) == 3 and cache.bytes == 48
    cache.put("huge", torch.zeros(100))
    assert cache.get("huge") is None and len(cache) == 3


def test_split_per_image_knows_lists_and_stacked_tensors():
    per_image = [torch.zeros(4, 8), torch.ones(6, 8)]
    assert split_per_image(per_image, 2) == (per_image, False)
    stacked, is_stacked = split_per_image(torch.zeros(3, 5, 8), 3)
    assert is_stacked and len(stacked) == 3 and stacked[0].shape == (5, 8)
    assert split_per_image(torch.zeros(6, 8), 3) is None  # crops of several images in one tensor
    assert split_per_image(per_image, 3) is None


def test_the_gpu_image_path_and_its_fallback_to_pillow(recipe, monkeypatch):
    engine = load_engine(recipe.synthesize.vlm, "synthesize.vlm")
    batch = requests(2)
    processed = []
    monkeypatch.setattr(engine, "device", torch.device("cuda"))
    monkeypatch.setattr(engine, "max_image_side", 40)
    monkeypatch.setattr(engine, "_processed", lambda requests, images: processed.append(images) or images)
    monkeypatch.setattr(hf, "is_torchvision_backed", lambda processor: True)
    monkeypatch.setattr(hf, "torchvision_jpeg_decoder", lambda: object())

    def on_gpu(images, device):
        return [torch.from_numpy(np.array(hf.decode_images([image])[0])).permute(2, 0, 1) for image in images]

    monkeypatch.setattr(hf, "decode_images_on", on_gpu)
    decoded = engine.model_inputs(batch)
    assert all(isinstance(t, torch.Tensor) and max(t.shape[1:]) == 40 for t in decoded)

    def broken(images, device):
        raise RuntimeError("nvjpeg failed")

    monkeypatch.setattr(hf, "decode_images_on", broken)
    decoded = engine.model_inputs(batch)
    assert [image.size for image in decoded] == [(40, 30)] * 2 and engine.gpu_decode_fallbacks == 1

    def processor_refuses_tensors(requests, images):
        if isinstance(images[0], torch.Tensor):
            raise ValueError("unsupported input")
        return images

    monkeypatch.setattr(hf, "decode_images_on", on_gpu)
    monkeypatch.setattr(engine, "_processed", processor_refuses_tensors)
    assert [image.size for image in engine.model_inputs(batch)] == [(40, 30)] * 2
    assert engine.gpu_decode_fallbacks == 2


def test_a_model_that_does_not_load_names_the_role_field(recipe):
    broken = recipe.verify.model_copy(update={"model": "/nonexistent/vlm"})
    with pytest.raises(Exception, match=r"verify: cannot load vision-language model '/nonexistent/vlm'"):
        shared_engine(broken, "verify")


@pytest.mark.parametrize("static", [False, True])
def test_a_transformers_without_precomputed_encodings_in_forward_still_decodes(recipe, monkeypatch, static):
    """Before transformers 5.2x `generate` takes no `mm_encoder_outputs`: the generate path then
    encodes pixels itself (no cache); the static loop builds its own embeddings and keeps caching."""
    config = recipe.synthesize.vlm.model_copy(update={"hf": recipe.synthesize.vlm.hf.model_copy(
        update={"static_decode": static})})
    settings = GenerationSettings(12, config.sampling)
    reference = load_engine(config, "synthesize.vlm").run(requests(3), settings)
    monkeypatch.setattr(hf, "takes_precomputed_encodings", lambda model: False)
    engine = load_engine(config, "synthesize.vlm")
    assert (engine.encodings is not None) == static
    assert [g.text for g in engine.run(requests(3), settings)] == [g.text for g in reference]
