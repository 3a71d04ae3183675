"""The thin entry point behind ``syncssl-train`` (and ``python -m syncssl.train`` under torchrun)."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError
from ..eval.pretext import summary_rows
from ..parallel import threads_per_process
from . import checkpoint as ckpt
from . import distributed, runfolder
from .config import FinetuneConfig
from .trainer import PoseTrainer, PretextTrainer


def _cpu_threads(cfg, d: distributed.Dist):
    """Processes on one node share its cores: give each an equal share unless train.threads says otherwise (the
    Trainer sets that, and notes a count beyond the usable cores)."""
    if not cfg.train.threads and d.device.type == "cpu" and d.world_size > 1:
        torch.set_num_threads(threads_per_process(int(os.environ.get("LOCAL_WORLD_SIZE", d.world_size))))


def check_world_size(cfg, world_size: int, how: str = "") -> None:
    """train.batch_size is the global batch: every process takes an equal share of it."""
    b = cfg.train.batch_size
    if world_size > 1 and b % world_size:
        lo, hi = b // world_size * world_size, -(-b // world_size) * world_size
        raise ConfigError(f"train.batch_size {b} is not divisible by the {world_size} processes{how}: each takes "
                          f"batch_size / {world_size} pairs; use train.batch_size={lo or hi} or {hi}")
    group = getattr(getattr(cfg, "sampling", None), "group_size", 1)
    if world_size > 1 and (b // world_size) % group:
        raise ConfigError(f"sampling.group_size {group} does not divide the {b // world_size} pairs each of the "
                          f"{world_size} processes{how} takes (train.batch_size {b} / {world_size})")


def check_run_dir(run_dir, create: bool = True) -> None:
    """The run directory can be written, checked before the data loads (minutes) rather than after.

    ``create``: make it and write a scratch file there (the one sure test, e.g. on a read-only mount); without
    it (every rank of a multi-process run) only what can be seen without writing is checked.
    """
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"train.run_dir: {path} is a file, not a folder; choose another run directory")
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"train.run_dir: cannot create {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"train.run_dir: cannot write in {existing} (permission denied); choose another run "
                          "directory")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as e:
            raise ConfigError(f"train.run_dir: cannot write in {path} ({e.strerror or e}); choose another run "
                              "directory") from None


def check_transfer_source(cfg) -> None:
    """Fine-tuning from pre-training needs a pre-training checkpoint: a fine-tuned one is refused before the data
    loads (the meta.json of a checkpoint names the task that wrote it)."""
    x = getattr(cfg, "transfer", None)
    if x is None or x.init != "pretrained":
        return
    path, _ = ckpt.resolve_resume(x.checkpoint, Path(x.checkpoint) / "checkpoints")
    if path is not None and ckpt.verify(path).get("task") == "finetune":
        raise CheckpointError(f"transfer.checkpoint: {path} is a fine-tuned pose model, not a pre-training one; give "
                              "the folder of a syncssl-train run")


def run_training(cfg, replace: bool = False, allow_changes: bool = False, progress: bool = True) -> dict:
    """Pre-training or transfer, by the config's type; returns the summary (also in summary.json). ``progress``:
    the live progress bar (off where several runs share one terminal).

    The run folder must be new, or hold this task's run (runfolder.check_training): ``replace`` removes that run
    first, ``allow_changes`` continues it with another configuration. Rank 0 holds the folder's lock throughout."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    check_world_size(cfg, world)  # before the process group: one clear error per rank, no collective hang
    check_run_dir(cfg.train.run_dir, create=world == 1)
    check_transfer_source(cfg)
    task = "finetune" if isinstance(cfg, FinetuneConfig) else "pretrain"
    run_dir = cfg.train.run_dir
    runfolder.check_training(run_dir, cfg, task, replace, allow_changes)  # every rank, before anything is written
    main = int(os.environ.get("RANK", 0)) == 0
    with runfolder.locked(run_dir, f"syncssl-{task}") if main else contextlib.nullcontext():
        if main:  # again under the lock: a process that held it may have changed the folder meanwhile
            if runfolder.check_training(run_dir, cfg, task, replace, allow_changes) == "replace":
                print(f"replacing the run in {run_dir} (--force): removed {', '.join(runfolder.remove_run(run_dir))}")
            runfolder.write_marker(run_dir, task, command=f"syncssl-{'finetune' if task == 'finetune' else 'train'}")
        d = distributed.setup(cfg.train.device)
        _cpu_threads(cfg, d)
        trainer = None
        try:
            trainer = (PoseTrainer if task == "finetune" else PretextTrainer)(cfg, d, progress=progress,
                                                                                allow_changes=allow_changes)
            try:
                summary = trainer.train()
            except Exception as e:
                # a traceback from inside gloo or NCCL says little: say what happened
                lost = distributed.peer_lost(e, d)
                if lost is None:
                    raise
                raise lost from e
            if d.is_main:
                print_summary(summary, trainer.run_dir, f"syncssl-{'finetune' if task == 'finetune' else 'train'}")
            return summary
        finally:
            if trainer is not None:
                trainer.close()
            distributed.teardown()


def by_subject_text(by_subject: dict, min_pairs: int = 50) -> str:
    """{"S9": {"sync_acc": .65, "flip_acc": .6, "sync_pairs": 374, ...}, ...} -> "S9 0.650 / 0.600, S11 ...".
    People scored on fewer than ``min_pairs`` sync pairs each (an unlabelled pool's, ~10-20 pairs: noise) are
    pooled into one pair-weighted entry."""
    f = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    few = {s: m for s, m in by_subject.items() if m.get("sync_pairs", min_pairs) < min_pairs}
    if len(few) < 2:  # pooling one person would only rename them
        few = {}
    parts = [f"{s} {f(m.get('sync_acc'))} / {f(m.get('flip_acc'))}" for s, m in by_subject.items() if s not in few]
    if few:
        def pooled(task):
            scored = [m for m in few.values() if m.get(f"{task}_acc") is not None]
            n = sum(m[f"{task}_pairs"] for m in scored)
            return sum(m[f"{task}_acc"] * m[f"{task}_pairs"] for m in scored) / n if n else None
        pairs = sum(m.get("sync_pairs", 0) for m in few.values())
        parts.append(f"{len(few)} others {f(pooled('sync'))} / {f(pooled('flip'))} ({pairs} sync pairs)")
    return ", ".join(parts)


def print_summary(summary: dict, run_dir, title: str) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"{title} summary", show_header=False)
    fmt = {"heldout_sync_acc": "{:.3f}", "heldout_flip_acc": "{:.3f}", "heldout_sync_acc_single": "{:.3f}",
           "heldout_flip_acc_single": "{:.3f}", "seen_sync_acc": "{:.3f}",
           "seen_flip_acc": "{:.3f}", "final_loss": "{:.4f}", "pairs_per_s": "{:.1f}", "data_wait_share": "{:.1%}",
           "mpjpe": "{:.1f} mm", "n_mpjpe": "{:.1f} mm", "p_mpjpe": "{:.1f} mm", "train_mpjpe": "{:.1f} mm"}
    for k, v in summary.items():
        if k in ("per_action", "env"):  # env: provenance, kept in summary.json
            continue
        if k == "paper_offsets":
            for row in summary_rows(v):
                table.add_row(*row)
            continue
        if k.endswith("_by_subject") and isinstance(v, dict):
            table.add_row(k.replace("_by_subject", " sync / flip by subject"), by_subject_text(v))
            continue
        table.add_row(k, fmt.get(k, "{}").format(v) if v is not None else "-")
    table.add_row("run directory", str(run_dir))
    Console().print(table)
