"""One job at a time per output prefix: a lease file that expires if its holder dies.

The lease is taken before anything is written and released when the job's publication step
has run (by the graph itself, so a job nobody waits for still releases it). A driver that
waits refreshes it while the job runs (`keep_alive`); a driver that does not wait leaves it
valid for `DETACHED_TTL_S`, long enough for a scheduled Dataflow job. An expired lease is
taken over, and so is one whose holder was a process on this host that no longer exists (a
killed local run is recovered at once, not after the lease's time). The lease makes a second job fail fast and clearly; the ledger's exclusive commit
is what guarantees that two jobs never both publish, should a lease ever be lost.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from fsspec.core import url_to_fs

from llavaforge.jobs.prefix import OutputError, OutputPrefix
from llavaforge.schemas.layout import LEASE_FILE
from llavaforge.storage import create_exclusive, json_bytes, read_json, write_atomic

TTL_S = 600.0
DETACHED_TTL_S = 48 * 3600.0


class BusyError(OutputError):
    """Another job holds the output prefix (exit 2)."""


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


@dataclass(frozen=True)
class Lease:
    """What the publication step needs to release the lease: where it is and whose it is."""

    url: str
    run_id: str
    token: str

    def document(self, ttl_s: float) -> dict[str, Any]:
        now = time.time()
        return {"run_id": self.run_id, "token": self.token, "holder": f"{socket.gethostname()} pid {os.getpid()}",
                "host": socket.gethostname(), "pid": os.getpid(), "pid_started": _process_start(os.getpid()),
                "acquired_at": now, "expires_at": now + ttl_s}

    def held(self) -> bool:
        current = read_json(self.url)
        return current is not None and current.get("token") == self.token

    def refresh(self, ttl_s: float = TTL_S) -> bool:
        """Extend the lease if it is still ours; False when it was released or taken."""
        if not self.held():
            return False
        write_atomic(self.url, json_bytes(self.document(ttl_s)))
        return True

    def release(self) -> None:
        """Remove the lease if it is still ours (idempotent)."""
        if self.held():
            fs, path = url_to_fs(self.url)
            fs.rm_file(path)


def _process_start(pid: int) -> Optional[str]:
    """When a process started (Linux /proc), so a reused pid is not mistaken for the holder."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _holder_gone(document: dict[str, Any]) -> bool:
    """Whether the lease's holder was a process on this host that has ended."""
    if document.get("host") != socket.gethostname() or not isinstance(document.get("pid"), int):
        return False
    pid = document["pid"]
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    started = document.get("pid_started")
    return started is not None and _process_start(pid) not in (None, started)


def acquire(prefix: OutputPrefix, run_id: str, ttl_s: float = TTL_S) -> Lease:
    """Take the prefix's lease, or raise BusyError naming the job that holds it."""
    lease = Lease(prefix.url_of(LEASE_FILE), run_id, uuid.uuid4().hex)
    for _ in range(3):
        if create_exclusive(lease.url, json_bytes(lease.document(ttl_s))):
            return lease
        current = read_json(lease.url)
        if current is None:
            continue  # released in between: try again
        if current.get("expires_at", 0) > time.time() and not _holder_gone(current):
            raise BusyError(f"output {prefix.url} is in use by run {current.get('run_id')} "
                            f"({current.get('holder')}) until {_utc(current['expires_at'])} at the latest; "
                            f"one job at a time per output prefix")
        # Expired, or its holder died: remove it if it is still that same lease.
        if (read_json(lease.url) or {}).get("token") == current.get("token"):
            fs, path = url_to_fs(lease.url)
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(path)
    raise BusyError(f"output {prefix.url}: could not take over an expired lease (another job is taking it)")


@contextlib.contextmanager
def keep_alive(lease: Lease, ttl_s: float = TTL_S) -> Iterator[None]:
    """Refresh the lease every third of its time to live while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(ttl_s / 3):
            if not lease.refresh(ttl_s):
                return

    thread = threading.Thread(target=beat, name="llavaforge-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def holder(prefix: OutputPrefix) -> Optional[dict[str, Any]]:
    """The current lease document, when one is valid."""
    current = read_json(prefix.url_of(LEASE_FILE))
    if current is None or current.get("expires_at", 0) <= time.time() or _holder_gone(current):
        return None
    return current
