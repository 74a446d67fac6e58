"""What a run promises about the user's files, a crash and a race, broken on purpose:
inputs and foreign files survive, kill -9 at every crash point leaves the old or the new
output (and `verify` says which), two runs on one prefix never both publish."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from llavaforge.cli import main
from llavaforge.jobs import lease as leases
from llavaforge.jobs.ledger import ConcurrentCommitError, Ledger, RunEntry
from llavaforge.jobs.prefix import OutputPrefix
from llavaforge.jobs.verify import verify
from llavaforge.storage import write_atomic
from tests.conftest import image_bytes, published_dir, write_tar
from tests.jobs.stall import stalled


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def shard(tmp_path):
    return write_tar(tmp_path / "in.tar", [(f"{i}.jpg", image_bytes(seed=i)) for i in range(6)])


def published_run(out: Path) -> str:
    return json.loads((published_dir(out) / "stats.json").read_text())["run_id"]


def test_an_output_holding_the_input_is_refused_before_anything_is_touched(tmp_path, capsys):
    photos = tmp_path / "data" / "images"
    photos.mkdir(parents=True)
    for i in range(3):
        (photos / f"{i}.jpg").write_bytes(image_bytes(seed=i))
    before = tree(tmp_path / "data")
    assert main(["run", "--input", str(photos), "--output", str(tmp_path / "data")]) == 2
    assert main(["run", "--input", str(tmp_path / "data"), "--output", str(photos / "out")]) == 2
    assert main(["run", "--input", str(tmp_path / "data" / "*"), "--output", str(tmp_path / "data" / "new")]) == 2
    assert tree(tmp_path / "data") == before and not (photos / "out").exists()
    assert capsys.readouterr().err.count("overlaps the input") == 3


def test_a_foreign_folder_is_refused_and_left_as_it_was(tmp_path, shard, capsys):
    foreign = tmp_path / "project"
    for name in ("images/a.jpg", "samples/x.parquet", "llava/0.json", "stats.json", "notes.txt"):
        (foreign / name).parent.mkdir(parents=True, exist_ok=True)
        (foreign / name).write_bytes(b"the user's")
    before = tree(foreign)
    assert main(["run", "--input", shard, "--output", str(foreign)]) == 2
    assert tree(foreign) == before
    assert "not written by llavaforge" in capsys.readouterr().err


def test_bad_output_paths_and_unknown_flags_are_one_line_usage_errors(tmp_path, shard, capsys):
    (tmp_path / "a-file").write_text("x")
    assert main(["run", "--input", shard, "--output", str(tmp_path / "a-file")]) == 2
    assert main(["run", "--input", shard, "--output", str(tmp_path / "o"), "--prest", "offline"]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "unknown argument '--prest'; did you mean --preset?" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()
    assert main(["nightly", "--input", shard, "--output", str(tmp_path / "o"), "--runnr=Direct"]) == 2
    assert "did you mean --runner?" in capsys.readouterr().err


def test_a_run_prefix_and_a_nightly_prefix_do_not_mix(tmp_path, shard, capsys):
    out = tmp_path / "out"
    assert main(["-q", "run", "--input", shard, "--output", str(out)]) == 0
    assert main(["-q", "nightly", "--input", shard, "--output", str(out)]) == 2
    assert "holds llavaforge `run` output" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "nightly"])
def test_runs_and_dry_runs_leave_nothing_in_the_temporary_folder(tmp_path, shard, monkeypatch, command):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temporary))
    out = tmp_path / "out"
    assert main(["-q", command, "--input", shard, "--output", str(out), "--dry-run"]) == 0
    assert main(["-q", command, "--input", shard, "--output", str(out)]) == 0
    assert list(temporary.iterdir()) == [] and published_run(out)


def test_cleanup_removes_only_what_llavaforge_wrote(tmp_path, shard):
    out = tmp_path / "out"
    assert main(["-q", "run", "--input", shard, "--output", str(out)]) == 0
    first = published_dir(out)
    (out / "README-mine.txt").write_text("mine")
    (first / "my-notes.txt").write_text("also mine")
    dead_staging = out / "_staging" / "run-20240101T000000-aaaaaaaa"  # what a crashed job staged
    dead_staging.mkdir(parents=True)
    (dead_staging / f"{'a' * 32}.jpg").write_bytes(b"staged")
    (dead_staging / "mine.txt").write_text("mine too")
    dead_progress = out / "_progress" / "run-20240101T000000-aaaaaaaa"  # a crashed job's live progress
    dead_progress.mkdir(parents=True)
    (dead_progress / "host-123-abcdef.json").write_text("{}")
    crashed_with_notes = out / "_progress" / "run-20240101T000000-bbbbbbbb"
    crashed_with_notes.mkdir()
    (crashed_with_notes / "host-456-abcdef.json").write_text("{}")
    (crashed_with_notes / "mine.json").write_text("{}")
    assert main(["-q", "run", "--input", shard, "--output", str(out)]) == 0
    assert (out / "README-mine.txt").read_text() == "mine"
    assert (first / "my-notes.txt").read_text() == "also mine"
    assert sorted(p.name for p in (out / "_staging").rglob("*")) == ["mine.txt", dead_staging.name]
    assert sorted(p.name for p in (out / "_progress").rglob("*")) == ["mine.json", crashed_with_notes.name]
    assert sorted(p.name for p in first.rglob("*")) == ["my-notes.txt"]  # its own files went
    assert verify(str(out)).ok


@pytest.mark.slow
@pytest.mark.parametrize("point, published", [("write-shard", "old"), ("before-commit", "old"),
                                              ("after-commit", "new")])
def test_kill_9_during_a_rerun_leaves_the_old_or_the_new_output(tmp_path, shard, point, published):
    out = tmp_path / "out"
    assert main(["-q", "run", "--input", shard, "--output", str(out)]) == 0
    old = published_run(out)
    old_files = tree(published_dir(out))
    with stalled(["run", "--input", shard, "--output", str(out)], point, tmp_path / "stalled") as child:
        pass
    assert child.returncode == -signal.SIGKILL
    assert list((out / "_staging").glob("run-*/*.jpg"))  # the killed job's image bytes stay until the next job
    report = verify(str(out))
    assert report.ok, report.problems
    now = published_run(out)
    if published == "old":
        assert now == old and tree(published_dir(out)) == old_files
        assert any(n.startswith("unpublished") for n in report.notes)  # verify names the crashed run's folder
    else:
        assert now != old and any(n.startswith("superseded") for n in report.notes)
    # The next run takes the dead run's lease at once and leaves exactly one run folder.
    assert main(["-q", "run", "--input", shard, "--output", str(out)]) == 0
    assert verify(str(out)).ok and len(OutputPrefix.of(str(out)).run_folders()) == 1
    assert not (out / "_staging").exists()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "nightly"])
def test_two_jobs_on_one_prefix_one_wins_the_other_fails_clearly(tmp_path, shard, command, capsys):
    out = tmp_path / "out"
    with stalled([command, "--input", shard, "--output", str(out)], "write-shard", tmp_path / "stalled"):
        assert main(["-q", command, "--input", shard, "--output", str(out)]) == 2
        assert "is in use by run" in capsys.readouterr().err
        assert Ledger.load(str(out)).runs == []  # the loser wrote nothing; the winner is still writing
    assert main(["-q", command, "--input", shard, "--output", str(out)]) == 0
    assert len(Ledger.load(str(out)).runs) == 1 and verify(str(out)).ok


def test_the_ledger_takes_exactly_one_commit_per_number(tmp_path):
    prefix = OutputPrefix.of(str(tmp_path / "out"))
    prefix.claim("run")

    def entry(run_id: str) -> RunEntry:
        return RunEntry(seq=1, kind="run", run_id=run_id, date="", recipe_hash="h", output=f"run-{run_id}",
                        started_at=0, finished_at=0, stats={})

    Ledger(prefix, []).commit(entry("20240101T000000-aaaaaaaa"))
    Ledger(prefix, []).commit(entry("20240101T000000-aaaaaaaa"))  # a retried commit is a no-op
    with pytest.raises(ConcurrentCommitError, match="while run 20240101T000000-bbbbbbbb was running"):
        Ledger(prefix, []).commit(entry("20240101T000000-bbbbbbbb"))
    assert [r.run_id for r in Ledger.load(prefix).runs] == ["20240101T000000-aaaaaaaa"]


def test_a_lease_is_exclusive_until_it_expires_or_is_released(tmp_path, monkeypatch):
    prefix = OutputPrefix.of(str(tmp_path / "out"))
    held = leases.acquire(prefix, "run-a")
    with pytest.raises(leases.BusyError, match="in use by run run-a"):
        leases.acquire(prefix, "run-b")
    held.release()
    second = leases.acquire(prefix, "run-b", ttl_s=0.01)
    monkeypatch.setattr(leases, "_holder_gone", lambda doc: False)  # same process: only expiry frees it

    time.sleep(0.05)
    third = leases.acquire(prefix, "run-c")
    assert not second.held() and third.held()
    second.release()  # releasing a lease that is no longer ours removes nothing
    assert third.held()


def test_stats_json_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "stats.json"
    write_atomic(str(target), b'{"old": true}')

    def crash(*args):
        raise OSError("disk gone")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError):
        write_atomic(str(target), b'{"new": true, "padding": "' + b"x" * 100_000 + b'"}')
    assert json.loads(target.read_text()) == {"old": True}


@pytest.mark.parametrize("command", ["run", "nightly"])
def test_a_launch_nobody_waits_for_still_publishes_from_inside_the_job(tmp_path, shard, command, capsys):
    from tests.jobs.fake_launcher import NeverWaitsRunner

    out = tmp_path / "out"
    NeverWaitsRunner.start.clear()
    NeverWaitsRunner.jobs.clear()
    assert main([command, "--input", shard, "--output", str(out),
                 "--runner=tests.jobs.fake_launcher.NeverWaitsRunner"]) == 0
    assert "the job verifies and publishes" in capsys.readouterr().out
    assert Ledger.load(str(out)).runs == []  # the driver returned before the job ran
    holder = leases.holder(OutputPrefix.of(str(out)))
    assert holder is not None and holder["expires_at"] > time.time() + 3600  # kept for the job
    NeverWaitsRunner.start.set()
    NeverWaitsRunner.jobs[-1].join(120)
    assert not NeverWaitsRunner.errors
    (entry,) = Ledger.load(str(out)).runs  # committed by the graph's last step
    assert entry.stats["images_written"] == 6 and verify(str(out)).ok
    assert leases.holder(OutputPrefix.of(str(out))) is None  # and the job released the lease
