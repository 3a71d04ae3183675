"""The one in-memory description of a multi-camera dataset that every source produces.

sequences x cameras x frames, calibration, optional 3D labels and person boxes. Nothing here decodes
video: a :class:`View` names its file and what probing it found.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...geometry import Camera


@dataclass
class View:
    """One camera of one sequence: its calibration and its video file."""

    camera: Camera  # calibration; camera.size is the video's own frame size
    video: Path
    codec: str  # as FFmpeg names it: "mjpeg", "h264", "vp9", ...
    num_frames: int  # frames in the file, before truncation to the sequence length
    start: int = 0  # frames skipped at the start of the file (sync.toml): sequence frame t is file frame t + start

    @property
    def name(self) -> str:
        return self.camera.name


@dataclass
class Sequence:
    """Synchronized videos of one subject performing one action, frame t of every view at the same instant
    (file frame t + ``view.start`` of each video: the offsets of a ``sync.toml``, 0 without one)."""

    subject: str
    name: str  # unique within the subject, e.g. "Walking 1" or "walk_00"
    action: str  # the action label used for per-action metrics, e.g. "Walking"
    fps: float
    views: list[View]
    num_frames: int  # usable frames: the shortest view (longer views are truncated, see notes)
    poses3d: np.ndarray | None = None  # (num_frames, 17, 3) float32, world coordinates, mm
    boxes: np.ndarray | None = None  # (num_frames, num_views, 4) float32, x0 y0 x1 y1 pixels
    masks: dict[str, Path] = field(default_factory=dict)  # camera -> ground-truth foreground masks (synthetic)
    backgrounds: dict[str, Path] = field(default_factory=dict)  # camera -> the empty scene (an image or a clip)
    folder: Path | None = None
    notes: list[str] = field(default_factory=list)  # what was fixed up on the way in, e.g. truncations
    sync_file: Path | None = None  # the sync.toml whose offsets the views' ``start`` hold
    left_out: tuple[str, ...] = ()  # cameras that sync.toml excludes (offset not known): not in ``views``
    focus: np.ndarray | None = None  # where the whole rig looks (world mm), for a sequence of fewer cameras than its
    #                                  rig (one camera of a recording); None: from ``views`` (geometry.rig_focus)

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.name}"

    @property
    def camera_names(self) -> list[str]:
        return [v.name for v in self.views]

    @property
    def cameras(self) -> list[Camera]:
        return [v.camera for v in self.views]

    def view(self, camera: str) -> View:
        for v in self.views:
            if v.name == camera:
                return v
        raise KeyError(f"{self.key}: no camera {camera!r}; cameras are {', '.join(self.camera_names)}")


@dataclass
class Dataset:
    root: Path
    name: str
    fps: float
    skeleton: str  # "h36m17"
    splits: dict[str, list[str]]  # split name -> subjects, e.g. {"train": ["S1", ...], "test": ["S9", "S11"]}
    sequences: list[Sequence]
    source: str  # "synthetic" | "session" | "h36m"
    notes: list[str] = field(default_factory=list)

    @property
    def subjects(self) -> list[str]:
        return sorted({s.subject for s in self.sequences}, key=_subject_order)

    @property
    def num_frames(self) -> int:
        return sum(s.num_frames for s in self.sequences)

    def split(self, name: str) -> list[Sequence]:
        """Sequences of the subjects in split ``name`` (an empty split is an error, not an empty epoch)."""
        if name not in self.splits:
            raise DataError(self.root, f"no split {name!r}; splits are {', '.join(self.splits) or 'none'}")
        seqs = [s for s in self.sequences if s.subject in self.splits[name]]
        if not seqs:
            raise DataError(self.root, f"split {name!r} (subjects {self.splits[name]}) has no sequences")
        return seqs

    def subset(self, subjects: list[str]) -> list[Sequence]:
        return [s for s in self.sequences if s.subject in subjects]


def _subject_order(s: str):
    digits = "".join(c for c in s if c.isdigit())
    return (s.rstrip("0123456789"), int(digits) if digits else -1, s)


# ---------------------------------------------------------------- dataset.json


def write_dataset_json(root: Path, *, name: str, fps: float, subjects: list[str], splits: dict[str, list[str]],
                       skeleton: str = "h36m17", **extra) -> Path:
    path = Path(root) / "dataset.json"
    meta = dict(name=name, fps=fps, skeleton=skeleton, subjects=subjects, splits=splits, **extra)
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def read_utf8(path: Path) -> str:
    """The file's text; DataError naming it when it is not UTF-8 (a binary or damaged file)."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}): a binary or "
                              "damaged file") from None


def read_dataset_json(path: Path) -> dict:
    path = Path(path)
    try:
        meta = json.loads(read_utf8(path))
    except FileNotFoundError:
        raise DataError(path, "missing (every dataset root holds a dataset.json)") from None
    except IsADirectoryError:
        raise DataError(path, "is a folder; expected the dataset's JSON description") from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(meta, dict):
        raise DataError(path, f"expected a JSON object with name, fps, subjects and splits, got a "
                              f"{type(meta).__name__}")
    for key, typ in (("name", str), ("fps", (int, float)), ("subjects", list), ("splits", dict)):
        if not isinstance(meta.get(key), typ) or isinstance(meta.get(key), bool):
            raise DataError(path, f"field {key!r} is missing or not a {getattr(typ, '__name__', 'number')}")
    _check_fields(path, meta)
    meta.setdefault("skeleton", "h36m17")
    return meta


SKELETONS = ("h36m17",)
MAX_FPS = 1000.0  # above any camera a pose rig uses: a larger value is a typo (or frames per minute)


def _check_fields(path: Path, meta: dict) -> None:
    """The values of dataset.json's fields, each refused with the field named (types are checked before)."""
    fps = meta["fps"]
    if not (0 < fps <= MAX_FPS):  # NaN fails too
        raise DataError(path, f"field 'fps' must be a frame rate in (0, {MAX_FPS:g}] frames per second, got {fps!r}")
    if not meta["name"].strip():
        raise DataError(path, "field 'name' is empty")
    subjects = meta["subjects"]
    if not subjects or not all(isinstance(s, str) and s.strip() for s in subjects):
        raise DataError(path, f"field 'subjects' must be a non-empty list of subject folder names, got {subjects!r}")
    repeated = sorted({s for s in subjects if subjects.count(s) > 1})
    if repeated:
        raise DataError(path, f"field 'subjects' names {', '.join(repeated)} more than once")
    for split, members in meta["splits"].items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise DataError(path, f"split {split!r} must be a list of subject names, got {members!r}")
    _refuse_leaks(path, meta["splits"])
    skeleton = meta.get("skeleton", "h36m17")
    if skeleton not in SKELETONS:
        raise DataError(path, f"field 'skeleton' is {skeleton!r}; syncssl knows {', '.join(SKELETONS)}")
    if not isinstance(meta.get("actions", {}), dict):
        raise DataError(path, "field 'actions' must map \"<subject>/<sequence>\" or \"<sequence>\" to an action name")


HELD_OUT = ("val", "test")  # splits whose people no other split may hold: what is tuned or reported on them


def _refuse_leaks(path: Path, splits: dict[str, list[str]]) -> None:
    """A subject in a held-out split and in any other split would be trained or tuned on and then reported as
    unseen. (Overlaps among the other splits are by design, e.g. ``pretrain`` = ``train`` + ``pool``.)"""
    for held in (s for s in HELD_OUT if s in splits):
        for other, members in splits.items():
            shared = sorted(set(splits[held]) & set(members)) if other != held else []
            if shared:
                raise DataError(path, f"splits {held!r} and {other!r} both hold {', '.join(shared)}: a held-out "
                                      f"subject must be in no other split")


# ---------------------------------------------------------------- ground-truth masks (synthetic data)


def save_masks(path: Path, masks: np.ndarray) -> Path:
    """Boolean masks (T, H, W) stored bit-packed: 1/8 of a byte per pixel."""
    masks = np.asarray(masks, bool)
    if masks.ndim != 3:
        raise ValueError(f"masks: expected (T, H, W), got {masks.shape}")
    np.savez_compressed(path, bits=np.packbits(masks, axis=-1), shape=np.array(masks.shape))
    return Path(path)


def load_masks(path: Path, frames: np.ndarray | slice | None = None) -> np.ndarray:
    with np.load(path) as z:
        T, H, W = (int(v) for v in z["shape"])
        bits = z["bits"] if frames is None else z["bits"][frames]
    return np.unpackbits(bits, axis=-1, count=W).astype(bool)
