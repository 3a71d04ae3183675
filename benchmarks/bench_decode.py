"""Decode throughput of random training pairs: DALI (CPU; GPU with CUDA) against PyAV, in the same run.

    python benchmarks/bench_decode.py                      # on a fixture (4 cameras x 3 MJPEG sequences)
    python benchmarks/bench_decode.py --root DATA --json benchmarks/results/decode.json

See :mod:`syncssl.bench.decode` for what is measured and how.

The options are `syncssl-bench decode`'s (this script is that command): `--help` lists them.
"""
import sys

from syncssl.cli import bench

if __name__ == "__main__":
    bench(["decode", *sys.argv[1:]], prog_name="bench_decode.py")
