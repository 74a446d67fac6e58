"""DropPublished: images whose key an earlier run published become duplicate rejects."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from llavaforge.schemas.key_index import read_key_index, write_key_index
from llavaforge.transforms.published import DropPublished
from llavaforge.schemas.record import ImageInfo, ImageRecord, Source


def record(key: str) -> ImageRecord:
    return ImageRecord(key=key, source=Source(url="s.tar", member=f"{key}.jpg"),
                       image=ImageInfo(data=b"", format="jpg", width=1, height=1, sha256=key, phash="0"))


def test_key_index_is_sorted_and_distinct(tmp_path):
    path = str(tmp_path / "k.parquet")
    assert write_key_index(["b", "a", "b"], "run1", path) == 2
    assert list(read_key_index(path)) == [("a", "run1"), ("b", "run1")]


def test_published_keys_become_duplicates_naming_the_run(tmp_path):
    index = str(tmp_path / "k.parquet")
    write_key_index(["k1"], "run-old", index)
    with TestPipeline() as p:
        kept, rejects = p | beam.Create([record("k1"), record("k2")]) | DropPublished([index])
        assert_that(kept | "Keys" >> beam.Map(lambda r: r.key), equal_to(["k2"]), label="kept")
        assert_that(rejects | "Why" >> beam.Map(lambda r: (r.key, r.stage, r.reason, r.detail)),
                    equal_to([("k1", "published", "duplicate", "already published in run run-old")]),
                    label="rejects")


def test_no_index_files_keeps_everything():
    with TestPipeline() as p:
        kept, _ = p | beam.Create([record("k1")]) | DropPublished([])
        assert_that(kept | beam.Map(lambda r: r.key), equal_to(["k1"]))
