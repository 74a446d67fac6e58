"""Check that the pipeline's imports resolve on the GPU machine (wheels from .whl).

Run from the repo root after the install line in bench/device_wheels.txt:
    python3 bench/device_check_imports.py
Prints each module's version; exits 1 naming the first import that fails.
Also prints (as WARN, not failure) device packages whose version lies outside
apache-beam's / proto-plus's / pydantic's declared pins.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODULES = [
    "apache_beam",
    "apache_beam.runners.direct",
    "pydantic",
    "imagehash",
    "webdataset",
    "pyarrow",
    "fsspec",
    "llavaforge.cli",
]


def module_version(name: str, mod) -> str:
    top = sys.modules.get(name.split(".")[0], mod)
    return str(getattr(top, "__version__", "?"))


def check_pins() -> None:
    """Report installed versions that violate the carried wheels' Requires-Dist."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution, version
        from packaging.requirements import Requirement
    except Exception as e:  # packaging missing: skip the report, not an error
        print(f"pin check skipped: {e}")
        return
    for dist_name in ("apache-beam", "proto-plus", "pydantic", "pydantic-core", "httplib2",
                      "cryptography"):
        try:
            reqs = distribution(dist_name).requires or []
        except PackageNotFoundError:
            continue
        for line in reqs:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                have = version(req.name)
            except PackageNotFoundError:
                print(f"WARN {dist_name} needs {req}: not installed")
                continue
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                print(f"WARN {dist_name} needs {req}: have {req.name} {have}")


def main() -> int:
    print(f"python {sys.version.split()[0]} at {sys.executable}")
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except Exception:
            traceback.print_exc()
            print(f"FAIL import {name}")
            return 1
        where = getattr(mod, "__file__", "?")
        print(f"ok   {name:28s} {module_version(name, mod):12s} {where}")
    for name in ("numpy", "protobuf", "grpcio", "pillow", "pyarrow", "python-dateutil",
                 "typing-extensions", "packaging", "requests", "pyyaml", "cloudpickle"):
        try:
            from importlib.metadata import version
            print(f"dist {name:28s} {version(name)}")
        except Exception as e:
            print(f"dist {name:28s} missing ({e.__class__.__name__})")
    check_pins()
    print("ALL IMPORTS OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
