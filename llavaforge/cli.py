"""`llavaforge run | demo | nightly | status | verify | report | models | recipe`.

Exit codes: 0 ok, 2 bad usage or configuration, 1 the run failed.
Heavy libraries (Beam, torch, pyarrow) are imported by the commands that need them, so
`--help` and the small commands start at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from llavaforge.errors import UsageError

# Beam's GCP module warns at import when the optional GCP clients are absent; the `gcp`
# extra installs them where they are used.
logging.getLogger().addFilter(lambda record: "apitools not found" not in record.getMessage())

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_OUTPUT = "llavaforge-demo-output"

log = logging.getLogger("llavaforge")


def _recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", help="YAML recipe file (any fsspec URL); see `llavaforge recipe`")
    parser.add_argument("--preset", help="model preset: tiny, offline or hub (overrides the recipe)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override one recipe field, e.g. --set decode.min_side=64 (repeatable)")


def _job_args(parser: argparse.ArgumentParser, inputs: bool = True) -> None:
    if inputs:
        parser.add_argument("--input", action="append", required=True, metavar="GLOB",
                            help="shards: tar, parquet, image files or folders; any fsspec URL (repeatable)")
    parser.add_argument("--dry_run", "--dry-run", action="store_true",
                        help="build the job graph, print it and stop: nothing runs, the output is not touched")
    _recipe_args(parser)


def _load(args: argparse.Namespace, preset_default: Optional[str] = None):
    from llavaforge.config.recipe import load_recipe, parse_override

    overrides = dict(parse_override(o) for o in args.overrides)
    preset = args.preset or preset_default
    if preset:
        overrides.setdefault("preset", preset)
    return load_recipe(args.recipe, overrides)


def _beam_args(args: argparse.Namespace, beam_args: Sequence[str]) -> list[str]:
    return [*beam_args, "--dry_run=True"] if getattr(args, "dry_run", False) else list(beam_args)


def command_name() -> str:
    """How this program was started, so printed hints run as printed (`.venv/bin/llavaforge`)."""
    invoked = sys.argv[0] if sys.argv and sys.argv[0] else "llavaforge"
    if os.path.basename(invoked) != "llavaforge":
        return f"{shlex.quote(sys.executable)} -m llavaforge.cli"
    on_path = shutil.which("llavaforge")
    if on_path and os.path.realpath(on_path) == os.path.realpath(invoked):
        return "llavaforge"
    return shlex.quote(invoked if os.path.isabs(invoked) else os.path.relpath(invoked))


def format_rate(count: float, seconds: float, unit: str) -> str:
    if seconds <= 0:
        return ""
    rate = count / seconds
    if rate >= 10:
        return f"{rate:,.0f} {unit}/s"
    if rate >= 1:
        return f"{rate:.1f} {unit}/s"
    return f"{seconds / count:.1f} s per {unit.rstrip('s')}" if count else ""


def format_summary(stats: dict[str, Any], output: str) -> str:
    from llavaforge.runners.metrics import format_model_metrics, format_stage_metrics

    lines = [
        f"output      {output}",
        f"run         {stats.get('run_id')}  recipe {stats.get('recipe_hash')}  preset {stats.get('preset')}",
        f"inputs      {stats['inputs']}",
        f"written     {stats['images_written']} images, {stats['samples_written']} samples"
        + (f" ({', '.join(f'{k} {v}' for k, v in sorted(stats['tasks'].items()))})" if stats.get("tasks") else ""),
        f"rejected    {stats['images_rejected']} images, {stats['sample_rejects']} samples",
        f"duplicates  {stats['duplicates']}",
        f"balanced    {'yes' if stats['balanced'] else 'NO'}",
    ]
    reasons = sorted(((n, stage, reason) for stage, by in stats.get("rejects", {}).items()
                      for reason, n in by.items()), reverse=True)
    if reasons:
        lines.append("top reject reasons:")
        lines += [f"  {n:>8}  {stage}/{reason}" for n, stage, reason in reasons[:10]]
    if stats.get("stages"):
        lines.append("stages (seconds spent in each, over all workers):")
        lines += format_stage_metrics(stats["stages"])
    if stats.get("models"):
        lines.append("models:")
        lines += format_model_metrics(stats["models"])
    seconds = stats.get("finished_at", 0) - stats.get("started_at", 0)
    if seconds > 0:
        lines.append(f"time        {seconds:.1f} s ({format_rate(stats['inputs'], seconds, 'inputs')})")
    return "\n".join(lines)


def report_job(job, prefix: str) -> int:
    """Print what a job did: its graph (dry run), that it runs detached, or what it published."""
    if job.graph:
        print(job.graph)
        return EXIT_OK
    if job.entry is None:
        print(f"submitted   run {job.run_id}: the job verifies and publishes {job.run_dir} itself when it "
              f"finishes; see `{command_name()} status {prefix}`")
        return EXIT_OK
    print(format_summary(job.stats, job.run_dir))
    print(f"published   {job.run_dir} (ledger entry {job.entry.seq})\n"
          f"check it:   {command_name()} verify {shlex.quote(prefix)}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace, beam_args: Sequence[str], preset_default: Optional[str] = None) -> int:
    from llavaforge.jobs.run import run

    recipe = _load(args, preset_default)
    return report_job(run(recipe, args.input, args.output, _beam_args(args, beam_args)), args.output)


def cmd_demo(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    args.input = [str(EXAMPLES / "sample-000.tar"), str(EXAMPLES / "sample-001.parquet")]
    from llavaforge.jobs.run import run
    from llavaforge.schemas.layout import REPORT_FILE
    from llavaforge.storage import join

    job = run(_load(args, "offline"), args.input, args.output, _beam_args(args, beam_args))
    code = report_job(job, args.output)
    if job.entry is not None:
        print(f"report:     {_write_report(args.output, join(job.run_dir, REPORT_FILE))}")
    return code


def cmd_verify(args: argparse.Namespace) -> int:
    from llavaforge.jobs.verify import verify

    report = verify(args.prefix)
    for note in report.notes:
        print(note)
    for name, value in report.counts.items():
        print(f"{name:16} {value}")
    for problem in report.problems[:50]:
        print(f"PROBLEM: {problem}")
    if len(report.problems) > 50:
        print(f"... and {len(report.problems) - 50} more problems")
    print("verify: OK" if report.ok else f"verify: FAILED ({len(report.problems)} problems)")
    return EXIT_OK if report.ok else EXIT_FAILED


def _write_report(prefix: str, out: Optional[str], gallery_images: int = 200) -> str:
    from llavaforge.report import ReportError, default_report_path, published_run_dir, render_report

    run_dir = published_run_dir(prefix)
    try:
        result = render_report(run_dir, out or default_report_path(run_dir), gallery_images=gallery_images)
    except ReportError as e:
        raise UsageError(str(e)) from None
    return (f"{result.path} ({result.bytes / 1e6:.1f} MB, {result.images_shown} of {result.images_total} "
            f"images in the gallery, {result.seconds:.1f} s)")


def cmd_report(args: argparse.Namespace) -> int:
    print(f"wrote {_write_report(args.prefix, args.out, args.gallery)}")
    return EXIT_OK


def cmd_nightly(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from llavaforge.jobs.nightly import format_plan, nightly

    result = nightly(args.input, args.output, _load(args), args.date, _beam_args(args, beam_args),
                     args.reprocess or ())
    print(format_plan(result.plan))
    if result.job is None:
        print("nothing to do: no new, changed or retryable shards under this recipe")
        return EXIT_OK
    return report_job(result.job, args.output)


def cmd_status(args: argparse.Namespace) -> int:
    from llavaforge.jobs.status import status

    print(status(args.prefix))
    return EXIT_OK


def _iso_date(text: str) -> str:
    try:
        time.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None
    return text


def cmd_recipe(args: argparse.Namespace) -> int:
    from llavaforge.config.recipe import recipe_reference

    if args.check:
        recipe = _load(args)
        print(f"recipe OK, hash {recipe.hash()}")
    else:
        print(recipe_reference(), end="")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from llavaforge.config.presets import describe_presets

    print(describe_presets())
    return EXIT_OK


BEAM_COMMANDS = {"run": cmd_run, "demo": cmd_demo, "nightly": cmd_nightly}
COMMANDS = {"status": cmd_status, "verify": cmd_verify, "report": cmd_report, "models": cmd_models, "recipe": cmd_recipe}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llavaforge", description=__doc__.split("\n")[0])
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    sub = p.add_subparsers(dest="command", required=True)

    run_p = sub.add_parser("run", help="run the pipeline; Beam flags (--runner, ...) after the llavaforge ones")
    run_p.add_argument("--output", required=True, metavar="PREFIX",
                       help="output prefix (any fsspec URL): empty, new, or an earlier `run`'s output")
    _job_args(run_p)

    demo_p = sub.add_parser("demo", help="run on the bundled sample images with the offline preset")
    demo_p.add_argument("--output", default=DEMO_OUTPUT, metavar="PREFIX",
                        help=f"output prefix (default: ./{DEMO_OUTPUT})")
    _job_args(demo_p, inputs=False)

    nightly_p = sub.add_parser("nightly", help="incremental run: only shards the ledger under --output "
                               "has not done; Beam flags after the llavaforge ones")
    nightly_p.add_argument("--output", required=True, metavar="PREFIX",
                           help="output prefix: runs go to PREFIX/dt=DATE/run-ID/, the ledger to PREFIX/_ledger/")
    nightly_p.add_argument("--date", type=_iso_date, metavar="YYYY-MM-DD", help="partition date (default: today, UTC)")
    nightly_p.add_argument("--reprocess", action="append", choices=["changed-recipe", "failed"],
                           help="also process shards done only under an earlier recipe (changed-recipe), or "
                                "shards that could not be read before and have not changed (failed); repeatable")
    _job_args(nightly_p)

    status_p = sub.add_parser("status", help="print the ledger under an output prefix")
    status_p.add_argument("prefix")

    verify_p = sub.add_parser("verify", help="check what an output prefix publishes (or one run folder) "
                              "from its files alone")
    verify_p.add_argument("prefix")

    report_p = sub.add_parser("report", help="write one self-contained HTML page showing a run's output")
    report_p.add_argument("prefix")
    report_p.add_argument("--out", metavar="FILE", help="where to write it (any fsspec URL; default "
                          "./llavaforge-report-<run folder name>.html)")
    report_p.add_argument("--gallery", type=int, default=200, metavar="N",
                          help="images in the gallery, sampled by key hash (default 200)")

    sub.add_parser("models", help="list the model presets: roles, model ids, sizes, licenses")

    recipe_p = sub.add_parser("recipe", help="print every recipe field with its default")
    recipe_p.add_argument("--check", action="store_true", help="validate --recipe/--set instead")
    _recipe_args(recipe_p)
    return p


def _own_flags(p: argparse.ArgumentParser) -> list[str]:
    flags = []
    for action in p._actions:  # noqa: SLF001 -- argparse keeps subparsers only here
        flags += action.option_strings
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in action.choices.values():
                flags += _own_flags(sub)
    return flags


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = parser()
    args, beam_args = p.parse_known_args(argv)
    if beam_args and args.command not in BEAM_COMMANDS:
        p.error(f"unrecognized arguments: {' '.join(beam_args)}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        force=True)
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        if args.command in BEAM_COMMANDS:
            from llavaforge.runners.options import unknown_flag

            unknown = unknown_flag(beam_args, _own_flags(p))
            if unknown:
                raise UsageError(unknown)
            return BEAM_COMMANDS[args.command](args, beam_args)
        return COMMANDS[args.command](args)
    except UsageError as e:
        print(f"llavaforge: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:  # noqa: BLE001 -- the run failed: say so with the traceback, exit 1
        log.exception("llavaforge %s failed", args.command)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
