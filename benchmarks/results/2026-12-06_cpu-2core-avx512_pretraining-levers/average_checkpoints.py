"""Uniform weight average of a pre-training's checkpoints (a stand-in for EMA / SWA), written as a checkpoint that
syncssl-finetune's transfer.checkpoint can load. Usage: python average_checkpoints.py RUN OUT 9000,10000,11000,12000
(used on the headline's seed-0 pre-training run with every checkpoint kept, 2026-12-06)."""
import sys
from pathlib import Path

from syncssl.train import checkpoint

run, out, steps = Path(sys.argv[1]), Path(sys.argv[2]), [int(s) for s in sys.argv[3].split(",")]
states = [checkpoint.load(run / "checkpoints" / f"step-{s:08d}") for s in steps]
avg = states[-1]  # optimizer, config and architecture of the last one; the weights averaged
for k, v in avg["model"].items():
    if v.is_floating_point():  # BatchNorm's running statistics are averaged too; its step counter is kept
        avg["model"][k] = sum(s["model"][k].float() for s in states).div(len(states)).to(v.dtype)
checkpoint.save(out / "checkpoints", steps[-1], avg, keep=1)
