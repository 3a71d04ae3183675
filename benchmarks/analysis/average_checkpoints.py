"""Uniform weight average of a pre-training's checkpoints (a stand-in for EMA / SWA), written as a checkpoint that
syncssl-finetune's ``transfer.checkpoint`` can load.

    python benchmarks/analysis/average_checkpoints.py RUN OUT --steps 9000,10000,11000,12000

RUN must have kept those checkpoints (pre-train with ``train.keep_checkpoints`` high enough).
"""
import argparse
from pathlib import Path

from syncssl.train import checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a pre-training run folder")
    parser.add_argument("out", type=Path, help="where the averaged run folder (OUT/checkpoints/step-N) goes")
    parser.add_argument("--steps", required=True, help="comma-separated steps of the checkpoints to average")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    folders = [args.run / "checkpoints" / f"step-{s:08d}" for s in steps]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        parser.error(f"no checkpoint folder {', '.join(missing)}")
    states = [checkpoint.load(f) for f in folders]
    averaged = states[-1]  # optimizer, config and architecture of the last one; the weights averaged
    for key, value in averaged["model"].items():
        if value.is_floating_point():  # BatchNorm's running statistics are averaged too; its step counter is kept
            averaged["model"][key] = sum(s["model"][key].float() for s in states).div(len(states)).to(value.dtype)
    checkpoint.save(args.out / "checkpoints", steps[-1], averaged, keep=1)
    print(f"wrote {args.out / 'checkpoints'} (the mean of steps {steps})")


if __name__ == "__main__":
    main()
