"""The Beam options a run uses: the runner default, refused modes, unknown flags, threads per
worker, and the model stages' GPU resource hints (`GpuStageOptions`)."""

from __future__ import annotations

import difflib
import logging
import os
from typing import Iterable, Optional, Sequence

from apache_beam.options.pipeline_options import (DirectOptions, PipelineOptions, StandardOptions,
                                                  _BeamArgumentParser)

from llavaforge.errors import UsageError


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
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "multi_processing" and (direct.direct_num_workers or 1) > 1:
        # Seen in 2 of 2 runs of 10,000 images (bench/scaling.py --workers 2): stripes of every
        # 4th image lost between stages. Verification refuses such a run, so it is a warning.
        logging.getLogger("llavaforge").warning(
            "the DirectRunner's multi-processing mode has lost images in large runs (10,000 images); "
            "a run that loses any fails verification and is not published. The in-process runner "
            "(the default) has not lost any")
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


