"""The fused data path in one table: assemble_pairs against copy bandwidth and the eager chain, decoding DALI
against PyAV, with the goals of the data-path issue.

    python benchmarks/bench_data.py --json benchmarks/results/data_cpu.json

The options are `syncssl-bench data`'s (this script is that command): `--help` lists them.
"""
import sys

from syncssl.cli import bench

if __name__ == "__main__":
    bench(["data", *sys.argv[1:]], prog_name="bench_data.py")
