"""Staged image bytes: written once after decode, never carried across a stage boundary, read
back where a stage needs them."""

from __future__ import annotations

import pickle

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from llavaforge.schemas.record import ImageRecord
from llavaforge.transforms.staging import StageImages, staged
from tests.conftest import make_record


def test_a_staged_record_pickles_without_its_bytes_and_reads_them_back(tmp_path):
    unstaged = make_record(seed=3)
    record = staged(unstaged, str(tmp_path / "staging"))
    assert (tmp_path / "staging" / f"{record.key}.jpg").read_bytes() == record.image.data
    copy = pickle.loads(pickle.dumps(record))
    # Smaller by the image's bytes, less the URL of the staged copy.
    assert len(pickle.dumps(unstaged)) - len(pickle.dumps(record)) > len(record.image.data) - len(record.image.staged) - 16
    assert "data" not in copy.image.__dict__  # not loaded until a stage asks for it
    assert copy.image.data == record.image.data and copy == record


def test_an_unstaged_record_keeps_its_bytes():
    record = make_record(seed=3)
    assert pickle.loads(pickle.dumps(record)).image.__dict__["data"] == record.image.data


def test_reading_bytes_whose_staged_copy_is_gone_names_the_file(tmp_path):
    record = staged(make_record(seed=3), str(tmp_path / "staging"))
    copy = pickle.loads(pickle.dumps(record))
    (tmp_path / "staging" / f"{record.key}.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=f"staged bytes of this image are gone: .*{record.key}.jpg"):
        _ = copy.image.data


def _after_a_boundary(record: ImageRecord) -> tuple[str, bool, bytes]:
    crossed_without_bytes = "data" not in record.image.__dict__
    return record.key, crossed_without_bytes, record.image.data


def test_records_cross_a_shuffle_without_their_bytes(tmp_path):
    records = [make_record(key=f"{i:032x}", seed=i) for i in range(4)]
    with TestPipeline() as p:
        out = (p | beam.Create(records) | StageImages(str(tmp_path / "staging")) | beam.Reshuffle()
               | beam.Map(_after_a_boundary))
        assert_that(out, equal_to([(r.key, True, r.image.data) for r in records]))
