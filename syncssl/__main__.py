"""``python -m syncssl ...``: the ``syncssl`` command where the package's scripts are not on PATH."""
from .cli import main

main(prog_name="syncssl")
