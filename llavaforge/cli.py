"""`llavaforge run | demo | nightly | status | verify | report | models | recipe`.

Exit codes: 0 ok, 2 bad usage or configuration, 1 the run failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

# Beam's GCP module warns at import when the optional GCP clients are absent; the `gcp`
# extra installs them where they are used.
logging.getLogger().addFilter(lambda record: "apitools not found" not in record.getMessage())

from llavaforge.recipe import RecipeError, load_recipe, parse_override, recipe_reference  # noqa: E402
from llavaforge.runners.metrics import format_model_metrics  # noqa: E402
from llavaforge.runners.options import RunnerOptionError  # noqa: E402
from llavaforge.transforms.read import InputError  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_OUTPUT = "llavaforge-demo-output"

log = logging.getLogger("llavaforge")


class UsageError(Exception):
    pass


def _recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", help="YAML recipe file (any fsspec URL); see `llavaforge recipe`")
    parser.add_argument("--preset", help="model preset: tiny, offline or hub (overrides the recipe)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override one recipe field, e.g. --set decode.min_side=64 (repeatable)")


def _input_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", action="append", required=True, metavar="GLOB",
                        help="shards: tar, parquet, image files or folders; any fsspec URL (repeatable)")


def _load(args: argparse.Namespace, preset_default: Optional[str] = None):
    overrides = dict(parse_override(o) for o in args.overrides)
    preset = args.preset or preset_default
    if preset:
        overrides.setdefault("preset", preset)
    return load_recipe(args.recipe, overrides)


def format_summary(stats: dict[str, Any], output: str) -> str:
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
    if stats.get("models"):
        lines.append("models:")
        lines += format_model_metrics(stats["models"])
    seconds = stats.get("finished_at", 0) - stats.get("started_at", 0)
    if seconds > 0:
        lines.append(f"time        {seconds:.1f} s ({stats['inputs'] / seconds:.1f} inputs/s)")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace, beam_args: Sequence[str], preset_default: Optional[str] = None) -> int:
    from llavaforge.runners.local import run

    recipe = _load(args, preset_default)
    stats = run(recipe, args.input, args.output, beam_args)
    print(format_summary(stats, args.output))
    if not stats["balanced"]:
        log.error("the run does not balance: inputs != written + rejected + duplicates")
        return EXIT_FAILED
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    args.input = [str(EXAMPLES / "sample-000.tar"), str(EXAMPLES / "sample-001.parquet")]
    code = cmd_run(args, beam_args, preset_default="offline")
    if code == EXIT_OK:
        print(f"\nLLaVA JSON: {args.output}/llava/*.json (images in {args.output}/images/)\n"
              f"WebDataset: {args.output}/wds/*.tar   Parquet: {args.output}/samples/*.parquet\n"
              f"check it:   llavaforge verify {args.output}")
        print(f"report:     {_write_report(args.output, f'{args.output}/report.html')}")
    return code


def cmd_verify(args: argparse.Namespace) -> int:
    from llavaforge.verify import verify

    report = verify(args.prefix)
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
    from llavaforge.pipelines.nightly import format_plan, nightly

    result = nightly(args.input, args.output, _load(args), args.date, beam_args, args.reprocess)
    print(format_plan(result.plan))
    if result.run is None:
        print("nothing to do: no new or changed shards under this recipe")
    else:
        print(format_summary(result.stats, result.output))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from llavaforge.pipelines.nightly import status

    print(status(args.prefix))
    return EXIT_OK


def _iso_date(text: str) -> str:
    try:
        time.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None
    return text


def cmd_recipe(args: argparse.Namespace) -> int:
    if args.check:
        recipe = _load(args)
        print(f"recipe OK, hash {recipe.hash()}")
    else:
        print(recipe_reference(), end="")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from llavaforge.models.llm.presets import describe_llm_presets
    from llavaforge.models.presets import describe_presets

    print(describe_presets())
    print(describe_llm_presets())
    return EXIT_OK


BEAM_COMMANDS = {"run": cmd_run, "demo": cmd_demo, "nightly": cmd_nightly}
COMMANDS = {"status": cmd_status, "verify": cmd_verify, "report": cmd_report, "models": cmd_models, "recipe": cmd_recipe}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llavaforge", description=__doc__.split("\n")[0])
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    sub = p.add_subparsers(dest="command", required=True)

    run_p = sub.add_parser("run", help="run the pipeline; unknown flags go to Beam (--runner, ...)")
    _input_arg(run_p)
    run_p.add_argument("--output", required=True, metavar="PREFIX", help="output prefix (any fsspec URL)")
    _recipe_args(run_p)

    demo_p = sub.add_parser("demo", help="run on the bundled sample images with the offline preset")
    demo_p.add_argument("--output", default=DEMO_OUTPUT, metavar="PREFIX")
    _recipe_args(demo_p)

    nightly_p = sub.add_parser("nightly", help="incremental run: only shards the ledger under --output "
                               "has not done; unknown flags go to Beam")
    _input_arg(nightly_p)
    nightly_p.add_argument("--output", required=True, metavar="PREFIX",
                           help="output prefix: runs go to PREFIX/dt=DATE/run-ID/, the ledger to PREFIX/_ledger/")
    nightly_p.add_argument("--date", type=_iso_date, metavar="YYYY-MM-DD", help="partition date (default: today, UTC)")
    nightly_p.add_argument("--reprocess", choices=["changed-recipe"],
                           help="also process shards done only under an earlier recipe")
    _recipe_args(nightly_p)

    status_p = sub.add_parser("status", help="print the nightly ledger under an output prefix")
    status_p.add_argument("prefix")

    verify_p = sub.add_parser("verify", help="check a run's output from its files alone")
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
            return BEAM_COMMANDS[args.command](args, beam_args)
        return COMMANDS[args.command](args)
    except (RecipeError, InputError, UsageError, RunnerOptionError) as e:
        print(f"llavaforge: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:  # noqa: BLE001 -- the run failed: say so with the traceback, exit 1
        log.exception("llavaforge %s failed", args.command)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
