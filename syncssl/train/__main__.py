"""``python -m syncssl.train ...``: what torchrun launches (multi-node: see README)."""
from ..cli import train

if __name__ == "__main__":
    train(prog_name="syncssl-train")
