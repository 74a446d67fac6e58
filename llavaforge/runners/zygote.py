"""SDK worker processes forked from one process that has already imported them.

Why: every SDK worker of the job service imports Beam's worker, torch, transformers' model
base and llavaforge's stages before its first bundle (about 15 s a worker when two start
together on 2 cores, measured with py-spy), and local runs pay that once per worker. The
job service starts one zygote at its own start: it imports those modules once, in parallel
with whatever the driver is doing, then forks a worker per request. A forked worker shares
the imported modules' memory with its siblings until it writes to it.

Fork safety: the zygote is its own process (never the job service, which runs gRPC servers)
and never creates a gRPC channel, a torch thread pool or any other thread before it forks.
A worker sets torch's thread count from its own environment (`OMP_NUM_THREADS`, which the
job service sets per worker), since the OpenMP runtime read the zygote's at import.

The protocol: the job service starts workers with the `llavaforge-sdk-worker` command, a
launcher that imports nothing heavy. With `LLAVAFORGE_ZYGOTE` naming the zygote's socket, it
sends its argv, environment and working directory with its stdin/stdout/stderr (SCM_RIGHTS),
then waits for the worker's exit code. The worker exits when the launcher dies (its socket
closes), so the job service's kill of a launcher stops the worker. Without a zygote (or when
its socket does not answer) the launcher runs Beam's SDK worker itself, as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Iterator, NamedTuple, Optional

from llavaforge.runners.allocator import limit_malloc_arenas

ZYGOTE_ENV = "LLAVAFORGE_ZYGOTE"
START_TIMEOUT_S = 10.0

# What a worker imports before its first bundle: Beam's harness, the stages and model handlers
# its DoFns unpickle into (torch, Beam's RunInference), and transformers' model base that every
# role's `from_pretrained` loads (4.7 of the 5.3 s of model code; one architecture is ~0.05 s).
# Names, not imports: this module stays light for the launcher, and below the layers it preloads.
PRELOAD = (
    "apache_beam.runners.worker.sdk_worker_main",
    "llavaforge.pipelines.build",
    "transformers.modeling_utils",
    "transformers.processing_utils",
    "transformers.image_processing_utils",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.processing_auto",
    "transformers.models.auto.tokenization_auto",
)

_LENGTH = struct.Struct("!Q")
_INT = struct.Struct("!i")  # the forked worker's pid (its answer), then its exit code


def _send_message(conn: socket.socket, payload: bytes, fds: list[int]) -> None:
    socket.send_fds(conn, [_LENGTH.pack(len(payload)) + payload], fds)


def _receive_message(conn: socket.socket) -> tuple[bytes, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    if len(data) < _LENGTH.size:
        raise ConnectionError("the launcher closed before sending its request")
    length = _LENGTH.unpack_from(data)[0]
    data = data[_LENGTH.size:]
    while len(data) < length:
        chunk = conn.recv(min(1 << 20, length - len(data)))
        if not chunk:
            raise ConnectionError("the launcher closed in the middle of its request")
        data += chunk
    return data, fds


# ---- the launcher: the `llavaforge-sdk-worker` console script -----------------------------

def launch_worker() -> None:
    """Beam's SDK worker, forked from the zygote when there is one, else run here."""
    path = os.environ.get(ZYGOTE_ENV)
    code = run_in_zygote(path, sys.argv) if path else None
    if code is not None:
        sys.exit(code)
    from llavaforge.runners import worker_plugin  # noqa: F401 -- importing it mends this worker
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


def run_in_zygote(path: str, argv: list[str]) -> Optional[int]:
    """The exit code of `argv`'s worker forked by the zygote at `path`; None when no zygote
    answers there (nothing was started)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        request = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
        _send_message(conn, request, [0, 1, 2])
    except OSError:
        conn.close()
        return None
    with conn:
        if _receive_int(conn) is None:
            return None  # the zygote closed without forking (it was stopping or failed to start)
        code = _receive_int(conn)
    # No exit code: the worker was killed before it could report; fail like a killed process.
    return 128 + signal.SIGKILL if code is None else code


def _receive_int(conn: socket.socket) -> Optional[int]:
    data = b""
    while len(data) < _INT.size:
        try:
            chunk = conn.recv(_INT.size - len(data))
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return _INT.unpack(data)[0]


# ---- the zygote ----------------------------------------------------------------------------

def _run_forked_worker(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """In the forked child: become the launcher's worker, report its exit code, exit."""
    code = 1
    try:
        # The answer comes from the worker itself, so it always precedes its exit code.
        conn.sendall(_INT.pack(os.getpid()))
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0:
            import torch

            torch.set_num_threads(int(threads))

        def exit_with_launcher() -> None:
            conn.recv(1)  # returns when the launcher's end closes: it died or was killed
            os._exit(128 + signal.SIGTERM)

        threading.Thread(target=exit_with_launcher, name="launcher-watch", daemon=True).start()
        from llavaforge.runners import worker_plugin  # noqa: F401 -- importing it mends this worker
        from apache_beam.runners.worker import sdk_worker_main

        sdk_worker_main.main(request["argv"])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 -- reported on the launcher's stderr, then the exit code
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 -- the launcher's streams may be gone
                pass
        try:
            conn.sendall(_INT.pack(code))
        except OSError:
            pass
        os._exit(code)


def serve(path: str) -> None:
    """Listen at `path` first (early workers wait in the backlog), import PRELOAD, then fork a
    worker per request until stdin closes (the job service is gone)."""
    import importlib

    limit_malloc_arenas()  # forked workers inherit it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    try:
        for module in PRELOAD:
            importlib.import_module(module)
        if threading.active_count() != 1:
            raise RuntimeError(f"threads exist after the imports, forking is unsafe: {threading.enumerate()}")
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps exited workers
        while True:
            readable, _, _ = select.select([listener, sys.stdin], [], [])
            if sys.stdin in readable and not os.read(sys.stdin.fileno(), 1 << 10):
                return
            if listener not in readable:
                continue
            conn, _ = listener.accept()
            fds: list[int] = []
            try:
                payload, fds = _receive_message(conn)
                request = json.loads(payload)
                if os.fork() == 0:
                    try:
                        listener.close()
                        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                        _run_forked_worker(conn, request, fds)
                    finally:
                        os._exit(1)  # a child never returns to the zygote's loop
            except (OSError, ValueError):
                pass  # no answer reaches the launcher, which then runs its worker itself
            finally:
                conn.close()
                for fd in fds:
                    os.close(fd)
    finally:
        listener.close()
        Path(path).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            Path(path).parent.rmdir()


class Zygote(NamedTuple):
    socket: str  # the path to name in a worker launcher's environment as ZYGOTE_ENV
    process: subprocess.Popen


@contextlib.contextmanager
def running() -> Iterator[Zygote]:
    """A zygote for the duration of the block. It listens before it imports, so this waits only
    for its interpreter's start; workers asking for a fork wait until its imports are done."""
    folder = Path(tempfile.mkdtemp(prefix="llavaforge-zygote-"))
    path = str(folder / "socket")
    process = subprocess.Popen([sys.executable, "-m", "llavaforge.runners.zygote", path],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not os.path.exists(path) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield Zygote(path, process)
    finally:
        process.stdin.close()  # its end of the pipe closes: it stops forking and exits
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    serve(sys.argv[1])
