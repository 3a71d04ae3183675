"""Test-time self-training (``syncssl-sync --adapt N``): teach the classifier the session's people and rig from
the session itself, then search again.

The pre-trained classifier tells synchronized pairs of people it never saw apart less well than those of the
people it was trained on (held-out 0.73 against seen 0.83 on the embedded data), and a camera whose curve is
too flat is left undetermined. But the cameras a first search *does* determine form aligned rigs whose pairs are
labelled without any annotation: (a at t, b at t + d_b - d_a) is synchronized, the same with a further offset
from the model's own training window is not, and a synchronized pair with one view mirrored is "flipped". A
short fine-tuning of a copy of the model on those pairs, with the pre-training losses and the model's own crop
jitter, adapts it to this session's people, clothes, cameras and light; every camera is then searched again
with the adapted copy. Only determined cameras teach (a wrong but determined camera would teach wrong pairs);
nothing here reads labels, and the model on disk is left as it is.
"""
from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..train.trainer import lr_at, param_groups, pretext_loss


@dataclass
class AdaptReport:
    steps: int
    pairs_per_step: int
    lr: float
    cameras: int  # cameras whose frames taught (references included)
    sequences: int  # sequences with at least two of them
    candidates: int  # synchronized (camera pair, instant) candidates the batches are drawn from
    sync_acc_first: float  # training accuracy of the sync head on the first / last tenth of the steps
    sync_acc_last: float
    seconds: float

    def describe(self) -> str:
        plural = "s" if self.sequences != 1 else ""
        return (f"adapted on {self.cameras} determined cameras of {self.sequences} sequence{plural} "
                f"({self.candidates} synchronized candidates): {self.steps} steps of {self.pairs_per_step} pairs, "
                f"lr {self.lr:g}; "
                f"sync accuracy on its own pairs {self.sync_acc_first:.2f} -> {self.sync_acc_last:.2f} "
                f"({self.seconds:.0f} s)")


@dataclass
class _Rig:
    """Two aligned cameras of one sequence: b's frame t + d shows a's frame t."""

    a: int  # manifest index of camera a's recording
    b: int
    d: int
    instants: np.ndarray  # t usable in a with t + d usable in b
    usable_b: np.ndarray
    window: tuple[int, int]  # unsynchronized offsets (frames) on top of d


def aligned_rigs(plans, results, sampling) -> tuple[list[_Rig], int, int]:
    """Every ordered pair of determined cameras (the reference included) of every sequence, with the instants
    at which both are usable; and how many cameras and sequences took part."""
    rigs, cameras, sequences = [], 0, 0
    for plan, res in zip(plans, results):
        offset = {c.camera: c.estimate.offset for c in res.cameras if c.estimate.determined}
        offset[res.reference] = 0
        if len(offset) < 2:
            continue
        cameras, sequences = cameras + len(offset), sequences + 1
        window = sampling.window(plan.seq.fps)
        for a in offset:
            for b in offset:
                if a == b:
                    continue
                d = offset[b] - offset[a]
                t = np.flatnonzero(plan.usable[a])
                u = t + d
                ok = (u >= 0) & (u < plan.lengths[b])
                ok[ok] = plan.usable[b][u[ok]]
                if ok.any():
                    rigs.append(_Rig(plan.index[a], plan.index[b], d, t[ok], plan.usable[b], window))
    return rigs, cameras, sequences


def draw_pairs(rigs: list[_Rig], n: int, sampling, rng: np.random.Generator):
    """n pairs as the pre-training sampler draws them (shares of synchronized and flipped pairs, crop jitter):
    views [(recording, 0, frame)] in pair order (a0, b0, a1, b1, ...), flip (2n,), jitter (2n, 3), sync (n,),
    flip labels (n,)."""
    weights = np.array([len(r.instants) for r in rigs], np.float64)
    weights /= weights.sum()
    views, sync, flip_label = [], np.zeros(n, np.int64), np.zeros(n, np.int64)
    flip = np.zeros(2 * n, bool)
    for row in range(n):
        while True:
            r = rigs[rng.choice(len(rigs), p=weights)]
            t = int(r.instants[rng.integers(len(r.instants))])
            u = t + r.d
            if rng.random() < sampling.sync_fraction:
                sync[row] = 1
                break
            lo, hi = r.window
            e = np.concatenate([np.arange(-hi, -lo + 1), np.arange(lo, hi + 1)]) + u
            e = e[(e >= 0) & (e < len(r.usable_b))]
            e = e[r.usable_b[e]]
            if len(e):
                u = int(e[rng.integers(len(e))])
                break
        views += [(r.a, 0, t), (r.b, 0, u)]
        if sync[row] and rng.random() < sampling.flip_fraction:
            flip_label[row] = 1
            flip[2 * row + int(rng.integers(2))] = True
    shift, scale = sampling.jitter_bounds(False)
    jitter = np.concatenate([rng.uniform(-shift, shift, (2 * n, 2)), rng.uniform(-scale, scale, (2 * n, 1))], 1)
    return views, flip, jitter.astype(np.float32), sync, flip_label


def adapt(model: torch.nn.Module, cfg, plans, results, assembler, *, steps: int, lr: float, seed: int = 0,
          amp_dtype: torch.dtype | None = None, log=print,
          progress=None) -> tuple[torch.nn.Module | None, AdaptReport | None]:
    """A copy of ``model`` (a PairNet; ``cfg`` its pre-training config) fine-tuned on the pairs of the cameras
    ``results`` determined, drawn through ``assembler`` as pre-training draws them; (None, None) when no sequence
    has two determined cameras. ``progress(1)`` is called after every step."""
    t0 = time.perf_counter()
    rigs, cameras, sequences = aligned_rigs(plans, results, cfg.sampling)
    if not rigs:
        log("--adapt: no sequence has two determined cameras to learn from; the first search stands")
        return None, None
    tuned = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(param_groups(tuned, cfg.optim.weight_decay), lr=lr)  # as pre-training's
    warmup = max(1, steps // 10)
    rng = np.random.default_rng([seed, 0xADA])
    n = cfg.train.batch_size
    acc = []
    autocast = (torch.autocast(assembler.device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    for step in range(steps):
        views, flip, jitter, sync, flip_label = draw_pairs(rigs, n, cfg.sampling, rng)
        images, ok = assembler(views, flip, jitter, step)
        pair_ok = ok.reshape(n, 2).all(1)
        if not pair_ok.any():  # no pair arrived whole (decode failures): nothing to learn from this step
            continue
        if not pair_ok.all():  # keep the pairs whose two views both arrived
            images = images[torch.from_numpy(pair_ok.repeat(2)[ok])]
        sync_t = torch.from_numpy(sync[pair_ok]).to(images.device)
        flip_t = torch.from_numpy(flip_label[pair_ok]).to(images.device)
        with autocast:
            out = tuned(images)
        loss, sums = pretext_loss(out, sync_t, flip_t, cfg.pretext, cfg.sampling)  # pre-training's own loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(tuned.parameters(), cfg.optim.grad_clip)
        for g in opt.param_groups:  # linear warm-up, then cosine to zero
            g["lr"] = lr_at(step, lr, 0.0, warmup, steps)
        opt.step()
        right, seen = sums["sync_acc"]
        if seen > 0:
            acc.append(float(right / seen))
        if progress is not None:
            progress(1)
    tenth = max(1, len(acc) // 10)
    report = AdaptReport(steps=steps, pairs_per_step=n, lr=lr, cameras=cameras, sequences=sequences,
                         candidates=int(sum(len(r.instants) for r in rigs)) // 2,
                         sync_acc_first=float(np.mean(acc[:tenth])) if acc else float("nan"),
                         sync_acc_last=float(np.mean(acc[-tenth:])) if acc else float("nan"),
                         seconds=time.perf_counter() - t0)
    return tuned.eval(), report
