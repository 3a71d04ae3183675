"""The thin entry point behind ``syncssl-train`` (and ``python -m syncssl.train`` under torchrun)."""
from __future__ import annotations

import os

import torch

from ..config import ConfigError
from ..data.dataset import DataError
from ..models.resnet import CheckpointMismatch
from . import distributed
from .checkpoint import CheckpointError
from .config import FinetuneConfig
from .trainer import NonFiniteLoss, PoseTrainer, PretextTrainer

# errors a user can fix: the command line shows their message, not a traceback
USER_ERRORS = (DataError, ConfigError, CheckpointError, CheckpointMismatch, NonFiniteLoss)


def _cpu_threads(cfg, d: distributed.Dist):
    """Processes on one node share its cores: give each an equal share unless train.threads says otherwise."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    elif d.device.type == "cpu" and d.world_size > 1:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", d.world_size))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


def run_training(cfg) -> dict:
    """Pre-training or transfer, by the config's type; returns the summary (also in summary.json)."""
    d = distributed.setup(cfg.train.device)
    _cpu_threads(cfg, d)
    trainer = None
    try:
        trainer = (PoseTrainer if isinstance(cfg, FinetuneConfig) else PretextTrainer)(cfg, d)
        summary = trainer.train()
        if d.is_main:
            print_summary(summary, trainer.run_dir, f"syncssl-{'finetune' if isinstance(cfg, FinetuneConfig) else 'train'}")
        return summary
    finally:
        if trainer is not None:
            trainer.close()
        distributed.teardown()


def print_summary(summary: dict, run_dir, title: str) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"{title} summary", show_header=False)
    fmt = {"heldout_sync_acc": "{:.3f}", "heldout_flip_acc": "{:.3f}", "seen_sync_acc": "{:.3f}",
           "seen_flip_acc": "{:.3f}", "final_loss": "{:.4f}", "pairs_per_s": "{:.1f}", "data_wait_share": "{:.1%}",
           "mpjpe": "{:.1f} mm", "n_mpjpe": "{:.1f} mm", "p_mpjpe": "{:.1f} mm"}
    for k, v in summary.items():
        if k == "per_action":
            continue
        table.add_row(k, fmt.get(k, "{}").format(v) if v is not None else "-")
    table.add_row("run directory", str(run_dir))
    Console().print(table)
