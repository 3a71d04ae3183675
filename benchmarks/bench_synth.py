"""Throughput of the synthetic data generator (render, encode) and of PyAV decoding its files.

    python benchmarks/bench_synth.py                               # tiny preset, 1 worker
    python benchmarks/bench_synth.py --preset small --workers 2 --json benchmarks/results/synth.json

See :mod:`syncssl.bench.synth` for what is measured and how.

The options are `syncssl-bench synth`'s (this script is that command): `--help` lists them.
"""
import sys

from syncssl.cli import bench

if __name__ == "__main__":
    bench(["synth", *sys.argv[1:]], prog_name="bench_synth.py")
