"""End-to-end runs of the CLI on shards holding every kind of bad input."""

import json

import pyarrow.parquet as pq
import pytest

from llavaforge.cli import main
from llavaforge.jobs.verify import verify
from tests.conftest import EXAMPLES, image_bytes, published_dir, write_parquet, write_tar


@pytest.fixture
def shards(tmp_path):
    good = [image_bytes(64, 48, seed=i) for i in range(6)]
    (tmp_path / "in").mkdir()
    tar = write_tar(tmp_path / "in" / "s-000.tar", [
        ("a.jpg", good[0]), ("a.txt", b"a caption"),
        ("b.png", image_bytes(64, 64, fmt="PNG", seed=7)),
        ("c.jpg", good[1][:700]),                      # truncated
        ("d.jpg", b""),                                # zero bytes
        ("e.jpg", b"plain text, not a jpeg\n" * 5),    # text named .jpg
        ("f.png", image_bytes(1, 1, fmt="PNG")),       # 1x1
        ("g.jpg", image_bytes(64, 48, mode="CMYK", seed=8)),
        ("h.md", b"not an image"),                     # non-image member
        ("../../etc/passwd.jpg", good[2]),             # path traversal name
        ("a.jpg", good[3]),                            # repeated key later in the tar
        ("dup.jpg", good[0]),                          # same bytes as a.jpg
    ])
    parquet = write_parquet(tmp_path / "in" / "s-001.parquet", [
        {"image": {"bytes": good[4], "path": None}, "text": "row zero"},
        {"image": None, "text": "null image"},
        {"image": {"bytes": good[0], "path": None}, "text": "duplicate across shards"},
    ])
    return tar, parquet


# 12 tar members (one, a.txt, is a sibling) -> 11 inputs; 3 parquet rows. Written: a, b, g (CMYK),
# passwd, the second a, parquet row 0.
EXPECTED = {"inputs": 14, "images_written": 6, "images_rejected": 6, "duplicates": 2}
EXPECTED_REASONS = {"read": {"no_image": 1, "null_image": 1},
                    "decode": {"truncated": 1, "empty": 1, "not_an_image": 1, "too_small": 1},
                    "dedup": {"duplicate": 2}}


def run_cli(shards, output, *extra):
    tar, parquet = shards
    return main(["-q", "run", "--input", tar, "--input", parquet, "--output", str(output),
                 "--set", "read.text_column=text", *extra])


def keys_of(output):
    keys = set()
    for path in sorted((published_dir(output) / "samples").glob("*.parquet")):
        keys |= set(pq.read_table(path, columns=["key"]).column("key").to_pylist())
    return keys


def test_run_accounts_for_every_input_and_verifies(shards, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(shards, out, "--set", "write.images_per_shard=3") == 0
    run_dir = published_dir(out)
    stats = json.loads((run_dir / "stats.json").read_text())
    assert {k: stats[k] for k in EXPECTED} == EXPECTED
    assert stats["balanced"] is True
    assert stats["rejects"]["decode"] == EXPECTED_REASONS["decode"]
    assert stats["rejects"]["read"] == EXPECTED_REASONS["read"]
    assert stats["rejects"]["dedup"] == EXPECTED_REASONS["dedup"]
    assert stats["shards"]["samples"] == 2
    report = verify(str(out))
    assert report.ok, report.problems
    for folder in ("samples", "wds", "images", "rejects"):
        assert any((run_dir / folder).iterdir()), folder
    # No LLM stage: curated images only, and no LLaVA record a trainer could not take.
    assert not (run_dir / "llava").exists() and not (run_dir / "llava.json").exists()
    assert sorted(p.name for p in (run_dir / "wds").iterdir()) == ["jpg", "png"]  # one stream per extension
    assert not (tmp_path / "etc").exists()
    text = capsys.readouterr().out
    assert "balanced    yes" in text and "decode/truncated" in text and f"published   {run_dir}" in text


def test_rerun_replaces_and_never_duplicates(shards, tmp_path):
    out = tmp_path / "out"
    assert run_cli(shards, out, "--set", "write.images_per_shard=2") == 0
    first, first_dir = keys_of(out), published_dir(out)
    assert run_cli(shards, out, "--set", "write.images_per_shard=100") == 0
    assert keys_of(out) == first
    assert len(list((published_dir(out) / "samples").glob("*.parquet"))) == 1
    assert not first_dir.exists()  # the replaced output is removed once the new one is published
    assert verify(str(out)).ok


def test_verify_catches_tampering(shards, tmp_path):
    out = tmp_path / "out"
    assert run_cli(shards, out) == 0
    run_dir = published_dir(out)
    image = next((run_dir / "images").iterdir())
    image.unlink()
    report = verify(str(out))
    assert not report.ok and any("images/ holds 5 files but the samples name 6" in p for p in report.problems)
    assert main(["verify", str(out)]) == 1
    (run_dir / "stats.json").unlink()
    assert any("did not complete" in p for p in verify(str(out)).problems)


def test_verify_catches_unbalanced_stats(shards, tmp_path):
    out = tmp_path / "out"
    assert run_cli(shards, out) == 0
    stats_file = published_dir(out) / "stats.json"
    stats = json.loads(stats_file.read_text())
    stats["inputs"] += 1
    stats_file.write_text(json.dumps(stats))
    report = verify(str(out))
    assert any(f"inputs {stats['inputs']} != " in p for p in report.problems)


def test_the_multi_threading_mode_that_loses_elements_is_refused_before_the_output_is_touched(shards, tmp_path,
                                                                                             capsys):
    out = tmp_path / "out"
    assert run_cli(shards, out) == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert run_cli(shards, out, "--direct_running_mode=multi_threading") == 2
    assert "loses elements" in capsys.readouterr().err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before and verify(str(out)).ok


@pytest.mark.parametrize("args, message", [
    (["run", "--input", "/nonexistent/*.tar", "--output", "/tmp/x"], "matches no shard"),
    (["run", "--input", "x", "--output", "/tmp/x", "--set", "decode.min_side=-1"], "decode.min_side"),
    (["run", "--input", "x", "--output", "/tmp/x", "--set", "nosuch.field=1"], "nosuch"),
])
def test_bad_usage_exits_2_naming_the_problem(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_recipe_reference_and_check(tmp_path, capsys):
    assert main(["recipe"]) == 0
    assert "images_per_shard" in capsys.readouterr().out
    (tmp_path / "r.yaml").write_text("decode: {min_side: 8}\n")
    assert main(["recipe", "--check", "--recipe", str(tmp_path / "r.yaml")]) == 0


@pytest.mark.slow
def test_demo_writes_the_report_and_prints_its_path(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--preset", "tiny", "--output", str(out)]) == 0
    report = published_dir(out) / "report.html"
    assert f"report:     {report} (" in capsys.readouterr().out
    assert "<title>llavaforge report" in report.read_text()


VLM_ROLES_ON = ["--preset", "tiny", "--set", "annotate.dense_captioner.enabled=true", "--set", "verify.enabled=true",
                "--set", "synthesize.tasks=[detail, conversation]", "--set", "synthesize.task_mix=all",
                "--set", "synthesize.task_modes={detail: vlm}"]


@pytest.mark.slow
def test_tiny_run_with_a_random_vlm_in_all_three_roles_rejects_its_noise_and_balances(tmp_path):
    """Dense captioner, vlm-mode synthesis and verifier on the tiny preset's random SmolVLM: the
    verifier's random text has no verdict, so what reaches it is rejected; flagged instead, the
    samples are written with the flag and the dense caption."""
    shard = str(EXAMPLES / "sample-000.tar")
    out = tmp_path / "out"
    # The checks off, so the random conversations reach the verifier (they would fail `gibberish`).
    assert main(["-q", "run", "--input", shard, "--output", str(out), *VLM_ROLES_ON, "--set", "check.enabled=false"]) == 0
    stats = json.loads((published_dir(out) / "stats.json").read_text())
    assert stats["balanced"] is True and stats["inputs"] == 8
    assert stats["rejects"]["verify"]["vlm_no_verdict"] >= 1
    assert stats["rejects"]["synthesize"]["unparseable"] >= 1  # the blind LLM's noise
    assert stats["images_written"] + stats["images_rejected"] + stats["duplicates"] == stats["inputs"]
    assert verify(str(out)).ok
    models = json.loads((published_dir(out) / "metrics.json").read_text())["models"]
    assert models["vlm_dense_captioner"]["image_encodings_computed"] == 6  # one encoding per decoded image...
    assert models["vlm_verifier"]["image_encodings_reused"] >= 1  # ...that the later roles reuse

    flagged = tmp_path / "flagged"
    assert main(["-q", "run", "--input", shard, "--output", str(flagged), *VLM_ROLES_ON,
                 "--set", "verify.no_verdict=flag", "--set", "check.enabled=false", "--set", "write.flagged=include"]) == 0
    stats = json.loads((published_dir(flagged) / "stats.json").read_text())
    assert stats["balanced"] is True and "verify" not in stats["rejects"] and stats["images_written"] >= 1
    rows = [row for path in sorted((published_dir(flagged) / "samples").glob("*.parquet"))
            for row in pq.read_table(path).to_pylist()]
    assert rows and all(row["task"] == "detail" and "vlm_no_verdict" in row["flags"] for row in rows)
    assert all(any(c["model"] == "llavaforge-tiny/smolvlm" for c in row["captions"]) for row in rows)
    assert verify(str(flagged)).ok
