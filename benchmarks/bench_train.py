"""Training throughput: end to end against compute-only and a naive DataLoader + PyAV + eager baseline.

    python benchmarks/bench_train.py                                    # the cpu-small preset on synthetic:small
    python benchmarks/bench_train.py --preset gpu --json benchmarks/results/train_gpu.json

The options are `syncssl-bench train`'s (this script is that command): `--help` lists them.
"""
import sys

from syncssl.cli import bench

if __name__ == "__main__":
    bench(["train", *sys.argv[1:]], prog_name="bench_train.py")
