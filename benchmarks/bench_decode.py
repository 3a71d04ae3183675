"""Decode throughput of random training pairs: DALI (CPU; GPU with CUDA) against PyAV, in the same run.

    python benchmarks/bench_decode.py                      # on a fixture (4 cameras x 3 MJPEG sequences)
    python benchmarks/bench_decode.py --root DATA --out benchmarks/results/decode.json

See :mod:`syncssl.bench.decode` for what is measured and how.
"""
import json
from pathlib import Path

import click

from syncssl.bench.decode import print_decode_table, run_decode_benchmark


@click.command()
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A folder of <sequence>/videos/<camera>.<ext> files (default: write a fixture).")
@click.option("--pairs", type=click.IntRange(min=1), default=32, show_default=True, help="Pairs per batch.")
@click.option("--batches", type=click.IntRange(min=1), default=20, show_default=True, help="Batches per timed pass.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Timed passes (best kept).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the result as JSON.")
def main(root, pairs, batches, repeats, seed, out):
    result = run_decode_benchmark(root, pairs=pairs, batches=batches, seed=seed, repeats=repeats,
                                  progress=lambda msg: click.echo(msg, err=True))
    print_decode_table(result)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        click.echo(f"wrote {out}", err=True)


if __name__ == "__main__":
    main()
