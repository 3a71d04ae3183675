"""The pair sampler: a pure, seeded, index-only plan of every training batch.

A plan says, for each pair of a batch, which sequence, which two cameras, which two frames, the time offset,
the labels (sync, flip) and the crop jitter of each view. Nothing here touches a video: the data path turns a
plan into pixels, and because the plan is all the randomness, that path stays pure.

Design (what the tests hold it to):

- **Pure and random-access.** The global batch of step ``s`` (``batch_size * world_size`` pairs) is a function
  of ``(seed, s, batch_size * world_size)`` only, drawn from its own generator; nothing carries over from one
  step to the next. Resuming at step ``k`` is ``plan(k)`` (or ``from_step(k)``), with no replay.
- **Sharded by global rank.** Rank ``r`` takes rows ``[r*N, (r+1)*N)`` of the global batch. The ranks' rows are
  independent draws, and their union is exactly what one process with ``world_size=1`` and batch ``N*world_size``
  draws: a DDP run sees the same data as a single process with the same global batch.
- **Labels.** As in the paper, a flipped pair is a *synchronized* pair with one view (chosen at random) mirrored:
  ``sync_fraction`` of the pairs are synchronized and ``flip_fraction`` of those are flipped, each count exact
  over the global batch (stratified, then shuffled; the fractional part of ``B*fraction`` is rounded at random so
  there is no bias). The defaults (2/3, 1/2) make three equal kinds: unsynchronized, synchronized, synchronized
  and flipped, so that the sync head (trained on unflipped pairs) and the flip head (trained on synchronized
  pairs) each see balanced classes. A flipped *unsynchronized* pair could only be told by single-view habits
  (handedness, asymmetric clothing), which are subject-specific; ``flip_unsync=True`` (an ablation) draws the two
  labels independently instead, ``flip_fraction`` then being the share of all pairs.
- **Anchors.** The anchor (view a at frame ``t``) is drawn uniformly over every *usable* frame of every usable
  sequence, so sequences are sampled in proportion to their usable frames. A frame is usable when it is not
  static (no significant movement: ambiguous pairs) and at least one non-static frame lies inside the offset
  window from it, so synchronized and unsynchronized pairs share one anchor distribution (a frame that could
  only ever be a sync anchor would be a shortcut).
- **Offsets.** Unsynchronized pairs take view b at ``t + d`` with ``min <= |d| <= max`` (inclusive; in seconds by
  default, converted with each sequence's fps so the window adapts to the frame rate; or in frames). ``d`` is
  uniform over the offsets whose frame lies inside the sequence, is not static, and whose person looks different
  enough: with ``min_silhouette_change > 0``, the person's box-normalised silhouettes (from prepare's masks, no
  labels) at t and t + d differ in at least that share of their cells (averaged over cameras), so that a
  repeated pose (a periodic action) does not make an "unsynchronized" pair that is rigid too. Labels are used
  only by explicit opt-in: with ``label_min_pose_change_mm > 0`` and 3D poses given, the mean per-joint
  distance must be at least that. Its sign is random, and near the ends of a sequence the window is clipped
  to it. Rarely an anchor has no partner that passes the filters; that row's anchor is then drawn again.
- **Modes.** ``multiview``: two different cameras of one sequence (the paper). ``single_view`` (the "is
  multi-view data needed" ablation): both views from one camera; a synchronized pair is one frame under two
  different crop augmentations (the paper's variant) or, with ``single_view_sync_window > 0``, two instants at
  most that many frames apart (the temporal variant), an unsynchronized pair two instants.
  ``single_view_share`` mixes a share of such pairs into multiview training (an auxiliary; held-out accuracy is
  always measured on two-camera pairs).
- **Jitter.** Per view: ``(dx, dy, log_scale)``; dx, dy shift the crop box by a fraction of its side, the box
  side is multiplied by ``exp(log_scale)``. Mild by default in multiview mode, stronger in single_view mode
  where it *is* the augmentation that makes the two views of a synchronized pair differ.

Sequences that cannot provide pairs are excluded, with the reason, in :meth:`PairSampler.summary`; if none is
left the constructor raises a ValueError saying why.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

import numpy as np

MODES = ("multiview", "single_view")
OFFSET_UNITS = ("seconds", "frames")
_STREAM = 0x5EED_5A3D  # keeps the sampler's generators apart from other seeded users of the same (seed, step)


@dataclass(frozen=True)
class SamplerSequence:
    """What the sampler needs to know about one sequence: sizes and the per-frame facts, no pixels."""

    num_frames: int  # T: usable frames (every camera has at least this many)
    num_cameras: int  # C: cameras of this sequence
    fps: float  # frames per second, to convert an offset window given in seconds
    static: np.ndarray | None = None  # (T,) bool: frame without significant movement, never an anchor or partner
    poses3d: np.ndarray | None = None  # (T, J, 3) mm: the opt-in label pose-change filter only (None by default)
    silhouettes: np.ndarray | None = None  # (T, C, 32) uint8 bit-packed 16x16 silhouettes, for the pair filter
    subject: str = ""
    name: str = ""  # for messages, e.g. "S1/Walking 1"

    def __post_init__(self):
        label = self.name or "sequence"
        if int(self.num_frames) < 0 or int(self.num_cameras) < 0:
            raise ValueError(f"{label}: num_frames and num_cameras must be >= 0")
        if not self.fps > 0:
            raise ValueError(f"{label}: fps must be > 0, got {self.fps}")
        if self.static is not None:
            static = np.asarray(self.static, bool)
            if static.shape != (self.num_frames,):
                raise ValueError(f"{label}: static must be ({self.num_frames},), got {static.shape}")
            object.__setattr__(self, "static", static)
        if self.poses3d is not None:
            poses = np.asarray(self.poses3d, np.float32)
            if poses.ndim != 3 or poses.shape[0] < self.num_frames or poses.shape[2] != 3:
                raise ValueError(f"{label}: poses3d must be ({self.num_frames}, J, 3), got {poses.shape}")
            object.__setattr__(self, "poses3d", poses[: self.num_frames])
        if self.silhouettes is not None:
            sil = np.asarray(self.silhouettes, np.uint8)
            if sil.ndim != 3 or sil.shape[0] < self.num_frames or sil.shape[1] != self.num_cameras:
                raise ValueError(f"{label}: silhouettes must be ({self.num_frames}, {self.num_cameras}, bytes), "
                                 f"got {sil.shape}")
            bits = np.unpackbits(sil[: self.num_frames], axis=-1)  # (T, C, cells) unpacked once: cheap to compare
            object.__setattr__(self, "silhouettes", bits.astype(bool))

    @classmethod
    def from_sequence(cls, seq, static: np.ndarray | None = None, labels: bool = False) -> SamplerSequence:
        """From a :class:`~syncssl.data.preparation.manifest.PreparedSequence` or a
        :class:`~syncssl.data.sources.dataset.Sequence`.

        ``static`` overrides the sequence's own ``static`` array (a plain Sequence has none). The sequence's 3D
        labels are passed only with ``labels`` (the opt-in label pose-change filter): pre-training reads none.
        """
        if static is None:
            static = getattr(seq, "static", None)
        return cls(num_frames=int(seq.num_frames), num_cameras=len(seq.cameras), fps=float(seq.fps),
                   static=static, poses3d=getattr(seq, "poses3d", None) if labels else None,
                   silhouettes=getattr(seq, "silhouettes", None), subject=str(seq.subject),
                   name=str(getattr(seq, "key", "") or f"{seq.subject}/{seq.name}"))


@dataclass(frozen=True)
class SamplingConfig:
    """How pairs are drawn. Defaults follow the paper (offsets 4 < |d| < 128 frames at 50 fps)."""

    batch_size: int = 16  # pairs per rank per step (the global batch is batch_size * world_size); training sets it
    #                       from train.batch_size, which is the setting
    sync_fraction: float = 2 / 3  # share of synchronized pairs (sync=1); the rest are unsynchronized
    flip_fraction: float = 0.5  # share of the synchronized pairs with one view mirrored (flip_label=1)
    flip_unsync: bool = False  # True (ablation): flip any pair, flip drawn independently of sync over all pairs
    mode: str = "multiview"  # "multiview": two cameras; "single_view": one camera, two augmentations / instants
    single_view_share: float = 0.0  # multiview mode: share of pairs drawn as single-view pairs instead (one camera,
    #                                 the single-view jitter): an easier task mixed in, whose unsynchronized pairs
    #                                 differ only in pose, to get pose-sensitive features early; 0: the paper's
    offset_unit: str = "seconds"  # unit of min_offset / max_offset: "seconds" (adapts to fps) or "frames"
    min_offset: float = 0.1  # smallest |d| of an unsynchronized pair, inclusive (0.1 s = 5 frames at 50 fps)
    max_offset: float = 2.54  # largest |d|, inclusive (2.54 s = 127 frames at 50 fps)
    min_silhouette_change: float = 0.0  # unsync pairs: share of silhouette cells that differ between t and t+d
    #                                     (box-normalised person masks, averaged over cameras; 0: off)
    label_min_pose_change_mm: float = 0.0  # OPT-IN, reads 3D labels: mean per-joint distance between t and t+d
    jitter_shift: float = 0.05  # multiview: crop box shift, uniform in +-this fraction of the box side, per axis
    jitter_scale: float = 0.1  # multiview: log of the box scale, uniform in +-this
    single_view_jitter_shift: float = 0.15  # single_view: the same, stronger: it is what tells the two views apart
    single_view_jitter_scale: float = 0.25  # single_view: log-scale range
    single_view_sync_window: int = 0  # single_view: a synchronized pair's second view lies 1..this many frames from
    #                                   the anchor (either side): the temporal variant, "two nearby instants vs two
    #                                   distant ones"; 0: the same frame under two crops (the paper's variant)
    group_size: int = 1  # rows drawn in groups of this many that share the sequence and the anchor instant t:
    #                      besides each row's own pair, the views of different rows of a group then form more
    #                      pairs whose label the plan fixes (both at t: synchronized; one at t, one at t + d:
    #                      not), scored by the trainer at no extra backbone cost (see cross_pairs); 1: the paper's
    mirror_pairs: float = 0.0  # share of pairs (of groups, when grouped) whose two views are both mirrored: a
    #                            mirrored rig films a mirrored person at the same instants, so no label changes;
    #                            it doubles the poses and removes "this one image looks mirrored" as a flip cue
    max_redraws: int = 64  # anchors redrawn for a row whose anchor has no partner passing the pose filter

    checks_batch = True  # group_size must divide batch_size (a trainer that sets the batch itself checks its own)

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        for name in ("sync_fraction", "flip_fraction", "single_view_share", "mirror_pairs"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.offset_unit not in OFFSET_UNITS:
            raise ValueError(f"offset_unit must be one of {', '.join(OFFSET_UNITS)}, got {self.offset_unit!r}")
        if not 0 < self.min_offset <= self.max_offset:
            raise ValueError(f"need 0 < min_offset <= max_offset, got {self.min_offset}..{self.max_offset}")
        if self.label_min_pose_change_mm < 0 or self.jitter_shift < 0 or self.jitter_scale < 0 \
                or self.single_view_jitter_shift < 0 or self.single_view_jitter_scale < 0:
            raise ValueError("label_min_pose_change_mm and the jitter ranges must be >= 0")
        if not 0 <= self.min_silhouette_change < 1:
            raise ValueError(f"min_silhouette_change must be in [0, 1), got {self.min_silhouette_change}")
        if self.single_view_sync_window < 0:
            raise ValueError(f"single_view_sync_window must be >= 0, got {self.single_view_sync_window}")
        if self.group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {self.group_size}")
        if self.checks_batch and self.batch_size % self.group_size:
            raise ValueError(f"group_size must be >= 1 and divide batch_size ({self.batch_size}), "
                             f"got {self.group_size}")
        if self.group_size > 1 and self.mode == "single_view":
            # a group's cross pairs join views of different rows, i.e. of different cameras: multi-view pairs that
            # the single-view ablation must not see (and the temporal variant has no shared anchor instant)
            raise ValueError("group_size > 1 pairs the views of a group's rows across cameras, which single_view "
                             "mode must not see: set sampling.group_size=1")

    def jitter_bounds(self, single_view: bool) -> tuple[float, float]:
        """(shift, log-scale) bounds of a view's crop jitter in a pair from one camera (single_view) or two."""
        if single_view:
            return self.single_view_jitter_shift, self.single_view_jitter_scale
        return self.jitter_shift, self.jitter_scale

    def max_jitter(self) -> tuple[float, float]:
        """The largest (shift, log-scale) jitter any pair drawn under this config gets: tiles must hold its crops."""
        single = self.mode == "single_view"
        bounds = [self.jitter_bounds(single)]
        if not single and self.single_view_share > 0:  # single-view pairs mixed in
            bounds.append(self.jitter_bounds(True))
        return max(b[0] for b in bounds), max(b[1] for b in bounds)

    def window(self, fps: float) -> tuple[int, int]:
        """The offset window in frames, inclusive, for a sequence at ``fps`` (at least 1 frame: 0 is sync)."""
        lo, hi = self.min_offset, self.max_offset
        if self.offset_unit == "seconds":
            lo, hi = lo * fps, hi * fps
        # a hair of tolerance so that 2.54 s * 50 fps is 127 frames, not 126, whatever the float rounding
        return max(1, math.ceil(lo - 1e-6)), math.floor(hi + 1e-6)


@dataclass(frozen=True)
class PairPlan:
    """One rank's pairs for one step: indices, labels and augmentation numbers, all numpy, length N."""

    step: int
    rank: int
    seq: np.ndarray  # (N,) int32: index into the sampler's sequence list
    cam: np.ndarray  # (N, 2) int32: camera of view a, of view b (equal in single_view mode)
    frame: np.ndarray  # (N, 2) int64: t for view a, t + offset for view b
    offset: np.ndarray  # (N,) int32: d (0 for synchronized pairs, but 1..window in the temporal single-view variant)
    sync: np.ndarray  # (N,) int64: 1 = synchronized
    flip: np.ndarray  # (N, 2) bool: which view is mirrored as assembled (one for flip_label 1, mirror included)
    flip_label: np.ndarray  # (N,) int64: 1 if one view is mirrored against the other
    jitter: np.ndarray  # (N, 2, 3) float32: per view (dx, dy) as a fraction of the box side, and log-scale
    mirror: np.ndarray  # (N,) bool: both views mirrored besides (SamplingConfig.mirror_pairs); no label changes

    def __len__(self) -> int:
        return len(self.seq)

    def rows(self, start: int, stop: int, rank: int | None = None) -> PairPlan:
        """Rows [start, stop) as a plan of their own."""
        arrays = {f.name: getattr(self, f.name)[start:stop] for f in fields(self) if f.name not in ("step", "rank")}
        return PairPlan(step=self.step, rank=self.rank if rank is None else rank, **arrays)


class PairSampler:
    """Plans the pairs of every step; see the module docstring for what it guarantees.

    ``sequences``: :class:`SamplerSequence` items (``plan.seq`` indexes this list, excluded ones included).
    """

    def __init__(self, sequences: Sequence[SamplerSequence], config: SamplingConfig | None = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.config = config = config or SamplingConfig()
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.sequences = list(sequences)
        if not self.sequences:
            raise ValueError("no sequences to sample pairs from")
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.global_batch = config.batch_size * world_size

        self.excluded: dict[int, str] = {}  # sequence index -> why it provides no pairs
        anchors, counts, self._windows = [], [], []
        self._frames_static = self._frames_no_partner = 0
        self._pose_filter_off: list[int] = []
        self._silhouette_filter_off: list[int] = []
        for i, s in enumerate(self.sequences):
            lo, hi = config.window(s.fps)
            if config.mode == "single_view" and config.single_view_sync_window >= lo:
                raise ValueError(f"single_view_sync_window ({config.single_view_sync_window} frames) must be below the "
                                 f"smallest unsynchronized offset ({lo} frames at {s.fps:g} fps in "
                                 f"{self._label(i)}): nearby and distant instants would overlap")
            self._windows.append((lo, hi))
            usable, why = self._usable_anchors(s, lo, hi)
            if s.static is not None:
                self._frames_static += int(s.static.sum())
            if why:
                self.excluded[i] = why
                usable = np.zeros(0, np.int64)
            else:
                self._frames_no_partner += int(s.num_frames - (0 if s.static is None else s.static.sum())
                                               - len(usable))
                if config.label_min_pose_change_mm > 0 and s.poses3d is None:
                    self._pose_filter_off.append(i)
                if config.min_silhouette_change > 0 and s.silhouettes is None:
                    self._silhouette_filter_off.append(i)
            anchors.append(usable.astype(np.int32))
            counts.append(len(usable))
        if len(self.excluded) == len(self.sequences):
            raise ValueError(self._nothing_left_message())
        self._anchors = np.concatenate(anchors)  # every usable (sequence, frame), sequence by sequence
        self._anchor_end = np.cumsum(counts)  # anchors of sequence i: [_anchor_end[i-1], _anchor_end[i])
        self._cameras = np.array([s.num_cameras for s in self.sequences], np.int64)

    # ---------------------------------------------------------------- usable frames

    def _usable_anchors(self, s: SamplerSequence, lo: int, hi: int) -> tuple[np.ndarray, str]:
        """Frames of ``s`` usable as anchors (see module docstring), or an empty array and why there are none."""
        need = 2 if self.config.mode == "multiview" else 1
        if s.num_cameras < need:
            return np.zeros(0, np.int64), f"{s.num_cameras} camera(s); multiview pairs need 2"
        if s.num_frames < 1:
            return np.zeros(0, np.int64), "no frames"
        moving = np.ones(s.num_frames, bool) if s.static is None else ~s.static
        if not moving.any():
            return np.zeros(0, np.int64), "every frame is static (no significant movement)"
        # partners of t: moving frames in [t-hi, t-lo] or [t+lo, t+hi]; counted with a prefix sum, O(T)
        T = s.num_frames
        prefix = np.concatenate([[0], np.cumsum(moving)])
        t = np.arange(T)

        def count(a, b):  # moving frames in [a, b], clipped to the sequence (0 where the range is empty)
            return np.maximum(prefix[np.clip(b + 1, 0, T)] - prefix[np.clip(a, 0, T)], 0)

        partners = count(t + lo, t + hi) + count(t - hi, t - lo)
        usable = np.flatnonzero(moving & (partners > 0))
        if not len(usable):
            return usable, (f"no two moving frames lie {lo}..{hi} frames apart (offset window "
                            f"{self._window_text()} at {s.fps:g} fps; {T} frames)")
        return usable, ""

    def _window_text(self) -> str:
        c = self.config
        unit = "s" if c.offset_unit == "seconds" else " frames"
        return f"{c.min_offset:g}..{c.max_offset:g}{unit}"

    def _nothing_left_message(self) -> str:
        reasons = list(self.excluded.values())
        n = len(self.sequences)
        if all("camera(s)" in r for r in reasons):
            return (f"every sequence ({n}) has a single camera, but multiview pairs need two cameras of one "
                    "sequence; use mode='single_view' for pairs from one camera")
        if all("apart" in r for r in reasons):
            longest = max(s.num_frames for s in self.sequences)
            return (f"the offset window {self._window_text()} does not fit any of the {n} sequences (the longest "
                    f"has {longest} frames, or its moving frames lie too far apart); lower min_offset")
        shown = "; ".join(f"{self._label(i)}: {r}" for i, r in list(self.excluded.items())[:5])
        return f"no sequence can provide training pairs ({n} excluded): {shown}"

    def _label(self, i: int) -> str:
        return self.sequences[i].name or f"sequence {i}"

    # ---------------------------------------------------------------- plans

    def plan(self, step: int) -> PairPlan:
        """This rank's pairs of ``step`` (random access: no state, no replay)."""
        n = self.config.batch_size
        return self.global_plan(step).rows(self.rank * n, (self.rank + 1) * n, rank=self.rank)

    def from_step(self, step: int = 0) -> Iterator[PairPlan]:
        """This rank's plans for ``step``, ``step + 1``, ... (resuming a run is ``from_step(saved_step)``)."""
        while True:
            yield self.plan(step)
            step += 1

    def __iter__(self) -> Iterator[PairPlan]:
        return self.from_step(0)

    def global_plan(self, step: int) -> PairPlan:
        """Every rank's pairs of ``step``: rows [r*N, (r+1)*N) belong to rank r (``rank`` is set to -1)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        c, B = self.config, self.global_batch
        rng = np.random.default_rng([_STREAM, self.seed, int(step)])

        sync = _balanced(rng, B, c.sync_fraction)
        if c.flip_unsync:
            flip_label = _balanced(rng, B, c.flip_fraction)
        else:
            flip_label = np.zeros(B, np.int64)
            flip_label[sync == 1] = _balanced(rng, int(sync.sum()), c.flip_fraction)
        flipped_view = rng.integers(0, 2, size=B)
        flip = np.zeros((B, 2), bool)
        flip[np.arange(B), flipped_view] = flip_label.astype(bool)

        G = c.group_size  # rows of a group share (sequence, anchor); 1: every row its own
        seq, t = (np.repeat(a, G) for a in self._draw_anchors(rng, B // G))
        offset = np.zeros(B, np.int64)
        unsync = sync == 0
        for g in range(0, B, G):  # sequential, so the draws stay a pure function of the step
            rows = g + np.flatnonzero(unsync[g:g + G])
            for _ in range(c.max_redraws):
                for row in rows:
                    d = self._draw_offset(rng, int(seq[row]), int(t[row]))
                    if not d:
                        break
                    offset[row] = d
                else:
                    break
                new_seq, new_t = self._draw_anchors(rng, 1)  # the group's anchor has no partner: another one
                seq[g:g + G], t[g:g + G] = new_seq[0], new_t[0]
            else:
                raise ValueError(f"could not find an unsynchronized partner passing the pair filters "
                                 f"(min_silhouette_change={c.min_silhouette_change:g}, label_min_pose_change_mm="
                                 f"{c.label_min_pose_change_mm:g}) after {c.max_redraws} anchors; lower them or "
                                 "widen the offset window")

        cams = self._cameras[seq]
        cam_a = (rng.random(B) * cams).astype(np.int64)
        if c.mode == "multiview":
            cam_b = (rng.random(B) * (cams - 1)).astype(np.int64)
            cam_b += cam_b >= cam_a  # uniform over the other cameras
        else:
            cam_b = cam_a.copy()

        shift, scale = c.jitter_bounds(single_view=c.mode == "single_view")
        unit = rng.uniform(-1.0, 1.0, size=(B, 2, 3))
        jitter = unit * np.array([shift, shift, scale])
        if c.mode == "multiview" and c.single_view_share > 0:  # drawn last: the paper's plans stay as they were
            single = rng.random(B) < c.single_view_share
            cam_b[single] = cam_a[single]
            shift, scale = c.jitter_bounds(single_view=True)
            jitter[single] = unit[single] * np.array([shift, shift, scale])
        if c.mode == "single_view" and c.single_view_sync_window > 0:  # the temporal variant, drawn last
            rows = np.flatnonzero(sync == 1)
            d = rng.integers(1, c.single_view_sync_window + 1, size=len(rows))
            d *= np.where(rng.random(len(rows)) < 0.5, -1, 1)
            frames = np.array([s.num_frames for s in self.sequences], np.int64)[seq[rows]]
            outside = (t[rows] + d < 0) | (t[rows] + d >= frames)
            d[outside] *= -1  # the other side; clipped for a sequence shorter than both sides together
            offset[rows] = np.clip(t[rows] + d, 0, frames - 1) - t[rows]
        mirror = np.zeros(B, bool)
        if c.mirror_pairs > 0:  # drawn last, per group (a group's cross pairs stay pairs of one rig)
            mirror = np.repeat(rng.random(B // G) < c.mirror_pairs, G)
            flip ^= mirror[:, None]

        return PairPlan(step=int(step), rank=-1, seq=seq.astype(np.int32),
                        cam=np.stack([cam_a, cam_b], 1).astype(np.int32),
                        frame=np.stack([t, t + offset], 1).astype(np.int64), offset=offset.astype(np.int32),
                        sync=sync, flip=flip, flip_label=flip_label, jitter=jitter.astype(np.float32), mirror=mirror)

    def _draw_anchors(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n (sequence, frame) anchors, uniform over every usable frame of every usable sequence."""
        u = rng.integers(0, len(self._anchors), size=n)
        return np.searchsorted(self._anchor_end, u, side="right").astype(np.int64), self._anchors[u].astype(np.int64)

    def _draw_offset(self, rng: np.random.Generator, i: int, t: int) -> int:
        """A uniformly drawn valid offset d for anchor t of sequence i, or 0 if it has none."""
        s, (lo, hi) = self.sequences[i], self._windows[i]
        magnitudes = np.arange(lo, hi + 1)
        cand = np.concatenate([t - magnitudes[::-1], t + magnitudes])
        cand = cand[(cand >= 0) & (cand < s.num_frames)]
        if s.static is not None:
            cand = cand[~s.static[cand]]
        if self.config.min_silhouette_change > 0 and s.silhouettes is not None and len(cand):
            a, b = s.silhouettes[t][None], s.silhouettes[cand]  # (1, C, cells), (n, C, cells)
            change = ((a ^ b).sum(-1) / np.maximum((a | b).sum(-1), 1)).mean(-1)
            cand = cand[change >= self.config.min_silhouette_change]
        if self.config.label_min_pose_change_mm > 0 and s.poses3d is not None and len(cand):
            change = np.linalg.norm(s.poses3d[cand] - s.poses3d[t], axis=-1).mean(-1)
            cand = cand[change >= self.config.label_min_pose_change_mm]  # NaN (missing labels) fails the test too
        return int(cand[rng.integers(len(cand))] - t) if len(cand) else 0

    # ---------------------------------------------------------------- reporting

    def window(self, i: int) -> tuple[int, int]:
        """The offset window of sequence i in frames (inclusive), after the fps conversion."""
        return self._windows[i]

    def summary(self) -> dict:
        """Counts a user should see: sequences used / excluded (with reasons), frames skipped as static."""
        total = sum(s.num_frames for s in self.sequences)
        used = [i for i in range(len(self.sequences)) if i not in self.excluded]
        return {
            "sequences": len(self.sequences),
            "sequences_used": len(used),
            "sequences_excluded": len(self.excluded),
            "excluded": {self._label(i): why for i, why in self.excluded.items()},
            "frames": total,
            "frames_static": self._frames_static,
            "static_share": self._frames_static / total if total else 0.0,
            "frames_without_partner": self._frames_no_partner,  # moving, but no moving frame inside the window
            "anchor_frames": int(len(self._anchors)),
            "offset_windows_frames": sorted({self._windows[i] for i in used}),
            "pose_filter_off": [self._label(i) for i in self._pose_filter_off],  # no poses3d: filter not applied
            "silhouette_filter_off": [self._label(i) for i in self._silhouette_filter_off],
            "mode": self.config.mode,
            "global_batch": self.global_batch,
        }

    def describe(self) -> str:
        """The summary in one line, for logs."""
        s = self.summary()
        text = (f"sampler: {s['sequences_used']}/{s['sequences']} sequences, {s['anchor_frames']} anchor frames; "
                f"skipped {s['frames_static']} static frames ({s['static_share']:.1%} of {s['frames']})")
        if s["frames_without_partner"]:
            text += f" and {s['frames_without_partner']} without a partner in the offset window"
        if s["excluded"]:
            text += "; excluded " + "; ".join(f"{k}: {v}" for k, v in list(s["excluded"].items())[:3])
            text += " ..." if len(s["excluded"]) > 3 else ""
        if s["pose_filter_off"]:
            text += f"; label pose-change filter off for {len(s['pose_filter_off'])} sequences without 3D poses"
        if s["silhouette_filter_off"]:
            text += f"; silhouette filter off for {len(s['silhouette_filter_off'])} sequences without silhouettes"
        return text


def cross_pairs(plan: PairPlan, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The extra pairs of a grouped plan (``SamplingConfig.group_size`` > 1): views of two different rows of one
    group, from two different cameras, neither mirrored against its row's rig, whose label the plan fixes. Every
    row of a group shares the anchor instant t and its view a lies at t; so two views at t are synchronized, and a
    view at t against a view at t + d (d an unsynchronized row's offset, drawn and filtered against t) is not. Two
    views at two other instants are left out (their offset passed no filter). Returns (view index pairs (K, 2) into
    the plan's 2N
    views, sync labels (K,)), both int64; empty when group_size is 1."""
    n = len(plan)
    if group_size <= 1 or n % group_size:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64)
    row = np.repeat(np.arange(n), 2)
    cam, frame = plan.cam.reshape(-1), plan.frame.reshape(-1)
    mirror = np.repeat(plan.mirror, 2)
    flipped = plan.flip.reshape(-1) ^ mirror  # mirrored against the rig the row is seen in
    anchor = np.repeat(plan.frame[:, 0], 2)
    i, j = np.triu_indices(2 * n, 1)
    same_group = row[i] // group_size == row[j] // group_size
    at_anchor_i, at_anchor_j = frame[i] == anchor[i], frame[j] == anchor[j]
    keep = (same_group & (row[i] != row[j]) & (cam[i] != cam[j]) & ~flipped[i] & ~flipped[j]
            & (mirror[i] == mirror[j]) & (at_anchor_i | at_anchor_j))
    i, j = i[keep], j[keep]
    return np.stack([i, j], 1).astype(np.int64), (frame[i] == frame[j]).astype(np.int64)


def _balanced(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """n labels in {0, 1} with exactly round(n * fraction) ones (the fraction's remainder rounded at random)."""
    exact = n * fraction
    ones = int(math.floor(exact)) + int(rng.random() < exact - math.floor(exact))
    labels = np.zeros(n, np.int64)
    labels[:ones] = 1
    return rng.permutation(labels)
