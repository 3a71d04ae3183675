"""The generic layout: a dataset root (``dataset.json`` + ``<subject>/<sequence>/`` folders) or one bare
session folder (``calibration.toml`` + videos). The synthetic generator writes this layout too.

A sequence folder holds ``calibration.toml``, ``videos/<camera>.<ext>`` (or the videos directly in the
folder), and optionally ``poses3d.npy`` (T, 17, 3) world mm, ``boxes.npy`` (T, C, 4) pixels, with C in the
calibration's table order, and ``masks/<camera>.npz``. A ``sync.toml`` (written by ``syncssl-sync --apply``,
see :mod:`syncssl.data.sources.syncfile`) gives each camera's frames to skip at the start: the sequence is then the
cameras' overlap, frame t being file frame t + start of each video.

Whatever is fixed up on the way in (frame counts truncated, sizes taken from the videos, cameras matched by
sorted order) is said in ``Sequence.notes``; whatever cannot be fixed raises :class:`DataError` naming the file.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...geometry import Camera
from ..decode.video import VIDEO_EXTENSIONS, VideoInfo, probe
from .calibration import match_cameras, read_calibration
from .dataset import Dataset, Sequence, View, read_dataset_json
from .syncfile import SYNC_NAME, SyncFile, read_sync_file

VERIFY_MODES = ("none", "ends", "all")
_ASPECT_TOLERANCE = 0.01  # relative: sizes this close in aspect ratio are one camera rescaled
_PADDING = 16  # codecs store whole macroblocks: a coded size exceeds the shown one by less than this


def frame_tolerance_for(num_frames: int, frame_tolerance: int | None) -> int:
    """Frames by which streams of one sequence may differ before it is an error: default max(5, 1%)."""
    return frame_tolerance if frame_tolerance is not None else max(5, num_frames // 100)


def _hidden(p: Path) -> bool:
    return p.name.startswith((".", "_"))


def name_key(name: str) -> str:
    # the same normalisation as match_cameras: "cam_01", "Cam01", "cam-01" are one camera
    return re.sub(r"[^0-9a-z]", "", name.lower())


def take_number_removed(name: str) -> str:
    """``walk_00`` -> ``walk``, ``Walking 1`` -> ``Walking``: the action of a numbered take."""
    base = re.sub(r"[\s_\-.]*\d+$", "", name)
    return base or name


# ---------------------------------------------------------------- lengths shared by every source


def common_length(counts: dict[Path, int], tolerance: int | None, what: str = "camera",
                  names: dict[Path, str] | None = None) -> tuple[int, list[str]]:
    """The usable length of streams that should be frame-synchronous: the shortest.

    Differences within the tolerance are truncated (and said in the returned notes, naming the shortest by
    ``names``, e.g. its camera); larger ones raise :class:`DataError` naming the stream farthest from the others.
    """
    lo, hi = min(counts.values()), max(counts.values())
    tol = frame_tolerance_for(hi, tolerance)
    if hi - lo > tol:
        median = float(np.median(list(counts.values())))
        worst = max(counts, key=lambda p: (abs(counts[p] - median), counts[p]))  # a tie of two: the longer
        others = ", ".join(f"{p.name}: {n}" for p, n in counts.items() if p != worst)
        raise DataError(worst, f"holds {counts[worst]} frames but the other {what}s of its sequence hold "
                               f"{others}: frame counts differ by {hi - lo}, more than the tolerance of {tol}")
    if lo == hi:
        return lo, []
    longer = ", ".join(f"{p.name}: {n}" for p, n in counts.items() if n > lo)
    shortest = [f"{names[p]} ({p.name})" if names and p in names else p.name for p, n in counts.items() if n == lo]
    subject = f"{what} {shortest[0]} is" if len(shortest) == 1 else f"{what}s {', '.join(shortest)} are"
    return lo, [f"{subject} shorter than the others: {lo} frames, against {longer}; truncated to the shortest, "
                f"{lo} frames"]


def fit_labels(path: Path, num_labels: int, num_frames: int, what: str, tolerance: int | None) -> tuple[int, list[str]]:
    """Labels and frames must describe the same instants: a few frames' difference is truncated, more is an error."""
    tol = frame_tolerance_for(max(num_labels, num_frames), tolerance)
    if abs(num_labels - num_frames) > tol:
        raise DataError(path, f"labels do not match the frames: {num_labels} {what} vs {num_frames} frames "
                              f"(tolerance {tol})")
    if num_labels == num_frames:
        return num_frames, []
    n = min(num_labels, num_frames)
    return n, [f"{path.name} holds {num_labels} {what} for {num_frames} frames; both truncated to {n}"]


def check_poses(path: Path, poses: np.ndarray, num_joints: int = 17) -> np.ndarray:
    """(T, J, 3) finite float world millimetres, as float32."""
    poses = np.asarray(poses)
    if poses.ndim != 3 or poses.shape[1:] != (num_joints, 3):
        raise DataError(path, f"expected 3D poses of shape (T, {num_joints}, 3), got {poses.shape}")
    if not np.issubdtype(poses.dtype, np.floating):
        raise DataError(path, f"expected floating-point poses (millimetres), got dtype {poses.dtype}")
    bad = ~np.isfinite(poses).all(axis=(1, 2))
    if bad.any():
        raise DataError(path, f"{int(bad.sum())} poses hold NaN or infinite values "
                              f"(first at frame {int(bad.argmax())})")
    return poses.astype(np.float32, copy=False)


def metres_suspected(poses: np.ndarray) -> bool:
    """A human body spans well over 10 mm: a smaller extent means the file is in metres."""
    return poses.size > 0 and float(np.ptp(poses.reshape(-1, 3), axis=0).max()) < 10.0


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(path, f"not a readable .npy array ({e})") from None


# ---------------------------------------------------------------- one sequence folder


def find_videos(folder: Path) -> list[Path]:
    """Video files in ``folder/videos/`` if it exists, else in ``folder`` itself."""
    where = folder / "videos" if (folder / "videos").is_dir() else folder
    return sorted(p for p in where.iterdir()
                  if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith("."))


def _pair_cameras(folder: Path, calib: Path, cameras: list[Camera], videos: list[Path]) -> tuple[dict[str, Path], str]:
    names = [c.name for c in cameras]
    if not videos:
        raise DataError(folder, f"no videos found (looked in {folder / 'videos'} and {folder} for "
                                f"{', '.join(VIDEO_EXTENSIONS)}); the calibration names cameras {', '.join(names)}")
    try:
        return match_cameras(names, videos)
    except ValueError:
        pass
    # counts differ: say which camera lacks a video, or which video lacks a camera table
    video_keys = {name_key(p.stem): p for p in videos}
    camera_keys = {name_key(n): n for n in names}
    no_video = [n for n in names if name_key(n) not in video_keys]
    no_table = [p for p in videos if name_key(p.stem) not in camera_keys]
    if no_video and len(names) > len(videos):
        raise DataError(folder, f"camera {', '.join(no_video)} of {calib.name} has no video "
                                f"(videos: {', '.join(p.name for p in videos)})")
    if no_table and len(videos) > len(names):
        raise DataError(no_table[0], f"video has no camera table in {calib} (cameras: {', '.join(names)}); "
                                     f"a camera is missing from sequence {folder}")
    raise DataError(folder, f"{len(names)} cameras in {calib.name} ({', '.join(names)}) but {len(videos)} videos "
                            f"({', '.join(p.name for p in videos)}): a camera is missing from this sequence")


def _refuse_copies(mapping: dict[str, Path]) -> None:
    """Two cameras never record the same bytes: identical files are a copy made by mistake, and would pair a view
    with itself as if it were another camera. Sizes first, so distinct files cost no read."""
    by_size: dict[int, list[Path]] = {}
    for path in mapping.values():
        by_size.setdefault(path.stat().st_size, []).append(path)
    for same_size in (ps for ps in by_size.values() if len(ps) > 1):
        seen: dict[str, Path] = {}
        for path in same_size:
            with open(path, "rb") as f:  # streamed: videos of equal size can be gigabytes
                digest = hashlib.file_digest(f, "blake2b").hexdigest()
            if digest in seen:
                raise DataError(path, f"is byte-identical to {seen[digest].name}: two cameras hold the same video "
                                      f"(a copy made by mistake?); each camera needs its own recording")
            seen[digest] = path


def _sized_camera(calib: Path, camera: Camera, info: VideoInfo) -> tuple[Camera, list[str]]:
    """The camera at its video's frame size, as Pose2Sim and OpenCV read a size difference:

    - coded-size padding (one side equal, the other off by less than one 16-pixel macroblock, the larger a
      multiple of 8; e.g. H.264 stores 1088 rows and shows 1080) is a crop at the bottom/right: the
      intrinsics stay, only the size changes (scaling them would move projections by up to ~14 px at 1080p);
    - the same aspect ratio (within 1%) is a resize: the intrinsics are scaled;
    - anything else means the calibration does not describe this video.
    """
    (tw, th), (vw, vh) = camera.size, info.size
    if (tw, th) == (vw, vh):
        return camera, []
    said = f"camera {camera.name}: the calibration says {tw}x{th}, the video {info.path.name} is {vw}x{vh}"
    if _padding(tw, vw, th, vh) or _padding(th, vh, tw, vw):
        return replace(camera, size=(vw, vh)), [f"{said}; a coded-size padding difference, taken as a crop: "
                                                "intrinsics unchanged"]
    sx, sy = vw / tw, vh / th
    if abs(sx - sy) > _ASPECT_TOLERANCE * max(sx, sy):
        raise DataError(calib, f"camera [{camera.name}] is {tw}x{th} but its video {info.path.name} is {vw}x{vh}: "
                               f"neither a resize (the aspect ratios differ) nor coded-size padding (at most "
                               f"{_PADDING - 1} px on one side), so the calibration does not describe this video")
    K = camera.K.copy()
    # pixel centres sit at integer coordinates: scale about the corner at -0.5
    K[0, 0], K[0, 1], K[0, 2] = K[0, 0] * sx, K[0, 1] * sx, (K[0, 2] + 0.5) * sx - 0.5
    K[1, 1], K[1, 2] = K[1, 1] * sy, (K[1, 2] + 0.5) * sy - 0.5
    return replace(camera, size=(vw, vh), K=K), [f"{said}; a resize: intrinsics scaled by {sx:.4g}"]


def _padding(a: int, b: int, other_a: int, other_b: int) -> bool:
    """Sizes a and b (one side) differ by coded-size padding, the other side being equal."""
    return other_a == other_b and 0 < abs(a - b) < _PADDING and max(a, b) % 8 == 0


def _check_rates(folder: Path, rates: dict[Path, float]) -> None:
    """Cameras of one sequence are paired frame by frame: one that runs at another rate is not synchronous."""
    known = {p: r for p, r in rates.items() if r > 0}
    groups: dict[float, list[Path]] = {}
    for p, r in known.items():
        key = next((k for k in groups if abs(r - k) <= 0.01 * k), r)  # 29.97 and 30 are one rate
        groups.setdefault(key, []).append(p)
    if len(groups) < 2:
        return
    said = ", ".join(f"{p.name} {r:g} fps" for p, r in known.items())
    small = sorted(groups.values(), key=len)
    if len(small[0]) < len(small[1]):  # one rate is the odd one out: name its video
        odd = small[0][0]
        others = max(groups, key=lambda k: len(groups[k]))
        raise DataError(odd, f"runs at {known[odd]:g} fps but the other cameras of its sequence at {others:g} fps "
                             f"({said}): frames are paired by index, so its frames would not be synchronous with "
                             f"theirs; re-encode it at {others:g} fps or leave the camera out")
    raise DataError(folder, f"the cameras run at different frame rates ({said}): frames are paired by index, so they "
                            "would not be synchronous; re-encode the videos at one rate")


def read_or_skip(read, label: str, skip_broken: bool, notes: list[str]):
    """``read()``, or None with a note when it raises a DataError and ``skip_broken`` is set."""
    try:
        return read()
    except DataError as e:
        if not skip_broken:
            raise
        notes.append(f"skipped broken sequence {label}: {e}")
        return None


def read_sequence(folder: Path, *, subject: str, name: str, action: str, fps: float | None,
                  verify: str = "ends", frame_tolerance: int | None = None) -> Sequence:
    """One sequence folder of the generic layout. ``fps=None`` takes the videos' own rate."""
    folder = Path(folder)
    calib = folder / "calibration.toml"
    if not calib.is_file():
        raise DataError(calib, "calibration file is missing (every sequence folder needs calibration.toml)")
    cameras = read_calibration(calib)
    mapping, how = _pair_cameras(folder, calib, cameras, find_videos(folder))
    _refuse_copies(mapping)
    notes = [how] if "sorted order" in how else []  # a match by name needs no second look

    views, counts, rates = [], {}, {}
    for cam in cameras:
        info = probe(mapping[cam.name], verify=verify)
        cam, size_notes = _sized_camera(calib, cam, info)
        notes += size_notes + ([f"{info.path.name}: {info.suspect}"] if info.suspect else [])
        views.append(View(camera=cam, video=info.path, codec=info.codec, num_frames=info.num_frames))
        counts[info.path], rates[info.path.name] = info.num_frames, info.fps
    sync = read_sync_file(folder)
    recorded, excluded = views, set()  # every camera of the calibration, in its order (boxes.npy: a column each)
    if sync is None:
        num_frames, length_notes = common_length(counts, frame_tolerance, names={v.video: v.name for v in views})
        ref_start = 0
    else:
        recorded, num_frames, ref_start, length_notes = _apply_sync(sync, views)
        excluded = {name_key(c) for c in sync.excluded}
    notes += length_notes
    left_out = tuple(v.name for v in recorded if name_key(v.name) in excluded)
    views = [v for v in recorded if v.name not in left_out]
    synced = sync is not None

    _check_rates(folder, {v.video: rates[v.video.name] for v in views})
    if fps is None:
        known = [r for r in rates.values() if r > 0]
        if not known:
            raise DataError(folder, "the videos do not state a frame rate; put the sequence in a dataset root "
                                    "whose dataset.json gives fps")
        fps = float(np.median(known))
    off = {n: r for n, r in rates.items() if r > 0 and abs(r - fps) > 0.01 * fps}
    if off:
        notes.append(f"videos state other frame rates than {fps:g} fps: "
                     f"{', '.join(f'{n}: {r:g}' for n, r in off.items())}; frames are paired by index")

    poses = boxes = None
    poses_path, boxes_path = folder / "poses3d.npy", folder / "boxes.npy"
    if poses_path.is_file():
        poses = check_poses(poses_path, _load_npy(poses_path))[ref_start:]  # labels follow the reference's frames
        num_frames, more = _fit(poses_path, len(poses), num_frames, "poses", frame_tolerance, synced)
        notes += more
        if metres_suspected(poses):
            notes.append(f"{poses_path.name}: the poses span less than 10 units; they look like metres, "
                         f"but must be millimetres")
    if boxes_path.is_file():
        boxes = _check_boxes(boxes_path, _load_npy(boxes_path), len(recorded))
        if synced:  # each camera's boxes follow its own file frames; excluded cameras' columns are dropped
            n = max(0, min(len(boxes) - v.start for v in views))
            boxes = np.stack([boxes[v.start:v.start + n, c] for c, v in enumerate(recorded) if v.name not in left_out],
                             1)
        num_frames, more = _fit(boxes_path, len(boxes), num_frames, "boxes", frame_tolerance, synced)
        notes += more
    masks, num_frames, mask_notes = _find_masks(folder, views, num_frames, frame_tolerance, synced, left_out)
    notes += mask_notes
    backgrounds, bg_notes = find_backgrounds(folder, views, left_out)
    notes += bg_notes

    return Sequence(subject=subject, name=name, action=action, fps=float(fps), views=views, num_frames=num_frames,
                    poses3d=None if poses is None else poses[:num_frames],
                    boxes=None if boxes is None else boxes[:num_frames],
                    masks=masks, backgrounds=backgrounds, folder=folder, notes=notes,
                    sync_file=None if sync is None else sync.path,
                    left_out=left_out)


def _apply_sync(sync: SyncFile, views: list[View]) -> tuple[list[View], int, int, list[str]]:
    """Views with the sync.toml offsets (every camera, excluded ones too), the overlap in frames of the cameras
    kept, the reference's offset, and a note.

    The aligned cameras may end at different times: the sequence is their overlap (no tolerance applies: the
    offsets say where each camera starts, and whatever one camera recorded alone is not a multi-view instant).
    """
    by_key = {name_key(v.name): i for i, v in enumerate(views)}
    names = ", ".join(v.name for v in views)
    unknown = [c for c in sync.excluded if name_key(c) not in by_key]
    if unknown:
        raise DataError(sync.path, f"excludes camera(s) {', '.join(map(repr, unknown))}, which the calibration does "
                                   f"not have (cameras: {names})")
    out = {by_key[name_key(c)] for c in sync.excluded}
    if len(out) == len(views):
        raise DataError(sync.path, "excludes every camera")
    start = [0] * len(views)
    for cam, n in sync.start.items():
        i = by_key.get(name_key(cam))
        if i is None:
            raise DataError(sync.path, f"names camera {cam!r}, which the calibration does not have (cameras: {names})")
        if n >= views[i].num_frames:
            raise DataError(sync.path, f"camera {cam}: skipping {n} frames leaves nothing of its video "
                                       f"{views[i].video.name} ({views[i].num_frames} frames)")
        start[i] = n
    ref_start = 0
    if sync.reference is not None:
        if name_key(sync.reference) not in by_key:
            raise DataError(sync.path, f"reference {sync.reference!r} is not a camera of the calibration "
                                       f"(cameras: {names})")
        ref_start = start[by_key[name_key(sync.reference)]]
    views = [replace(v, start=s) for v, s in zip(views, start)]
    kept = [v for i, v in enumerate(views) if i not in out]
    lengths = [v.num_frames - v.start for v in kept]
    overlap = min(lengths)
    note = (f"{SYNC_NAME}: offsets applied ({', '.join(f'{v.name} from file frame {v.start}' for v in kept)}); "
            f"the cameras overlap for {overlap} frames")
    trimmed = [f"{v.name} by {n - overlap}" for v, n in zip(kept, lengths) if n > overlap]
    if trimmed:
        note += f" (trimmed at the end: {', '.join(trimmed)})"
    listed = {name_key(c) for c in sync.start}
    unlisted = [v.name for v in kept if name_key(v.name) not in listed]
    if unlisted:
        note += f"; not in the file, so starting at frame 0: {', '.join(unlisted)}"
    if out:
        note += f"; left out (offset not known): {', '.join(views[i].name for i in sorted(out))}"
    return views, overlap, ref_start, [note]


def _fit(path: Path, num_labels: int, num_frames: int, what: str, tolerance: int | None,
         synced: bool) -> tuple[int, list[str]]:
    """fit_labels; with sync offsets, labels may run past the cameras' overlap (they are cut to it silently)."""
    if synced and num_labels >= num_frames:
        return num_frames, []
    return fit_labels(path, num_labels, num_frames, what, tolerance)


BACKGROUND_IMAGES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def find_backgrounds(folder: Path, views: list[View], ignore: tuple[str, ...] = ()
                     ) -> tuple[dict[str, Path], list[str]]:
    """The empty scene of each camera, when the rig recorded it: ``backgrounds/<camera>.png`` (any image) or
    ``backgrounds/<camera>.mp4`` (any video: a clip of the empty scene) in the sequence folder; matched to cameras
    by name like the videos. Prepare uses it instead of the temporal median (which shows a person who stood
    still)."""
    where = folder / "backgrounds"
    if not where.is_dir():
        return {}, []
    by_key = {name_key(v.name): v for v in views}
    ignored = {name_key(c) for c in ignore}  # excluded cameras: their files are expected
    found, notes = {}, []
    for path in sorted(where.iterdir()):
        suffix = path.suffix.lower()
        if not path.is_file() or _hidden(path) or suffix not in BACKGROUND_IMAGES + VIDEO_EXTENSIONS:
            continue
        view = by_key.get(name_key(path.stem))
        if view is None:
            if name_key(path.stem) not in ignored:
                notes.append(f"backgrounds/{path.name} names no camera of this sequence; ignored")
            continue
        if view.name in found:
            raise DataError(path, f"a second empty-scene file for camera {view.name} (the other: "
                                  f"{found[view.name].name}); keep one")
        size = _background_size(path, suffix)
        if size != tuple(view.camera.size):
            raise DataError(path, f"the empty scene is {size[0]}x{size[1]} but camera {view.name}'s video is "
                                  f"{view.camera.size[0]}x{view.camera.size[1]}")
        found[view.name] = path
    if found:
        notes.append(f"empty-scene backgrounds given for {', '.join(sorted(found))}: prepare uses them instead of "
                     "the temporal median")
    return found, notes


def _background_size(path: Path, suffix: str) -> tuple[int, int]:
    if suffix in VIDEO_EXTENSIONS:
        return probe(path, verify="ends").size
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(path, f"not a readable image ({e})") from None


def _check_boxes(path: Path, boxes: np.ndarray, num_views: int) -> np.ndarray:
    if boxes.ndim != 3 or boxes.shape[1:] != (num_views, 4):
        raise DataError(path, f"expected boxes of shape (T, {num_views}, 4) (x0 y0 x1 y1 per camera, in the "
                              f"calibration's camera order), got {boxes.shape}")
    if not np.issubdtype(boxes.dtype, np.number):
        raise DataError(path, f"expected numeric boxes, got dtype {boxes.dtype}")
    if np.isinf(boxes).any():
        raise DataError(path, "boxes hold infinite values (use NaN for a frame without a person)")
    nan = np.isnan(boxes.astype(np.float64))
    partly = nan.any(-1) & ~nan.all(-1)
    inverted = ~nan.any(-1) & ((boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1]))
    for bad, what in ((partly, "is partly NaN (a box is four numbers, or four NaN without a person)"),
                      (inverted, "ends before it starts (boxes are x0 y0 x1 y1 with x1 >= x0, y1 >= y0)")):
        if bad.any():
            t, c = (int(i) for i in np.argwhere(bad)[0])
            raise DataError(path, f"the box of frame {t}, camera column {c} {what}: {boxes[t, c].tolist()}")
    return boxes.astype(np.float32, copy=False)


def _find_masks(folder: Path, views: list[View], num_frames: int, tolerance: int | None,
                synced: bool = False, ignore: tuple[str, ...] = ()) -> tuple[dict[str, Path], int, list[str]]:
    where = folder / "masks"
    if not where.is_dir():
        return {}, num_frames, []
    by_name = {v.name: v for v in views}
    masks, notes = {}, []
    for path in sorted(where.glob("*.npz")):
        view = by_name.get(path.stem)
        if view is None:
            if path.stem not in ignore:  # an excluded camera's masks: expected
                notes.append(f"masks/{path.name} names no camera of this sequence; ignored")
            continue
        try:
            with np.load(path) as z:
                T, H, W = (int(v) for v in z["shape"])
        except (KeyError, ValueError, OSError, EOFError) as e:
            raise DataError(path, f"not a mask file written by save_masks ({e})") from None
        if (W, H) != view.camera.size:
            raise DataError(path, f"masks are {W}x{H} but the video of camera {view.name} is "
                                  f"{view.camera.size[0]}x{view.camera.size[1]}")
        num_frames, more = _fit(path, T - view.start, num_frames, "masks", tolerance, synced)  # per file frame
        notes += more
        masks[view.name] = path
    return masks, num_frames, notes


# ---------------------------------------------------------------- dataset root and bare session


def read_layout(root: Path, *, verify: str = "ends", frame_tolerance: int | None = None,
                skip_broken: bool = False) -> Dataset:
    """A dataset root: ``dataset.json`` plus one folder per subject holding one folder per sequence."""
    root = Path(root)
    meta_path = root / "dataset.json"
    meta = read_dataset_json(meta_path)
    subjects = [str(s) for s in meta["subjects"]]
    splits = {str(k): [str(s) for s in v] for k, v in meta["splits"].items()}
    for split, members in splits.items():
        unknown = [s for s in members if s not in subjects]
        if unknown:
            raise DataError(meta_path, f"split {split!r} names subjects {unknown} that are not in 'subjects'")
    actions = meta.get("actions", {})  # optional: "<subject>/<sequence>" or "<sequence>" -> action
    fps = float(meta["fps"])
    notes: list[str] = []
    sequences: list[Sequence] = []
    for subject in subjects:
        sdir = root / subject
        if not sdir.is_dir():
            raise DataError(sdir, f"subject {subject!r} is listed in {meta_path.name} but its folder is missing")
        seq_dirs = sorted(d for d in sdir.iterdir() if d.is_dir() and not _hidden(d))
        if not seq_dirs:
            raise DataError(sdir, f"subject {subject!r} holds no sequence folders")
        for d in seq_dirs:
            action = actions.get(f"{subject}/{d.name}", actions.get(d.name, take_number_removed(d.name)))
            seq = read_or_skip(partial(read_sequence, d, subject=subject, name=d.name, action=str(action), fps=fps,
                                       verify=verify, frame_tolerance=frame_tolerance),
                               f"{subject}/{d.name}", skip_broken, notes)
            if seq is None:
                continue
            sequences.append(seq)
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not _hidden(p) and p.name not in subjects):
        if any((s / "calibration.toml").is_file() for s in d.iterdir() if s.is_dir()):
            notes.append(f"folder {d.name}/ holds sequences but is not a subject listed in {meta_path.name}; ignored")
    return _dataset(root, meta["name"], fps, meta["skeleton"], splits, sequences,
                    str(meta.get("source", "session")), notes)


def read_session(folder: Path, *, verify: str = "ends", frame_tolerance: int | None = None) -> Dataset:
    """One bare session folder: a single sequence of subject ``session``, named after the folder."""
    folder = Path(folder).resolve()
    seq = read_sequence(folder, subject="session", name=folder.name, action=take_number_removed(folder.name),
                        fps=None, verify=verify, frame_tolerance=frame_tolerance)
    return _dataset(folder, folder.name, seq.fps, "h36m17", {"all": ["session"]}, [seq], "session", [])


def _dataset(root, name, fps, skeleton, splits, sequences, source, notes) -> Dataset:
    for s in sequences:
        notes += [f"{s.key}: {n}" for n in s.notes]
    return Dataset(root=Path(root), name=str(name), fps=float(fps), skeleton=str(skeleton), splits=splits,
                   sequences=sequences, source=source, notes=notes)
