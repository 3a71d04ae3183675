"""The Human3.6M on-disk layout, as the dataset's site distributes it::

    <root>/S1/Videos/Walking 1.54138969.mp4            one video per sequence and camera
    <root>/S1/MyPoseFeatures/D3_Positions/Walking 1.cdf  variable "Pose", (1, N, 96): 32 joints, world mm

Cameras come from the published table shipped with the package (lens model "h36m"), sized from each video.
Sequence names keep the file's spelling ("Walking 1"); the action drops the take number and unifies the
dataset's inconsistent spellings (see ``ACTION_ALIASES``).
"""
from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...geometry import H36M_32_TO_17, H36M_CAMERA_IDS, H36M_FPS, h36m_camera
from ..decode.video import probe
from .dataset import Dataset, Sequence, View, _subject_order
from .layout import check_poses, common_length, fit_labels, read_or_skip, take_number_removed

TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")

# The 15 actions under the names most papers report; the files spell some of them two ways.
ACTIONS = ("Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases", "Sitting",
           "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether")
ACTION_ALIASES = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog", "WalkingTogether": "WalkTogether"}

_VIDEO_NAME = re.compile(r"^(?P<seq>[^.]+)\.(?P<camera>\d{8})\.mp4$")


def is_h36m_root(root: Path) -> bool:
    return any(d.is_dir() and re.fullmatch(r"S\d+", d.name) and (d / "Videos").is_dir() for d in Path(root).iterdir())


def h36m_action(sequence: str) -> str:
    """``"Walking 1"`` -> ``"Walking"``, ``"TakingPhoto 1"`` -> ``"Photo"``, ``"WalkingDog"`` -> ``"WalkDog"``."""
    base = take_number_removed(sequence.strip())
    return ACTION_ALIASES.get(base, base)


def read_h36m_poses(path: Path) -> np.ndarray:
    """A ``D3_Positions`` CDF -> (N, 17, 3) float32 world millimetres (the 32 joints reduced to 17)."""
    import cdflib
    try:
        raw = np.asarray(cdflib.CDF(str(path)).varget("Pose"))
    except FileNotFoundError:
        raise DataError(path, "pose file is missing") from None
    except Exception as e:  # cdflib raises assorted types on a damaged file; all mean "unreadable"
        raise DataError(path, f"cannot read variable 'Pose' from the CDF ({type(e).__name__}: {e})") from None
    if raw.ndim == 3 and raw.shape[0] == 1:
        raw = raw[0]
    if raw.ndim != 2 or raw.shape[1] != 96:
        raise DataError(path, f"expected 'Pose' of shape (1, N, 96) (32 joints x 3), got {raw.shape}")
    return check_poses(path, raw.reshape(-1, 32, 3)[:, list(H36M_32_TO_17)].astype(np.float32))


def read_h36m(root: Path, *, verify: str = "ends", frame_tolerance: int | None = None,
              skip_broken: bool = False) -> Dataset:
    root = Path(root)
    subject_dirs = sorted((d for d in root.iterdir() if d.is_dir() and re.fullmatch(r"S\d+", d.name)
                           and (d / "Videos").is_dir()), key=lambda d: _subject_order(d.name))
    notes: list[str] = []
    sequences: list[Sequence] = []
    for sdir in subject_dirs:
        subject = sdir.name
        by_sequence: dict[str, dict[str, Path]] = {}
        skipped = []
        for p in sorted((sdir / "Videos").iterdir()):
            m = _VIDEO_NAME.match(p.name)
            if not p.is_file() or m is None or m["seq"].startswith("_ALL") or m["camera"] not in H36M_CAMERA_IDS:
                skipped.append(p.name)
                continue
            by_sequence.setdefault(m["seq"], {})[m["camera"]] = p
        if skipped:
            shown = ", ".join(skipped[:4]) + (", ..." if len(skipped) > 4 else "")
            notes.append(f"{subject}/Videos: skipped {len(skipped)} files that are not <Sequence>.<camera id>.mp4 "
                         f"of the four cameras (or are _ALL montages): {shown}")
        if not by_sequence:
            raise DataError(sdir / "Videos", "holds no <Sequence>.<camera id>.mp4 videos")
        for name in sorted(by_sequence):
            seq = read_or_skip(partial(_read_sequence, sdir, name, by_sequence[name], verify, frame_tolerance),
                               f"{subject}/{name}", skip_broken, notes)
            if seq is None:
                continue
            sequences.append(seq)
            notes += [f"{seq.key}: {n}" for n in seq.notes]
    present = [d.name for d in subject_dirs]
    splits = {k: [s for s in v if s in present] for k, v in (("train", TRAIN_SUBJECTS), ("test", TEST_SUBJECTS))}
    splits = {k: v for k, v in splits.items() if v}
    return Dataset(root=root, name="Human3.6M", fps=H36M_FPS, skeleton="h36m17", splits=splits,
                   sequences=sequences, source="h36m", notes=notes)


def _read_sequence(sdir: Path, name: str, videos: dict[str, Path], verify: str,
                   frame_tolerance: int | None) -> Sequence:
    subject = sdir.name
    missing = [c for c in H36M_CAMERA_IDS if c not in videos]
    if missing:
        raise DataError(sdir / "Videos" / f"{name}.{missing[0]}.mp4",
                        f"video of camera {missing[0]} is missing for sequence {subject}/{name}")
    views, counts, suspect = [], {}, []
    for camera_id in H36M_CAMERA_IDS:
        info = probe(videos[camera_id], verify=verify)
        try:
            camera = h36m_camera(subject, camera_id, info.size)
        except KeyError as e:
            raise DataError(sdir, e.args[0]) from None
        views.append(View(camera=camera, video=info.path, codec=info.codec, num_frames=info.num_frames))
        counts[info.path] = info.num_frames
        suspect += [f"{info.path.name}: {info.suspect}"] if info.suspect else []
    num_frames, notes = common_length(counts, frame_tolerance, names={v.video: v.name for v in views})
    notes += suspect

    pose_path = sdir / "MyPoseFeatures" / "D3_Positions" / f"{name}.cdf"
    poses = None
    if pose_path.is_file():
        poses = read_h36m_poses(pose_path)
        num_frames, more = fit_labels(pose_path, len(poses), num_frames, "poses", frame_tolerance)
        notes += more
        poses = poses[:num_frames]
    else:
        notes.append(f"no 3D poses ({pose_path.relative_to(sdir.parent)} is missing): unlabelled")
    return Sequence(subject=subject, name=name, action=h36m_action(name), fps=H36M_FPS, views=views,
                    num_frames=num_frames, poses3d=poses, folder=sdir, notes=notes)
