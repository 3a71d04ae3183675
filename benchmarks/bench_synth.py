"""Throughput of the synthetic data generator (render, encode) and of PyAV decoding its files.

    python benchmarks/bench_synth.py                               # tiny preset, 1 worker
    python benchmarks/bench_synth.py --preset small --workers 2 --out benchmarks/results/synth.json

See :mod:`syncssl.bench.synth` for what is measured and how.
"""
import json
from pathlib import Path

import click

from syncssl.bench.synth import print_synth_table, run_synth_benchmark


@click.command()
@click.option("--preset", type=click.Choice(["tiny", "small", "large"]), default="tiny", show_default=True)
@click.option("--codec", type=click.Choice(["mjpeg", "h264", "vp9"]), default="mjpeg", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the result as JSON.")
def main(preset, codec, workers, seed, out):
    result = run_synth_benchmark(preset, seed=seed, codec=codec, workers=workers)
    print_synth_table(result)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        click.echo(f"wrote {out}", err=True)


if __name__ == "__main__":
    main()
