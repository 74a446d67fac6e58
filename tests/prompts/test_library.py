import shutil

import pytest

from llavaforge.prompts import context
from llavaforge.config.prompts import PACKAGED_PROMPTS as PACKAGED_LIBRARY
from llavaforge.prompts.library import PromptError, load_library

KNOWN_HEADERS = (context.CAPTIONS_HEADER, context.OBJECTS_HEADER, context.OCR_HEADER, context.SOURCE_HEADER)


def test_packaged_library_has_the_three_task_types_with_few_shots():
    library = load_library()
    assert set(library.tasks) == {"conversation", "detail", "reasoning"}
    for task in library.tasks.values():
        assert 2 <= len(task.spec.examples) <= 3
        assert task.prompt_version.startswith(f"{task.name}-v{task.spec.version}-")
    assert len(library.task("detail").spec.instructions) >= 10
    assert library.task("detail").spec.format == "answer"


def test_few_shot_contexts_are_written_as_the_renderer_writes_them():
    for task in load_library().tasks.values():
        for shot in task.spec.examples:
            headers = [line for line in shot.context.splitlines() if line.endswith(":") or line.startswith("Tags: ")]
            assert headers and all(h in KNOWN_HEADERS or h.startswith(context.TAGS_PREFIX) for h in headers), headers


def test_messages_are_system_then_alternating_shots_then_the_query():
    task = load_library().task("conversation")
    messages = task.messages("Tags: cat", examples=1)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[-1]["content"] == "Tags: cat"
    assert task.prefix_messages(1) == messages[:-1]
    assert len(task.messages("x")) == 2 + 2 * len(task.spec.examples)


def test_an_edit_changes_the_version_and_the_fingerprint(tmp_path):
    folder = tmp_path / "prompts"
    shutil.copytree(PACKAGED_LIBRARY, folder)
    before = load_library(str(folder))
    assert before.fingerprint == load_library().fingerprint
    path = folder / "reasoning.yaml"
    path.write_text(path.read_text().replace("one hard question", "one difficult question"))
    after = load_library(str(folder))
    assert after.task("reasoning").prompt_version != before.task("reasoning").prompt_version
    assert after.task("detail").prompt_version == before.task("detail").prompt_version
    assert after.fingerprint != before.fingerprint


def test_a_new_task_type_is_just_a_file(tmp_path):
    folder = tmp_path / "prompts"
    shutil.copytree(PACKAGED_LIBRARY, folder)
    (folder / "counting.yaml").write_text(
        "task: counting\nversion: 1\nformat: pair\nsystem: Ask how many of one thing there are.\n"
        "examples:\n  - context: 'Tags: dog'\n    output: 'Question: How many dogs?\n===\nAnswer: One.'\n")
    library = load_library(str(folder))
    assert library.task("counting").messages("Tags: cat")[-1]["content"] == "Tags: cat"


@pytest.mark.parametrize("text, field", [
    ("task: detail\nversion: 1\nformat: answer\nsystem: s\n", "instructions"),
    ("task: other\nversion: 1\nformat: turns\nsystem: s\n", "`task`"),
    ("task: detail\nversion: 1\nformat: essay\nsystem: s\n", "format"),
    ("task: detail\nversion: 1\nformat: turns\nsystem: s\nquery: no slot\n", "query"),
    ("task: detail\nversion: 1\nformat: turns\nsystem: s\ntemperature: 2\n", "temperature"),
])
def test_bad_prompt_files_name_the_file_and_field(tmp_path, text, field):
    (tmp_path / "detail.yaml").write_text(text)
    with pytest.raises(PromptError, match="detail.yaml") as err:
        load_library(str(tmp_path))
    assert field in str(err.value)


def test_unknown_task_and_missing_folder_are_clear_errors(tmp_path):
    with pytest.raises(PromptError, match="no prompt file for task 'ocr_qa'"):
        load_library().task("ocr_qa")
    with pytest.raises(PromptError, match="does not exist"):
        load_library(str(tmp_path / "nope"))
