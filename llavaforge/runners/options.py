"""The Beam options a local run uses: the runner default, refused modes, threads per worker."""

from __future__ import annotations

import os
from typing import Sequence

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions


class RunnerOptionError(ValueError):
    """Beam options this tool refuses to run with: the message says why and what to use."""


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        # Prism, Beam's default local runner, downloads a binary at start: keep runs offline.
        standard.runner = "DirectRunner"
    if options.view_as(DirectOptions).direct_running_mode == "multi_threading":
        # Reproduced with plain Beam 2.77 (Create | Reshuffle | FlatMap | GroupByKey | count,
        # 2,048 elements): about one run in three counts a few elements short, with 1 or more
        # workers. in_memory and multi_processing counted right every time.
        raise RunnerOptionError(
            "--direct_running_mode=multi_threading loses elements at shuffles in this Beam version "
            "(a run would silently miss images); use in_memory (the default) or multi_processing")
    return options


def share_cores_between_workers(options: PipelineOptions) -> None:
    """Give each local worker process its share of the cores for torch/OpenMP threads.

    Every process would otherwise start one thread per core: N workers on N cores then
    oversubscribe the machine and run slower than one process. Workers inherit the
    environment; a value the user set is kept."""
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "multi_processing" and (direct.direct_num_workers or 1) > 1:
        threads = max(1, (os.cpu_count() or 1) // direct.direct_num_workers)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))


