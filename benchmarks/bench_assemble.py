"""Throughput of the fused op syncssl::assemble_pairs against copy bandwidth and an eager PyTorch chain.

    python benchmarks/bench_assemble.py                                  # CPU: cpp, reference, eager
    python benchmarks/bench_assemble.py --device cuda --json benchmarks/results/assemble_cuda.json

See :mod:`syncssl.bench.assemble` for the providers, the byte count and the ratios.

The options are `syncssl-bench assemble`'s (this script is that command): `--help` lists them.
"""
import sys

from syncssl.cli import bench

if __name__ == "__main__":
    bench(["assemble", *sys.argv[1:]], prog_name="bench_assemble.py")
