"""Throughput of the fused op syncssl::assemble_pairs against copy bandwidth and an eager PyTorch chain.

    python benchmarks/bench_assemble.py                                  # CPU: cpp, reference, eager
    python benchmarks/bench_assemble.py --device cuda --out benchmarks/results/assemble_cuda.json

See :mod:`syncssl.bench.assemble` for the providers, the byte count and the ratios.
"""
import json
from pathlib import Path

import click
import torch

from syncssl.bench.assemble import DEFAULT_CASES, print_assemble_table, run_assemble_benchmark


@click.command()
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True, help="Best of this many.")
@click.option("--pairs", type=click.IntRange(min=1), default=32, show_default=True, help="Pairs per batch (N).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads (default: torch's).")
@click.option("--case", "case_names", multiple=True, type=click.Choice([c.name for c in DEFAULT_CASES]),
              help="Only these cases (repeatable; default: all).")
@click.option("--provider", "providers", multiple=True, type=click.Choice(["cpp", "triton", "reference", "eager"]),
              help="Only these providers (repeatable; default: all available).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the result as JSON.")
def main(device, repeats, pairs, threads, case_names, providers, out):
    if threads:
        torch.set_num_threads(threads)
    cases = [c for c in DEFAULT_CASES if not case_names or c.name in case_names]
    result = run_assemble_benchmark(device, sizes=cases, repeats=repeats, pairs=pairs,
                                    providers_wanted=tuple(providers) or None)
    print_assemble_table(result)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        click.echo(f"wrote {out}", err=True)


if __name__ == "__main__":
    main()
