"""Presets, the per-sequence generator and the dataset writer (atomic, parallel over sequences).

Layout written (DESIGN.md)::

    <root>/dataset.json
    <root>/<subject>/<Action>_<NN>/calibration.toml
                                  videos/cam_01.avi ...      (MJPEG by default; h264 -> .mp4, vp9 -> .webm)
                                  poses3d.npy                float32 (T, 17, 3), world mm
                                  boxes.npy                  float32 (T, C, 4) tight person box per camera (labels)
                                  masks/cam_01.npz ...       ground-truth person masks (save_masks)

Boxes are ``x0 y0 x1 y1`` in pixel edges (the whole frame is (0, 0, W, H)) around the ground-truth mask, as
:func:`syncssl.data.preparation.boxes.boxes_from_masks` gives them; NaN where the person is out of view.

Frame rate: 25 fps. Human3.6M films at 50 fps, but consecutive frames at 50 fps are nearly identical and
would double the files and the rendering time; 25 fps keeps the small preset quick to render. The
sampler scales its time offsets with ``dataset.json``'s fps (the paper's 4 < |d| < 128 frames at 50 fps
become 2 < |d| < 64 here).

Atomic: the dataset is written into ``<root>.partial`` and renamed to ``<root>`` once complete (dataset.json
last), so a killed run never leaves a folder that looks like a finished dataset; the next run clears it.

Reproducibility: every random choice comes from ``np.random.default_rng`` seeded by (seed, what it is for,
subject, sequence), never from process order, so the same seed gives the same poses3d.npy and
calibration.toml byte for byte however many workers run (and, as encoders are deterministic, the same videos).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...geometry import Camera
from ...parallel import Workers, usable_cpus
from ..decode.video import CODECS, VideoWriter
from ..sources.calibration import write_calibration
from ..sources.dataset import save_masks, write_dataset_json
from .body import make_subject, stable_hash, with_sides
from .motion import ACTIONS, animate
from .render import Body, CameraRenderer
from .rig import make_rig
from .scene import make_room

GENERATOR = "syncssl.data.synthetic"
GENERATOR_VERSION = 5  # bump when the same (preset, seed) would give different data (4: sides per sequence, box edges;
#                        5: one appearance distribution for everyone, the unlabelled pool)
H36M_TRAIN = ("S1", "S5", "S6", "S7", "S8")
H36M_TEST = ("S9", "S11")


@dataclass(frozen=True)
class Preset:
    """How much data, how large, how it looks. The names of subjects follow Human3.6M's."""

    name: str
    train_subjects: tuple[str, ...]  # subjects of the "train" split (the labelled protocol: S1's labels fine-tune)
    test_subjects: tuple[str, ...]  # held-out subjects (evaluation)
    actions: tuple[str, ...]  # action types used (a subset of motion.ACTIONS, in that order)
    actions_per_subject: int  # each subject performs this many of them (rotated so that every split sees all)
    repetitions: int  # takes per (subject, action): Walking_01, Walking_02, ...
    num_frames: int  # frames per sequence
    num_cameras: int  # cameras in the rig
    size: tuple[int, int]  # frame (width, height) in pixels; even, for 4:2:0 video
    fps: float = 25.0  # frames per second (see the module docstring)
    supersample: int = 2  # samples per pixel along each axis when ray-casting the person (anti-aliasing)
    area_radius: float = 1300.0  # mm: the person moves within this disc around the room's centre
    distortion: bool = True  # small radial/tangential lens distortion (OpenCV model)
    shadows: bool = True  # a soft shadow on the floor under the person
    noise: float = 2.0  # sensor noise, standard deviation in 8-bit levels, fresh every frame
    flicker: float = 0.02  # slow illumination change over time, relative amplitude per camera (auto-exposure)
    shared_flicker: float = 0.0  # a room-wide drift seen by every camera at once; off: the same brightness at the
    #                              same instant in every view would tell synchronized pairs apart without any pose
    quality: int = 5  # MJPEG qscale (2 best .. 31); H.264 crf = 18 + quality; VP9 crf = 24 + quality
    pool_subjects: int = 0  # extra unlabelled subjects (P01, P02, ...) for pre-training only: unlabelled multi-view
    #                         video is cheap, and seeing many people is what makes the features about the pose
    pool_actions: int = 2  # action types each pool subject performs (rotated over the types)
    pool_frames: int = 0  # frames per pool sequence (0: num_frames)
    other_train_actions: int = 0  # action types of each training subject after the first (0: actions_per_subject);
    #                               the first (S1: its labels fine-tune) always performs actions_per_subject
    val_subjects: int = 0  # generated validation people (V01, V02, ...), the "val" split: labelled, never pre-trained
    #                        on, where every choice is made (docs/reproduction.md)
    extra_test_subjects: int = 0  # generated people (T01, T02, ...) added to the "test" split beside test_subjects
    heldout_actions: int = 2  # action types each generated validation or test person performs (rotated over the types)
    camera_height: tuple[float, float] = (1200.0, 1800.0)  # mm: range of the cameras' heights (Human3.6M-like)
    camera_distance: tuple[float, float] = (4500.0, 5800.0)  # mm: range of their distances from the room's centre
    focal: tuple[float, float] = (0.95, 1.05)  # focal length range, in image widths
    framing: tuple[float, float] | None = None  # instead of focal: the share of the frame height a standing person
    #                                             at the room's centre spans (farther cameras zoom in)
    rig_per_subject: bool = False  # each person filmed by a rig of their own (drawn from the ranges above): a model
    #                                cannot learn one rig's views by heart, as it can when everyone shares it
    bystanders: int = 0  # other people in the scene, each with an action of their own, in no label (poses, boxes and
    #                      masks are the person's; a nearer bystander hides part of the mask): real clips often hold two

    def __post_init__(self):
        unknown = [a for a in self.actions if a not in ACTIONS]
        if unknown:
            raise ValueError(f"preset {self.name}: unknown actions {unknown}; choose from {', '.join(ACTIONS)}")
        if not 1 <= self.actions_per_subject <= len(self.actions):
            raise ValueError(f"preset {self.name}: actions_per_subject must be 1..{len(self.actions)}")
        if not 0 <= self.other_train_actions <= len(self.actions):
            raise ValueError(f"preset {self.name}: other_train_actions must be 0..{len(self.actions)}")
        if self.heldout_actions < 1:
            raise ValueError(f"preset {self.name}: heldout_actions must be >= 1")
        if self.size[0] % 2 or self.size[1] % 2:
            raise ValueError(f"preset {self.name}: frame size {self.size} must be even")
        if self.bystanders < 0:
            raise ValueError(f"preset {self.name}: bystanders must be >= 0")

    @property
    def pool(self) -> tuple[str, ...]:
        return tuple(f"P{i + 1:02d}" for i in range(self.pool_subjects))

    @property
    def val(self) -> tuple[str, ...]:
        return tuple(f"V{i + 1:02d}" for i in range(self.val_subjects))

    @property
    def extra_test(self) -> tuple[str, ...]:
        return tuple(f"T{i + 1:02d}" for i in range(self.extra_test_subjects))

    @property
    def subjects(self) -> tuple[str, ...]:
        return self.train_subjects + self.test_subjects + self.pool + self.val + self.extra_test

    @property
    def num_sequences(self) -> int:
        return len(plan_sequences(self))


# The default: Human3.6M's subjects and splits, and as in Human3.6M every subject performs every action
# type (so that the labels of S1 alone cover the actions of the held-out subjects): 56 sequences of 4.8 s,
# 26.9k camera-frames, ~300 MB; about two minutes on two cores.
SMALL = Preset(name="small", train_subjects=H36M_TRAIN, test_subjects=H36M_TEST, actions=ACTIONS,
               actions_per_subject=len(ACTIONS), repetitions=1, num_frames=120, num_cameras=4, size=(320, 240))


PRESETS = {
    # For tests: a few seconds on one core.
    "tiny": Preset(name="tiny", train_subjects=("S1", "S5"), test_subjects=("S9",),
                   actions=("Walking", "Waving"), actions_per_subject=2, repetitions=1,
                   num_frames=40, num_cameras=4, size=(160, 128)),
    "small": SMALL,
    # `small` and an unlabelled pool of 24 more people (two 4.8 s takes each) that only pre-training sees
    # (its "pretrain" split): unlabelled video is the cheap part, and many people are what make the features
    # about the pose rather than about five persons. 104 sequences, 50k camera-frames; ~9 min on two cores.
    "small-pool": replace(SMALL, name="small-pool", pool_subjects=24, pool_actions=2),
    # twice the pool (48 people, P01-P24 as in `small-pool`), to measure what more unlabelled people buy: at the main
    # job's 12000 steps, nothing (2026-12-06, seed 0: fine-tuned 113.1 mm against 107.7; generation +~1 min)
    "small-pool-48": replace(SMALL, name="small-pool-48", pool_subjects=48, pool_actions=2),
    # `small`'s frames spread over more people at the same cost: S1 (whose labels fine-tune) performs every action,
    # S5-S8 (never labelled in the protocol) two each, and 24 unlabelled pool people one each: 56 sequences, 26.9k
    # camera-frames like `small`, 33 people seen by pre-training instead of 5.
    "small-many": replace(SMALL, name="small-many", other_train_actions=2, pool_subjects=24, pool_actions=1),
    # For GPU runs: every action type for every subject, longer takes, six cameras, 640x480, a larger capture
    # area, and three extra training subjects (Human3.6M's unreleased S2, S3, S4 names): 80 sequences,
    # 120k camera-frames, about 4 GB as MJPEG (h264: a tenth); ~35 min on 2 cores, ~5 min on 16.
    "large": Preset(name="large", train_subjects=("S1", "S2", "S3", "S4") + H36M_TRAIN[1:],
                    test_subjects=H36M_TEST, actions=ACTIONS, actions_per_subject=len(ACTIONS), repetitions=1,
                    num_frames=250, num_cameras=6, size=(640, 480), area_radius=1400.0),
    # `small-pool` and the people of an honest evaluation (docs/reproduction.md): 8 validation people (V01-V08, the
    # "val" split, where every choice is made) and 6 more test people (T01-T06, tested beside S9 and S11), two takes
    # of 4.8 s each, appearance from the same distribution. Everyone of `small-pool` keeps their videos byte for byte
    # (each person's draws are seeded by their own name), so its runs are unchanged; 132 sequences, +28 on small-pool
    "small-pool-eval": replace(SMALL, name="small-pool-eval", pool_subjects=24, pool_actions=2, val_subjects=8,
                               extra_test_subjects=6, heldout_actions=2),
    # `tiny` with two validation people and one more test person, one take each: the honest protocol's tests
    "tiny-eval": Preset(name="tiny-eval", train_subjects=("S1", "S5"), test_subjects=("S9",),
                        actions=("Walking", "Waving"), actions_per_subject=2, repetitions=1,
                        num_frames=40, num_cameras=4, size=(160, 128), val_subjects=2, extra_test_subjects=1,
                        heldout_actions=1),
}
# `small-pool` with every person filmed by a rig of their own, drawn wider than Human3.6M's: cameras 1.0-2.4 m high
# (level to ~30 degrees down), 2.5-6 m away, framed so that a standing person spans 40-85% of the frame. A model
# pre-trained on one rig learns that rig's views; real rigs differ (docs/real-footage.md measures it).
PRESETS["small-pool-rigs"] = replace(PRESETS["small-pool"], name="small-pool-rigs", rig_per_subject=True,
                                     camera_height=(1000.0, 2400.0), camera_distance=(2500.0, 6000.0),
                                     framing=(0.4, 0.85), area_radius=900.0)
# `small-pool` with a second, unlabelled person in every scene (another appearance, an action of their own): a
# model pre-trained on one person at a time reads two people as outside its domain (docs/sync.md)
PRESETS["small-pool-bystanders"] = replace(PRESETS["small-pool"], name="small-pool-bystanders", bystanders=1)
# A test rig shaped like a real lab's (the Pose2Sim recording: portrait frames, cameras 1.7-2.1 m high and 2.6-4 m
# away looking ~20 degrees down, the person near the centre): `syncssl eval RUN --dataset synthetic:steep-test`
PRESETS["steep-test"] = Preset(name="steep-test", train_subjects=("S1",), test_subjects=("S9", "S11"),
                               actions=ACTIONS, actions_per_subject=3, repetitions=1, num_frames=120, num_cameras=4,
                               size=(240, 320), camera_height=(1700.0, 2100.0), camera_distance=(2600.0, 4000.0),
                               focal=(1.45, 1.65), area_radius=600.0)
# `large` and the people of an honest evaluation, as `small-pool-eval` adds them to `small-pool`
PRESETS["large-eval"] = replace(PRESETS["large"], name="large-eval", val_subjects=8, extra_test_subjects=6,
                                heldout_actions=3)


def get_preset(preset: str | Preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


@dataclass(frozen=True)
class SequenceSpec:
    subject: str
    split: str  # "train", "test", "pool" or "val"
    action: str
    name: str  # "<Action>_<NN>"


def plan_sequences(preset: Preset) -> list[SequenceSpec]:
    """Which subject performs which action. Within each split, subject i starts its block of
    ``actions_per_subject`` consecutive action types at i * n_actions / n_subjects, so the blocks spread
    over all types (every type appears in a split as soon as the split has enough subject-actions)."""
    n = len(preset.actions)
    specs = []
    # generated validation and test people come last, so that adding them changes no one else's sequences
    for split, subjects, k in (("train", preset.train_subjects, preset.actions_per_subject),
                               ("test", preset.test_subjects, preset.actions_per_subject),
                               ("pool", preset.pool, min(preset.pool_actions, n)),
                               ("val", preset.val, min(preset.heldout_actions, n)),
                               ("test", preset.extra_test, min(preset.heldout_actions, n))):
        for i, subject in enumerate(subjects):
            start = int(round(i * n / len(subjects)))
            k_i = preset.other_train_actions if split == "train" and i > 0 and preset.other_train_actions else k
            chosen = sorted((start + j) % n for j in range(k_i))
            for a in chosen:
                for rep in range(preset.repetitions):
                    action = preset.actions[a]
                    specs.append(SequenceSpec(subject, split, action, f"{action}_{rep + 1:02d}"))
    return specs


def frames_of(spec: SequenceSpec, preset: Preset) -> int:
    """Frames of a sequence: pool subjects' takes may be shorter."""
    return (preset.pool_frames or preset.num_frames) if spec.split == "pool" else preset.num_frames


def sequence_rng(seed: int, subject: str, sequence: str, stream: str) -> np.random.Generator:
    """Independent random streams per (seed, subject, sequence, purpose), the same in every process."""
    return np.random.default_rng([seed, stable_hash(subject), stable_hash(sequence), stable_hash(stream)])


# ---------------------------------------------------------------- one sequence


@dataclass
class SequenceStats:
    key: str  # "<subject>/<sequence>"
    frames: int
    cameras: int
    render_s: float  # all but encoding: animating, rendering, labels (and building the renderers, once per process)
    encode_s: float  # time spent encoding and writing video
    still_frames: int  # frames inside holds (identical pose to the previous frame)


class _Studio:
    """Per process: the rig, the room's per-camera renderers and a bank of sensor noise (built once)."""

    _cache: dict = {}

    @classmethod
    def get(cls, preset: Preset, seed: int, subject: str = "") -> _Studio:
        key = (preset, seed, subject if preset.rig_per_subject else "")
        if key not in cls._cache:
            if len(cls._cache) >= 8 or any(k[:2] != key[:2] for k in cls._cache):
                cls._cache.clear()  # one dataset at a time per process, a few of its rigs
            cls._cache[key] = cls(preset, seed, key[2])
        return cls._cache[key]

    def __init__(self, preset: Preset, seed: int, rig: str = ""):
        self.cameras: list[Camera] = make_rig(preset.num_cameras, preset.size, seed, preset.distortion,
                                              preset.camera_height, preset.camera_distance, preset.focal, rig,
                                              preset.framing)
        room = make_room(seed)
        self.renderers = [CameraRenderer(c, room, preset.supersample, preset.shadows) for c in self.cameras]
        w, h = preset.size
        rng = np.random.default_rng([seed, stable_hash("noise")])
        # Frames take a randomly offset window of one of these: fresh-looking noise at no per-frame cost.
        self.noise = rng.normal(0, preset.noise, (4, h + 32, w + 32, 3)).astype(np.float32) if preset.noise else None


def render_sequence(spec: SequenceSpec, preset: str | Preset = "small", seed: int = 0):
    """Animate one sequence and render it lazily: ``(motion, cameras, frames)``.

    ``frames`` yields, for each instant t, a list over cameras of ``(image uint8 (H, W, 3), mask bool (H, W))``.
    """
    preset = get_preset(preset)
    studio = _Studio.get(preset, seed, spec.subject)
    subject = with_sides(make_subject(spec.subject, spec.split, seed),
                         sequence_rng(seed, spec.subject, spec.name, "sides"))
    T = frames_of(spec, preset)
    motion = animate(subject, spec.action, T, preset.fps,
                     sequence_rng(seed, spec.subject, spec.name, "motion"), preset.area_radius)

    others = [bystander(spec, preset, seed, k, motion, T) for k in range(preset.bystanders)]

    def frames():
        w, h = preset.size
        rng = sequence_rng(seed, spec.subject, spec.name, "frames")
        gains = _flicker(rng, T, len(studio.cameras), preset)
        body = Body(subject)
        for t in range(T):
            bf = body.frame(motion.joints[t], motion.rotations[t])
            around = tuple((b, b.frame(m.joints[t], m.rotations[t])) for b, m in others)
            views = []
            for c, renderer in enumerate(studio.renderers):
                noise = None
                if studio.noise is not None:
                    k, oy, ox = rng.integers(4), rng.integers(32), rng.integers(32)
                    noise = studio.noise[k, oy:oy + h, ox:ox + w]
                views.append(renderer.render(body, bf, gains[t, c], noise, around))
            yield views

    return motion, studio.cameras, frames()


def bystander(spec: SequenceSpec, preset: Preset, seed: int, k: int, person, T: int):
    """(body, motion) of the k-th bystander of a sequence: someone else (appearance from the pool's distribution),
    with an action of their own, kept on the far side of the capture area from the person's mean position."""
    rng = sequence_rng(seed, spec.subject, spec.name, f"bystander{k}")
    name = f"{spec.subject}-{spec.name}-B{k + 1}"
    who = with_sides(make_subject(name, "pool", seed), rng)
    motion = animate(who, str(rng.choice(ACTIONS)), T, preset.fps, rng, 0.4 * preset.area_radius)
    centre = person.joints[:, 0, :2].mean(0)  # the person's mean position (the pelvis is the first joint)
    angle = np.arctan2(-centre[1], -centre[0]) if np.linalg.norm(centre) > 100 else rng.uniform(0, 2 * np.pi)
    target = preset.area_radius * rng.uniform(0.8, 1.1) * np.array([np.cos(angle), np.sin(angle)])
    joints = motion.joints.copy()
    joints[..., :2] += target - joints[:, 0, :2].mean(0)
    return Body(who), replace(motion, joints=joints)


def generate_sequence(folder: Path, spec: SequenceSpec, preset: str | Preset = "small", seed: int = 0,
                      codec: str = "mjpeg") -> SequenceStats:
    """Write one sequence folder (calibration, videos, poses, boxes, masks)."""
    preset = get_preset(preset)
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
    t_start = time.perf_counter()
    motion, cameras, frames = render_sequence(spec, preset, seed)
    folder = Path(folder)
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    write_calibration(folder / "calibration.toml", cameras)
    np.save(folder / "poses3d.npy", motion.joints[:, :17].astype(np.float32))
    T, C = frames_of(spec, preset), len(cameras)
    w, h = preset.size
    ext = CODECS[codec][0]
    writers = [VideoWriter(folder / "videos" / f"{c.name}{ext}", preset.fps, codec, quality=preset.quality)
               for c in cameras]
    masks = np.zeros((C, T, h, w), bool)
    encode_s = 0.0
    try:
        for t, views in enumerate(frames):
            t0 = time.perf_counter()
            for c, (image, mask) in enumerate(views):
                writers[c].write(image)
                masks[c, t] = mask
            encode_s += time.perf_counter() - t0
    finally:
        t0 = time.perf_counter()
        for wr in writers:
            wr.close()
        encode_s += time.perf_counter() - t0
    for c, cam in enumerate(cameras):
        save_masks(folder / "masks" / f"{cam.name}.npz", masks[c])
    np.save(folder / "boxes.npy", boxes_from_masks(masks))
    total = time.perf_counter() - t_start
    return SequenceStats(f"{spec.subject}/{spec.name}", T, C, total - encode_s, encode_s, int(motion.still.sum()))


def _flicker(rng: np.random.Generator, T: int, C: int, preset: Preset) -> np.ndarray:
    """(T, C) brightness gains: a slow drift per camera (auto-exposure), plus an optional room-wide one."""
    t = np.arange(T)[:, None] / preset.fps
    shared = np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 2 * np.pi))
    own = np.sin(2 * np.pi * rng.uniform(0.1, 0.5, C) * t + rng.uniform(0, 2 * np.pi, C))
    return (1 + preset.flicker * own + preset.shared_flicker * shared).astype(np.float32)


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """masks (C, T, H, W) bool -> (T, C, 4) float32 tight boxes x0 y0 x1 y1 (pixel edges), NaN if empty."""
    C, T = masks.shape[:2]
    out = np.full((T, C, 4), np.nan, np.float32)
    cols, rows = masks.any(2), masks.any(3)  # (C, T, W), (C, T, H)
    for c in range(C):
        for t in range(T):
            xs, ys = np.flatnonzero(cols[c, t]), np.flatnonzero(rows[c, t])
            if xs.size:
                out[t, c] = xs[0], ys[0], xs[-1] + 1, ys[-1] + 1
    return out


# ---------------------------------------------------------------- the dataset


@dataclass
class GenerationReport:
    root: Path
    preset: str
    seed: int
    codec: str
    subjects: list[str]
    sequences: int
    frames: int  # frames per camera, summed over sequences
    cameras: int
    bytes: int  # size on disk
    seconds: float  # wall time
    workers: int
    render_s: float  # summed over workers
    encode_s: float  # summed over workers
    still_frames: int
    per_sequence: list[SequenceStats] = field(default_factory=list)

    @property
    def camera_frames_per_s(self) -> float:
        return self.frames * self.cameras / max(self.seconds, 1e-9)

    def summary(self) -> str:
        fps = self.frames / max(self.seconds, 1e-9)
        return (f"{self.root}: {len(self.subjects)} subjects ({' '.join(self.subjects)}), {self.sequences} sequences, "
                f"{self.frames} frames x {self.cameras} cameras, {self.bytes / 1e6:.1f} MB, {self.seconds:.1f} s "
                f"({fps:.1f} frames/s, {self.camera_frames_per_s:.1f} camera-frames/s, {self.workers} workers)")


def _run_one(args) -> SequenceStats:
    folder, spec, preset, seed, codec = args
    return generate_sequence(folder, spec, preset, seed, codec)


def dataset_meta(preset: Preset, seed: int, codec: str, specs: list[SequenceSpec]) -> dict:
    return dict(
        name=f"synthetic-{preset.name}", fps=preset.fps, skeleton="h36m17", subjects=list(preset.subjects),
        splits={"train": list(preset.train_subjects), "test": list(preset.test_subjects + preset.extra_test),
                **({"val": list(preset.val)} if preset.val else {}),
                **({"pool": list(preset.pool), "pretrain": list(preset.train_subjects + preset.pool)}
                   if preset.pool else {})},
        source="synthetic", preset=preset.name, seed=seed, codec=codec,
        generator={"name": GENERATOR, "version": GENERATOR_VERSION},
        cameras=[f"cam_{i + 1:02d}" for i in range(preset.num_cameras)], frame_size=list(preset.size),
        frames_per_sequence=preset.num_frames, pool_frames_per_sequence=preset.pool_frames or preset.num_frames,
        action_types=list(preset.actions),
        actions={f"{s.subject}/{s.name}": s.action for s in specs},
        preset_fields=asdict(preset),
    )


def generate_report(root: Path, preset: str | Preset = "small", seed: int = 0, codec: str = "mjpeg",
                    workers: int | None = None, progress: bool = True, force: bool = False) -> GenerationReport:
    """Write the dataset to ``root`` (via ``<root>.partial``, renamed at the end) and say what it took.

    An existing ``root`` is replaced only with ``force`` and only if it is a synthetic dataset (or empty):
    a folder holding anything else is never deleted.
    """
    preset = get_preset(preset)
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
    root = Path(root)
    if root.exists():
        if not force:
            raise DataError(root, "already exists; pass force=True (--force) to regenerate it")
        _check_replaceable(root)
    workers = max(1, int(workers or usable_cpus()))
    specs = plan_sequences(preset)
    partial = root.absolute().with_name(root.absolute().name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # a killed earlier run
    partial.mkdir(parents=True)
    t0 = time.perf_counter()
    jobs = [(partial / s.subject / s.name, s, preset, seed, codec) for s in specs]
    stats: list[SequenceStats] = []
    with _progress(progress, len(jobs), preset) as advance:
        # spawned, single-threaded workers (no inherited threads or locks); each builds its renderers once
        with Workers(min(workers, len(jobs)), preload=(__name__,)) as pool:
            for st in pool.map(_run_one, jobs):
                stats.append(st)
                advance(st)
    write_dataset_json(partial, **dataset_meta(preset, seed, codec, specs))
    if root.exists():
        old = partial.with_name(partial.name.replace(".partial", f".old-{os.getpid()}"))
        root.rename(old)
        partial.rename(root)
        shutil.rmtree(old)
    else:
        partial.rename(root)
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return GenerationReport(
        root=root, preset=preset.name, seed=seed, codec=codec, subjects=list(preset.subjects), sequences=len(specs),
        frames=sum(s.frames for s in stats), cameras=preset.num_cameras, bytes=size, seconds=seconds,
        workers=min(workers, len(jobs)), render_s=sum(s.render_s for s in stats),
        encode_s=sum(s.encode_s for s in stats), still_frames=sum(s.still_frames for s in stats), per_sequence=stats)


def generate(root: Path, preset: str | Preset = "small", seed: int = 0, codec: str = "mjpeg",
             workers: int | None = None, progress: bool = True, force: bool = True) -> Path:
    """Write the synthetic dataset to ``root`` and return it (see :func:`generate_report`)."""
    return generate_report(root, preset, seed, codec, workers, progress, force).root


def existing_config(root: Path) -> dict | None:
    """(preset, seed, codec, version) of the synthetic dataset at ``root``, or None if there is none."""
    try:
        meta = json.loads((Path(root) / "dataset.json").read_text())
    except (OSError, ValueError):  # missing, not a folder, not UTF-8, not JSON: not ours
        return None
    if not isinstance(meta, dict):
        return None
    gen = meta.get("generator")
    if not isinstance(gen, dict) or gen.get("name") != GENERATOR:
        return None
    return dict(preset=meta.get("preset"), seed=meta.get("seed"), codec=meta.get("codec"), version=gen.get("version"))


def _check_replaceable(root: Path):
    if existing_config(root) is not None:
        return
    if root.is_dir() and not any(root.iterdir()):
        return
    raise DataError(root, "exists and is not a syncssl synthetic dataset (no dataset.json from the generator); "
                          "refusing to overwrite it: choose another output folder")


def ensure_synthetic(root: Path, preset: str = "small", seed: int = 0, codec: str = "mjpeg",
                     workers: int | None = None, progress: bool = True) -> Path:
    """``root`` holding the synthetic dataset of (preset, seed, codec): generated if absent or made otherwise."""
    root = Path(root)
    name = get_preset(preset).name
    want = dict(preset=name, seed=seed, codec=codec, version=GENERATOR_VERSION)
    if existing_config(root) == want:
        return root
    if root.exists():
        _check_replaceable(root)
    return generate(root, preset, seed, codec, workers, progress, force=True)


class _progress:
    """A rich progress bar over camera-frames (or nothing), as a context manager yielding ``advance``."""

    def __init__(self, enabled: bool, num_jobs: int, preset: Preset):
        self.enabled = enabled
        self.total = sum(frames_of(spec, preset) for spec in plan_sequences(preset)) * preset.num_cameras
        self.label = f"synthetic-{preset.name}: {num_jobs} sequences"
        self._p = None

    def __enter__(self):
        if not self.enabled:
            return lambda st: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("camera-frames"), TimeElapsedColumn())
        self._p.__enter__()
        task = self._p.add_task(self.label, total=self.total)
        return lambda st: self._p.advance(task, st.frames * st.cameras)

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.__exit__(*exc)
