"""Transfer against pre-training progress: the pose model fine-tuned from every kept checkpoint of pre-training
runs, its held-out MPJPE beside the pretext's held-out accuracy at the same step.

It answers whether transfer follows the pretext: two pre-trainings (two fusions, say) can be compared at equal
held-out sync accuracy instead of at equal steps. Pre-train with ``train.keep_checkpoints`` >= the number of
evaluations to keep every step's checkpoint.

    syncssl-transfer-curve RUN [RUN ...] --out DIR [--finetune OVERRIDE ...]

Writes ``DIR/<run>/step-N/`` (one fine-tuning run each; finished ones trained with the same settings are reused),
``DIR/transfer_curve.csv`` (rows of earlier calls for other runs or steps stay) and ``DIR/transfer_curve.png``.
"""
from __future__ import annotations

import csv
from pathlib import Path

from ..errors import RunFolderError
from ..figures import pyplot, save_figure
from ..storage import write_csv_atomic
from ..train import checkpoint as ckpt
from ..train import runfolder
from ..train.config import FinetuneConfig, load_config
from ..train.run import run_training

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
    step; returns (and writes) one row per checkpoint, merged with the rows ``out`` already holds."""
    plan = evaluated_checkpoints(runs)  # the inputs are checked before the output folder is touched
    identity = {"preset": finetune_preset, "finetune": " ".join(overrides)}
    with runfolder.claimed(out, "transfer-curve", identity, "syncssl-transfer-curve"):
        rows = _curve(plan, out, finetune_preset, overrides, log)
        new = {(r["run"], r["step"]) for r in rows}
        rows = [r for r in read_rows(out / "transfer_curve.csv") if (r["run"], r["step"]) not in new] + rows
        write_csv_atomic(out / "transfer_curve.csv", rows, COLUMNS, "the transfer curve")
        plot(rows, out / "transfer_curve.png")
    return rows


def read_rows(path: Path) -> list[dict]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
    except FileNotFoundError:
        return []
    try:
        if not set(COLUMNS) <= set(reader.fieldnames or ()):
            raise ValueError(f"its columns: {', '.join(reader.fieldnames or ())}")
        return [{**r, "step": int(r["step"]), **{k: float(r[k]) if r[k] else None for k in COLUMNS[2:]}}
                for r in rows]
    except (KeyError, TypeError, ValueError) as e:
        raise RunFolderError(f"{path}: not a table of syncssl-transfer-curve ({e!r}); move it away to "
                                       "start afresh") from None


def evaluated_checkpoints(runs) -> list[tuple[Path, int, Path, dict]]:
    """(run, step, checkpoint, the held-out evaluation's row at that step) of every kept checkpoint that has one."""
    plan = []
    for run in map(Path, runs):
        accuracy = pretext_accuracy(run)
        kept = [(step, path) for step, path in ckpt.list_checkpoints(run / "checkpoints") if step in accuracy]
        if not kept:
            raise FileNotFoundError(f"{run}: no checkpoint at a step of its held-out evaluation "
                                    f"(steps evaluated: {sorted(accuracy)[:8]})")
        plan += [(run, step, path, accuracy[step]) for step, path in kept]
    return plan


def _curve(plan, out: Path, finetune_preset: str, overrides: tuple[str, ...], log) -> list[dict]:
    rows = []
    for run, step, path, pretext in plan:
        run_dir = out / run.name / path.name
        cfg = load_config(finetune_preset, None, [f"train.run_dir='{run_dir}'", "transfer.init='pretrained'",
                                                  f"transfer.checkpoint='{path}'", *overrides], cls=FinetuneConfig)
        summary = runfolder.reuse_finished(run_dir, cfg)
        if summary is None:
            log(f"fine-tuning from {path}")
            summary = run_training(cfg)
        rows.append({"run": run.name, "step": step, "sync_acc": float(pretext["sync_acc"]),
                     "flip_acc": float(pretext["flip_acc"]), "mpjpe": summary["mpjpe"],
                     "p_mpjpe": summary["p_mpjpe"], "train_mpjpe": summary.get("train_mpjpe")})
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
