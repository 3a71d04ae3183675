"""Transfer against pre-training progress: the pose model fine-tuned from every kept checkpoint of pre-training
runs, its held-out MPJPE beside the pretext's held-out accuracy at the same step.

It answers whether transfer follows the pretext: two pre-trainings (two fusions, say) can be compared at equal
held-out sync accuracy instead of at equal steps. Pre-train with ``train.keep_checkpoints`` >= the number of
evaluations to keep every step's checkpoint.

    syncssl-transfer-curve RUN [RUN ...] --out DIR [--finetune OVERRIDE ...]

Writes ``DIR/<run>/step-N/`` (one fine-tuning run each; finished ones are reused), ``DIR/transfer_curve.csv`` and
``DIR/transfer_curve.png``.
"""
from __future__ import annotations

import csv
from pathlib import Path

from ..figures import pyplot, save_figure
from ..train import checkpoint as ckpt
from ..train.config import FinetuneConfig, load_config
from ..train.run import run_training
from .reproduce import finished_summary

COLUMNS = ("run", "step", "sync_acc", "flip_acc", "mpjpe", "p_mpjpe", "train_mpjpe")


def pretext_accuracy(run: Path) -> dict[int, dict]:
    """step -> the row of the run's held-out evaluation at that step (metrics_heldout.csv)."""
    path = run / "metrics_heldout.csv"
    rows = []
    if path.is_file():
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    if not rows or "sync_acc" not in rows[0]:
        raise FileNotFoundError(f"{run}: not a pre-training run (no held-out sync accuracy in "
                                f"{path.name}); give the folder of a syncssl-train run")
    return {int(float(r["step"])): r for r in rows}


def transfer_curve(runs: list[Path], out: Path, finetune_preset: str = "cpu-small", overrides: tuple[str, ...] = (),
                   log=print) -> list[dict]:
    """Fine-tune from each checkpoint of each pre-training run in ``runs`` that has a held-out evaluation at its
    step; returns (and writes) one row per checkpoint."""
    rows = []
    for run in map(Path, runs):
        accuracy = pretext_accuracy(run)
        kept = [(step, path) for step, path in ckpt.list_checkpoints(run / "checkpoints") if step in accuracy]
        if not kept:
            raise FileNotFoundError(f"{run}: no checkpoint at a step of its held-out evaluation "
                                    f"(steps evaluated: {sorted(accuracy)[:8]})")
        for step, path in kept:
            run_dir = out / run.name / path.name
            summary = finished_summary(run_dir)
            if summary is None:
                log(f"fine-tuning from {path}")
                cfg = load_config(finetune_preset, None, [f"train.run_dir='{run_dir}'", "transfer.init='pretrained'",
                                                          f"transfer.checkpoint='{path}'", *overrides],
                                  cls=FinetuneConfig)
                summary = run_training(cfg)
            pretext = accuracy[step]
            rows.append({"run": run.name, "step": step, "sync_acc": float(pretext["sync_acc"]),
                         "flip_acc": float(pretext["flip_acc"]), "mpjpe": summary["mpjpe"],
                         "p_mpjpe": summary["p_mpjpe"], "train_mpjpe": summary.get("train_mpjpe")})
    out.mkdir(parents=True, exist_ok=True)
    with (out / "transfer_curve.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out / "transfer_curve.png")
    return rows


def plot(rows: list[dict], path: Path) -> Path:
    """MPJPE against the pre-training step, and against the held-out sync and flip accuracy, one line per run."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    for name in dict.fromkeys(r["run"] for r in rows):
        mine = sorted((r for r in rows if r["run"] == name), key=lambda r: r["step"])
        for ax, key in zip(axes, ("step", "sync_acc", "flip_acc")):
            ax.plot([r[key] for r in mine], [r["mpjpe"] for r in mine], "o-", label=name)
    for ax, label in zip(axes, ("pre-training step", "held-out sync accuracy", "held-out flip accuracy")):
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out MPJPE after fine-tuning (mm)")
    axes[0].legend(fontsize=8)
    fig.suptitle("transfer against pre-training progress")
    return save_figure(fig, path)
