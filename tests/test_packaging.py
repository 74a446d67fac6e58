"""setup.py, the container's pins (deploy/constraints.txt, deploy/Dockerfile) and the installed
environment agree: every pin satisfies setup.py's bounds, every third-party import of
llavaforge is declared, and `pip check` passes."""

from __future__ import annotations

import ast
import re
import runpy
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path
from unittest import mock

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
CONSTRAINTS = ROOT / "deploy" / "constraints.txt"


def setup_arguments() -> dict:
    """The keyword arguments setup.py passes to setuptools.setup, without running a build."""
    captured: dict = {}
    with mock.patch("setuptools.setup", lambda **kwargs: captured.update(kwargs)):
        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    return captured


def image_extras(dockerfile: str) -> list[str]:
    """The extras the Dockerfile installs llavaforge with (`pip install ... ".[a,b]"`)."""
    (extras,) = re.findall(r'pip install [^\n]*"\.\[([a-z0-9_,-]+)\]"', dockerfile)
    return extras.split(",")


def requirements(arguments: dict, extras: list[str]) -> list[Requirement]:
    lines = list(arguments["install_requires"])
    for extra in extras:
        lines += arguments["extras_require"][extra]
    return [Requirement(line) for line in lines]


def pins(text: str) -> dict[str, Version]:
    found = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"constraints.txt: {line!r} is not an exact pin"
            found[canonicalize_name(requirement.name)] = Version(spec.version)
    return found


def disagreements(required: list[Requirement], pinned: dict[str, Version]) -> list[str]:
    """Why the pins do not fit setup.py's requirements: each problem named; [] when they do."""
    problems = []
    for requirement in required:
        name = canonicalize_name(requirement.name)
        if name not in pinned:
            problems.append(f"{requirement} is not pinned")
        elif not requirement.specifier.contains(pinned[name], prereleases=True):
            problems.append(f"pin {name}=={pinned[name]} is outside setup.py's {requirement}")
    unused = set(pinned) - {canonicalize_name(r.name) for r in required}
    problems += [f"pin {name} is not a requirement of setup.py" for name in sorted(unused)]
    return problems


def third_party_imports() -> set[str]:
    """Top-level modules llavaforge's code imports, other than itself and the standard library."""
    modules = set()
    for path in (ROOT / "llavaforge").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"llavaforge"}


def distribution_of(module: str) -> str:
    """The distribution that provides `module` when it is installed here, else its own name."""
    installed = packages_distributions().get(module)
    return canonicalize_name(installed[0] if installed else module)


@pytest.fixture(scope="module")
def arguments() -> dict:
    return setup_arguments()


def test_container_pins_satisfy_setup_py(arguments):
    dockerfile = DOCKERFILE.read_text()
    required = requirements(arguments, image_extras(dockerfile))
    assert disagreements(required, pins(CONSTRAINTS.read_text())) == []


def test_a_pin_outside_setup_py_is_reported(arguments):
    required = requirements(arguments, image_extras(DOCKERFILE.read_text()))
    pinned = pins(CONSTRAINTS.read_text())
    too_old = {**pinned, "torch": Version("2.0.0")}
    assert any("torch==2.0.0" in p for p in disagreements(required, too_old))
    missing = {k: v for k, v in pinned.items() if k != "numpy"}
    assert any(p.startswith("numpy") and "not pinned" in p for p in disagreements(required, missing))
    assert any("not a requirement" in p for p in disagreements(required, {**pinned, "left-pad": Version("1")}))


def test_the_image_installs_with_the_pins_and_checks_itself():
    dockerfile = DOCKERFILE.read_text()
    pinned = pins(CONSTRAINTS.read_text())
    assert re.search(r'pip install [^\n]*-c deploy/constraints\.txt "\.\[', dockerfile)
    assert "RUN python deploy/check_image.py --vllm" in dockerfile
    # Beam's boot program comes from the Beam image of the pinned version
    (beam_version,) = re.findall(r"^ARG BEAM_VERSION=(\S+)$", dockerfile, re.M)
    assert Version(beam_version) == pinned["apache-beam"]
    assert "FROM apache/beam_python3.11_sdk:${BEAM_VERSION} AS beam" in dockerfile


def test_the_image_python_satisfies_setup_py(arguments):
    dockerfile = DOCKERFILE.read_text()
    (python_image,) = re.findall(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)\S*$", dockerfile, re.M)
    assert SpecifierSet(arguments["python_requires"]).contains(python_image)
    assert f"beam_python{python_image}_sdk" in dockerfile and f"python{python_image.replace('.', '')}-template" in dockerfile


def test_launcher_image_is_pinned():
    (launcher,) = re.findall(r"^ARG LAUNCHER_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.M)
    digest = re.search(r"@sha256:[0-9a-f]{64}$", launcher)
    release = re.search(r":flex_templates_base_image_release_\d{8}_RC\d\d$", launcher)
    assert digest or release, launcher


def test_every_third_party_import_is_declared_and_pinned(arguments):
    declared = {canonicalize_name(r.name) for r in requirements(arguments, list(arguments["extras_require"]))}
    pinned = pins(CONSTRAINTS.read_text())
    imported = {module: distribution_of(module) for module in third_party_imports()}
    assert {m: d for m, d in imported.items() if d not in declared} == {}
    assert {m: d for m, d in imported.items() if d not in pinned} == {}


def test_pip_check_passes():
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
