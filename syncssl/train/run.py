"""The thin entry point behind ``syncssl-train`` (and ``python -m syncssl.train`` under torchrun)."""
from __future__ import annotations

import os

import click
import torch

from ..config import ConfigError
from ..data.dataset import DataError
from . import distributed
from .checkpoint import CheckpointError
from .trainer import NonFiniteLoss, Trainer

USER_ERRORS = (DataError, ConfigError, CheckpointError, NonFiniteLoss)


def _cpu_threads(cfg, d: distributed.Dist):
    """Processes on one node share its cores: give each an equal share unless train.threads says otherwise."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    elif d.device.type == "cpu" and d.world_size > 1:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", d.world_size))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


def run_pretraining(cfg) -> dict:
    d = distributed.setup(cfg.train.device)
    _cpu_threads(cfg, d)
    trainer = None
    try:
        trainer = Trainer(cfg, d)
        summary = trainer.train()
        if d.is_main:
            print_summary(summary, trainer.run_dir)
        return summary
    except USER_ERRORS as e:
        raise click.ClickException(str(e)) from None
    finally:
        if trainer is not None:
            trainer.close()
        distributed.teardown()


def print_summary(summary: dict, run_dir) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title="syncssl-train summary", show_header=False)
    fmt = {"heldout_sync_acc": "{:.3f}", "heldout_flip_acc": "{:.3f}", "seen_sync_acc": "{:.3f}",
           "seen_flip_acc": "{:.3f}", "final_loss": "{:.4f}", "pairs_per_s": "{:.1f}", "data_wait_share": "{:.1%}"}
    for k, v in summary.items():
        table.add_row(k, fmt.get(k, "{}").format(v) if v is not None else "-")
    table.add_row("run directory", str(run_dir))
    Console().print(table)
