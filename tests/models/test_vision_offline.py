"""The offline preset's real models on real photos (scikit-image samples bundled in examples/)."""

from __future__ import annotations

import pytest

from llavaforge.config.annotate import OcrConfig, TaggerConfig
from llavaforge.models.ocr import OcrHandler
from llavaforge.config.presets import PRESETS
from llavaforge.models.tagger import TaggerHandler
from tests.models.vision_samples import photo, rendered_text

OFFLINE = PRESETS["offline"].roles


@pytest.fixture(scope="module")
def top_tags():
    handler = TaggerHandler(TaggerConfig(**OFFLINE["tagger"].config))
    records = [photo("chelsea"), photo("coffee")]
    results = handler.run_inference(records, handler.load_model())
    return {r.example.source.member: [t.label for t in r.inference] for r in results}


def test_chelsea_is_tagged_as_a_cat(top_tags):
    assert any("cat" in label.split(", ")[-1] for label in top_tags["chelsea.jpg"]), top_tags


def test_coffee_is_tagged_as_a_cup_or_espresso(top_tags):
    assert {"cup", "espresso", "coffee mug"} & set(top_tags["coffee.jpg"]), top_tags


def test_ocr_reads_rendered_text():
    handler = OcrHandler(OcrConfig(**OFFLINE["ocr"].config))
    (result,) = handler.run_inference([rendered_text("LLAVAFORGE")], handler.load_model())
    lines = result.inference
    assert "".join(line.text for line in lines).replace(" ", "").upper() == "LLAVAFORGE"
    for line in lines:
        assert 0.5 <= line.score <= 1.0 and line.model == "rapidocr"
        x1, y1, x2, y2 = line.box
        assert 0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1
