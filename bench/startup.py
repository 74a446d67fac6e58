"""Start-up time of the command line: `llavaforge --help`, `llavaforge verify PREFIX` on a
small published output and a driver's start (`llavaforge run --dry-run`: imports and the whole
graph of the `tiny` preset, no model loaded), against a bare Python start measured in the same
run (median of N).

    .venv/bin/python bench/startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "llavaforge.cli"]


def median_seconds(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        output = f"{tmp}/out"
        subprocess.run([*CLI, "-q", "run", "--input", str(REPO / "examples" / "sample-000.tar"), "--output", output],
                       cwd=REPO, check=True, capture_output=True)
        rows = {"python -c pass (baseline)": [sys.executable, "-c", "pass"],
                "llavaforge --help": [*CLI, "--help"],
                "llavaforge verify": [*CLI, "verify", output],
                "llavaforge run --dry-run": [*CLI, "-q", "run", "--input", str(REPO / "examples" / "sample-000.tar"),
                                             "--output", f"{tmp}/dry", "--set", "preset=tiny", "--dry-run"]}
        results = {name: median_seconds(command, args.repeats) for name, command in rows.items()}
    base = results["python -c pass (baseline)"]
    for name, seconds in results.items():
        print(f"{name:<28} {seconds:6.3f} s  ({seconds / base:4.1f}x a bare Python start)")


if __name__ == "__main__":
    main()
