"""The pretext-task trainer: sync + flip classification of view pairs, AMP, channels_last, DDP, checkpoints.

Lifecycle (torchtitan-style)::

    trainer = Trainer(cfg, dist)   # data, model, optimizer, schedule; resumes from a checkpoint if asked
    summary = trainer.train()      # the loop: step, log, evaluate, checkpoint; returns the summary
    trainer.close()

``train_step`` is one optimizer step on one batch; ``state_dict`` / ``load_state_dict`` hold everything a
resumed run needs to continue exactly (model, optimizer, schedule, scaler, step, RNG states, config).
Host-device synchronisation points are marked ``# sync:``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from .. import config as cfglib
from ..models.pairnet import PairNet
from . import checkpoint as ckpt
from .config import PretrainConfig
from .data import build_pipeline, load_manifest, make_pipeline_decoder
from .distributed import Dist, all_reduce_sum, any_rank, gather_objects
from .logger import MetricLogger, plot_curves


class NonFiniteLoss(RuntimeError):
    pass


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


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights of convolutions and linear layers only, not on norms and biases."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


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
    def __init__(self, cfg: PretrainConfig, dist: Dist, log=None, progress: bool = True):
        self.cfg, self.dist = cfg, dist
        self.log = log or (print if dist.is_main else (lambda *a, **k: None))
        self.progress = progress and dist.is_main
        t = cfg.train
        self.run_dir = Path(t.run_dir)
        self.device = dist.device
        if t.threads:
            torch.set_num_threads(t.threads)
        if cfg.train.batch_size % dist.world_size:
            raise ValueError(f"train.batch_size {t.batch_size} is not divisible by the world size {dist.world_size}")
        self.amp_dtype, use_scaler = resolve_amp(t.amp, self.device)
        self.input_dtype = self.amp_dtype or torch.float32  # the fused op writes the compute dtype directly

        # data: the manifest, then one pipeline per split sharing one decoder
        self.manifest = load_manifest(cfg.data, dist, self.log)
        sampling = dataclasses.replace(cfg.sampling, batch_size=t.batch_size // dist.world_size)
        self.decoder = make_pipeline_decoder(self.manifest, cfg.data, self.device, dist.world_size, self.log)
        common = dict(seed=t.seed, device=self.device, out_dtype=self.input_dtype, decoder=self.decoder, log=self.log)
        self.train_data = build_pipeline(self.manifest, cfg.data.train_split, cfg.data, sampling,
                                         rank=dist.rank, world_size=dist.world_size, **common)
        self.log(self.train_data.sampler.describe())

        # model: channels_last, then DDP
        torch.manual_seed(t.seed)  # the same init on every rank (DDP also broadcasts rank 0's weights)
        model = PairNet(cfg.model)
        if t.sync_bn and dist.enabled and self.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device, memory_format=torch.channels_last if t.channels_last else torch.contiguous_format)
        self.ddp = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None) \
            if dist.enabled else None
        forward = self.ddp or self.model
        self.forward = torch.compile(forward) if t.compile else forward

        o = cfg.optim
        groups = param_groups(self.model, o.weight_decay)
        if o.name == "adamw":
            self.optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=(0.9, 0.999),
                                               fused=self.device.type == "cuda")
        else:
            self.optimizer = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=True)
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.logger = MetricLogger(self.run_dir, enabled=dist.is_main)
        self.step = 0
        self.nonfinite_streak = 0
        self.nonfinite_total = 0
        self.pairs_seen = 0
        self.wall_s = 0.0
        self.resumed_from: str | None = None
        if dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.toml").write_text(cfglib.to_toml(cfg))
        self._maybe_resume()

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
            "counters": dict(nonfinite_total=self.nonfinite_total, pairs_seen=self.pairs_seen, wall_s=self.wall_s),
            "sampler": {"seed": self.cfg.train.seed, "next_step": self.step},  # the plan is a pure function of the step
            "decoder": self.decoder.state_dict(),
            "rng": gather_objects(rng_state(), self.dist),  # one per rank, so every rank resumes its own streams
            "config": cfglib.to_dict(self.cfg),
            "arch": {"model": "PairNet", **dataclasses.asdict(self.cfg.model)},
        }

    def load_state_dict(self, state: dict):
        arch = {"model": "PairNet", **dataclasses.asdict(self.cfg.model)}
        if state.get("arch") != arch:
            raise ckpt.CheckpointError(f"checkpoint architecture {state.get('arch')} does not match the config {arch}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        c = state["counters"]
        self.nonfinite_total, self.pairs_seen, self.wall_s = c["nonfinite_total"], c["pairs_seen"], c["wall_s"]
        self.decoder.load_state_dict(state.get("decoder", {}))
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
        self.load_state_dict(ckpt.load(path, map_location=self.device))
        self.resumed_from = str(path)
        self.log(f"resumed from {path} at step {self.step}")

    def save_checkpoint(self) -> Path | None:
        state = self.state_dict()  # every rank takes part (RNG gather)
        path = None
        if self.dist.is_main:
            path = ckpt.save(self.ckpt_dir, self.step, state, keep=self.cfg.train.keep_checkpoints,
                             extra_meta={"world_size": self.dist.world_size})
        return path

    # ------------------------------------------------------------------ one step

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def losses(self, out: dict, batch) -> dict:
        t = self.cfg.train
        sync_loss = F.cross_entropy(out["sync"].float(), batch.sync)
        flip_loss = F.cross_entropy(out["flip"].float(), batch.flip)
        return {"loss": t.sync_weight * sync_loss + t.flip_weight * flip_loss,
                "sync_loss": sync_loss, "flip_loss": flip_loss,
                "sync_correct": (out["sync"].argmax(1) == batch.sync).sum(),
                "flip_correct": (out["flip"].argmax(1) == batch.flip).sum()}

    def train_step(self, batch) -> dict:
        """Forward, backward, clip, step. Returns detached device tensors (no host sync) and `skipped`."""
        o = self.cfg.optim
        for g in self.optimizer.param_groups:
            g["lr"] = lr_at(self.step, o.lr, o.min_lr, o.warmup_steps, self.cfg.train.steps)
        self.model.train()
        # BatchNorm's running statistics change in the forward pass: keep a copy so that a skipped
        # (non-finite) step leaves no trace, not even NaN statistics
        buffers = list(self.model.buffers())
        saved = [b.clone() for b in buffers]
        with self._autocast():
            out = self.forward(batch.images)
        m = self.losses(out, batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(m["loss"]).backward()  # DDP all-reduces the gradients here
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.cfg.optim.grad_clip
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        if self.scaler.is_enabled():
            # fp16: the scaler itself skips updates whose gradients overflowed (routine while it calibrates);
            # only a non-finite *loss* counts as a failure, and the ranks agree on it
            self.scaler.step(self.optimizer)
            self.scaler.update()
            skipped = any_rank(not bool(torch.isfinite(m["loss"]).item()), self.dist)  # sync
        else:
            # sync: one flag per step. The gradients are already averaged over the ranks, so every rank sees
            # the same norm and takes the same decision without another collective.
            skipped = not bool(torch.isfinite(grad_norm).item())
            if not skipped:
                self.optimizer.step()
        if skipped:
            for b, s in zip(buffers, saved):
                b.copy_(s)
        self.nonfinite_streak = self.nonfinite_streak + 1 if skipped else 0
        self.nonfinite_total += int(skipped)
        if self.nonfinite_streak >= self.cfg.train.max_nonfinite:
            raise NonFiniteLoss(
                f"step {self.step}: {self.nonfinite_streak} non-finite losses in a row (each step skipped); "
                f"lower optim.lr (now {self.cfg.optim.lr:g}), keep optim.grad_clip > 0, or try train.amp=off. "
                f"The last good checkpoint is in {self.ckpt_dir}")
        self.step += 1
        m = {k: v.detach() for k, v in m.items()}
        m["grad_norm"], m["pairs"], m["skipped"] = grad_norm.detach(), batch.pairs, skipped
        return m

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def predict(self, split: str, pairs: int, seed: int = 12345, sampling=None) -> dict[str, np.ndarray]:
        """Sync/flip probabilities and labels on a fixed, seeded set of ``pairs`` pairs of ``split`` (rank-sharded)."""
        cfg = self.cfg
        per_rank = max(1, min(cfg.train.batch_size // self.dist.world_size * 2, 64))
        sampling = dataclasses.replace(sampling or cfg.sampling, batch_size=per_rank, jitter_shift=0.0,
                                       jitter_scale=0.0)
        pipe = build_pipeline(self.manifest, split, cfg.data, sampling, seed=seed, rank=self.dist.rank,
                              world_size=self.dist.world_size, device=self.device, out_dtype=self.input_dtype,
                              decoder=self.decoder, log=lambda *a: None)
        self.model.eval()
        out: dict[str, list] = {k: [] for k in ("p_sync", "p_flip", "sync", "flip", "offset")}
        steps = max(1, math.ceil(pairs / (per_rank * self.dist.world_size)))
        for step in range(steps):
            batch = pipe.batch(step)
            with self._autocast():
                o = self.model(batch.images)
            out["p_sync"].append(o["sync"].float().softmax(1)[:, 1].cpu())
            out["p_flip"].append(o["flip"].float().softmax(1)[:, 1].cpu())
            for k in ("sync", "flip", "offset"):
                out[k].append(getattr(batch, k).cpu())
        local = {k: torch.cat(v).numpy() for k, v in out.items()}
        parts = gather_objects(local, self.dist)
        return {k: np.concatenate([p[k] for p in parts]) for k in local}

    def evaluate(self, split: str, pairs: int | None = None) -> dict[str, float]:
        p = self.predict(split, pairs or self.cfg.train.eval_pairs)
        sync_acc = float(((p["p_sync"] > 0.5) == (p["sync"] == 1)).mean())
        flip_acc = float(((p["p_flip"] > 0.5) == (p["flip"] == 1)).mean())
        return {"sync_acc": sync_acc, "flip_acc": flip_acc, "pairs": int(len(p["sync"]))}

    # ------------------------------------------------------------------ the loop

    def train(self) -> dict:
        cfg, t = self.cfg, self.cfg.train
        start = self.step
        stop = t.steps if not t.max_steps_this_run else min(t.steps, start + t.max_steps_this_run)
        if start >= t.steps:
            self.log(f"already trained {start} of {t.steps} steps; nothing to do")
        from ..data.loader import Prefetcher
        prefetch = Prefetcher(self.train_data.batcher, self.train_data.sampler.plan, start, stop, cfg.data.prefetch)
        window = _Window(self.device)
        bar = _Progress(stop, start, enabled=self.progress)
        last_eval: dict = {}
        try:
            t_wall = time.perf_counter()
            while self.step < stop:
                batch = prefetch.next()
                m = self.train_step(batch)
                window.add(m, batch)
                if self.step % t.log_every == 0 or self.step == stop:
                    stats = window.flush(prefetch, self.dist)  # sync: reads the window's sums once
                    self.logger.log(self.step, {**stats, "lr": self.optimizer.param_groups[0]["lr"]})
                    bar.update(self.step, stats)
                if t.eval_every and self.step % t.eval_every == 0 and self.step < stop:
                    last_eval = self.evaluate(cfg.data.eval_split)
                    self.logger.log(self.step, last_eval, split="heldout")
                    bar.note(f"step {self.step}: held-out sync {last_eval['sync_acc']:.3f} flip {last_eval['flip_acc']:.3f}")
                if self.step % t.ckpt_every == 0 and self.step < stop:
                    self.save_checkpoint()
            self.wall_s += time.perf_counter() - t_wall
        finally:
            prefetch.close()
            bar.close()
        if self.step > start:
            self.save_checkpoint()
        return self.finish(window.totals, last_eval)

    def finish(self, totals: dict, last_eval: dict) -> dict:
        """Held-out and seen-subject accuracy, the summary, the curves."""
        cfg = self.cfg
        done = self.step >= cfg.train.steps
        heldout = self.evaluate(cfg.data.eval_split) if done or not last_eval else last_eval
        seen = self.evaluate(cfg.data.train_split) if done else {}
        if done:
            self.logger.log(self.step, heldout, split="heldout")
        summary = {
            "steps": self.step,
            "wall_s": round(self.wall_s, 2),
            "heldout_sync_acc": heldout.get("sync_acc"),
            "heldout_flip_acc": heldout.get("flip_acc"),
            "seen_sync_acc": seen.get("sync_acc"),
            "seen_flip_acc": seen.get("flip_acc"),
            "heldout_pairs": heldout.get("pairs"),
            "world_size": self.dist.world_size,
            "final_loss": totals.get("last_loss"),
            "pairs_per_s": totals.get("pairs_per_s"),
            "data_wait_share": totals.get("data_wait"),
            "nonfinite_steps_skipped": self.nonfinite_total,
            "pairs_dropped_decode": totals.get("dropped", 0),
            "device": str(self.device),
            "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
            "decoder": f"{self.decoder.name} ({self.decoder.device})",
            "resumed_from": self.resumed_from,
            "complete": done,
        }
        if self.dist.is_main:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            plot_curves(self.run_dir)
        return summary

    def close(self):
        self.logger.close()
        self.decoder.close()


class _Window:
    """Sums over the steps since the last log line, kept on the device until read."""

    def __init__(self, device):
        self.device = device
        self.totals: dict = {"dropped": 0}
        self._reset()

    def _reset(self):
        self.sums = {k: torch.zeros((), device=self.device) for k in
                     ("loss", "sync_loss", "flip_loss", "sync_correct", "flip_correct")}
        self.pairs, self.steps, self.t0 = 0, 0, time.perf_counter()

    def add(self, m: dict, batch):
        self.totals["dropped"] += batch.dropped
        if m["skipped"]:  # a non-finite step: counted by the trainer, kept out of the averages
            return
        for k in ("loss", "sync_loss", "flip_loss"):
            self.sums[k] += m[k].float() * m["pairs"]
        self.sums["sync_correct"] += m["sync_correct"]
        self.sums["flip_correct"] += m["flip_correct"]
        self.pairs += m["pairs"]
        self.steps += 1

    def flush(self, prefetch, d: Dist) -> dict:
        dt = time.perf_counter() - self.t0
        sums = torch.stack(list(self.sums.values()) + [torch.tensor(float(self.pairs), device=self.device)])
        sums = all_reduce_sum(sums, d).tolist()  # sync
        pairs = max(sums[-1], 1)
        stats = {"loss": sums[0] / pairs, "sync_loss": sums[1] / pairs, "flip_loss": sums[2] / pairs,
                 "sync_acc": sums[3] / pairs, "flip_acc": sums[4] / pairs,
                 "pairs_per_s": sums[-1] / dt, "data_wait": min(1.0, prefetch.wait_s / dt)}
        prefetch.wait_s = 0.0
        self.totals.update(last_loss=stats["loss"], pairs_per_s=stats["pairs_per_s"], data_wait=stats["data_wait"])
        self._reset()
        return stats


class _Progress:
    """A rich progress bar on rank 0 with the latest window's numbers."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.enabled = enabled
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        self.p = Progress(TextColumn("[bold]pretrain"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                          TextColumn("{task.fields[stats]}"), transient=False)
        self.task = self.p.add_task("train", total=total, completed=start, stats="")
        self.p.start()

    def update(self, step: int, s: dict):
        if self.enabled:
            self.p.update(self.task, completed=step, stats=(
                f"loss {s['loss']:.3f} | sync {s['sync_acc']:.2f} flip {s['flip_acc']:.2f} | "
                f"{s['pairs_per_s']:.0f} pairs/s | data wait {s['data_wait']:.0%}"))

    def note(self, text: str):
        if self.enabled:
            self.p.console.print(text)

    def close(self):
        if self.enabled:
            self.p.stop()
