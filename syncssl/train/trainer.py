"""Trainers with an explicit lifecycle (torchtitan-style): AMP, channels_last, DDP, checkpoints, logs.

    trainer = PretextTrainer(cfg, dist)   # data, model, optimizer, schedule; resumes from a checkpoint if asked
    summary = trainer.train()             # the loop: step, log, evaluate, checkpoint; returns the summary
    trainer.close()

:class:`Trainer` is the task-independent part; a task says how to build its model and training batches,
what its losses are and how it evaluates: :class:`PretextTrainer` (sync + flip of view pairs) and
:class:`PoseTrainer` (3D pose transfer). ``train_step`` is one optimizer step on one batch;
``state_dict`` / ``load_state_dict`` hold everything a resumed run needs to continue exactly (model,
optimizer, scaler, step, RNG states, config). Host-device synchronisation points are marked ``# sync:``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .. import config as cfglib
from ..data.loading.loader import PoseBatcher, Prefetcher, mirror_labels
from ..data.loading.pose_sampling import ViewSampler, evaluation_plans, evaluation_views
from ..errors import CheckpointError, ConfigError, DataError, Interrupted, NonFiniteLoss, RunFolderError
from ..eval.metrics import PoseErrors
from ..eval.pretext import head_rows, paper_summary
from ..models.pairnet import PairNet
from ..models.pose import PoseNet
from ..models.resnet import load_backbone, resnet
from ..provenance import env_block
from ..storage import write_text_atomic
from . import checkpoint as ckpt
from . import runfolder
from .config import common_problems
from .data import build_pipeline, load_manifest, make_assembler, make_source, tile_spec
from .distributed import Dist, all_reduce_sum, any_rank, gather_objects
from .logger import MetricLogger, memory_use, plot_curves
from .memory import check_step_memory, threads_note
from .signals import StopRequest


def resolve_amp(amp: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use a GradScaler) for ``train.amp``."""
    if amp == "off":
        return None, False
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        if amp == "bf16" or (amp == "auto" and bf16):
            return torch.bfloat16, False
        return torch.float16, True
    if amp == "fp16":
        raise ValueError("train.amp=fp16 needs a GPU; on CPU use bf16 or off")
    cpu_bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if amp == "bf16" or (amp == "auto" and cpu_bf16):
        return torch.bfloat16, False
    return None, False


def lr_at(step: int, lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to ``lr``, then cosine annealing to ``min_lr`` at ``total_steps``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def param_groups(model: torch.nn.Module, weight_decay: float, backbone_lr_scale: float = 1.0) -> list[dict]:
    """Weight decay on weights of convolutions and linear layers only, not on norms and biases. Each group's
    ``lr_scale`` multiplies the schedule's lr: ``backbone_lr_scale`` for ``model.backbone``'s parameters (1: one
    pair of groups for the whole model, the layout of older checkpoints' optimizer state)."""
    groups: dict[tuple[float, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            scale = backbone_lr_scale if name.startswith("backbone.") else 1.0
            groups.setdefault((scale, p.dim() > 1), []).append(p)
    scales = [1.0] + ([backbone_lr_scale] if backbone_lr_scale != 1.0 else [])
    return [{"params": groups.get((scale, decay), []), "weight_decay": weight_decay if decay else 0.0,
             "lr_scale": scale} for scale in scales for decay in (True, False)]


def head_shares(sampling) -> tuple[float, float]:
    """The share of a batch's pairs each head's loss sees, as the sampler draws them (exact per global batch)."""
    return (1.0, 1.0) if sampling.flip_unsync else (1 - sampling.sync_fraction * sampling.flip_fraction,
                                                    sampling.sync_fraction)


def pretext_loss(out: dict, sync: torch.Tensor, flip: torch.Tensor, pretext, sampling
                 ) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The sync and flip heads' loss on N pairs with labels ``sync`` and ``flip`` (N,), and {metric: (sum over the
    pairs that head sees, their count)}: what pre-training (and ``syncssl-sync --adapt``) minimise."""
    sync_rows, flip_rows = (m.float() for m in head_rows(sampling, sync, flip))
    sync_loss = F.cross_entropy(out["sync"].float(), sync, reduction="none") * sync_rows
    flip_loss = F.cross_entropy(out["flip"].float(), flip, reduction="none") * flip_rows
    n_sync, n_flip = sync_rows.sum(), flip_rows.sum()
    # each head's mean over the pairs it sees, divided by their *nominal* count (the rank's rows x the head's
    # share): ranks then weigh every pair alike, so DDP's average of the ranks' gradients is the gradient of
    # the global batch (a per-rank count would weigh a rank's pairs by how many it happened to draw)
    share_sync, share_flip = head_shares(sampling)
    loss = (pretext.sync_weight * sync_loss.sum() / (len(sync) * share_sync)
            + pretext.flip_weight * flip_loss.sum() / (len(sync) * share_flip))
    sums = {"sync_loss": (sync_loss.sum(), n_sync), "flip_loss": (flip_loss.sum(), n_flip),
            "sync_acc": (((out["sync"].argmax(1) == sync).float() * sync_rows).sum(), n_sync),
            "flip_acc": (((out["flip"].argmax(1) == flip).float() * flip_rows).sum(), n_flip)}
    return loss, sums


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(s: dict):
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


class Trainer:
    """The task-independent trainer. Subclasses implement the five hooks marked "task hook"."""

    name = "train"  # the progress bar's label
    images_per_sample = 1  # images in one training sample (the memory check counts them)

    def __init__(self, cfg, dist: Dist, log=None, progress: bool = True, allow_changes: bool | None = False):
        """allow_changes: resume a checkpoint trained with another configuration (True: noted; False: only the
        changes a continued run may make, :data:`runfolder.CONTINUE_KEYS`; None: unchecked, for evaluation)."""
        self.cfg, self.dist, self.allow_changes = cfg, dist, allow_changes
        self.log = log or (print if dist.is_main else (lambda *a, **k: None))
        self.progress = progress and dist.is_main
        t = cfg.train
        self.run_dir = Path(t.run_dir)
        self.device = dist.device
        if t.threads:
            torch.set_num_threads(t.threads)
            if (note := threads_note(t.threads)) is not None:
                self.log(note)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest convolutions once
        if t.batch_size % dist.world_size:
            raise ValueError(f"train.batch_size {t.batch_size} is not divisible by the world size {dist.world_size}")
        self.local_batch = t.batch_size // dist.world_size
        self.amp_dtype, use_scaler = resolve_amp(t.amp, self.device)
        self.input_dtype = self.amp_dtype or torch.float32  # the fused op writes the compute dtype directly

        self.prepared = load_manifest(cfg.data, dist, tile_spec(cfg.data, *self.jitter()), self.log,
                                      t.data_wait_s)
        self.manifest = self.prepared.manifest
        self.train_split = self.manifest.resolve_split(cfg.data.train_split)
        self.eval_split, self.held_out = self.manifest.resolve_eval_split(cfg.data.eval_split, self.train_split)
        for split in (self.train_split, self.eval_split):
            self.manifest.split(split)  # an unknown or empty split fails now, not after training
        self.sources: list = []  # every view source made (closed with the trainer)
        self._eval_sources: dict = {}  # split -> the source evaluation reads (never the training pipeline's)

        torch.manual_seed(t.seed)  # the same init on every rank (DDP also broadcasts rank 0's weights)
        model = self.build_model()
        if t.sync_bn and dist.enabled and self.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        check_step_memory(model, images=self.images_per_sample * self.local_batch, crop=cfg.data.crop_size,
                          dtype=self.input_dtype, device=self.device, batch_key="train.batch_size",
                          batch=t.batch_size)
        self.model = model.to(self.device, memory_format=torch.channels_last if t.channels_last
                              else torch.contiguous_format)
        self.plan_of, self.batcher = self.build_train_data()
        self.ddp = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None) \
            if dist.enabled else None
        forward = self.ddp or self.model
        self.forward = torch.compile(forward) if t.compile else forward

        o = cfg.optim
        groups = param_groups(self.model, o.weight_decay, o.backbone_lr_scale)
        if o.name == "adamw":
            self.optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=(0.9, 0.999), fused=self.device.type == "cuda")
        else:
            self.optimizer = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=True)
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.logger = MetricLogger(self.run_dir, enabled=dist.is_main)
        self.step = 0
        self._saved_buffers = None  # the model's buffers before the current step (see train_step)
        self.nonfinite_streak = 0
        self.nonfinite_total = 0
        self.wall_s = 0.0
        self.resumed_from: str | None = None
        self._maybe_resume()
        config = self.run_dir / "config.toml"
        # after the resume check, and only for steps still to train: it describes the weights the run trained
        if dist.is_main and (self.step < t.steps or not config.exists()):
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(config, cfglib.to_toml(cfg), "the run's config")

    # ------------------------------------------------------------------ task hooks

    def build_model(self) -> nn.Module:
        """Task hook: the model, on the CPU (the trainer moves it)."""
        raise NotImplementedError

    def jitter(self) -> tuple[float, float]:
        """Task hook: the largest crop jitter (shift as a share of the box side, log-scale) training applies; the
        tiles are cut with room for it."""
        raise NotImplementedError

    def source(self, indices: list[int]):
        """A view source for the sequences ``indices``: its own tile store or decoder, so that the prefetch
        thread and evaluation never share one (decoders are not thread-safe)."""
        src = make_source(self.prepared, indices, self.cfg.data, self.device, self.dist.world_size,
                          self.log if not self.sources else (lambda *a: None))
        self.sources.append(src)
        return src

    def eval_source(self, split: str):
        if split not in self._eval_sources:
            self._eval_sources[split] = self.source(self.manifest.split(split))
        return self._eval_sources[split]

    @property
    def decoders(self) -> list:
        return [s.decoder for s in self.sources if hasattr(s, "decoder")]

    def build_train_data(self):
        """Task hook: (plan_of(step) -> plan, batcher(plan) -> batch) for training."""
        raise NotImplementedError

    def run_model(self, batch):
        """Task hook: the training forward pass on a batch."""
        return self.forward(batch.images)

    def losses(self, out, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Task hook: (mean loss to minimise, {metric: sum over the batch's rows}) for the log window."""
        raise NotImplementedError

    def evaluate(self, split: str) -> dict:
        """Task hook: metrics of ``split`` (every rank takes part)."""
        raise NotImplementedError

    def summarize(self, done: bool, last_eval: dict) -> dict:
        """Task hook: the task's entries of summary.json."""
        raise NotImplementedError

    def arch(self) -> dict:
        """What a checkpoint must match to be loaded into this trainer's model."""
        return {"model": type(self.model).__name__, **dataclasses.asdict(self.cfg.model)}

    # ------------------------------------------------------------------ state

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "counters": dict(nonfinite_total=int(self.nonfinite_total), wall_s=self.wall_s),
            "sampler": {"seed": self.cfg.train.seed, "next_step": self.step},  # plans are pure functions of the step
            "decoder": self.decoders[0].state_dict() if self.decoders else {},
            "rng": gather_objects(rng_state(), self.dist),  # one per rank, so every rank resumes its own streams
            "config": cfglib.to_dict(self.cfg),
            "arch": self.arch(),
        }

    def load_state_dict(self, state: dict):
        # a key the checkpoint lacks is an option added since, which it was trained with at its default
        saved = {**dataclasses.asdict(type(self.cfg.model)()), **state.get("arch", {})}
        if saved != self.arch():
            raise CheckpointError(f"checkpoint architecture {state.get('arch')} does not match the config "
                                       f"{self.arch()}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.nonfinite_total, self.wall_s = state["counters"]["nonfinite_total"], state["counters"]["wall_s"]
        if self.decoders:  # the training pipeline's decoder (made first): its failure counters carry over
            self.decoders[0].load_state_dict(state.get("decoder", {}))
        rngs = state["rng"]
        if len(rngs) == self.dist.world_size:
            set_rng_state(rngs[self.dist.rank])
        else:
            self.log(f"note: checkpoint made by {len(rngs)} processes, resumed by {self.dist.world_size}: "
                     "data and weights continue exactly, dropout streams restart")

    def _maybe_resume(self):
        path, skipped = ckpt.resolve_resume(self.cfg.train.resume, self.ckpt_dir)
        for s in skipped:
            self.log(f"skipping unusable checkpoint: {s}")
        if path is None:
            return
        state = ckpt.load(path, map_location=self.device)
        changes = [] if self.allow_changes is None else runfolder.checkpoint_changes(state, self.cfg)
        if runfolder.blocking(changes) and not self.allow_changes:
            raise RunFolderError(
                f"{path} was trained with another configuration ({runfolder.listed(runfolder.blocking(changes))}): "
                "pass --allow-changes to resume it with these settings, or --resume none and a new --run-dir to "
                "start afresh")
        self.load_state_dict(state)
        self.resumed_from = str(path)
        self.log(f"resumed from {path} at step {self.step}")
        if changes:
            self.log(f"note: the run continues with changed settings: {'; '.join(changes)}")

    def save_checkpoint(self) -> Path | None:
        state = self.state_dict()  # every rank takes part (RNG gather)
        if self.dist.is_main:
            return ckpt.save(self.ckpt_dir, self.step, state, keep=self.cfg.train.keep_checkpoints,
                             extra_meta={"world_size": self.dist.world_size, "task": self.name})
        return None

    # ------------------------------------------------------------------ one step

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(self, batch) -> dict:
        """Forward, backward, clip, step. Returns detached device tensors (no host sync) and `skipped`."""
        o = self.cfg.optim
        lr = lr_at(self.step, o.lr, o.min_lr, o.warmup_steps, self.cfg.train.steps)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        self.model.train()
        # BatchNorm's running statistics change in the forward pass: keep a copy so that a skipped
        # (non-finite) step leaves no trace, not even NaN statistics (copied into buffers kept for it: no allocation)
        buffers = list(self.model.buffers())
        if self._saved_buffers is None:
            self._saved_buffers = [torch.empty_like(b) for b in buffers]
        saved = self._saved_buffers
        if buffers:  # (group norm has none)
            torch._foreach_copy_(saved, buffers)
        with self.autocast():
            out = self.run_model(batch)
        loss, sums = self.losses(out, batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # DDP all-reduces the gradients here
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.cfg.optim.grad_clip
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        if self.scaler.is_enabled():
            # fp16: the scaler itself skips updates whose gradients overflowed (routine while it calibrates);
            # only a non-finite *loss* counts as a failure, and the ranks agree on it
            self.scaler.step(self.optimizer)
            self.scaler.update()
            skipped = any_rank(not bool(torch.isfinite(loss).item()), self.dist)  # sync
        elif self.optimizer.defaults.get("fused"):
            # no host sync: the fused optimizer skips its update on the device where the norm is not finite (the
            # gradients are averaged over the ranks: every rank takes the same decision); the counters stay on
            # the device until the next log line reads them
            skipped = ~torch.isfinite(grad_norm)
            self.optimizer.found_inf = skipped.float()
            self.optimizer.step()
            if buffers:
                torch._foreach_copy_(buffers, [torch.where(skipped, s, b) for b, s in zip(buffers, saved)])
        else:
            # sync: one flag per step. The gradients are already averaged over the ranks, so every rank sees
            # the same norm and takes the same decision without another collective.
            skipped = not bool(torch.isfinite(grad_norm).item())
            if not skipped:
                self.optimizer.step()
        if skipped is True:
            for b, s in zip(buffers, saved):
                b.copy_(s)
        self.nonfinite_streak = (self.nonfinite_streak + 1) * skipped
        self.nonfinite_total += skipped
        if not isinstance(skipped, torch.Tensor):
            self.check_nonfinite()
        self.step += 1
        detach = lambda v: tuple(t.detach() for t in v) if isinstance(v, tuple) else v.detach()  # noqa: E731
        return {"loss": loss.detach(), "sums": {k: detach(v) for k, v in sums.items()},
                "rows": batch.pairs, "skipped": skipped, "grad_norm": grad_norm.detach()}

    def check_nonfinite(self):
        """Stop after ``train.max_nonfinite`` skipped steps in a row (read from the device when it decides)."""
        streak = int(self.nonfinite_streak)
        if streak >= self.cfg.train.max_nonfinite:
            raise NonFiniteLoss(
                f"step {self.step}: {streak} non-finite losses in a row (each step skipped); "
                f"lower optim.lr (now {self.cfg.optim.lr:g}), keep optim.grad_clip > 0, or try train.amp=off. "
                f"The last good checkpoint is in {self.ckpt_dir}")

    # ------------------------------------------------------------------ the loop

    def train(self) -> dict:
        t = self.cfg.train
        start = self.step
        stop = t.steps if not t.max_steps_this_run else min(t.steps, start + t.max_steps_this_run)
        if start >= t.steps:
            finished = runfolder.finished_summary(self.run_dir) if self.dist.is_main else None
            if any_rank(finished is not None and finished.get("steps") == start, self.dist):
                self.log(f"already trained {start} of {t.steps} steps; nothing to do (its summary.json is kept)")
                return finished
            self.log(f"already trained {start} of {t.steps} steps; nothing to do")
        prefetch = Prefetcher(self.batcher, self.plan_of, start, stop, self.cfg.data.prefetch)
        window = _Window(self.device)
        bar = _Progress(self.name, stop, start, enabled=self.progress, keys=self.progress_keys)
        last_eval: dict = {}
        signals, stopped = StopRequest.install(), False  # SIGTERM / SIGINT: this step, a checkpoint, then stop
        try:
            t_wall = time.perf_counter()
            while self.step < stop:
                # every rank stops at the same step; across processes agreeing costs a host sync, so they compare
                # at log steps, where the window's sums are read anyway (alone, a process checks every step)
                if (not self.dist.enabled or self.step % t.log_every == 0) and \
                        any_rank(signals.signum is not None, self.dist):
                    stopped = True
                    break
                batch = prefetch.next()
                m = self.train_step(batch)
                window.add(m, batch)
                if self.step % t.log_every == 0 or self.step == stop:
                    stats = window.flush(prefetch, self.dist)  # sync: reads the window's sums once
                    self.check_nonfinite()
                    self.logger.log(self.step, {**stats, "lr": self.optimizer.param_groups[0]["lr"]})
                    bar.update(self.step, stats)
                if t.eval_every and self.step % t.eval_every == 0 and self.step < stop:
                    last_eval = self.evaluate(self.eval_split)
                    self.logger.log(self.step, _scalars(last_eval), split="heldout" if self.held_out else "seen")
                    bar.note(f"step {self.step}: {'held-out' if self.held_out else 'seen'} " + ", ".join(
                        f"{k} {v}" if isinstance(v, int) else f"{k} {v:.3f}" for k, v in _scalars(last_eval).items()))
                if self.step % t.ckpt_every == 0 and self.step < stop:
                    self.save_checkpoint()
            self.wall_s += time.perf_counter() - t_wall
        finally:
            signals.restore()
            prefetch.close()
            bar.close()
        if self.step > start:
            self.save_checkpoint()
        if stopped:
            saved = f"checkpoint {self.ckpt_dir / f'step-{self.step:08d}'} written" if self.step > start else \
                "no step since the last checkpoint"
            raise Interrupted(f"stopped by {signals.name or 'a signal on another process'} at step {self.step} of "
                              f"{t.steps}; {saved}: the same command resumes it", signals.signum or signal.SIGTERM)
        if self.nonfinite_total * 2 > self.step:
            raise NonFiniteLoss(f"{self.nonfinite_total} of {self.step} steps were skipped as non-finite: the run did "
                                f"not train; lower optim.lr (now {self.cfg.optim.lr:g}), keep optim.grad_clip > 0, or "
                                "try train.amp=off")
        done = self.step >= t.steps
        summary = {
            "steps": self.step,
            "wall_s": round(self.wall_s, 2),
            **self.summarize(done, last_eval),
            "world_size": self.dist.world_size,
            "final_loss": window.totals.get("loss"),
            "pairs_per_s": window.totals.get("rows_per_s"),
            "data_wait_share": window.totals.get("data_wait"),
            "nonfinite_steps_skipped": int(self.nonfinite_total),
            "dropped_decode": window.totals.get("dropped", 0),
            "device": str(self.device),
            "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
            "data": self.data_description(),
            **memory_use(),
            "resumed_from": self.resumed_from,
            "complete": done,
            "env": env_block(),  # commit, versions, machine, date: where this result came from
        }
        if self.dist.is_main:
            write_text_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n", "the run's summary")
            plot_curves(self.run_dir, panels=self.curve_panels)
        return summary

    curve_panels = None  # plot_curves' default panels
    progress_keys = ("loss",)  # metrics shown on the progress bar

    def data_description(self) -> str:
        if self.prepared.tiles is not None:
            return f"tiles {self.prepared.tiles.name}"
        return ", ".join(f"video via {d.name} ({d.device})" for d in self.decoders[:1]) or "video"

    def close(self):
        self.logger.close()
        for d in self.decoders:
            d.close()


def _scalars(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class PretextTrainer(Trainer):
    """Self-supervised pre-training: are the two views of a pair synchronized, is one of them mirrored?"""

    name = "pretrain"
    images_per_sample = 2  # a pair of views
    progress_keys = ("loss", "sync_acc", "flip_acc")

    def build_model(self) -> nn.Module:
        return PairNet(self.cfg.model)

    def jitter(self) -> tuple[float, float]:
        return self.cfg.sampling.max_jitter()

    def pipeline(self, split: str, sampling, seed: int, source=None, augment: bool = False):
        return build_pipeline(self.prepared, split, self.cfg.data, sampling, seed=seed, rank=self.dist.rank,
                              world_size=self.dist.world_size, device=self.device, out_dtype=self.input_dtype,
                              source=source or self.source(self.manifest.split(split)), augment=augment,
                              steps=self.cfg.train.steps, log=self.log)

    def build_train_data(self):
        cfg = self.cfg
        self.train_data = self.pipeline(self.train_split,
                                        dataclasses.replace(cfg.sampling, batch_size=self.local_batch),
                                        cfg.train.seed, augment=True)
        self.log(self.train_data.sampler.describe())
        return self.train_data.sampler.plan, self.train_data.batcher

    def run_model(self, batch):
        if batch.cross is not None:  # (even none this step: every rank logs the same metrics)
            return self.forward(batch.images, batch.cross)
        return self.forward(batch.images)

    def losses(self, out, batch):
        loss, sums = pretext_loss(out, batch.sync, batch.flip, self.cfg.pretext, self.cfg.sampling)
        if "cross_sync" in out:  # a grouped batch's extra pairs: the sync task again, on more pairs of the same views
            cross = F.cross_entropy(out["cross_sync"].float(), batch.cross_sync, reduction="none")
            n_cross = torch.full((), float(len(cross)), device=cross.device)  # a fill: no blocking copy
            # scaled by sync_weight too: sync_weight=0 (the flip-only ablation) must switch all of sync off
            weight = self.cfg.pretext.sync_weight * self.cfg.pretext.cross_weight
            loss = loss + weight * cross.sum() / n_cross.clamp(min=1)
            sums.update(cross_loss=(cross.sum(), n_cross),
                        cross_acc=((out["cross_sync"].argmax(1) == batch.cross_sync).float().sum(), n_cross))
        return loss, sums

    @torch.no_grad()
    def predict(self, split: str, pairs: int, seed: int = 12345, sampling=None) -> dict[str, np.ndarray]:
        """Sync/flip probabilities and labels on a fixed, seeded set of ``pairs`` pairs of ``split`` (rank-sharded)."""
        cfg = self.cfg
        per_rank = max(1, min(self.local_batch * 2, 64))
        # measured on the paper's pairs (two cameras, no jitter) whatever the training mixed in, so that the
        # single-view variant is scored on the task it is compared on (same-frame pairs would be identical images)
        multi = any(len(self.manifest.sequences[i].cameras) > 1 for i in self.manifest.split(split))
        sampling = dataclasses.replace(sampling or cfg.sampling, batch_size=per_rank, jitter_shift=0.0,
                                       jitter_scale=0.0, single_view_share=0.0, group_size=1, mirror_pairs=0.0,
                                       mode="multiview" if multi else "single_view")
        pipe = self.pipeline(split, sampling, seed, source=self.eval_source(split))
        self.model.eval()
        mirror = cfg.pretext.mirror_average
        keys = ("p_sync", "p_flip", "sync", "flip", "offset", "seq")
        keys += ("p_sync_single", "p_flip_single") if mirror else ()
        out: dict[str, list] = {k: [] for k in keys}
        steps = max(1, math.ceil(pairs / (per_rank * self.dist.world_size)))
        for step in range(steps):
            batch = pipe.batch(step)
            with self.autocast():
                p = {k: v.float().softmax(1)[:, 1] for k, v in self.model(batch.images).items() if k != "embedding"}
                if mirror:  # both views mirrored: the same instants filmed by a mirrored rig, the same labels
                    m = self.model(batch.images.flip(-1))
                    for k in ("sync", "flip"):
                        out[f"p_{k}_single"].append(p[k].cpu())
                        p[k] = (p[k] + m[k].float().softmax(1)[:, 1]) / 2
            out["p_sync"].append(p["sync"].cpu())
            out["p_flip"].append(p["flip"].cpu())
            for k in ("sync", "flip", "offset", "seq"):
                out[k].append(getattr(batch, k).cpu())
        local = {k: torch.cat(v).numpy() for k, v in out.items()}
        parts = gather_objects(local, self.dist)
        result = {k: np.concatenate([p[k] for p in parts]) for k in local}
        names = np.array([s.subject for s in pipe.sampler.sequences] or [""])
        result["subject"] = names[result.pop("seq")]
        return result

    def evaluate(self, split: str, pairs: int | None = None) -> dict:
        """Each head's accuracy on the pairs its loss sees (classes balanced by the sampler: chance 0.5)."""
        p = self.predict(split, pairs or self.cfg.train.eval_pairs)
        rows = head_rows(self.cfg.sampling, torch.from_numpy(p["sync"]), torch.from_numpy(p["flip"]))
        sync_rows, flip_rows = (m.numpy() for m in rows)
        sync_ok = (p["p_sync"] > 0.5) == (p["sync"] == 1)
        flip_ok = (p["p_flip"] > 0.5) == (p["flip"] == 1)
        by_subject = {}  # a split's accuracy can hide one subject far below the others: report each
        for subject in sorted(set(p["subject"].tolist())):
            mine = p["subject"] == subject
            s_rows, f_rows = sync_rows & mine, flip_rows & mine
            by_subject[subject] = {"sync_acc": float(sync_ok[s_rows].mean()) if s_rows.any() else None,
                                   "flip_acc": float(flip_ok[f_rows].mean()) if f_rows.any() else None,
                                   "sync_pairs": int(s_rows.sum()), "flip_pairs": int(f_rows.sum())}
        single = {}  # one pass per pair, when the headline is mirror-averaged
        if "p_sync_single" in p:
            single = {"sync_acc_single": float(((p["p_sync_single"] > 0.5) == (p["sync"] == 1))[sync_rows].mean()),
                      "flip_acc_single": float(((p["p_flip_single"] > 0.5) == (p["flip"] == 1))[flip_rows].mean())}
        return {"sync_acc": float(sync_ok[sync_rows].mean()), "flip_acc": float(flip_ok[flip_rows].mean()), **single,
                "pairs": int(len(p["sync"])), "sync_pairs": int(sync_rows.sum()), "flip_pairs": int(flip_rows.sum()),
                "by_subject": by_subject}

    def summarize(self, done: bool, last_eval: dict) -> dict:
        """Held-out (unseen subjects) and seen-subject accuracy at the end."""
        heldout = self.evaluate(self.eval_split) if done or not last_eval else last_eval
        if not self.held_out:  # a bare session: no held-out people, the evaluation pairs are seen ones
            if done:
                self.logger.log(self.step, _scalars(heldout), split="seen")
            return {"seen_sync_acc": heldout.get("sync_acc"), "seen_flip_acc": heldout.get("flip_acc"),
                    "seen_pairs": heldout.get("pairs"), "seen_by_subject": heldout.get("by_subject"),
                    "evaluated_on": f"split {self.eval_split!r}: the people pre-training saw (no held-out split)"}
        seen = self.evaluate(self.train_split) if done else {}
        if done:
            self.logger.log(self.step, _scalars(heldout), split="heldout")
        return {**(paper_summary(self) if done else {}),  # single pass at the paper's offsets, on val and test
                "heldout_sync_acc": heldout.get("sync_acc"), "heldout_flip_acc": heldout.get("flip_acc"),
                "seen_sync_acc": seen.get("sync_acc"), "seen_flip_acc": seen.get("flip_acc"),
                **{f"heldout_{k}": heldout[k] for k in ("sync_acc_single", "flip_acc_single") if k in heldout},
                "heldout_pairs": heldout.get("pairs"),
                "heldout_by_subject": heldout.get("by_subject"), "seen_by_subject": seen.get("by_subject")}


class _Window:
    """Sums over the steps since the last log line, kept on the device until read."""

    def __init__(self, device):
        self.device = device
        self.totals: dict = {"dropped": 0}
        self._reset()

    def _reset(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.rows, self.t0 = 0, time.perf_counter()

    def add(self, m: dict, batch):
        """A step's metrics: each a sum over the batch's rows, or (sum, count) for a metric over some rows."""
        self.totals["dropped"] += batch.dropped
        if m["skipped"] is True:  # a non-finite step: counted by the trainer, kept out of the averages
            return
        skipped = m["skipped"] if isinstance(m["skipped"], torch.Tensor) else None
        for k, v in {"loss": m["loss"].float() * m["rows"], **m["sums"]}.items():
            # counts stay Python numbers where they can: a tensor made from one is a blocking copy
            total, count = v if isinstance(v, tuple) else (v, float(m["rows"]))
            total = total.float()
            if skipped is not None:  # decided on the device: weighed out instead of read (no host sync)
                total, count = torch.where(skipped, 0.0, total), count * (~skipped).float()
            old = self.sums.get(k, (0, 0))
            self.sums[k] = (old[0] + total, old[1] + count)
        self.rows += m["rows"]

    def flush(self, prefetch, d: Dist) -> dict:
        dt = time.perf_counter() - self.t0
        keys = list(self.sums)
        parts = [t for k in keys for t in self.sums[k]] + [float(self.rows)]
        parts = [torch.as_tensor(t, dtype=torch.float32, device=self.device) for t in parts]
        values = all_reduce_sum(torch.stack(parts), d).tolist()  # sync
        stats = {k: values[2 * i] / max(values[2 * i + 1], 1) for i, k in enumerate(keys)}
        stats.update(pairs_per_s=values[-1] / dt, data_wait=min(1.0, prefetch.wait_s / dt))
        prefetch.wait_s = 0.0
        self.totals.update(loss=stats.get("loss"), rows_per_s=stats["pairs_per_s"], data_wait=stats["data_wait"])
        self._reset()
        return stats


class _Progress:
    """A rich progress bar on rank 0 with the latest window's numbers."""

    def __init__(self, label: str, total: int, start: int, enabled: bool, keys=("loss",)):
        self.enabled, self.keys = enabled, keys
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        self.p = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                          TextColumn("{task.fields[stats]}"), transient=False)
        self.task = self.p.add_task(label, total=total, completed=start, stats="")
        self.p.start()

    def update(self, step: int, s: dict):
        if self.enabled:
            shown = [f"{k} {s[k]:.3f}" for k in self.keys if k in s]
            self.p.update(self.task, completed=step, stats=" | ".join(
                shown + [f"{s['pairs_per_s']:.0f}/s", f"data wait {s['data_wait']:.0%}"]))

    def note(self, text: str):
        if self.enabled:
            self.p.console.print(text)

    def close(self):
        if self.enabled:
            self.p.stop()


class PoseTrainer(Trainer):
    """Transfer: regress root-relative 3D joints (camera frame, mm) from one crop, with few labels."""

    name = "finetune"
    images_per_sample = 1
    progress_keys = ("loss", "mpjpe")
    curve_panels = [("loss (mean joint error, m)", ["loss"]), ("MPJPE (mm)", ["mpjpe", "n_mpjpe", "p_mpjpe"]),
                    ("throughput (images/s)", ["pairs_per_s"]), ("share of step time waiting for data", ["data_wait"])]

    def label_sequences(self) -> list[int]:
        x = self.cfg.transfer
        idx = [i for i, s in enumerate(self.manifest.sequences) if s.subject in x.label_subjects]
        where = self.manifest.folder or self.manifest.dataset_root
        if not idx:
            raise DataError(where, f"no sequences of the label subjects {', '.join(x.label_subjects)}; the dataset "
                                   f"has {', '.join(sorted({s.subject for s in self.manifest.sequences}))}")
        unlabelled = [self.manifest.sequences[i].key for i in idx if self.manifest.sequences[i].poses3d is None]
        if unlabelled:
            raise DataError(where, f"label subjects' sequences without 3D labels: {', '.join(unlabelled[:5])}")
        test = set(self.manifest.splits.get(self.cfg.data.eval_split, []))
        if test & set(x.label_subjects):
            raise DataError(where, f"label subjects {sorted(test & set(x.label_subjects))} are also in the "
                                   f"evaluation split {self.cfg.data.eval_split!r}")
        return idx

    def build_model(self) -> nn.Module:
        m, x = self.cfg.model, self.cfg.transfer
        # the head predicts in units of the label subjects' per-joint spread around their mean pose
        labels = PoseBatcher.labels_of([self.manifest.sequences[i] for i in self.label_sequences()])
        both = np.concatenate([labels, mirror_labels(labels)])  # flips are part of training
        mean, std = both.mean(0, dtype=np.float64), both.std(0, dtype=np.float64).clip(min=10.0)
        state = None
        if x.init == "pretrained":
            path, _ = ckpt.resolve_resume(x.checkpoint, Path(x.checkpoint) / "checkpoints")
            if path is None:
                raise CheckpointError(f"{x.checkpoint}: no pre-training checkpoint to initialise from")
            state = ckpt.load(path)
            # the input normalisation has (almost) no weights, so load_backbone may not see a mismatch: take the
            # pre-training's, and check it against this run's data settings as the config's validation would have
            input_norm = state.get("config", {}).get("model", {}).get("input_norm", "none")
            if input_norm != m.input_norm:
                self.log(f"model.input_norm={input_norm}, as the backbone was pre-trained (not {m.input_norm})")
                m.input_norm = input_norm  # so that config.toml and the checkpoints say what the model does
                for problem in common_problems(self.cfg):
                    if "input_norm" in problem:
                        raise ConfigError(f"{path} (pre-trained with it): {problem}")
        model = PoseNet(resnet(m.depth, m.width, norm=m.norm, input_norm=m.input_norm), m.num_joints, m.root, m.hidden,
                        m.dropout, torch.from_numpy(std), torch.from_numpy(mean), pool=m.pool)
        self.init_note = "random initialisation"
        if state is not None:
            load_backbone(state["model"], model, source=path)  # a clear error for another architecture
            self.init_note = f"backbone from {path}"
        frozen = 4 if x.protocol == "frozen" else m.frozen_stages
        if frozen:
            model.backbone.freeze(frozen)
        frozen_text = {0: "nothing frozen", None: "nothing frozen", 4: "backbone frozen"}.get(
            frozen, f"stem and first {frozen} stages frozen")
        self.log(f"model: PoseNet on {model.backbone.arch}, {self.init_note}, {frozen_text}")
        return model

    def jitter(self) -> tuple[float, float]:
        return self.cfg.transfer.jitter_shift, self.cfg.transfer.jitter_scale

    def build_train_data(self):
        cfg, x = self.cfg, self.cfg.transfer
        idx = self.label_sequences()
        seqs = [self.manifest.sequences[i] for i in idx]
        self.actions = sorted({s.action for s in self.manifest.sequences})
        sampler = ViewSampler([s.num_frames for s in seqs], [len(s.cameras) for s in seqs],
                              batch_size=self.local_batch, seed=cfg.train.seed, rank=self.dist.rank,
                              world_size=self.dist.world_size, fraction=x.label_fraction, flip=x.flip,
                              jitter_shift=x.jitter_shift, jitter_scale=x.jitter_scale, names=[s.key for s in seqs])
        self.log(f"labels: {', '.join(x.label_subjects)}: {sampler.labelled_frames} of "
                 f"{sum(s.num_frames for s in seqs)} instants (label_fraction {x.label_fraction:g}), every camera")
        self.labelled_frames = sampler.labelled_frames
        batcher = PoseBatcher(make_assembler(self.manifest, idx, cfg.data, self.source(idx), self.device,
                                             self.input_dtype, cfg.train.seed, augment=True, group=1,
                                             steps=cfg.train.steps), self.actions)
        return sampler.plan, batcher

    def losses(self, out, batch):
        err = (out.float() - batch.target).norm(dim=-1).mean(dim=-1)  # (N,) mean joint error, mm
        return err.mean() / 1000.0, {"mpjpe": err.sum()}  # the loss in metres keeps its scale near 0.1

    @torch.no_grad()
    def predict(self, split: str, stride: int | None = None, indices: list[int] | None = None):
        """Yields (batch, prediction) over every ``stride``-th frame x camera of ``split`` (rank-sharded), or of
        the sequences ``indices`` (the label subjects' own frames: training error)."""
        idx = indices if indices is not None else self.manifest.split(split)
        seqs = [self.manifest.sequences[i] for i in idx]
        source = self.eval_source(split) if indices is None else self.source(idx)
        batcher = PoseBatcher(make_assembler(self.manifest, idx, self.cfg.data, source, self.device,
                                             self.input_dtype, 0), self.actions)
        views = evaluation_views([s.num_frames for s in seqs], [len(s.cameras) for s in seqs],
                                 stride or self.cfg.transfer.eval_stride)
        self.model.eval()
        for plan in evaluation_plans(views, max(2, self.local_batch * 2), self.dist.rank, self.dist.world_size):
            batch = batcher(plan)
            with self.autocast():
                pred = self.model(batch.images)
            batch.index[:, 0] = np.asarray(idx)[batch.index[:, 0]]  # manifest sequence indices
            yield batch, pred.float()

    def evaluate(self, split: str, indices: list[int] | None = None) -> dict:
        metric = PoseErrors(self.actions).to(self.device)
        for batch, pred in self.predict(split, indices=indices):
            metric.update(pred, batch.target, batch.action)
        return metric.compute()  # under DDP, torchmetrics all-reduces the sums across ranks here

    def summarize(self, done: bool, last_eval: dict) -> dict:
        result = self.evaluate(self.cfg.data.eval_split) if done or not last_eval else last_eval
        # the same metric on the label subjects' own frames (no augmentation): a high training error is
        # under-fitting, a low one next to a high held-out error a failure to transfer
        train = self.evaluate(self.train_split, indices=self.label_sequences()) if done else {}
        if done:
            self.logger.log(self.step, _scalars(result), split="heldout")
        return {"mpjpe": result["mpjpe"], "n_mpjpe": result["n_mpjpe"], "p_mpjpe": result["p_mpjpe"],
                "train_mpjpe": train.get("mpjpe"),
                "per_action": result["per_action"], "eval_frames": result["count"], "init": self.init_note,
                "label_subjects": list(self.cfg.transfer.label_subjects),
                "labelled_instants": self.labelled_frames}
