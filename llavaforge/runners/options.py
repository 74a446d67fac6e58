"""The Beam options a run uses: the runner default, refused modes, unknown flags, threads per
local worker process, and the model stages' GPU resource hints (`GpuStageOptions`)."""

from __future__ import annotations

import contextlib
import difflib
import os
from typing import Iterable, Iterator, Optional, Sequence

from apache_beam.options.pipeline_options import (DebugOptions, DirectOptions, PipelineOptions, SetupOptions,
                                                  StandardOptions, _BeamArgumentParser)

from llavaforge.errors import UsageError
from llavaforge.runners.allocator import limit_malloc_arenas, trim_heap_periodically
from llavaforge.runners.direct_offline import keep_direct_runner_offline
from llavaforge.runners.flush_race import fix_flush_race
from llavaforge.runners.input_messages import bound_data_channel_messages, stream_bundle_data
from llavaforge.runners.job_streams import follow_jobs_to_the_end
from llavaforge.runners.output_streams import release_closed_output_streams
from llavaforge.runners.sdk_dependencies import remove_dependency_folders
from llavaforge.runners.spilled_buffers import spill_stage_buffers

# Imported by every SDK worker at its start: the import mends the worker (worker_plugin.py).
WORKER_PLUGIN = "llavaforge.runners.worker_plugin"


class GpuStageOptions(PipelineOptions):
    """Resource hints the pipeline puts on its model stages (right fitting on Dataflow)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument("--gpu_stage_accelerator", default=None,
                            help="accelerator resource hint of the model stages, e.g. "
                                 "type:nvidia-l4;count:1;install-nvidia-driver")
        parser.add_argument("--gpu_stage_min_ram", default=None, help="min_ram resource hint of the model stages, e.g. 16GB")


class RunnerOptionError(UsageError):
    """Beam options this tool refuses to run with: the message says why and what to use."""


class _CheckingParser(_BeamArgumentParser):
    def error(self, message: str):
        raise RunnerOptionError(f"Beam option: {message}")


def _beam_parser() -> _BeamArgumentParser:
    """Every flag of every Beam options class (what Beam itself parses, as Beam builds it)."""
    parser = _CheckingParser(allow_abbrev=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)  # noqa: SLF001 -- the same registry Beam reads
    return parser


def unknown_flag(beam_args: Sequence[str], own_flags: Iterable[str] = ()) -> Optional[str]:
    """A message naming the first argument neither Beam nor llavaforge knows (Beam would drop it
    with a warning and run on), with the closest known flag; None when all are known."""
    parser = _beam_parser()
    _, unknown = parser.parse_known_args(list(beam_args))
    if not unknown:
        return None
    known = [flag for action in parser._actions for flag in action.option_strings] + list(own_flags)  # noqa: SLF001
    name = unknown[0].split("=", 1)[0]
    close = difflib.get_close_matches(name, known, n=1)
    return f"unknown argument {unknown[0]!r}" + (f"; did you mean {close[0]}?" if close else "")


def flags_for_command_substitution(flags: Sequence[str]) -> str:
    """Flags joined by spaces for `llavaforge run ... $(python -m ...)`: the shell splits a
    substitution on whitespace and does not remove quotes, so a flag is printed as it is and
    one that holds whitespace or a quote (which would arrive broken) is refused."""
    bad = [flag for flag in flags if any(c.isspace() or c in "'\"" for c in flag)]
    if bad:
        raise RunnerOptionError(f"cannot print {bad[0]!r} for $(...): it holds whitespace or a quote")
    return " ".join(flags)


TIMED_FLUSH_EXPERIMENT = "data_buffer_time_limit_ms"


def _timed_worker_flush(options: PipelineOptions) -> Optional[str]:
    """The experiment that makes SDK workers flush their output on a timer, if it is set above 0."""
    for experiment in options.view_as(DebugOptions).experiments or []:
        name, _, value = experiment.partition("=")
        if name == TIMED_FLUSH_EXPERIMENT and value.strip() not in ("", "0"):
            return experiment
    return None


def mend_local_runner() -> None:
    """Beam 2.77's local runner, mended in this process: the DirectRunner never detours through
    Prism (direct_offline.py); it sends whole bundles (flush_race.py), keeps stage outputs between
    stages on disk (spilled_buffers.py), streams a bundle's input to its worker and the in-process
    worker's output back, and queues two messages each way to a worker process
    (input_messages.py), and its in-process worker lets go of each stage's output buffer
    (output_streams.py); this process and the workers it starts keep two malloc arenas, and this
    process gives freed heap back every few seconds (allocator.py)."""
    keep_direct_runner_offline()
    fix_flush_race()
    spill_stage_buffers()
    stream_bundle_data()
    bound_data_channel_messages()
    release_closed_output_streams()
    limit_malloc_arenas()
    trim_heap_periodically()


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    # Every run's options come from here, so every run's local runner and every SDK worker
    # (wherever it runs) is mended, and a driver on a job service waits for the job however long it
    # runs and leaves no folder of SDK dependencies behind.
    mend_local_runner()
    follow_jobs_to_the_end()
    remove_dependency_folders()
    options = PipelineOptions(list(beam_args))
    setup = options.view_as(SetupOptions)
    if WORKER_PLUGIN not in (setup.beam_plugins or []):
        setup.beam_plugins = [*(setup.beam_plugins or []), WORKER_PLUGIN]
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        # Prism, Beam's default local runner, downloads a binary at start: keep runs offline.
        standard.runner = "DirectRunner"
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "multi_threading":
        # Its SDK workers run in this process with timed output streams too, so the flush race
        # (flush_race.py) also hits what they write, from Cython coders the fix does not reach:
        # with plain Beam 2.77 about one run in three counted short; with the fix, runs of
        # bench/repro_flush_race.py failed decoding half-flushed elements.
        raise RunnerOptionError(
            "--direct_running_mode=multi_threading loses elements at shuffles in this Beam version "
            "(a run would silently miss images); use in_memory (the default), or worker processes: "
            "--direct_running_mode=multi_processing --direct_num_workers=N")
    timed = _timed_worker_flush(options)
    if timed:
        # SDK workers on any runner (Dataflow's too) then flush on a timer from Cython writes,
        # which flush_race.py cannot reach: bench/repro_flush_race.py --worker-flush-ms 1000 lost
        # elements in 4 of 4 runs with the runner's side fixed.
        raise RunnerOptionError(
            f"--experiments={timed}: SDK workers would flush their output on a timer, which loses "
            "elements in this Beam version (bytes written while the timer flushes are cleared); leave it out")
    return options


def local_workers(options: PipelineOptions) -> int:
    """How many SDK worker processes the DirectRunner starts per stage (1 unless multi-processing)."""
    direct = options.view_as(DirectOptions)
    return (direct.direct_num_workers or 1) if direct.direct_running_mode == "multi_processing" else 1


@contextlib.contextmanager
def cores_shared_between(workers: int) -> Iterator[None]:
    """While the block runs (a runner starting its worker processes), give each of `workers`
    local worker processes its share of the cores for torch/OpenMP threads: every process would
    otherwise start one thread per core, and N workers on N cores oversubscribe the machine and
    run slower than one process. Workers inherit the environment they are started with; a value
    the user set is kept."""
    if workers <= 1 or "OMP_NUM_THREADS" in os.environ:
        yield
        return
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    try:
        yield
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)
