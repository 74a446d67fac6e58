import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from llavaforge.schemas.record import Source
from llavaforge.transforms.dedup import ExactDedup, choose_kept
from tests.conftest import make_record


def copies(key, *sources):
    records = []
    for url, member in sources:
        r = make_record(key=key, url=url, member=member)
        r.image.sha256 = key * 2
        records.append(r)
    return records


def test_choice_does_not_depend_on_order():
    records = copies("a" * 32, ("b.tar", "1.jpg"), ("a.tar", "9.jpg"), ("a.tar", "2.jpg"))
    for ordering in (records, records[::-1], records[1:] + records[:1]):
        kept, dropped = choose_kept(ordering)
        assert kept.source == Source(url="a.tar", member="2.jpg")
        assert len(dropped) == 2


def test_exact_dedup_pipeline_keeps_one_and_points_to_it():
    records = copies("a" * 32, ("b.tar", "1.jpg"), ("a.tar", "2.jpg")) + copies("c" * 32, ("c.tar", "x.jpg"))
    with TestPipeline() as p:
        kept, rejects = p | beam.Create(records) | ExactDedup()
        assert_that(kept | "K" >> beam.Map(lambda r: (r.key, r.source.url)),
                    equal_to([("a" * 32, "a.tar"), ("c" * 32, "c.tar")]), label="kept")
        assert_that(rejects | "R" >> beam.Map(lambda r: (r.reason, r.source_url, r.detail.split(" (")[0])),
                    equal_to([("duplicate", "b.tar", f"duplicate of {'a' * 32}")]), label="rejects")
