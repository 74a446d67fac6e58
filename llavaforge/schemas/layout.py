"""Where everything lives under an output prefix: the names of folders, files and markers.

    PREFIX/_llavaforge.json            the prefix's marker: llavaforge writes only where it is (or
                                       into an empty/missing prefix, which it then marks)
    PREFIX/README.md                   dataset card: `load_dataset(PREFIX)` reads what is published
    PREFIX/_lease.json                 held by the one run working on the prefix (expires)
    PREFIX/_progress/run-ID/*.json     counters the running job's workers write (removed after)
    PREFIX/_staging/run-ID/KEY.EXT     image bytes from decode to write (removed after)
    PREFIX/_ledger/NNNNNNNN.json       the commit log: entry N publishes one run folder
    PREFIX/_ledger/keys/run-ID.parquet keys a run published (nightly)
    PREFIX/run-ID/                     a `run`'s folder        } published once their ledger
    PREFIX/dt=DATE/run-ID/             a `nightly` run's folder} entry exists, else incomplete
        _run.json  samples/NNNNN.parquet  wds/EXT/NNNNN.tar  llava/NNNNN.json  images/KEY.EXT
        llava.json  dataset_info.json  review/NNNNN.parquet  rejects/NNNNN.parquet
        stats.json (written last)  metrics.json  report.html

A run folder is written only by its own run and never changes after its ledger entry exists.
"""

from __future__ import annotations

import re
from typing import Optional

from llavaforge.storage import join

PREFIX_MARKER = "_llavaforge.json"
DATASET_CARD = "README.md"
LEASE_FILE = "_lease.json"
PROGRESS_DIR = "_progress"
STAGING_DIR = "_staging"
LEDGER_DIR = "_ledger"
KEYS_DIR = f"{LEDGER_DIR}/keys"
RUN_MARKER = "_run.json"
STATS_FILE = "stats.json"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
LLAVA_FILE = "llava.json"
LLAMA_FACTORY_INFO = "dataset_info.json"
SAMPLES_DIR, WDS_DIR, LLAVA_DIR, IMAGES_DIR = "samples", "wds", "llava", "images"
REVIEW_DIR, REJECTS_DIR = "review", "rejects"
OUTPUT_DIRS = (SAMPLES_DIR, WDS_DIR, LLAVA_DIR, IMAGES_DIR, REVIEW_DIR, REJECTS_DIR)
RUN_FOLDER_PATTERNS = ("run-*", "dt=*/run-*")

_RUN_ID = r"[0-9]{8}T[0-9]{6}-[0-9a-f]{8}"
_RUN_FOLDER = re.compile(rf"^(?:dt=[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}/)?run-({_RUN_ID})$")
_LEDGER_ENTRY = re.compile(r"^([0-9]{8})\.json$")
# Every file a run writes inside its folder; nothing else there is ever deleted by llavaforge.
_RUN_FILES = re.compile(
    rf"^(?:{re.escape(RUN_MARKER)}|{STATS_FILE}|{METRICS_FILE}|{REPORT_FILE}|{LLAVA_FILE}|{LLAMA_FACTORY_INFO}"
    rf"|(?:{SAMPLES_DIR}|{REVIEW_DIR}|{REJECTS_DIR})/[0-9]{{5}}\.parquet|{WDS_DIR}/[a-z]{{3,4}}/[0-9]{{5}}\.tar"
    rf"|{LLAVA_DIR}/[0-9]{{5}}\.json|{IMAGES_DIR}/[0-9a-f]{{32}}\.[a-z]{{3,4}}"
    rf"|(?:.*/)?\.[^/]+\.tmp-[0-9a-f]{{12}})$")


def run_folder(run_id: str, date: Optional[str] = None) -> str:
    """A run's folder, relative to the prefix."""
    return f"dt={date}/run-{run_id}" if date else f"run-{run_id}"


def run_id_of_folder(relative: str) -> Optional[str]:
    """The run id a folder name (relative to the prefix) belongs to, or None if it is not one."""
    match = _RUN_FOLDER.match(relative.strip("/"))
    return match.group(1) if match else None


_PROGRESS_FILE = re.compile(r"^[A-Za-z0-9._-]+-[0-9]+-[0-9a-f]{6}\.json$")


def progress_folder(run_id: str) -> str:
    return f"{PROGRESS_DIR}/run-{run_id}"


def is_progress_file(name: str) -> bool:
    return bool(_PROGRESS_FILE.match(name))


def staging_folder(run_id: str) -> str:
    """Where a run stages its images' bytes between decode and write, relative to the prefix."""
    return f"{STAGING_DIR}/run-{run_id}"


_STAGED_FILE = re.compile(r"^(?:[0-9a-f]{32}\.[a-z]{3,4}|\.[0-9a-f]{32}\.[a-z]{3,4}\.tmp-[0-9a-f]{12})$")


def is_staged_file(name: str) -> bool:
    """Whether a file name in a staging folder is one llavaforge writes (a staged image, or the
    temporary file of one being written)."""
    return bool(_STAGED_FILE.match(name))


def ledger_entry(seq: int) -> str:
    return f"{LEDGER_DIR}/{seq:08d}.json"


def ledger_seq(name: str) -> Optional[int]:
    """The sequence number of a ledger file name (basename), or None."""
    match = _LEDGER_ENTRY.match(name)
    return int(match.group(1)) if match else None


def key_index(run_id: str) -> str:
    return f"{KEYS_DIR}/run-{run_id}.parquet"


def shard_name(index: int) -> str:
    return f"{index:05d}"


def shard_path(run_dir: str, folder: str, index: int, extension: str) -> str:
    return join(run_dir, folder, f"{shard_name(index)}.{extension}")


def wds_shard_path(run_dir: str, image_format: str, index: int) -> str:
    """WebDataset shards are grouped by image extension: one stream per extension."""
    return join(run_dir, WDS_DIR, image_format, f"{shard_name(index)}.tar")


def image_name(key: str, image_format: str) -> str:
    """An image's file name in `images/` (also its path in LLaVA records)."""
    return f"{key}.{image_format}"


def is_run_file(relative: str) -> bool:
    """Whether a path relative to a run folder is a file llavaforge writes there."""
    return bool(_RUN_FILES.match(relative))
