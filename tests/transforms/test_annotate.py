"""The Annotate stage in a pipeline on the tiny preset: every role annotates, a poisoned image
becomes one reject, source text becomes captions, a shared model loads once."""

from __future__ import annotations

import functools

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from llavaforge.models import loading
from llavaforge.models.captioner import CaptionerHandler
from llavaforge.config.annotate import AnnotateConfig, CaptionerConfig
from llavaforge.config.recipe import load_recipe
from llavaforge.transforms.annotate import (
    SOURCE_MODEL, Annotate, AnnotateRole, with_source_captions)
from tests.models.vision_samples import mixed_sizes, poisoned, record_of
from tests.conftest import image_bytes

TINY_BLIP = CaptionerConfig(model="llavaforge-tiny/blip", max_new_tokens=4, max_batch_size=8)


def _tiny_config(**overrides) -> AnnotateConfig:
    recipe = load_recipe(None, {"preset": "tiny", **overrides})
    return recipe.annotate


_collected: dict[str, list] = {}


def _collect(name: str, actual) -> None:
    # a module-level function: pickled by reference, so the in-process runner fills this module's dict
    _collected[name] = list(actual)


def _run(transform, records):
    """(records by key, rejects) after running `transform` on `records` (DirectRunner, in process)."""
    _collected.clear()
    with TestPipeline() as p:
        out, rejects = p | beam.Create(records) | transform
        assert_that(out, functools.partial(_collect, "records"), label="Records")
        assert_that(rejects, functools.partial(_collect, "rejects"), label="Rejects")
    return {r.key: r for r in _collected["records"]}, _collected["rejects"]


def test_every_role_annotates_and_a_poisoned_image_is_one_reject():
    good = mixed_sizes()
    bad = poisoned()
    records, rejects = _run(Annotate(_tiny_config()), good + [bad])
    assert sorted(records) == sorted(r.key for r in good)
    for record in records.values():
        a = record.annotations
        assert a.captions and a.objects and a.tags
        assert {c.model for c in a.captions} == {"llavaforge-tiny/blip"}
        assert all(0 <= v <= 1 for o in a.objects for v in o.box)
    assert [(r.key, r.stage, r.reason, r.task) for r in rejects] == [(bad.key, "annotate", "captioner_failed", None)]
    assert "truncated" in rejects[0].detail


def test_source_text_becomes_source_captions():
    record = record_of(image_bytes(seed=3), texts=("a red kite", " ", "a red kite", "over a beach"))
    captioned = with_source_captions(record)
    assert [(c.text, c.model) for c in captioned.annotations.captions] == [
        ("a red kite", SOURCE_MODEL), ("over a beach", SOURCE_MODEL)]
    assert with_source_captions(captioned) == captioned  # idempotent
    assert record.annotations.captions == []  # the input is not modified


def test_source_captions_come_before_model_captions_in_the_pipeline():
    record = record_of(image_bytes(seed=4), texts=("alt text",))
    records, rejects = _run(Annotate(AnnotateConfig(captioner=TINY_BLIP)), [record])
    captions = records[record.key].annotations.captions
    assert captions[0].text == "alt text" and captions[0].model == SOURCE_MODEL
    assert len(captions) == 2 and captions[1].model == TINY_BLIP.model
    assert rejects == []


def test_same_model_twice_loads_once(monkeypatch):
    monkeypatch.setattr(loading, "_loaded", {})
    loads = []
    original = CaptionerHandler.load
    monkeypatch.setattr(CaptionerHandler, "load",
                        lambda self, path, config: loads.append(path) or original(self, path, config))

    class TwoCaptioners(beam.PTransform):
        def expand(self, records):
            first, _ = records | "First" >> AnnotateRole("captioner", TINY_BLIP)
            return first | "Second" >> AnnotateRole("captioner", TINY_BLIP.model_copy(update={"num_captions": 2}))

    records, _ = _run(TwoCaptioners(), mixed_sizes()[:2])
    assert len(loads) == 1
    assert all(len(r.annotations.captions) >= 2 for r in records.values())


def test_the_dense_captioner_adds_a_caption_and_a_poisoned_image_is_one_reject():
    dense = _tiny_config(**{"annotate.dense_captioner.enabled": True}).dense_captioner
    good = mixed_sizes()[:3]
    bad = poisoned()
    records, rejects = _run(Annotate(AnnotateConfig(dense_captioner=dense)), good + [bad])
    assert sorted(records) == sorted(r.key for r in good)
    for record in records.values():
        (caption,) = record.annotations.captions
        assert caption.model == "llavaforge-tiny/smolvlm" and len(caption.text.split()) >= 3
    assert [(r.key, r.stage, r.reason, r.retryable) for r in rejects] == [
        (bad.key, "annotate", "dense_captioner_failed", True)]
