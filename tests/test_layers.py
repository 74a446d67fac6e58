"""The import structure: every module imports only from its own layer or the layers below it
(docs/architecture.md has the map). Imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llavaforge"
# Low to high. A module's layer is that of its top-level package (or module) under llavaforge.
LAYERS = [
    {"__init__", "errors", "storage", "crashpoint", "progress"},
    {"schemas", "config"},
    {"quality", "prompts"},
    {"models"},
    {"transforms"},
    {"runners"},
    {"pipelines"},
    {"jobs"},
    {"report"},
    {"cli"},
]


def layer_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS (and to the architecture map)")


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("llavaforge")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llavaforge"):
            found.add(node.module)
    return found


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("llavaforge", *path.relative_to(PACKAGE).with_suffix("").parts))
        for imported in imports_of(path):
            if layer_of(imported) > layer_of(module):
                upward.append(f"{module} -> {imported}")
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)
