"""Live progress: workers' counters reach the driver, in one process or several; a run that
is not on a terminal logs plain per-stage lines periodically; `-q` keeps it quiet."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from llavaforge.cli import main
from llavaforge.jobs import progress_display
from llavaforge.jobs.progress_display import ProgressMonitor, estimate_seconds_left, render
from llavaforge.runners.portable import job_service
from tests.conftest import image_bytes, write_tar


@pytest.fixture
def shards(tmp_path):
    return [write_tar(tmp_path / f"s{i}.tar", [(f"{i}-{j}.jpg", image_bytes(seed=10 * i + j)) for j in range(4)])
            for i in range(3)]


def progress_lines(capsys) -> list[str]:
    """The progress log lines the run printed (the command line logs to stderr)."""
    marker = "llavaforge.progress: "
    return [line.split(marker, 1)[1] for line in capsys.readouterr().err.splitlines() if marker in line]


@pytest.mark.parametrize("runner", ["in_memory", "multi_processing", "portable"])
def test_a_run_off_a_terminal_logs_periodic_per_stage_lines(tmp_path, shards, capsys, monkeypatch, runner):
    monkeypatch.setattr(progress_display, "LOG_EVERY_S", 0.3)
    args = ["run", "--output", str(tmp_path / "out"), "--preset", "tiny", "--set", "synthesize.tasks=[]"]
    for shard in shards:
        args += ["--input", shard]
    with contextlib.ExitStack() as stack:
        if runner == "portable":  # two SDK worker processes started by Beam's job service
            args += stack.enter_context(job_service(workers=2)).flags
        else:  # multi_processing: two SDK worker processes started by the DirectRunner
            args += [f"--direct_running_mode={runner}", "--direct_num_workers=2"]
        assert main(args) == 0
    lines = progress_lines(capsys)
    assert sum(line.startswith("progress ") for line in lines) >= 2  # periodic, then the final figures
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("progress    finished")):]
    by_stage = {line.split()[0]: line.split() for line in final[1:]}
    assert by_stage["read"][1] == "3" and by_stage["decode"][1] == "12"  # every worker's counts arrived
    assert {"annotate_captioner", "annotate_detector", "annotate_tagger", "write_image"} <= set(by_stage)
    assert not (tmp_path / "out" / "_progress").exists()  # removed after the run


def test_quiet_runs_show_no_progress(tmp_path, shards, capsys):
    assert main(["-q", "run", "--input", shards[0], "--output", str(tmp_path / "out")]) == 0
    assert progress_lines(capsys) == []


def test_a_terminal_gets_one_block_redrawn_in_place(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "host-1-abcdef.json").write_text(json.dumps({"read": {"in": 1, "out": 4}, "decode": {"in": 4, "out": 4}}))
    (folder / "host-2-abcdef.json").write_text(json.dumps({"decode": {"in": 2, "out": 1, "rejected": 1}}))
    screen = io.StringIO()
    monitor = ProgressMonitor(str(folder), total_shards=2, stream=screen, interactive=True)
    monitor.show()
    monitor.show()
    text = screen.getvalue()
    assert "\x1b[3F" in text  # the second drawing moves up over the first block of 3 lines
    assert "decode                       6 in" in text


def test_time_left_follows_the_stage_furthest_behind():
    counts = {"read": {"in": 1, "out": 10}, "decode": {"in": 10, "out": 10}, "llm": {"in": 2, "out": 2}}
    # half the shards read: 20 inputs expected; llm did 2 in 10 s and has 18 to go
    assert estimate_seconds_left(counts, total_shards=2, elapsed=10.0) == pytest.approx(90.0)
    assert estimate_seconds_left({}, total_shards=2, elapsed=10.0) is None
    assert "about 1m30s left" in render(counts, 2, 10.0)[0]
