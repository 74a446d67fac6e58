"""Nightly incremental runs: ledger, changed shards, recipe changes, killed runs, status."""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llavaforge.config.recipe import Recipe, load_recipe
from llavaforge.jobs.ledger import Ledger, fingerprint, fingerprint_id
from llavaforge.jobs.nightly import nightly
from llavaforge.jobs.status import cross_run_duplicates, status
from llavaforge.jobs.verify import verify
from llavaforge.schemas.key_index import read_key_index
from llavaforge.schemas.record import content_key
from tests.jobs.stall import stalled

DATE = "2024-05-01"


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def write_shard(path: Path, seeds: list[int]) -> set[str]:
    """A WebDataset-style tar of one JPEG per seed; returns the image keys."""
    with tarfile.open(path, "w") as tar:
        for i, seed in enumerate(seeds):
            data = jpeg(seed)
            info = tarfile.TarInfo(f"img{i:03d}.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return {content_key(jpeg(s)) for s in seeds}


def published_keys(prefix: str) -> set[str]:
    ledger = Ledger.load(prefix)
    return {key for r in ledger.runs for key, _ in read_key_index(ledger.prefix.url_of(r.keys_index))}


def assert_verified(result) -> None:
    report = verify(result.job.run_dir)
    assert report.ok, report.problems


@pytest.fixture
def shards(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    keys = {"a": write_shard(folder / "a.tar", [1, 2]), "b": write_shard(folder / "b.tar", [3, 4])}
    return folder, keys


def test_second_run_processes_only_new_and_changed_shards(shards, tmp_path):
    folder, keys = shards
    prefix = str(tmp_path / "out")
    recipe = Recipe()

    first = nightly([str(folder / "*.tar")], prefix, recipe, DATE)
    assert sorted(Path(u).name for u in first.plan.todo) == ["a.tar", "b.tar"]
    assert first.job.stats["images_written"] == 4
    assert first.job.run_dir.endswith(f"dt={DATE}/run-{first.job.run_id}")
    assert_verified(first)
    ledger_files = sorted(p.name for p in Path(prefix, "_ledger").iterdir())
    assert ledger_files == ["00000001.json", "keys"]
    entry = json.loads(Path(prefix, "_ledger", ledger_files[0]).read_text())
    assert entry["run_id"] == first.job.run_id and entry["output"] == f"dt={DATE}/run-{first.job.run_id}"
    assert entry["keys"] == 4 and {s["recipe_hash"] for s in entry["shards"]} == {recipe.hash()}

    keys["c"] = write_shard(folder / "c.tar", [5, 6])
    second = nightly([str(folder / "*.tar")], prefix, recipe, "2024-05-02")
    assert [Path(u).name for u in second.plan.todo] == ["c.tar"]
    assert second.plan.reasons == {second.plan.todo[0]: "new"}
    assert len(second.plan.done) == 2
    assert second.job.stats["inputs"] == 2 and second.job.stats["images_written"] == 2
    assert_verified(second)

    assert nightly([str(folder / "*.tar")], prefix, recipe, "2024-05-03").job is None

    # b.tar rewritten: one image already published, one new.
    time.sleep(0.01)  # a distinct mtime even where the clock is coarse
    keys["b2"] = write_shard(folder / "b.tar", [3, 7])
    third = nightly([str(folder / "*.tar")], prefix, recipe, "2024-05-04")
    assert [Path(u).name for u in third.plan.todo] == ["b.tar"]
    assert third.plan.reasons[third.plan.todo[0]] == "changed"
    assert third.job.stats["images_written"] == 1 and third.job.stats["duplicates"] == 1
    assert third.job.stats["rejects"]["published"] == {"duplicate": 1}
    assert_verified(third)

    assert published_keys(prefix) == keys["a"] | keys["b"] | keys["c"] | keys["b2"]
    assert cross_run_duplicates(Ledger.load(prefix)) == {}
    text = status(prefix)
    assert "3 runs" in text
    assert "3 known: 3 done, 0 to retry, 0 failed, 0 pending under the current recipe" in text
    assert "counts      inputs 8  written 7  rejected 0  duplicates 1" in text
    assert f"last success {third.job.run_id}" in text
    assert "published twice: 0 keys" in text
    assert "unpublished" not in text


def test_recipe_change_needs_opt_in(shards, tmp_path):
    folder, keys = shards
    prefix = str(tmp_path / "out")
    nightly([str(folder / "a.tar")], prefix, Recipe(), DATE)
    changed = load_recipe(overrides={"decode.min_side": 40})

    skipped = nightly([str(folder / "a.tar")], prefix, changed, DATE)
    assert skipped.job is None and len(skipped.plan.pending_recipe) == 1

    redone = nightly([str(folder / "a.tar")], prefix, changed, DATE, reprocess=["changed-recipe"])
    assert redone.plan.reasons == {redone.plan.todo[0]: "recipe"}
    # published under the old recipe does not make it a duplicate under the new one
    assert redone.job.stats["images_written"] == 2 and redone.job.stats["duplicates"] == 0
    assert_verified(redone)
    assert "1 known: 1 done, 0 to retry, 0 failed, 0 pending" in status(prefix)


def test_failed_shard_is_recorded_and_retried_on_request(shards, tmp_path):
    folder, _ = shards
    (folder / "broken.tar").write_bytes(b"not a tar at all" * 40)
    prefix = str(tmp_path / "out")
    first = nightly([str(folder / "*.tar")], prefix, Recipe(), DATE)
    outcomes = {Path(s.url).name: s.outcome for s in first.job.entry.shards}
    assert outcomes == {"a.tar": "done", "b.tar": "done", "broken.tar": "failed"}
    assert "1 failed" in status(prefix) and "broken.tar" in status(prefix)
    left = nightly([str(folder / "*.tar")], prefix, Recipe(), DATE)
    assert left.job is None and [Path(u).name for u in left.plan.failed] == ["broken.tar"]
    retry = nightly([str(folder / "*.tar")], prefix, Recipe(), DATE, reprocess=["failed"])
    assert [Path(u).name for u in retry.plan.todo] == ["broken.tar"]
    assert retry.plan.reasons[retry.plan.todo[0]] == "failed"
    (folder / "broken.tar").write_bytes(b"still not a tar, but changed" * 40)
    changed = nightly([str(folder / "*.tar")], prefix, Recipe(), DATE)
    assert changed.plan.reasons == {changed.plan.todo[0]: "changed"}


@pytest.mark.parametrize("point", ["publish-filter", pytest.param("before-commit", marks=pytest.mark.slow)])
def test_killed_run_leaves_no_ledger_entry_and_next_run_completes_it(shards, tmp_path, point):
    folder, keys = shards
    prefix = str(tmp_path / "out")
    nightly([str(folder / "a.tar")], prefix, Recipe(), DATE)
    with stalled(["nightly", "--input", str(folder / "*.tar"), "--output", prefix, "--date", "2024-05-02"],
                 point, tmp_path / "stalled") as child:
        pass
    assert child.returncode == -signal.SIGKILL

    ledger = Ledger.load(prefix)
    assert len(ledger.runs) == 1
    run_dirs = sorted(Path(prefix).glob("dt=2024-05-02/run-*"))
    assert len(run_dirs) == 1
    if point == "before-commit":  # outputs complete and verified, only the ledger entry missing
        assert verify(str(run_dirs[0])).ok
    assert f"unpublished dt=2024-05-02/{run_dirs[0].name}" in status(prefix)

    resumed = nightly([str(folder / "*.tar")], prefix, Recipe(), "2024-05-03")
    assert not run_dirs[0].exists()  # the killed run's folder is gone: its images are on disk once
    assert [Path(u).name for u in resumed.plan.todo] == ["b.tar"]
    assert resumed.job.stats["images_written"] == 2 and resumed.job.stats["duplicates"] == 0
    assert_verified(resumed)
    assert published_keys(prefix) == keys["a"] | keys["b"]
    assert cross_run_duplicates(Ledger.load(prefix)) == {}


def test_fingerprint_follows_content_version(tmp_path):
    shard = tmp_path / "s.tar"
    write_shard(shard, [1])
    before = fingerprint(str(shard))
    assert before["size"] == shard.stat().st_size and before["version_field"] == "mtime"
    os.utime(shard, (1, 1))
    after = fingerprint(str(shard))
    assert fingerprint_id(str(shard), before) != fingerprint_id(str(shard), after)


def test_folder_fingerprint_changes_when_a_file_changes(tmp_path):
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "x.jpg").write_bytes(jpeg(1))
    before = fingerprint(str(tmp_path / "f"))
    (tmp_path / "f" / "y.jpg").write_bytes(jpeg(2))
    after = fingerprint(str(tmp_path / "f"))
    assert before["version_field"] == "listing" and before["version"] != after["version"]

