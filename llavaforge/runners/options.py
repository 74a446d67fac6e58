"""The Beam options a run uses: the runner default, refused modes, unknown flags,
and the model stages' GPU resource hints (`GpuStageOptions`)."""

from __future__ import annotations

import difflib
from typing import Iterable, Optional, Sequence

from apache_beam.options.pipeline_options import (DirectOptions, PipelineOptions, PortableOptions, StandardOptions,
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


def _workers_per_stage(options: PipelineOptions) -> Optional[str]:
    """The flag that asks Beam's local runner (FnApiRunner) for several workers per stage, if any.

    Both local multi-worker paths end in its ParallelBundleManager, which splits a stage's input
    between workers that run at once: at 10,000 images it lost images (3 of 3 runs), half the
    near-duplicate matches, and records before a join; run one after the other, or with one
    worker, the same parts count right."""
    if options.view_as(StandardOptions).runner == "PortableRunner":
        count = int(float(options.view_as(PortableOptions).sdk_worker_parallelism or 1))
        return f"--sdk_worker_parallelism={count}" if count > 1 else None
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "multi_processing" and (direct.direct_num_workers or 1) > 1:
        return f"--direct_running_mode=multi_processing with --direct_num_workers={direct.direct_num_workers}"
    return None


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        # Prism, Beam's default local runner, downloads a binary at start: keep runs offline.
        standard.runner = "DirectRunner"
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "multi_threading":
        # Reproduced with plain Beam 2.77 (Create | Reshuffle | FlatMap | GroupByKey | count,
        # 2,048 elements): about one run in three counts a few elements short, with 1 or more
        # workers.
        raise RunnerOptionError(
            "--direct_running_mode=multi_threading loses elements at shuffles in this Beam version "
            "(a run would silently miss images); use in_memory (the default)")
    workers = _workers_per_stage(options)
    if workers:
        raise RunnerOptionError(
            f"{workers}: Beam's local runner loses elements when several workers run one stage at once "
            "(reproduced with plain Beam 2.77: bench/repro_parallel_loss.py; images and near-duplicate "
            "matches would be missing without an error); run with one worker: in_memory (the default), "
            "or the portable job service (`python -m llavaforge.runners.portable`) for a separate worker process")
    return options
