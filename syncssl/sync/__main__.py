"""``python -m syncssl.sync``: the same command as ``syncssl-sync``."""
from ..cli import sync

if __name__ == "__main__":
    sync(prog_name="syncssl-sync")
