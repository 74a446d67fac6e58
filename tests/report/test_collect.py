import uuid

import pytest

from llavaforge.report.collect import LowestRanked, ReportError, collect, key_rank
from llavaforge.schemas.record import Reject
from tests.report.runs import conversation, image, write_run


def three_images():
    first = image(1, conversation("conversation", ("What is the dog doing?", "It runs, fast."), ("Where?", "On the beach.")),
                  conversation("detail", ("Describe this image in detail.", "A dog runs on sand.")),
                  objects=("dog", "dog", "ball"), tags=("beach",), caption="A dog.", source=("a dog",))
    second = image(2, conversation("reasoning", ("Why is it wet?", "Because it swam in the sea"), flags=("truncated",)),
                   objects=("ball",), tags=("beach", "sea"), ocr=("NO DOGS",))
    third = image(3, conversation("conversation", ("  What is   the dog\ndoing? ", "Le café est chaud.")))
    return [[first, second], [third]]


REJECTS = [
    Reject(key="e" * 32, source_url="s.tar", source_member="bad.jpg", stage="decode", reason="truncated",
           detail="OSError: truncated"),
    Reject(key=f"{2:032x}", source_url="s.tar", source_member="2.jpg", stage="check", reason="repetition",
           detail="sentence repeated", task="conversation"),
    Reject(key=f"{1:032x}", source_url="t.tar", source_member="copy.jpg", stage="dedup", reason="duplicate",
           detail="duplicate of 1"),
]


@pytest.fixture
def run(tmp_path):
    prefix = str(tmp_path / "run")
    return prefix, write_run(prefix, three_images(), REJECTS)


def test_aggregates_cover_every_row_of_every_shard(run):
    prefix, stats = run
    data = collect(prefix)
    assert stats["balanced"] and data.stats == stats
    assert (data.images, data.samples, data.reject_rows) == (3, 4, 3)
    assert data.tasks == {"conversation": 2, "detail": 1, "reasoning": 1}
    # tokens: words and punctuation marks, <image> not counted, letters beyond ASCII are word letters
    assert {t: a.tolist() for t, a in data.answer_tokens.items()} == {
        "conversation": [5, 4, 5], "detail": [6], "reasoning": [6]}
    assert {t: a.tolist() for t, a in data.question_tokens.items()} == {
        "conversation": [6, 2, 6], "detail": [6], "reasoning": [5]}
    assert {t: a.tolist() for t, a in data.rounds.items()} == {"conversation": [2, 1], "detail": [1], "reasoning": [1]}
    # per image, not per sample row: image 1 has two rows but its objects count once
    assert data.objects == {"dog": 2, "ball": 2}
    assert data.tags == {"beach": 2, "sea": 1}
    assert data.coverage == {"captions": 1, "objects": 2, "tags": 2, "ocr": 1, "source_texts": 1}
    assert data.widths.tolist() == [64, 64, 64] and data.formats == {"jpg": 3}
    assert data.flags == {"truncated": 1} and data.flagged_samples == 1
    # whitespace is normalised, so the same question asked twice counts twice
    assert data.first_questions == {("conversation", "What is the dog doing?"): 2,
                                    ("detail", "Describe this image in detail."): 1,
                                    ("reasoning", "Why is it wet?"): 1}


def test_rejects_are_counted_and_sampled_per_reason(run):
    prefix, _ = run
    data = collect(prefix, examples_per_reason=1)
    assert data.reject_counts == {("decode", "truncated"): 1, ("check", "repetition"): 1, ("dedup", "duplicate"): 1}
    assert data.rejected_tasks == {"conversation": 1}
    groups = {(g.stage, g.reason): g for g in data.reject_groups}
    example = groups[("check", "repetition")].examples[0]
    assert example["detail"] == "sentence repeated" and example["in_gallery"] is True
    assert groups[("decode", "truncated")].examples[0]["in_gallery"] is False


def test_gallery_keeps_every_row_of_each_image(run):
    prefix, _ = run
    gallery = collect(prefix).gallery
    assert sorted(g.key for g in gallery) == [f"{i:032x}" for i in (1, 2, 3)]
    rows = {g.key: [r["task"] for r in g.rows] for g in gallery}
    assert rows[f"{1:032x}"] == ["conversation", "detail"]


def many_images(n):
    return [image(i, conversation("conversation", (f"Question {i}?", "An answer."))) for i in range(n)]


def test_gallery_sample_is_the_lowest_key_hashes_whatever_the_shard_layout(tmp_path):
    records = many_images(24)
    write_run(str(tmp_path / "one"), [records])
    write_run(str(tmp_path / "four"), [records[i::4] for i in range(4)])
    expected = sorted((r.key for r in records), key=key_rank)[:5]
    for folder in ("one", "four"):
        assert [g.key for g in collect(str(tmp_path / folder), gallery_images=5).gallery] == expected
    assert collect(str(tmp_path / "one"), gallery_images=0).gallery == []
    assert len(collect(str(tmp_path / "one"), gallery_images=100).gallery) == 24


def test_lowest_ranked_keeps_the_smallest():
    kept = LowestRanked(3)
    for rank in (50, 10, 40, 30, 20, 60):
        kept.offer(rank, str(rank), rank)
    assert kept.items() == [10, 20, 30]
    assert not kept.would_keep(35) and kept.would_keep(25)


def test_reads_through_fsspec_urls():
    prefix = f"memory://report-test-{uuid.uuid4().hex}/run"
    write_run(prefix, three_images(), REJECTS)
    data = collect(prefix)
    assert (data.images, data.samples, data.reject_rows) == (3, 4, 3)


def test_a_folder_without_stats_is_refused(tmp_path):
    with pytest.raises(ReportError, match="not a run folder"):
        collect(str(tmp_path))
    (tmp_path / "samples").mkdir()
    with pytest.raises(ReportError, match="did not complete"):
        collect(str(tmp_path))


def test_a_run_that_wrote_nothing_has_empty_figures(tmp_path):
    prefix = str(tmp_path / "run")
    write_run(prefix, [[]], [Reject(key="e" * 32, source_url="s.tar", source_member="x", stage="decode",
                                    reason="empty")])
    data = collect(prefix)
    assert (data.images, data.samples, data.reject_rows, data.gallery) == (0, 0, 1, [])
    assert data.answer_tokens == {} and data.widths.size == 0
