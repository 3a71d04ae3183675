"""Labelled single views for the transfer task: a seeded label budget, random training batches, a fixed
evaluation set.

Like the pair sampler, plans are pure functions of (seed, step): the global batch of a step is drawn
once and rank r takes rows [r*N, (r+1)*N), so a DDP run sees what one process with the global batch sees.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import DataError


@dataclass(frozen=True)
class ViewPlan:
    """One batch of single views (N rows)."""

    step: int
    rank: int
    seq: np.ndarray  # (N,) int32 index into the sampler's sequences
    cam: np.ndarray  # (N,) int32
    frame: np.ndarray  # (N,) int64
    flip: np.ndarray  # (N,) bool: the image (and so its 3D label) is mirrored
    jitter: np.ndarray  # (N, 3) float32: crop shift (dx, dy) in box sides and log-scale

    def __len__(self) -> int:
        return len(self.seq)

    def rows(self, start: int, stop: int, rank: int) -> ViewPlan:
        return ViewPlan(self.step, rank, self.seq[start:stop], self.cam[start:stop], self.frame[start:stop],
                        self.flip[start:stop], self.jitter[start:stop])


def label_budget(num_frames: list[int], fraction: float, seed: int) -> list[np.ndarray]:
    """The labelled frames of each sequence: a seeded ``fraction`` of its frames, spread evenly in time
    (every k-th frame from a random phase), so a small budget still covers every action."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng([seed, 0x1ABE1])
    out = []
    for T in num_frames:
        k = max(1, int(round(1 / fraction)))
        out.append(np.arange(int(rng.integers(k)), T, k) if T else np.zeros(0, np.int64))
    return out


class ViewSampler:
    """Random labelled views: uniform over the budgeted frames of every sequence, any camera."""

    def __init__(self, num_frames: list[int], num_cameras: list[int], *, batch_size: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, fraction: float = 1.0, flip: float = 0.5,
                 jitter_shift: float = 0.05, jitter_scale: float = 0.1, names: list[str] | None = None):
        if not num_frames:
            raise DataError("dataset", "no labelled sequences to sample views from")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.flip, self.shift, self.scale = flip, jitter_shift, jitter_scale
        self.frames = label_budget(num_frames, fraction, seed)
        self.cameras = np.asarray(num_cameras, np.int64)
        sizes = np.array([len(f) for f in self.frames])
        if sizes.sum() == 0:
            raise DataError("dataset", f"the label budget ({fraction:g} of {sum(num_frames)} frames) is empty")
        self._end = np.cumsum(sizes)
        self._all = np.concatenate(self.frames)
        self.names = names or [f"sequence {i}" for i in range(len(num_frames))]

    @property
    def labelled_frames(self) -> int:
        """Instants with labels in the budget (each seen by every camera)."""
        return int(self._end[-1])

    def plan(self, step: int) -> ViewPlan:
        n = self.batch_size
        return self.global_plan(step).rows(self.rank * n, (self.rank + 1) * n, self.rank)

    def global_plan(self, step: int) -> ViewPlan:
        B = self.batch_size * self.world_size
        rng = np.random.default_rng([self.seed, int(step), 0x7053])
        u = rng.integers(0, len(self._all), size=B)
        seq = np.searchsorted(self._end, u, side="right")
        cam = (rng.random(B) * self.cameras[seq]).astype(np.int64)
        flip = rng.random(B) < self.flip
        jitter = rng.uniform(-1, 1, size=(B, 3)) * np.array([self.shift, self.shift, self.scale])
        return ViewPlan(int(step), -1, seq.astype(np.int32), cam.astype(np.int32), self._all[u].astype(np.int64),
                        flip, jitter.astype(np.float32))


def evaluation_views(num_frames: list[int], num_cameras: list[int], stride: int) -> np.ndarray:
    """(V, 3) [seq, cam, frame]: every ``stride``-th frame of every sequence, seen by every camera
    (the paper evaluates every 64th frame of S9 and S11 at 50 fps)."""
    rows = [(s, c, t) for s, (T, C) in enumerate(zip(num_frames, num_cameras))
            for t in range(0, T, max(1, stride)) for c in range(C)]
    return np.asarray(rows, np.int64).reshape(-1, 3)


def evaluation_plans(views: np.ndarray, batch_size: int, rank: int = 0, world_size: int = 1):
    """Fixed, unflipped, unjittered plans over ``views``, sharded by rank (chunk i goes to rank i % world)."""
    chunks = range(0, len(views), batch_size)
    for i, start in enumerate(chunks):
        if i % world_size != rank:
            continue
        v = views[start:start + batch_size]
        n = len(v)
        yield ViewPlan(i, rank, v[:, 0].astype(np.int32), v[:, 1].astype(np.int32), v[:, 2],
                       np.zeros(n, bool), np.zeros((n, 3), np.float32))
