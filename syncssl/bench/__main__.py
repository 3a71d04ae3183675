"""``python -m syncssl.bench data|train|...``: the same as ``syncssl-bench`` where the package is not installed
(the GPU check runs from a bare checkout)."""
from ..cli import bench

bench(prog_name="syncssl-bench")
