import base64
import hashlib
import json
import re
import uuid
from html.parser import HTMLParser

import fsspec

from llavaforge.cli import main
from llavaforge.report import default_report_path, published_run_dir, render_report
from llavaforge.report.render import clip
from llavaforge.schemas.record import Reject
from tests.conftest import image_bytes, published_dir, write_tar
from tests.report.runs import conversation, image, write_run

EVIL = ['<script>window.pwned = 1</script>', '"><img src=x onerror="window.pwned=1">']


class Page(HTMLParser):
    """Tags with their attributes, and the text of every <script> element."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data

    def attrs(self, name: str) -> dict[str, str]:
        return {a[name]: a.get("data-value") for _, a in self.tags if name in a}


def evil_run(prefix: str) -> dict:
    record = image(1, conversation("conversation", (f"What does {EVIL[1]} say?", f"It says {EVIL[0]}.")),
                   objects=(EVIL[1],), tags=(EVIL[0],), ocr=EVIL, source=EVIL, caption=EVIL[0])
    rejects = [Reject(key="e" * 32, source_url=EVIL[1], source_member=EVIL[0], stage="check", reason="refusal",
                      detail=EVIL[0] + EVIL[1], task="reasoning")]
    return write_run(prefix, [[record]], rejects)


def test_untrusted_text_is_escaped_and_only_the_pages_own_script_can_run(tmp_path):
    evil_run(str(tmp_path / "run"))
    out = tmp_path / "report.html"
    render_report(str(tmp_path / "run"), str(out))
    html = out.read_text()
    page = Page(html)
    assert [tag for tag, _ in page.tags].count("script") == 1
    assert all(a.get("src", "data:").startswith("data:") for tag, a in page.tags if tag == "img")
    assert not any(name.startswith("on") for _, a in page.tags for name in a)
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in html
    assert html.count("&#34;&gt;&lt;img src=x onerror=&#34;window.pwned=1&#34;&gt;") >= 4  # source, OCR, label, question
    csp = re.search(r"script-src 'sha256-([^']+)'", html).group(1)
    assert base64.b64encode(hashlib.sha256(page.scripts[0].encode()).digest()).decode() == csp
    assert "default-src 'none'" in html


def test_page_numbers_are_the_accounting_of_stats_json(tmp_path):
    records = [image(i, conversation("conversation", ("Q?", "A."))) for i in range(3)]
    rejects = [Reject(key="d" * 32, source_url="s.tar", source_member="x.jpg", stage="decode", reason="empty")]
    stats = write_run(str(tmp_path / "run"), [records], rejects)
    render_report(str(tmp_path / "run"), str(tmp_path / "r.html"))
    page = Page((tmp_path / "r.html").read_text())
    shown = page.attrs("data-stat")
    for key in ("inputs", "images_written", "images_rejected", "duplicates", "samples_written", "sample_rejects"):
        assert int(shown[key]) == stats[key], key
    assert shown["balanced"] == "true"
    assert page.attrs("data-reject") == {"decode/empty": "1"}
    assert page.attrs("data-task-count") == {"conversation": "3"}
    assert len(page.attrs("data-sample-id")) == 3
    assert "warnings" not in {a.get("id") for _, a in page.tags}


def test_stages_are_shown_in_pipeline_order_when_the_run_recorded_them(tmp_path):
    stages = {"check": {"in": 3, "out": 2, "rejected": 1, "seconds": 0.5},
              "my_stage": {"in": 2, "out": 2, "rejected": 0, "seconds": 0.1},
              "read": {"in": 4, "out": 3, "rejected": 1, "seconds": 2.0}}
    write_run(str(tmp_path / "with"), [[image(1)]], stages=stages)
    write_run(str(tmp_path / "without"), [[image(1)]])
    for name in ("with", "without"):
        render_report(str(tmp_path / name), str(tmp_path / f"{name}.html"))
    with_stages = Page((tmp_path / "with.html").read_text())
    assert [a["data-stage"] for _, a in with_stages.tags if "data-stage" in a] == ["read", "check", "my_stage"]
    without = (tmp_path / "without.html").read_text()
    assert 'id="stages-missing"' in without and "not recorded by this run" in without


def test_a_missing_image_or_stats_disagreeing_with_the_files_is_said_on_the_page(tmp_path):
    prefix = tmp_path / "run"
    write_run(str(prefix), [[image(1, conversation("detail", ("Describe it.", "A photo."))), image(2)]])
    (prefix / "images" / f"{1:032x}.jpg").unlink()
    stats = json.loads((prefix / "stats.json").read_text())
    stats["samples_written"] += 1
    (prefix / "stats.json").write_text(json.dumps(stats))
    result = render_report(str(prefix), str(tmp_path / "r.html"))
    html = (tmp_path / "r.html").read_text()
    assert result.images_shown == 2
    assert "image not shown: FileNotFoundError" in html
    assert "1 gallery image(s) could not be shown" in html
    assert "stats.json says samples_written = 3 but samples/ holds 2" in html


def test_reads_and_writes_fsspec_urls():
    prefix = f"memory://report-test-{uuid.uuid4().hex}"
    write_run(f"{prefix}/run", [[image(i, conversation("reasoning", ("Why?", "Because."))) for i in range(4)]])
    result = render_report(f"{prefix}/run", f"{prefix}/report.html", gallery_images=2)
    with fsspec.open(f"{prefix}/report.html", "rb") as f:
        html = f.read()
    assert result.bytes == len(html) and (result.images_shown, result.images_total) == (2, 4)
    assert b"Showing 2 of 4 images (2 of 4 samples), sampled" in html
    assert html.count(b'data:image/webp;base64,') == 2


def test_cli_writes_the_report_and_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    write_run(str(tmp_path / "run"), [[image(1)]])
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").stat().st_size > 0
    assert f"wrote {tmp_path / 'r.html'}" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no stats.json" in capsys.readouterr().err


def test_report_paths(tmp_path):
    assert published_run_dir("memory://b/run-folder") == "memory://b/run-folder"  # a run folder: itself
    out = tmp_path / "out"
    assert main(["-q", "run", "--input", write_tar(tmp_path / "in.tar", [("a.jpg", image_bytes())]),
                 "--output", str(out)]) == 0
    assert published_run_dir(str(out)) == str(published_dir(out))  # a prefix: what it publishes
    assert default_report_path("gs://b/runs/run-7/") == "llavaforge-report-run-7.html"
    assert default_report_path("/data/out") == "llavaforge-report-out.html"


def test_long_texts_are_clipped_with_what_was_left_out():
    assert clip("x" * 10, "caption") == "x" * 10
    assert clip("x" * 2500, "detail") == "x" * 2000 + "… (500 more characters)"
    assert clip(None, "turn") == ""


def test_a_run_that_wrote_nothing_still_renders(tmp_path):
    write_run(str(tmp_path / "run"), [[]], [Reject(key="e" * 32, source_url="s.tar", source_member="x.jpg",
                                                    stage="decode", reason="empty")])
    result = render_report(str(tmp_path / "run"), str(tmp_path / "r.html"))
    html = (tmp_path / "r.html").read_text()
    assert (result.images_shown, result.images_total) == (0, 0)
    assert "Showing 0 of 0 images (0 of 0 samples)." in html and "no values in this run" in html
