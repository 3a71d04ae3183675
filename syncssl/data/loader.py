"""The fused data path end to end: plan -> decode only the frames the plan needs -> assemble_pairs -> batch.

``PairBatcher`` turns one :class:`~syncssl.data.sampling.PairPlan` into a :class:`Batch` (a pure function of
the plan, the manifest and the seed); ``Prefetcher`` runs it on a background thread, ``depth`` steps ahead
of training, and measures how long the consumer waits.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..ops import assemble_pairs
from .dataset import DataError
from .decode import FrameRequest
from .manifest import Manifest
from .sampling import PairPlan

BG_MODES = {"off": 0, "hard": 1, "soft": 2}


@dataclass
class Batch:
    step: int
    images: torch.Tensor  # (2N, 3, S, S) channels_last, compute dtype, on the training device
    sync: torch.Tensor  # (N,) int64, 1 = synchronized
    flip: torch.Tensor  # (N,) int64, 1 = one view mirrored
    offset: torch.Tensor  # (N,) int64, frame offset of view b (0 for synchronized pairs)
    dropped: int = 0  # pairs dropped because one of their videos failed to decode
    ready: torch.cuda.Event | None = None  # set when assembled on a side CUDA stream

    @property
    def pairs(self) -> int:
        return int(self.sync.shape[0])

    def wait(self):
        """Make the current CUDA stream wait for this batch (no-op on CPU)."""
        _wait_ready(self.ready, (self.images, self.sync, self.flip, self.offset))


def _wait_ready(ready: torch.cuda.Event | None, tensors) -> None:
    """A batch assembled on the prefetcher's side stream: the current stream waits for it, and the caching
    allocator learns that the current stream uses its tensors (so their memory is not reused too early)."""
    if ready is not None:
        stream = torch.cuda.current_stream()
        stream.wait_event(ready)
        for t in tensors:
            t.record_stream(stream)


class ViewAssembler:
    """Decodes the frames of a list of views and assembles them, cropped and normalised, in one op call.

    A view is (sequence, camera, frame, flip, jitter); ``sequences`` are manifest indices (the sampler's order).
    Every frame of a video is decoded once per call even when several views use it.
    """

    def __init__(self, manifest: Manifest, sequences: list[int], decoder, *, crop_size: int,
                 background: str = "soft", bg_threshold: float = 20.0, bg_softness: float = 16.0,
                 substitute: float = 0.0, mean=(0.45, 0.45, 0.45), std=(0.25, 0.25, 0.25),
                 device: torch.device | str = "cpu", out_dtype: torch.dtype = torch.float32, seed: int = 0):
        if background not in BG_MODES:
            raise ValueError(f"background must be one of {', '.join(BG_MODES)}, got {background!r}")
        self.manifest, self.decoder = manifest, decoder
        self.seqs = [manifest.sequences[i] for i in sequences]
        self.crop_size, self.bg_mode = crop_size, BG_MODES[background]
        self.bg_threshold, self.bg_softness, self.substitute = bg_threshold, bg_softness, substitute
        self.mean, self.std = tuple(mean), tuple(std)
        self.device, self.out_dtype, self.seed = torch.device(device), out_dtype, seed
        # One padded geometry for every frame and background: the largest camera of these sequences.
        sizes = [c.size for s in self.seqs for c in s.cameras]
        self.width, self.height = max(w for w, _ in sizes), max(h for _, h in sizes)
        ids = sorted({c.background_id for s in self.seqs for c in s.cameras})
        self.bg_slot = {bid: i for i, bid in enumerate(ids)}
        self.backgrounds = self._background_bank(ids) if (self.bg_mode or substitute > 0) else None
        # One threshold (Euclidean RGB distance) per background slot; the same for every camera for now.
        self.bg_thresholds = torch.full((len(ids) if self.backgrounds is not None else 0,), float(bg_threshold),
                                        device=self.device)
        self.boxes = [torch.from_numpy(np.ascontiguousarray(s.boxes, np.float32)) for s in self.seqs]

    def _background_bank(self, ids: list[str]) -> torch.Tensor:
        bank = torch.zeros(len(ids), self.height, self.width, 3, dtype=torch.uint8)
        for i, bid in enumerate(ids):
            bg = self.manifest.background(bid)
            bank[i, :bg.shape[0], :bg.shape[1]] = torch.from_numpy(np.array(bg))  # cached read-only array
        return bank.to(self.device)

    def __call__(self, views: list[tuple[int, int, int]], flip: np.ndarray, jitter: np.ndarray,
                 step: int, rank: int = 0) -> tuple[torch.Tensor, np.ndarray]:
        """views [(seq, cam, frame)] (V), flip (V,) bool, jitter (V, 3) -> (images (V', 3, S, S), ok (V,) bool).

        ``images`` holds the views whose video decoded (``ok``), in order; a failed request (skip policy)
        drops its views instead of returning garbage.
        """
        # 1. one request per (sequence, camera): its distinct frames
        wanted: dict[tuple[int, int], list[int]] = {}
        for s, c, t in views:
            wanted.setdefault((s, c), []).append(t)
        keys = list(wanted)
        requests = []
        for s, c in keys:
            cam, seq = self.seqs[s].cameras[c], self.seqs[s]
            frames = np.unique(np.asarray(wanted[(s, c)], np.int64))
            if frames[-1] >= seq.num_frames:
                raise DataError(cam.video, f"asked for frame {frames[-1]} but {seq.key} has {seq.num_frames}")
            requests.append(FrameRequest(cam.video, frames, cam.codec, tuple(cam.size)))
        decoded = self.decoder.decode(requests)

        # 2. the frame bank (M, H, W, 3) uint8, every frame padded to the common geometry
        row_of: dict[tuple[int, int, int], int] = {}
        blocks, hw = [], []
        for (s, c), req, frames in zip(keys, requests, decoded):
            if frames is None:  # a failed request: its views are dropped
                continue
            for t in req.frames.tolist():
                row_of[(s, c, t)] = len(hw)
                hw.append(frames.shape[1:3])
            blocks.append(frames)
        ok = np.array([v in row_of for v in views], bool)
        if not ok.any():
            raise DataError(requests[0].path, f"step {step}: every view of the batch failed to decode")
        bank = self._bank(blocks, hw)

        # 3. per-view arguments of the fused op (it takes pairs: an odd count is padded by one view)
        kept = [v for v, k in zip(views, ok) if k]
        index = np.flatnonzero(ok)
        if len(kept) % 2:
            kept, index = kept + kept[-1:], np.append(index, index[-1])
        src = torch.tensor([row_of[v] for v in kept], dtype=torch.int64)
        boxes = _jitter(torch.stack([self.boxes[s][t, c] for s, c, t in kept]),
                        torch.from_numpy(np.asarray(jitter, np.float32)[index].reshape(-1, 3)))
        flips = torch.from_numpy(np.asarray(flip, bool)[index])
        bg_index = torch.tensor([self.bg_slot[self.seqs[s].cameras[c].background_id] for s, c, _ in kept],
                                dtype=torch.int64)
        fill_index = self._substitutes(step, rank, bg_index)
        dev = self.device
        images = assemble_pairs(
            bank, torch.tensor(hw, dtype=torch.int32).to(dev, non_blocking=True), src.to(dev), boxes.to(dev),
            flips.to(dev), size=self.crop_size, backgrounds=self.backgrounds, bg_index=bg_index.to(dev),
            fill_index=fill_index.to(dev), mean=self.mean, std=self.std, bg_mode=self.bg_mode,
            bg_threshold=self.bg_thresholds, bg_softness=self.bg_softness, shadow_chroma=0.0, clean=False,
            out_dtype=self.out_dtype,
        ).flatten(0, 1)
        return images[:int(ok.sum())], ok

    def _bank(self, blocks: list[torch.Tensor], hw: list) -> torch.Tensor:
        full = all(b.shape[1] == self.height and b.shape[2] == self.width for b in blocks)
        if full:  # the common case (one camera size): one concatenation, no padding
            bank = torch.cat(blocks) if len(blocks) > 1 else blocks[0]
        else:
            bank = torch.zeros(len(hw), self.height, self.width, 3, dtype=torch.uint8, device=blocks[0].device)
            row = 0
            for b in blocks:
                bank[row:row + b.shape[0], :b.shape[1], :b.shape[2]] = b
                row += b.shape[0]
        if bank.device != self.device:
            bank = bank.pin_memory().to(self.device, non_blocking=True) if self.device.type == "cuda" else bank.to(self.device)
        return bank.contiguous()

    def _substitutes(self, step: int, rank: int, bg_index: torch.Tensor) -> torch.Tensor:
        """Background substitution: a ``substitute`` share of views get another camera's background as fill."""
        fill = torch.full_like(bg_index, -1)
        slots = len(self.bg_slot)
        if self.substitute <= 0 or slots < 2:
            return fill
        rng = np.random.default_rng([self.seed, step, rank, 0x5B])  # a pure function of the step
        pick = torch.from_numpy(rng.random(len(bg_index)) < self.substitute)
        other = torch.from_numpy(rng.integers(0, slots - 1, len(bg_index)))
        other = other + (other >= bg_index).long()  # never the view's own background
        fill[pick] = other[pick]
        return fill


class PairBatcher:
    """A :class:`~syncssl.data.sampling.PairPlan` -> a :class:`Batch` of view pairs (the pretext task)."""

    def __init__(self, assembler: ViewAssembler):
        self.assembler = assembler

    @property
    def device(self) -> torch.device:
        return self.assembler.device

    def __call__(self, plan: PairPlan) -> Batch:
        n = len(plan)
        views = [(int(plan.seq[p]), int(plan.cam[p, v]), int(plan.frame[p, v])) for p in range(n) for v in (0, 1)]
        images, ok = self.assembler(views, plan.flip.reshape(-1), plan.jitter.reshape(-1, 3), plan.step, plan.rank)
        pair_ok = ok.reshape(n, 2).all(1)
        if not pair_ok.all():  # keep only pairs whose two views both decoded
            images = images[torch.from_numpy(pair_ok.repeat(2)[ok])]
        if not pair_ok.any():
            raise DataError(self.assembler.manifest.folder or "manifest", f"step {plan.step}: no pair decoded")
        keep = torch.from_numpy(np.flatnonzero(pair_ok))
        dev = self.device
        return Batch(
            step=plan.step, images=images,
            sync=torch.from_numpy(plan.sync)[keep].to(dev, non_blocking=True),
            flip=torch.from_numpy(plan.flip_label)[keep].to(dev, non_blocking=True),
            offset=torch.from_numpy(plan.offset.astype(np.int64))[keep].to(dev, non_blocking=True),
            dropped=n - len(keep),
        )


def _jitter(boxes: torch.Tensor, jitter: torch.Tensor) -> torch.Tensor:
    """Shift each box by (dx, dy) box sides and scale it by exp(log_scale) about its centre."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = cx + jitter[:, 0] * w, cy + jitter[:, 1] * h
    scale = torch.exp(jitter[:, 2])
    w, h = w * scale, h * scale
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).float()


class Prefetcher:
    """Assembles the batches of steps ``start, start+1, ...`` on a background thread, ``depth`` ahead.

    ``next()`` returns them in step order and adds the time it blocked to ``wait_s``: the share of step time
    spent waiting for data is ``wait_s / wall time``. An exception in the producer is re-raised by ``next()``.
    """

    def __init__(self, batcher: PairBatcher, plan_of, start: int, stop: int, depth: int = 2):
        self.batcher, self.plan_of = batcher, plan_of
        self.start, self.stop, self.depth = start, stop, max(1, depth)
        self.wait_s = 0.0
        self._queue: queue.Queue = queue.Queue(maxsize=self.depth)
        self._halt = threading.Event()
        self._stream = torch.cuda.Stream(batcher.device) if batcher.device.type == "cuda" else None
        self._thread = threading.Thread(target=self._produce, name="syncssl-prefetch", daemon=True)
        self._thread.start()

    def _produce(self):
        try:
            for step in range(self.start, self.stop):
                if self._halt.is_set():
                    return
                if self._stream is not None:
                    with torch.cuda.stream(self._stream):
                        batch = self.batcher(self.plan_of(step))
                        batch.ready = torch.cuda.Event()
                        batch.ready.record(self._stream)
                else:
                    batch = self.batcher(self.plan_of(step))
                self._put(batch)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, who raises it
            self._put(e)

    def _put(self, item):
        while not self._halt.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self) -> Batch:
        t0 = time.perf_counter()
        item = self._queue.get()
        self.wait_s += time.perf_counter() - t0
        if isinstance(item, BaseException):
            raise item
        item.wait()
        return item

    def close(self):
        self._halt.set()
        self._thread.join(timeout=10)


@dataclass
class PoseBatch:
    step: int
    images: torch.Tensor  # (N, 3, S, S) channels_last, compute dtype
    target: torch.Tensor  # (N, 17, 3) float32 root-relative joints in the camera's frame, mm (mirrored with the image)
    action: torch.Tensor  # (N,) int64 index into the batcher's ``actions``
    index: np.ndarray  # (N, 3) [seq, cam, frame] of each row, for pictures
    dropped: int = 0
    ready: torch.cuda.Event | None = None

    @property
    def pairs(self) -> int:  # the trainer's unit of work: one row
        return int(self.target.shape[0])

    def wait(self):
        """Make the current CUDA stream wait for this batch (no-op on CPU)."""
        _wait_ready(self.ready, (self.images, self.target, self.action))


def mirror_labels(joints: np.ndarray) -> np.ndarray:
    """(..., 17, 3) camera-frame labels of the mirrored image: x negated, left and right swapped."""
    from ..geometry import mirror
    return mirror(1, joints3d_cam=joints).joints3d_cam.astype(np.float32)


def camera_labels(seq, where="manifest") -> np.ndarray:
    """(T, C, 17, 3) float32: the world poses in each camera's frame, root-relative, mm."""
    if seq.poses3d is None:
        raise DataError(where, f"{seq.key} has no 3D labels (poses3d)")
    per_cam = np.stack([c.camera.world_to_camera(seq.poses3d[:seq.num_frames]) for c in seq.cameras], 1)
    return (per_cam - per_cam[:, :, :1]).astype(np.float32)


class PoseBatcher:
    """A :class:`~syncssl.data.pose_sampling.ViewPlan` -> a :class:`PoseBatch`: crops and 3D labels.

    Labels are the world poses moved into each camera's frame and made root-relative (computed once);
    a mirrored image gets the mirrored label (x negated, left and right swapped: ``geometry.mirror``).
    """

    def __init__(self, assembler: ViewAssembler, actions: list[str] | None = None):
        self.assembler = assembler
        self.actions = actions or sorted({s.action for s in assembler.seqs})
        self.action_of = [self.actions.index(s.action) for s in assembler.seqs]
        where = assembler.manifest.folder or "manifest"
        self.labels = [camera_labels(s, where) for s in assembler.seqs]  # each (T, C, 17, 3)
        self.mirrored = [mirror_labels(x) for x in self.labels]

    @staticmethod
    def labels_of(sequences) -> np.ndarray:
        """Every (frame, camera) label of ``sequences``, (sum T*C, 17, 3)."""
        return np.concatenate([camera_labels(s).reshape(-1, *s.poses3d.shape[1:]) for s in sequences])

    @property
    def device(self) -> torch.device:
        return self.assembler.device

    def __call__(self, plan) -> PoseBatch:
        views = [(int(s), int(c), int(t)) for s, c, t in zip(plan.seq, plan.cam, plan.frame)]
        images, ok = self.assembler(views, plan.flip, plan.jitter, plan.step, max(plan.rank, 0))
        rows = [(v, f) for v, f, k in zip(views, plan.flip, ok) if k]
        target = np.stack([(self.mirrored if f else self.labels)[s][t, c] for (s, c, t), f in rows])
        dev = self.device
        return PoseBatch(
            step=plan.step, images=images, target=torch.from_numpy(target).to(dev, non_blocking=True),
            action=torch.tensor([self.action_of[s] for (s, _, _), _ in rows], dtype=torch.int64).to(dev),
            index=np.array([v for v, _ in rows], np.int64).reshape(-1, 3), dropped=len(views) - len(rows))
