"""The report of a real run, opened in a real headless browser.

The run is the real CLI on small shards with the `tiny` vision models; its LLM is a local
OpenAI-compatible server that answers each task in its format (some answers cut short, so
they are flagged; some unreadable, so they are rejected). The browser is Debian's chromium
(`scripts/setup.sh` installs it where it can), driven by Playwright without downloading one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llavaforge.cli import main
from tests.conftest import image_bytes, published_dir, write_tar
from tests.models.llm.fault_server import FaultServer

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "report"
CHROMIUM = os.environ.get("LLAVAFORGE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium here: scripts/setup.sh installs Debian's chromium when it runs as root "
    "with apt-get; elsewhere install one and set LLAVAFORGE_CHROMIUM to its path")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: install the `dev` extra")

XSS = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
ANSWERS = {
    "conversation": "Question: What is in the picture?\n===\nAnswer: A busy pattern of small coloured dots.\n"
                    "===\nQuestion: How bright is it?\n===\nAnswer: It is fairly bright all over.",
    "detail": "The picture is covered in small coloured dots that form a busy, even pattern from edge to edge.",
    "reasoning": "Question: Why could this pattern be hard to print?\n===\nAnswer: Every dot has its own colour, "
                 "so a printer must place many tiny drops precisely.",
}
CUT_SHORT = {"conversation": "Question: What is in the picture?\n===\nAnswer: A busy pattern of",
             "detail": "The picture is covered in small coloured dots that form a busy, even pattern from edge to",
             "reasoning": "Question: Why could this pattern be hard to print?\n===\nAnswer: Every dot has its"}


class TaskServer(FaultServer):
    """Replies in each task's format; `CUT` in an image's source text cuts the answer short,
    `BAD` makes it unreadable."""

    def step(self, body):
        system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
        task = "detail" if "in detail" in system else "reasoning" if "hard question" in system else "conversation"
        if "BAD" in user:
            return ("ok", "la la")
        return ("ok", (CUT_SHORT if "CUT" in user else ANSWERS)[task])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report-run")
    members = []
    for i in range(8):
        marker = "CUT" if i % 4 == 1 else "BAD" if i == 6 else "plain"
        members += [(f"img{i}.jpg", image_bytes(96 + 8 * i, 72, seed=i)),
                    (f"img{i}.txt", f"photo {i} {marker} {XSS}".encode())]
    members += [("broken.jpg", b"not a jpeg"), ("copy.jpg", image_bytes(96, 72, seed=0))]
    tar = write_tar(tmp / "in.tar", members)
    out, html = tmp / "out", tmp / "report.html"
    with TaskServer({}) as server, pytest.MonkeyPatch.context() as env:
        env.setenv("LF_REPORT_TEST_KEY", "unused")
        assert main(["-q", "run", "--input", tar, "--output", str(out), "--preset", "tiny",
                     "--set", "synthesize.backend=openai", "--set", "synthesize.model=served",
                     "--set", f"synthesize.openai.base_url={server.base_url}",
                     "--set", "synthesize.openai.api_key_env=LF_REPORT_TEST_KEY",
                     "--set", "synthesize.task_mix=all", "--set", "check.truncated.severity=flag",
                     "--set", "write.flagged=include"]) == 0
    assert main(["report", str(out), "--out", str(html)]) == 0
    run_dir = published_dir(out)
    rows = [row for path in sorted((run_dir / "samples").glob("*.parquet"))
            for row in pq.read_table(path, columns=["id", "task", "flags"]).to_pylist()]
    return {"stats": json.loads((run_dir / "stats.json").read_text()), "rows": rows, "html": html}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, run, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems, requests = [], []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(run["html"].as_uri())
    page.wait_for_load_state("load")
    yield page
    page.close()
    assert problems == []
    # the page itself, and its inline images: nothing from a network
    assert all(url == run["html"].as_uri() or url.startswith("data:") for url in requests), requests


def test_the_page_shows_the_run_as_stats_json_counts_it(page, run, tmp_path):
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "report.png", ARTIFACTS / "report.png")
    shutil.copy(run["html"], ARTIFACTS / "report.html")
    stats = run["stats"]
    assert stats["samples_written"] > 0 and stats["sample_rejects"] > 0 and stats["images_rejected"] > 0
    for key in ("inputs", "images_written", "images_rejected", "duplicates", "samples_written", "sample_rejects"):
        cell = page.locator(f'[data-stat="{key}"]')
        assert int(cell.get_attribute("data-value")) == stats[key], key
        assert int(cell.inner_text().replace(",", "")) == stats[key], key
    shown_rejects = {el.get_attribute("data-reject"): int(el.get_attribute("data-value"))
                     for el in page.locator("[data-reject]").all()}
    assert shown_rejects == {f"{stage}/{reason}": n for stage, by in stats["rejects"].items() for reason, n in by.items()}
    shown_tasks = {el.get_attribute("data-task-count"): int(el.get_attribute("data-value"))
                   for el in page.locator("[data-task-count]").all() if el.get_attribute("data-value") != "0"}
    assert shown_tasks == stats["tasks"]


def test_the_gallery_shows_every_written_sample(page, run):
    assert page.locator("#gallery-cards .card").count() == run["stats"]["images_written"]
    shown = [el.get_attribute("data-sample-id") for el in page.locator("#gallery-cards .sample").all()]
    assert sorted(shown) == sorted(row["id"] for row in run["rows"])
    assert page.locator("#gallery-cards .card img").count() == run["stats"]["images_written"]
    assert page.locator("#gallery-cards .thumb rect.obj").count() > 0  # the tiny detector's boxes, drawn
    assert page.locator("#gallery-cards .sample:visible").count() == len(run["rows"])


def test_untrusted_source_text_is_shown_as_text_and_never_runs(page):
    assert page.evaluate("window.pwned") is None
    assert page.locator(".source-text").first.inner_text().endswith(XSS)


def test_filters_show_only_matching_samples(page, run):
    rows = run["rows"]
    page.select_option("#filter-task", "reasoning")
    visible = page.locator("#gallery-cards .sample:visible")
    assert visible.count() == sum(r["task"] == "reasoning" for r in rows) > 0
    assert {el.get_attribute("data-task") for el in visible.all()} == {"reasoning"}
    page.select_option("#filter-task", "")
    page.select_option("#filter-flag", "truncated")
    truncated = [r["id"] for r in rows if "truncated" in r["flags"]]
    assert truncated and sorted(el.get_attribute("data-sample-id") for el in visible.all()) == sorted(truncated)
    cards_with_truncated = len({r["id"].split("_")[0] for r in rows if "truncated" in r["flags"]})
    assert page.locator("#gallery-cards .card:visible").count() == cards_with_truncated
    assert page.locator("#gallery-count").get_attribute("data-samples") == str(len(truncated))
    page.select_option("#filter-flag", ":none")
    assert visible.count() == len(rows) - len(truncated)


def test_rejects_gallery_lists_each_reason_with_its_detail(page, run):
    groups = {el.get_attribute("data-reject-group"): int(el.get_attribute("data-value"))
              for el in page.locator("details.reject-group").all()}
    assert groups == {f"{stage}/{reason}": n for stage, by in run["stats"]["rejects"].items() for reason, n in by.items()}
    page.locator('details[data-reject-group="decode/not_an_image"] summary').click()
    assert "broken.jpg" in page.locator('details[data-reject-group="decode/not_an_image"] tr.reject').inner_text()
