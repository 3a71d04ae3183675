"""Does syncssl-sync recover injected camera offsets? The held-out subjects with seeded random offsets.

    python benchmarks/bench_sync.py --model runs/pretrain                      # small preset, +-2 s, seed 0
    python benchmarks/bench_sync.py --model runs/pretrain --eval --json benchmarks/results/sync.json

See :mod:`syncssl.bench.sync` for what is measured and how.

The options are `syncssl-bench sync`'s (this script is that command): `--help` lists them.
"""
import sys

from syncssl.cli import bench

if __name__ == "__main__":
    bench(["sync", *sys.argv[1:]], prog_name="bench_sync.py")
