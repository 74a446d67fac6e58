"""An LLM endpoint that fails for a whole night loses nothing: the shard is `retry` in the
ledger, `status` says so, and the next night publishes every image exactly once."""

from __future__ import annotations

from pathlib import Path

from llavaforge.config.recipe import load_recipe
from llavaforge.jobs.ledger import Ledger
from llavaforge.jobs.nightly import nightly
from llavaforge.jobs.status import cross_run_duplicates, status
from llavaforge.jobs.verify import verify
from llavaforge.schemas.key_index import read_key_index
from llavaforge.schemas.record import content_key
from tests.conftest import image_bytes, write_tar
from tests.models.llm.fault_server import FaultServer

# No object words: the tiny vision models' random tags support none, and the check would reject them.
ANSWER = ("Question: What is the mood of the picture?\nAnswer: It shows a calm scene in soft light, with muted "
          "colours and gentle shapes across the whole frame.")


def recipe(server: FaultServer):
    return load_recipe(None, {"preset": "tiny", "synthesize.backend": "openai", "synthesize.model": "served",
                              "synthesize.openai.base_url": server.base_url, "synthesize.openai.api_key_env": None,
                              "synthesize.openai.max_retries": 1, "synthesize.openai.backoff_base_s": 0.0,
                              "check.truncated.severity": "flag"})


def test_an_endpoint_outage_leaves_the_shard_to_retry_and_recovery_publishes_each_image_once(tmp_path):
    images = [image_bytes(seed=i) for i in range(5)]
    shard = write_tar(tmp_path / "in.tar", [(f"{i}.jpg", data) for i, data in enumerate(images)])
    prefix = str(tmp_path / "out")

    with FaultServer({"": [("500",)]}) as down:
        night1 = nightly([shard], prefix, recipe(down), "2024-06-01")
    (entry,) = night1.job.entry.shards
    assert (entry.outcome, entry.images_written, entry.images_pending) == ("retry", 0, 5)
    assert night1.job.stats["rejects"]["synthesize"]["no_conversation"] == 5
    assert "1 to retry" in status(prefix) and "the next run retries it" in status(prefix)

    with FaultServer({"": [("ok", ANSWER)]}) as up:
        night2 = nightly([shard], prefix, recipe(up), "2024-06-02")
        assert night2.plan.reasons == {night2.plan.todo[0]: "retry"}
        assert night2.job.stats["images_written"] == 5 and night2.job.entry.shards[0].outcome == "done"
        assert nightly([shard], prefix, recipe(up), "2024-06-03").job is None  # nothing left to do

    ledger = Ledger.load(prefix)
    published = [key for r in ledger.runs for key, _ in read_key_index(ledger.prefix.url_of(r.keys_index))]
    assert sorted(published) == sorted(content_key(data) for data in images)  # each image exactly once
    assert cross_run_duplicates(ledger) == {}
    assert verify(prefix).ok
    assert len(list(Path(prefix).glob("dt=*/run-*"))) == 2
