"""The fused data path end to end: plan -> decode only the frames the plan needs -> assemble_pairs -> batch.

``PairBatcher`` turns one :class:`~syncssl.data.loading.sampling.PairPlan` into a :class:`Batch` (a pure function of
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

from ...errors import DataError
from ...geometry import mirror
from ...ops import assemble_pairs
from ..decode import FrameRequest
from ..preparation.crops import MaskSettings, cut
from ..preparation.manifest import Manifest
from ..preparation.tiles import frame_to_tile
from .sampling import PairPlan, cross_pairs


@dataclass
class Batch:
    step: int
    images: torch.Tensor  # (2N, 3, S, S) channels_last, compute dtype, on the training device
    sync: torch.Tensor  # (N,) int64, 1 = synchronized
    flip: torch.Tensor  # (N,) int64, 1 = one view mirrored
    offset: torch.Tensor  # (N,) int64, frame offset of view b (0 for synchronized pairs)
    dropped: int = 0  # pairs dropped because one of their videos failed to decode
    ready: torch.cuda.Event | None = None  # set when assembled on a side CUDA stream
    cross: torch.Tensor | None = None  # (K, 2) int64: more pairs among the views of a grouped plan
    #                                    (indices into images)
    cross_sync: torch.Tensor | None = None  # (K,) int64: their labels, 1 = synchronized
    seq: torch.Tensor | None = None  # (N,) int64 on the CPU: each pair's sequence (the sampler's index), for reports

    @property
    def pairs(self) -> int:
        return int(self.sync.shape[0])

    def wait(self):
        """Make the current CUDA stream wait for this batch (no-op on CPU)."""
        extra = () if self.cross is None else (self.cross, self.cross_sync)
        _wait_ready(self.ready, (self.images, self.sync, self.flip, self.offset, *extra))


def _wait_ready(ready: torch.cuda.Event | None, tensors) -> None:
    """A batch assembled on the prefetcher's side stream: the current stream waits for it, and the caching
    allocator learns that the current stream uses its tensors (so their memory is not reused too early)."""
    if ready is not None:
        stream = torch.cuda.current_stream()
        stream.wait_event(ready)
        for t in tensors:
            t.record_stream(stream)


def normalise_device(device) -> torch.device:
    """``cuda`` -> ``cuda:<current device>``: one name per device, so that equality tests and the prefetch thread's
    side stream (which needs an index) see the same device as the model."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


@dataclass
class Gathered:
    """What a view source hands the assembler for one batch of views (CPU tensors unless said otherwise)."""

    frames: torch.Tensor  # (M, H, W, 3) uint8 bank, on the source's device
    frame_hw: torch.Tensor  # (M, 2) int32 valid size of each bank frame
    src: torch.Tensor  # (V',) int64: bank frame of each kept view
    ok: np.ndarray  # (V,) bool: which views were kept (their file decoded)
    boxes: torch.Tensor  # (V', 4) float32 crop boxes in frame coordinates (pixel edges), before jitter
    rects: torch.Tensor | None  # (V', 4): the frame region each kept view's bank frame holds (tiles); None: whole
    backgrounds: torch.Tensor  # (B, H, W, 3) uint8 in the geometry of ``frames``
    bg_index: torch.Tensor  # (V',) int64: each kept view's background
    thresholds: torch.Tensor  # (B,) float32: each background's threshold from prepare
    bg_camera: list[str]  # (B,) camera name of each background (substitution never uses the view's own camera)


class VideoViews:
    """Views decoded from the videos: one request per (sequence, camera) with its distinct frames, every frame
    padded into one bank; the backgrounds are the cameras' whole-frame models."""

    def __init__(self, manifest: Manifest, seqs: list, decoder, device: torch.device, backgrounds: bool):
        self.manifest, self.seqs, self.decoder, self.device = manifest, seqs, decoder, device
        sizes = [c.size for s in seqs for c in s.cameras]  # one padded geometry: the largest camera
        self.width, self.height = max(w for w, _ in sizes), max(h for _, h in sizes)
        ids = sorted({c.background_id for s in seqs for c in s.cameras})
        self.bg_slot = {bid: i for i, bid in enumerate(ids)}
        self.bg_camera = [manifest.backgrounds[b].camera for b in ids]
        self.thresholds = torch.tensor([manifest.backgrounds[b].threshold for b in ids], dtype=torch.float32)
        self.backgrounds = self._background_bank(ids) if backgrounds else \
            torch.zeros((0, self.height, self.width, 3), dtype=torch.uint8, device=device)
        self.boxes = [torch.from_numpy(np.ascontiguousarray(s.boxes, np.float32)) for s in seqs]

    def _background_bank(self, ids: list[str]) -> torch.Tensor:
        bank = torch.zeros(len(ids), self.height, self.width, 3, dtype=torch.uint8)
        for i, bid in enumerate(ids):
            bg = self.manifest.background(bid)
            bank[i, :bg.shape[0], :bg.shape[1]] = torch.from_numpy(np.array(bg))  # cached read-only array
        return bank.to(self.device)

    def gather(self, views: list[tuple[int, int, int]], step: int) -> Gathered:
        wanted: dict[tuple[int, int], list[int]] = {}
        for s, c, t in views:
            wanted.setdefault((s, c), []).append(t)
        keys = list(wanted)
        requests, instants = [], []
        for s, c in keys:
            cam, seq = self.seqs[s].cameras[c], self.seqs[s]
            frames = np.unique(np.asarray(wanted[(s, c)], np.int64))
            if frames[-1] >= seq.num_frames:
                raise DataError(cam.video, f"asked for frame {frames[-1]} but {seq.key} has {seq.num_frames}")
            instants.append(frames)
            requests.append(FrameRequest(cam.video, frames + cam.start, cam.codec, tuple(cam.size)))  # file frames
        decoded = self.decoder.decode(requests)
        row_of: dict[tuple[int, int, int], int] = {}
        blocks, hw = [], []
        for (s, c), ts, frames in zip(keys, instants, decoded):
            if frames is None:  # a failed request: its views are dropped
                continue
            for t in ts.tolist():
                row_of[(s, c, t)] = len(hw)
                hw.append(frames.shape[1:3])
            blocks.append(frames)
        ok = np.array([v in row_of for v in views], bool)
        if not ok.any():
            raise DataError(requests[0].path, f"step {step}: every view of the batch failed to decode")
        kept = [v for v, k in zip(views, ok) if k]
        return Gathered(
            frames=self._bank(blocks, hw), frame_hw=torch.tensor(hw, dtype=torch.int32),
            src=torch.tensor([row_of[v] for v in kept], dtype=torch.int64), ok=ok,
            boxes=torch.stack([self.boxes[s][t, c] for s, c, t in kept]), rects=None,
            backgrounds=self.backgrounds, thresholds=self.thresholds, bg_camera=self.bg_camera,
            bg_index=torch.tensor([self.bg_slot[self.seqs[s].cameras[c].background_id] for s, c, _ in kept],
                                  dtype=torch.int64))

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
        return _to_device(bank, self.device)


class TileViews:
    """Views read from a tile set (:mod:`syncssl.data.preparation.tiles`): a gather of the views' tiles and of their
    backgrounds (stored beside them, or cut from the camera's model with the tile's rect), boxes mapped from
    the frame into each tile."""

    def __init__(self, manifest: Manifest, indices: list[int], store, device: torch.device):
        self.manifest, self.store, self.device = manifest, store, device
        self.indices = list(indices)
        self.seqs = [manifest.sequences[i] for i in indices]
        self.boxes = [torch.from_numpy(np.ascontiguousarray(s.boxes, np.float32)) for s in self.seqs]
        self.size = store.spec.size

    def gather(self, views: list[tuple[int, int, int]], step: int) -> Gathered:
        rows_of = {}
        for s, c, t in views:
            rows_of.setdefault((s, c, t), len(rows_of))  # a view used twice is read once
        distinct = list(rows_of)
        d = np.array(distinct, np.int64).reshape(-1, 3)
        rows = self.store.layout.row(np.asarray(self.indices, np.int64)[d[:, 0]], d[:, 1], d[:, 2])
        pin = self.device.type == "cuda"  # gathered into page-locked memory: one asynchronous upload
        frames = self.store.frames(rows, pin=pin, device=self.device)
        cams = [self.seqs[s].cameras[c] for s, c, _ in distinct]
        rects = self.store.rects[rows]
        if self.store.has_backgrounds:
            backgrounds = self.store.backgrounds(rows, pin=pin)
        else:
            backgrounds = torch.empty_like(frames)
            for bid in {c.background_id for c in cams}:
                k = [i for i, c in enumerate(cams) if c.background_id == bid]
                image = torch.from_numpy(np.array(self.manifest.background(bid)))[None]
                backgrounds[k] = cut(image, rects[k], self.size, index=torch.zeros(len(k), dtype=torch.int64))
        src = torch.tensor([rows_of[v] for v in views], dtype=torch.int64)
        thresholds = torch.tensor([self.manifest.backgrounds[c.background_id].threshold for c in cams],
                                  dtype=torch.float32)
        return Gathered(
            frames=_to_device(frames, self.device),
            frame_hw=torch.full((len(distinct), 2), self.size, dtype=torch.int32), src=src,
            ok=np.ones(len(views), bool), boxes=torch.stack([self.boxes[s][t, c] for s, c, t in views]),
            rects=rects[src], backgrounds=_to_device(backgrounds, self.device), bg_index=src.clone(),
            thresholds=thresholds, bg_camera=[c.name for c in cams])


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if t.device == device:
        return t.contiguous()
    if device.type == "cuda":
        return (t if t.is_pinned() else t.pin_memory()).to(device, non_blocking=True)
    return t.to(device)


@dataclass(frozen=True)
class Appearance:
    """Appearance augmentation: a random colour transform per group of views (a pair shares one, so that the two
    views still show one scene; a pose view has its own), drawn from the step's seed. Each group gets a colour
    matrix M applied around the fill colour (c' = M (c - fill) + fill, c in 0..1), so a removed background stays
    the constant fill: a brightness scale (about the fill), a saturation scale, a hue rotation about the grey axis,
    then possibly a channel permutation or greyscale. Off (identity) with every field 0."""

    jitter: float = 0.0  # brightness and saturation each scaled by U(1 - jitter, 1 + jitter)
    hue_deg: float = 0.0  # hue rotated by U(-hue_deg, hue_deg) degrees
    permute: float = 0.0  # probability of a random channel permutation (one of the 5 non-identity ones)
    grey: float = 0.0  # probability of greyscale
    start_step: int = 0  # applied from this step on (a curriculum)

    @property
    def active(self) -> bool:
        return any((self.jitter, self.hue_deg, self.permute, self.grey))

    def matrices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 3, 3) colour matrices."""
        eye = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
        grey = np.full((3, 3), 1 / 3)
        scale = lambda: rng.uniform(1 - self.jitter, 1 + self.jitter, n)[:, None, None]  # noqa: E731
        m = eye * scale()  # brightness (about the fill)
        sat = scale()
        m = (sat * eye + (1 - sat) * grey) @ m  # saturation: towards the grey of each pixel
        theta = np.deg2rad(rng.uniform(-self.hue_deg, self.hue_deg, n))
        k = np.ones(3) / np.sqrt(3)
        K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        rot = eye + np.sin(theta)[:, None, None] * K + (1 - np.cos(theta))[:, None, None] * (K @ K)  # about grey
        m = rot @ m
        perms = [(0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
        permute = rng.random(n) < self.permute
        which = rng.integers(0, len(perms), n)
        greys = rng.random(n) < self.grey
        for i in range(n):
            if permute[i]:
                m[i] = np.eye(3)[list(perms[which[i]])] @ m[i]
            if greys[i]:
                m[i] = grey @ m[i]
        return m

    def apply(self, images: torch.Tensor, group: int, mean, std, fill, rng: np.random.Generator) -> torch.Tensor:
        """images (V, 3, S, S) normalised, V a multiple of ``group`` -> the same, transformed in place of a copy."""
        n = images.shape[0] // group
        m = torch.from_numpy(self.matrices(n, rng)).float().repeat_interleave(group, 0).to(images.device)
        std_t = torch.tensor(std, dtype=torch.float32, device=images.device)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device)
        fill_t = torch.tensor(fill, dtype=torch.float32, device=images.device) / 255
        c = images.float() * std_t.view(1, 3, 1, 1) + mean_t.view(1, 3, 1, 1) - fill_t.view(1, 3, 1, 1)
        c = torch.einsum("vij,vjhw->vihw", m, c) + fill_t.view(1, 3, 1, 1)
        out = (c.clamp(0, 1) - mean_t.view(1, 3, 1, 1)) / std_t.view(1, 3, 1, 1)
        return out.to(images.dtype).contiguous(memory_format=torch.channels_last)


class ViewAssembler:
    """Turns a list of views into the model's input in one op call: the source gathers their pixels, the fused op
    crops (with jitter), removes or substitutes the background, flips and normalises them.

    A view is (sequence, camera, frame); ``sequences`` are manifest indices (the sampler's order). The source is
    :class:`TileViews` (tiles: the default once prepared) or :class:`VideoViews` (decoding the videos).
    """

    def __init__(self, manifest: Manifest, sequences: list[int], source, *, crop_size: int,
                 mask: MaskSettings | None = None, substitute: float = 0.0, mean=(0.45, 0.45, 0.45),
                 std=(0.25, 0.25, 0.25), device: torch.device | str = "cpu", out_dtype: torch.dtype = torch.float32,
                 seed: int = 0, appearance: Appearance | None = None, group: int = 2):
        self.manifest, self.source = manifest, source
        self.appearance, self.group = appearance, group  # group: views sharing one colour transform (a pair)
        self.seqs = [manifest.sequences[i] for i in sequences]
        self.crop_size, self.mask = crop_size, mask or MaskSettings()
        self.substitute = substitute
        self.mean, self.std = tuple(mean), tuple(std)
        self.device, self.out_dtype, self.seed = normalise_device(device), out_dtype, seed

    def __call__(self, views: list[tuple[int, int, int]], flip: np.ndarray, jitter: np.ndarray,
                 step: int, rank: int = 0) -> tuple[torch.Tensor, np.ndarray]:
        """views [(seq, cam, frame)] (V), flip (V,) bool, jitter (V, 3) -> (images (V', 3, S, S), ok (V,) bool).

        ``images`` holds the views whose pixels arrived (``ok``), in order; a failed request (skip policy)
        drops its views instead of returning garbage.
        """
        g = self.source.gather(views, step)
        index = np.flatnonzero(g.ok)
        per_view = [g.src, g.bg_index, g.boxes] + ([g.rects] if g.rects is not None else [])
        if len(index) % 2:  # the op takes pairs: an odd count is padded by one view
            index = np.append(index, index[-1])
            per_view = [torch.cat([t, t[-1:]]) for t in per_view]
        src, bg_index, boxes = per_view[:3]
        boxes = _jitter(boxes, torch.from_numpy(np.asarray(jitter, np.float32)[index].reshape(-1, 3)))
        if g.rects is not None:  # frame coordinates -> the tile's
            boxes = frame_to_tile(boxes, per_view[3], self.source.size)
        flips = torch.from_numpy(np.asarray(flip, bool)[index])
        fill_index = self._substitutes(step, rank, bg_index, g.bg_camera)
        dev = self.device
        images = assemble_pairs(
            g.frames, g.frame_hw.to(dev, non_blocking=True), src.to(dev), boxes.to(dev), flips.to(dev),
            size=self.crop_size, backgrounds=g.backgrounds, bg_index=bg_index.to(dev), fill_index=fill_index.to(dev),
            mean=self.mean, std=self.std, out_dtype=self.out_dtype,
            **self.mask.op_kwargs(g.thresholds.to(dev, non_blocking=True)),
        ).flatten(0, 1)
        if self.appearance is not None and self.appearance.active and step >= self.appearance.start_step:
            rng = np.random.default_rng([self.seed, step, rank, 0xC0])  # a pure function of the step
            fill = tuple(255 * m for m in self.mean)
            group = self.group if len(images) % self.group == 0 else 1
            images = self.appearance.apply(images, group, self.mean, self.std, fill, rng)
        return images[:int(g.ok.sum())], g.ok

    def _substitutes(self, step: int, rank: int, bg_index: torch.Tensor, bg_camera: list[str]) -> torch.Tensor:
        """Background substitution: a ``substitute`` share of views get the background of another camera as fill;
        never one of the view's own camera (another subject's background of the same camera is the same room from
        the same place: it would put the real background back)."""
        fill = torch.full_like(bg_index, -1)
        if self.substitute <= 0 or len(set(bg_camera)) < 2:
            return fill
        rng = np.random.default_rng([self.seed, step, rank, 0x5B])  # a pure function of the step
        pick = rng.random(len(bg_index)) < self.substitute
        cameras = np.array(bg_camera)
        draws = rng.random(len(bg_index))
        for v in np.flatnonzero(pick):
            others = np.flatnonzero(cameras != cameras[int(bg_index[v])])
            fill[v] = int(others[int(draws[v] * len(others))])
        return fill


class PairBatcher:
    """A :class:`~syncssl.data.loading.sampling.PairPlan` -> a :class:`Batch` of view pairs (the pretext task)."""

    def __init__(self, assembler: ViewAssembler, group_size: int = 1):
        self.assembler = assembler
        self.group_size = group_size  # > 1: the plans are grouped; the batch carries their cross pairs

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
        cross = cross_sync = None
        if self.group_size > 1:
            pairs, labels = cross_pairs(plan, self.group_size)
            view_ok = pair_ok.repeat(2)
            new_index = np.cumsum(view_ok) - 1  # a view's index among the kept images
            both = view_ok[pairs].all(1)
            cross = torch.from_numpy(new_index[pairs[both]]).to(dev, non_blocking=True)
            cross_sync = torch.from_numpy(labels[both]).to(dev, non_blocking=True)
        return Batch(
            step=plan.step, images=images,
            sync=torch.from_numpy(plan.sync)[keep].to(dev, non_blocking=True),
            flip=torch.from_numpy(plan.flip_label)[keep].to(dev, non_blocking=True),
            offset=torch.from_numpy(plan.offset.astype(np.int64))[keep].to(dev, non_blocking=True),
            dropped=n - len(keep), cross=cross, cross_sync=cross_sync,
            seq=torch.from_numpy(plan.seq.astype(np.int64))[keep],
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
        # One intra-op thread for this thread's ops (OpenMP's thread count is per calling thread): on a CPU with
        # few cores a second 2-thread team fights the step's team at every barrier. Measured on 2 cores (tiles,
        # cpu-small): 0.67 of compute-only with the default count, 1.04 with one thread (the step does not keep
        # both cores busy, so one core's gaps absorb the data path).
        torch.set_num_threads(1)
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
    return mirror(1, joints3d_cam=joints).joints3d_cam.astype(np.float32)


def camera_labels(seq, where="manifest") -> np.ndarray:
    """(T, C, 17, 3) float32: the world poses in each camera's frame, root-relative, mm."""
    if seq.poses3d is None:
        raise DataError(where, f"{seq.key} has no 3D labels (poses3d)")
    per_cam = np.stack([c.camera.world_to_camera(seq.poses3d[:seq.num_frames]) for c in seq.cameras], 1)
    return (per_cam - per_cam[:, :, :1]).astype(np.float32)


class PoseBatcher:
    """A :class:`~syncssl.data.loading.pose_sampling.ViewPlan` -> a :class:`PoseBatch`: crops and 3D labels.

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
