"""Not a benchmark: the plain-Beam reproduction of the data-plane race that
`llavaforge/runners/flush_race.py` fixes, in the shape of near-dedup.

10,000 elements of 80 KB each are keyed two ways and joined with CoGroupByKey: every element
with itself, and the 5% that have a near twin with a marker. Counted after the join: elements
kept + elements dropped must equal the elements made.

    .venv/bin/python bench/repro_flush_race.py [--elements 10000] [--bytes 80000] [--workers 2] [--fixed] [--worker-flush-ms 1000]

Beam 2.77, 2 CPU cores, DirectRunner multi_processing with 2 workers: runs count short (or
long: a lost marker keeps its element) without an error when a bundle's input takes more than
a second to send and the runner's timer flushes the stream while it is written (4 of 9 runs on
2026-12-01, 6 of 6 earlier that day on a busier VM); with `--fixed` (llavaforge's fix installed
in the runner's process) 7 of 7 counted right (and 3 of 3 with the same lock set by hand). With
`--fixed --worker-flush-ms 1000` the workers' own output streams flush on a timer, from Cython
writes the fix does not reach: 4 of 4 runs counted short (llavaforge refuses that experiment).
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

PER_SHARD = 250


def make(shard: int, elements: int, size: int):
    rng = random.Random(shard)
    for i in range(shard * PER_SHARD, min(elements, (shard + 1) * PER_SHARD)):
        yield f"k{i:07d}", rng.randbytes(size)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--elements", type=int, default=10_000)
    p.add_argument("--bytes", type=int, default=80_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--fixed", action="store_true", help="install llavaforge's fix in this (the runner's) process")
    p.add_argument("--worker-flush-ms", type=int, default=0,
                   help="make the SDK workers flush their output on this timer too (Beam's data_buffer_time_limit_ms)")
    args = p.parse_args()
    if args.fixed:
        from llavaforge.runners.flush_race import fix_flush_race

        fix_flush_race()
    out = Path(tempfile.mkdtemp(prefix="repro-flush-race-"))
    shards = list(range((args.elements + PER_SHARD - 1) // PER_SHARD))
    options = PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                               f"--direct_num_workers={args.workers}",
                               f"--experiments=data_buffer_time_limit_ms={args.worker_flush_ms}"])
    with beam.Pipeline(options=options) as pipeline:
        items = (pipeline | beam.Create(shards) | beam.Reshuffle()
                 | beam.FlatMap(make, args.elements, args.bytes))
        markers = (items | beam.Filter(lambda kv: int(kv[0][1:]) % 20 == 1)
                   | beam.Map(lambda kv: (kv[0], True)) | "OneMarker" >> beam.CombinePerKey(any))
        kept = ({"items": items, "markers": markers} | beam.CoGroupByKey()
                | beam.FlatMap(lambda kv: [] if list(kv[1]["markers"]) else list(kv[1]["items"])))
        for name, pcoll in (("kept", kept), ("markers", markers)):
            _ = (pcoll | f"Count{name}" >> beam.combiners.Count.Globally()
                 | f"Write{name}" >> beam.Map(lambda n, name=name: (out / name).write_text(str(n))))
    kept, dropped = int((out / "kept").read_text()), int((out / "markers").read_text())
    expected_dropped = sum(1 for i in range(args.elements) if i % 20 == 1)
    print(f"workers={args.workers} fixed={args.fixed} elements={args.elements} x {args.bytes} B: kept {kept} + dropped {dropped} "
          f"= {kept + dropped} (expected {args.elements - expected_dropped} + {expected_dropped})")
    print("OK" if (kept, dropped) == (args.elements - expected_dropped, expected_dropped) else "ELEMENTS LOST")


if __name__ == "__main__":
    main()
