"""Every vision handler on tiny models (CPU): well-formed annotations for a batch of mixed sizes."""

from __future__ import annotations

import pytest

from llavaforge.models.captioner import CaptionerHandler
from llavaforge.config.annotate import CaptionerConfig, DetectorConfig, TaggerConfig
from llavaforge.models.detector import DetectorHandler
from llavaforge.models.tagger import TaggerHandler
from llavaforge.schemas.record import Caption, DetectedObject, Tag
from tests.models.vision_samples import mixed_sizes, poisoned

TINY = "llavaforge-tiny/"

CAPTIONERS = [
    CaptionerConfig(model=TINY + "blip", kind="blip", max_new_tokens=6),
    CaptionerConfig(model=TINY + "blip", kind="blip", max_new_tokens=6, prompt="a photo of", num_captions=2),
    CaptionerConfig(model=TINY + "git", kind="git", max_new_tokens=6),
    CaptionerConfig(model=TINY + "vit-bert", kind="vision-encoder-decoder", max_new_tokens=6, num_captions=2),
]
DETECTORS = [
    DetectorConfig(model=TINY + "detr", kind="detr", score_threshold=0.0, max_objects=4),
    DetectorConfig(model=TINY + "rt-detr", kind="rt-detr", score_threshold=0.0, max_objects=4),
    DetectorConfig(model=TINY + "owlv2", kind="owlv2", score_threshold=0.0, max_objects=4, labels=["cat", "cup"]),
]
TAGGERS = [
    TaggerConfig(model=TINY + "clip", kind="clip", top_k=3, score_threshold=0.0, vocabulary=["cat", "cup", "sky"]),
    TaggerConfig(model=TINY + "vit-classifier", kind="classification", top_k=3, score_threshold=0.0),
]


def _annotate(handler, records):
    results = list(handler.run_inference(records, handler.load_model()))
    assert [r.example for r in results] == records
    assert all(r.model_id == handler.config.model for r in results)
    return [r.inference for r in results]


def _in_unit(value: float) -> bool:
    return 0.0 <= value <= 1.0


@pytest.mark.parametrize("config", CAPTIONERS, ids=lambda c: f"{c.kind}-{c.num_captions}")
def test_captioner_writes_captions_per_image(config):
    outputs = _annotate(CaptionerHandler(config), mixed_sizes())
    for captions in outputs:
        assert 1 <= len(captions) <= config.num_captions
        assert all(isinstance(c, Caption) and c.text.strip() and c.model == config.model for c in captions)
        if config.prompt:
            assert not any(c.text.lower().startswith(config.prompt) for c in captions)


@pytest.mark.parametrize("config", DETECTORS, ids=lambda c: c.kind)
def test_detector_boxes_are_normalised(config):
    outputs = _annotate(DetectorHandler(config), mixed_sizes())
    assert any(outputs), "threshold 0 keeps some objects"
    for objects in outputs:
        assert len(objects) <= config.max_objects
        assert [o.score for o in objects] == sorted((o.score for o in objects), reverse=True)
        for o in objects:
            assert isinstance(o, DetectedObject) and o.label and _in_unit(o.score)
            x1, y1, x2, y2 = o.box
            assert all(_in_unit(v) for v in o.box) and x1 <= x2 and y1 <= y2
            if config.labels:
                assert o.label in config.labels


@pytest.mark.parametrize("config", TAGGERS, ids=lambda c: c.kind)
def test_tagger_top_k_scores(config):
    outputs = _annotate(TaggerHandler(config), mixed_sizes())
    for tags in outputs:
        assert len(tags) == config.top_k
        assert all(isinstance(t, Tag) and _in_unit(t.score) for t in tags)
        assert [t.score for t in tags] == sorted((t.score for t in tags), reverse=True)
        if config.vocabulary:
            assert {t.label for t in tags} <= set(config.vocabulary)


def test_clip_scores_are_a_distribution_over_the_vocabulary():
    config = TaggerConfig(model=TINY + "clip", kind="clip", top_k=3, score_threshold=0.0,
                          vocabulary=["cat", "cup", "sky"])
    (tags,) = _annotate(TaggerHandler(config), mixed_sizes()[:1])
    assert sum(t.score for t in tags) == pytest.approx(1.0, abs=1e-4)


def test_poisoned_image_fails_its_batch():
    """The handler fails the whole batch; the Annotate transform isolates the image (tests/transforms)."""
    handler = TaggerHandler(TAGGERS[0])
    with pytest.raises(OSError, match="truncated"):
        list(handler.run_inference(mixed_sizes() + [poisoned()], handler.load_model()))
