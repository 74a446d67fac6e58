"""The openai backend of the VLM roles: images travel as data URLs before the prompt text, faults
are retried within bounds, the key goes only into the Authorization header."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from llavaforge.config.vlm import VlmConfig
from llavaforge.models.loading import ModelLoadError
from llavaforge.models.vlm.base import GenerationSettings, VlmRequest
from llavaforge.models.vlm.handler import VlmHandler, load_engine
from llavaforge.schemas.record import ImageInfo
from tests.conftest import image_bytes
from tests.models.vlm.image_fault_server import ImageFaultServer

KEY = "sk-vlm-secret-never-written-9"
GOOD = "A red bus on a street."


def config(server, **overrides) -> VlmConfig:
    return VlmConfig(model="served-vlm", backend="openai", max_image_side=64, max_new_tokens=33,
                     openai={"base_url": server.base_url, "api_key_env": "LF_VLM_KEY", "timeout_s": 0.5,
                             "max_retries": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.05, **overrides})


def request(marker: str, image: ImageInfo) -> VlmRequest:
    return VlmRequest(messages=({"role": "system", "content": "You describe photos."},
                                {"role": "user", "content": f"Describe it. {marker}"}), image=image)


def jpeg(width: int, height: int, seed: int = 0) -> ImageInfo:
    return ImageInfo(image_bytes(width, height, seed=seed), "jpg", width, height, "", "")


@pytest.mark.parametrize("fault", [("429", 0), ("500",), ("slow", 1.0), ("badjson",), ("nochoices",)])
def test_each_fault_is_retried_and_the_image_goes_as_a_data_url_every_time(fault, monkeypatch):
    monkeypatch.setenv("LF_VLM_KEY", KEY)
    small = jpeg(48, 32)
    with ImageFaultServer({"M": [fault, ("ok", GOOD)]}) as server:
        handler = VlmHandler(config(server), "verify", "verifier")
        (result,) = handler.run_inference([request("M", small)], handler.load_model())
    assert result.inference.text == GOOD and result.inference.error == ""
    assert server.calls["M"] == 2 and server.authorizations == [f"Bearer {KEY}"] * 2
    assert server.images() == [("image/jpeg", small.data)] * 2  # fits max_image_side: the stored bytes
    body = server.bodies[0]
    assert body["model"] == "served-vlm" and body["max_tokens"] == 33 and body["temperature"] == 0.0
    system, user = body["messages"]
    assert system == {"role": "system", "content": "You describe photos."}
    assert [part["type"] for part in user["content"]] == ["image_url", "text"]  # the image first
    assert KEY not in str(server.bodies)


def test_a_large_image_is_downscaled_and_reencoded_before_it_is_sent(monkeypatch):
    monkeypatch.setenv("LF_VLM_KEY", KEY)
    png = ImageInfo(image_bytes(200, 100, fmt="PNG"), "png", 200, 100, "", "")
    with ImageFaultServer({}) as server:
        engine = load_engine(config(server), "annotate.dense_captioner")
        engine.run([request("", png)], GenerationSettings(8, config(server).sampling))
    ((mime, data),) = server.images()
    assert mime == "image/jpeg" and Image.open(io.BytesIO(data)).size == (64, 32)


def test_a_request_that_keeps_failing_comes_back_as_an_error_without_the_key(monkeypatch):
    monkeypatch.setenv("LF_VLM_KEY", KEY)
    with ImageFaultServer({"DOWN": [("500",)]}) as server:
        engine = load_engine(config(server, request_budget=2), "verify")
        down, other = engine.run([request("DOWN", jpeg(8, 8)), request("OTHER", jpeg(8, 8))],
                                 GenerationSettings(8, config(server).sampling))
    assert down.error.startswith("gave up after") and KEY not in down.error + other.error
    assert len(server.bodies) == 2 and "request budget exhausted" in down.error + other.error  # one budget per engine


def test_a_missing_key_names_the_role_field(monkeypatch):
    monkeypatch.delenv("LF_VLM_KEY", raising=False)
    with ImageFaultServer({}) as server:
        with pytest.raises(ModelLoadError, match=r"verify\.openai\.api_key_env"):
            load_engine(config(server), "verify")
