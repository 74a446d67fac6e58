"""The VLM roles' prompt files (dense caption, verify) and the vision blocks of the task prompts."""

from __future__ import annotations

import pytest

from llavaforge.prompts.library import PromptError, load_library
from llavaforge.prompts.vision import load_vision_prompt, render_answers


@pytest.mark.parametrize("kind", ["dense_caption", "verify"])
def test_packaged_prompts_load_with_a_content_version(kind):
    prompt = load_vision_prompt(kind)
    assert prompt.prompt_version.startswith(f"{kind}-v1-") and len(prompt.prompt_version.split("-")[-1]) == 8
    system, user = prompt.messages("1. Question: q\n   Answer: a")
    assert system["role"] == "system" and system["content"] and user["role"] == "user"


def test_verify_prompt_gets_the_numbered_answers():
    answers = render_answers([("<b>What is it?</b>", "A red bus."), ("How many?", "Two\npeople.")], 200)
    assert answers == ("1. Question: <b>What is it?</b>\n   Answer: A red bus.\n"
                       "2. Question: How many?\n   Answer: Two people.")
    (_, user) = load_vision_prompt("verify").messages(answers)
    assert answers in user["content"] and "{answers}" not in user["content"]
    assert render_answers([("q", "x" * 50)], 20) == "1. Question: q\n   Answer: " + "x" * 20 + " …"


def test_an_edited_file_is_a_new_version(tmp_path):
    packaged = load_vision_prompt("dense_caption")
    edited = tmp_path / "mine.yaml"
    edited.write_text("kind: dense_caption\nversion: 1\nsystem: Describe.\nquery: Describe this photo.\n")
    mine = load_vision_prompt("dense_caption", str(edited))
    assert mine.prompt_version != packaged.prompt_version and mine.messages()[0]["content"] == "Describe."


@pytest.mark.parametrize("text, message", [
    ("kind: verify\nversion: 1\nsystem: s\nquery: no slot\n", r"`query`.*\{answers\}"),
    ("kind: verify\nversion: 0\nsystem: s\nquery: '{answers}'\n", "`version`"),
    ("kind: dense_caption\nversion: 1\nsystem: s\nquery: q\n", "expected 'verify'"),
    ("kind: verify\nversion: 1\nsystem: s\nquery: '{answers}'\nextra: 1\n", "`extra`"),
    ("kind: [", "not valid YAML"),
])
def test_bad_files_name_the_file_and_field(tmp_path, text, message):
    path = tmp_path / "verify.yaml"
    path.write_text(text)
    with pytest.raises(PromptError, match=message):
        load_vision_prompt("verify", str(path))
    with pytest.raises(PromptError, match="missing.yaml"):
        load_vision_prompt("verify", str(tmp_path / "missing.yaml"))


def test_every_packaged_task_has_a_vision_prompt_without_few_shot_turns():
    library = load_library()
    for name, task in library.tasks.items():
        system, user = task.vision_messages("Tags: dog")
        assert system["content"] == task.spec.vision.system.strip() and user["content"]
        assert "notes" not in system["content"].lower()  # the VLM sees the photo, it gets no notes


def test_a_task_without_a_vision_block_cannot_run_in_vlm_mode(tmp_path):
    (tmp_path / "plain.yaml").write_text("task: plain\nversion: 1\nformat: pair\nsystem: s\n")
    task = load_library(str(tmp_path)).task("plain")
    with pytest.raises(PromptError, match="no `vision` prompt"):
        task.vision_messages("ctx")


def test_a_vision_query_may_quote_the_annotations(tmp_path):
    (tmp_path / "hinted.yaml").write_text(
        "task: hinted\nversion: 1\nformat: pair\nsystem: s\nvision:\n  system: v\n  query: 'Notes: {context}'\n")
    (_, user) = load_library(str(tmp_path)).task("hinted").vision_messages("Tags: dog\n")
    assert user["content"] == "Notes: Tags: dog"
