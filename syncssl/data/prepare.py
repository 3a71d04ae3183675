"""``syncssl-data prepare``: from a :class:`Dataset` to a :class:`Manifest` the training loader reads.

Steps (each documented where it is implemented):

1. person boxes from the 3D labels' projection (or the dataset's own boxes) where they exist;
2. one background model per (subject, camera) group with identical calibration, pooled over the group's
   sequences, with the person's boxes excluded from the vote; spots the person never left are filled in
   from other subjects filmed by the same camera in the same scene, or reported (``background.py``);
3. where there are no labels: a pass over every frame for foreground masks -> boxes and motion;
   the same pass writes the optional transcoded copy;
4. square crop boxes smoothed over time; motion and the ``static`` flag per frame (``boxes.py``);
5. background-removal quality against ground-truth masks (synthetic data) and a preview image;
6. the manifest, with a fingerprint of the sources and options: the next run reuses it while they are
   unchanged and says what changed otherwise.

A sequence may have fewer cameras than others (a camera missing in one sequence): its arrays simply have
fewer columns, ``PreparedSequence.cameras`` lists the ones it has, and backgrounds are grouped by camera
name, so the others are unaffected. A sequence with a single camera is kept but noted (it cannot form
multi-view pairs).
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from ..figures import pyplot, save_figure
from .background import (BackgroundModel, borrow_background, describe_region, estimate_background,
                         foreground_masks, mask_iou, morphology_radius, remove_background, sample_indices)
from .boxes import (boxes_from_joints, boxes_from_masks, crop_boxes, ellipse_masks, mask_change,
                    motion_from_changes, motion_from_poses, project_joints, skeleton_masks)
from .dataset import DataError, Dataset, Sequence, View, load_masks
from .manifest import (MANIFEST_NAME, BackgroundInfo, Manifest, PreparedCamera, PreparedSequence, arrays_file,
                       fingerprint, fingerprint_changes, safe_name, same_calibration, write_png)
from .video import CODECS, VideoWriter, read_frames

TRANSCODES = {"none": None, "mjpeg": ("mjpeg", {}), "h264-gop8": ("h264", {"gop": 8})}
# Bump when what prepare computes changes, so that existing manifests are rebuilt (part of the fingerprint).
ALGORITHM_VERSION = 1


@dataclass(frozen=True)
class PrepareOptions:
    """Everything that changes the prepared output (part of the fingerprint)."""

    bg_frames: int = 48  # frames sampled per background group, in equal shares over its sequences (>= 1 each)
    motion_threshold: float = 2.0  # mm/frame mean joint speed below which a frame is static (labels)
    fg_motion_threshold: float = 0.02  # changed share of the person's mask below which a frame is static (no labels)
    motion_window: int = 5  # frames over which motion is measured
    box_margin: float = 0.2  # square crop side = max(w, h) of the person box * (1 + margin)
    box_pad_mm: float = 150.0  # body thickness beyond the joints, for boxes from labels
    box_smooth: int = 9  # frames of the centred temporal smoothing of crop boxes
    transcode: str = "none"  # "none" | "mjpeg" (intra-only) | "h264-gop8"
    quality_frames: int = 8  # frames per sequence and camera for the IoU against ground-truth masks
    borrow_backgrounds: bool = True  # fill spots a person never left from other subjects on the same rig

    def __post_init__(self):
        if self.transcode not in TRANSCODES:
            raise ValueError(f"transcode: choose one of {', '.join(TRANSCODES)}, got {self.transcode!r}")
        for k in ("bg_frames", "motion_window", "box_smooth"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be at least 1, got {getattr(self, k)}")
        if self.quality_frames < 0 or self.box_margin < 0 or self.box_pad_mm < 0:
            raise ValueError("quality_frames, box_margin and box_pad_mm must not be negative")


@dataclass
class PrepareReport:
    """What prepare did, for the summary the CLI prints."""

    manifest: Manifest
    path: Path  # manifest.json
    up_to_date: bool  # reused without rebuilding
    reasons: list[str]  # why it was rebuilt (empty on a first build or when reused)
    seconds: float

    @property
    def stats(self) -> dict:
        return self.manifest.stats

    @property
    def static_share(self) -> float:
        return self.stats["static_frames"] / max(1, self.stats["frames"])


Log = Callable[[str], None]


def prepare(dataset: Dataset, out: Path | None = None, options: PrepareOptions | None = None, *,
            force: bool = False, log: Log | None = None) -> PrepareReport:
    """Prepare ``dataset`` into ``out`` (default ``<dataset root>/prepared``), or reuse what is there.

    Reuses an existing manifest when the fingerprint of the sources and options matches and its files are
    intact; otherwise (or with ``force``) rebuilds and reports why.
    """
    t0 = time.perf_counter()
    options = options or PrepareOptions()
    out = Path(out) if out is not None else Path(dataset.root) / "prepared"
    log = log or (lambda msg: None)
    if not dataset.sequences:
        raise DataError(dataset.root, "the dataset holds no sequences to prepare")
    fp = fingerprint(dataset, dict(asdict(options), algorithm=ALGORITHM_VERSION))
    path = out / MANIFEST_NAME
    reasons: list[str] = []
    if path.exists():
        if force:
            reasons = ["rebuild forced"]
        else:
            try:
                old = Manifest.load(path)
                reasons = fingerprint_changes(old.fingerprint, fp) + old.problems()
            except DataError as e:
                reasons = [f"the existing manifest is unusable: {e.problem}"]
            if not reasons:
                return PrepareReport(old, path, True, [], time.perf_counter() - t0)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".write-test").touch()
        (out / ".write-test").unlink()
    except OSError as e:
        raise DataError(out, f"cannot write the prepared files here ({e.strerror}); choose another --out") from None
    manifest = _build(dataset, out, options, log)
    manifest.fingerprint = fp
    manifest.stats["seconds"] = round(time.perf_counter() - t0, 2)
    manifest.save(path)
    _remove_stale_files(out, manifest)
    return PrepareReport(manifest, path, False, reasons, time.perf_counter() - t0)


def _remove_stale_files(out: Path, manifest: Manifest):
    """Arrays, backgrounds and transcoded videos of an earlier build that this manifest no longer names."""
    keep = {arrays_file(out, s.subject, s.name).absolute() for s in manifest.sequences}
    keep |= {Path(b.path).absolute() for b in manifest.backgrounds.values()}
    keep |= {Path(c.video).absolute() for s in manifest.sequences for c in s.cameras}
    for sub, pattern in (("arrays", "*.npz"), ("backgrounds", "*.png"), ("videos", "**/*")):
        for f in (out / sub).glob(pattern):
            if f.is_file() and f.absolute() not in keep:
                f.unlink()


# ---------------------------------------------------------------- the build


@dataclass
class _Group:
    """Cameras that share one background: same subject, camera name and calibration."""

    id: str
    subject: str
    camera: str
    members: list[tuple[Sequence, int]] = field(default_factory=list)  # (sequence, view index)


def _build(dataset: Dataset, out: Path, options: PrepareOptions, log: Log) -> Manifest:
    notes = list(dataset.notes)
    for s in dataset.sequences:
        _validate(s)
        notes += [f"{s.key}: {n}" for n in s.notes]
        if len(s.views) < 2:
            notes.append(f"{s.key}: only one camera ({s.views[0].name}); it cannot form multi-view pairs")

    # 1. person boxes known without looking at the images
    known = {s.key: _known_boxes(s, options) for s in dataset.sequences}

    # 2. backgrounds
    (out / "backgrounds").mkdir(parents=True, exist_ok=True)
    groups = _background_groups(dataset.sequences)
    models: dict[str, BackgroundModel] = {}
    for gi, g in enumerate(groups.values()):
        log(f"background {gi + 1}/{len(groups)}: {g.id} ({len(g.members)} sequences)")
        models[g.id] = _estimate_group(g, known, options)
    borrowed = _borrow_across_subjects(groups, models) if options.borrow_backgrounds else {}
    infos: dict[str, BackgroundInfo] = {}
    for g in groups.values():
        model = models[g.id]
        path = write_png(out / "backgrounds" / f"{g.id}.png", model.image)
        donors, filled = borrowed.get(g.id, ([], 0.0))
        if donors:
            notes.append(f"background {g.id}: {filled:.1%} of the frame, where the person covered nearly every "
                         f"sample, filled in from {', '.join(donors)} (same camera, calibration and scene)")
        suspect, share = None, 0.0
        if model.suspect is not None and model.suspect.mean() > 0.002:
            ys, xs = np.nonzero(model.suspect)
            suspect, share = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())], float(model.suspect.mean())
            notes.append(f"background {g.id}: the person seems to stand still at {describe_region(model.suspect)} "
                         f"in most samples of every sequence ({', '.join(s.key for s, _ in g.members)}); the "
                         "background there probably shows the person. More sequences of this camera would fix it.")
        h, w = model.image.shape[:2]
        infos[g.id] = BackgroundInfo(id=g.id, path=path, size=(w, h), subject=g.subject, camera=g.camera,
                                     sequences=[s.key for s, _ in g.members], samples=model.samples,
                                     threshold=round(model.threshold, 3), noise=round(model.noise, 3),
                                     stillness_checked=model.suspect is not None, suspect=suspect,
                                     suspect_share=round(share, 4), borrowed_from=donors,
                                     borrowed_share=round(filled, 4))
        models[g.id] = replace(model, unreliable=None, suspect=None)  # keep only what later steps need
    unchecked = [i.id for i in infos.values() if not i.stillness_checked]
    if unchecked:
        notes.append(f"{len(unchecked)} of {len(infos)} backgrounds ({', '.join(unchecked[:4])}"
                     f"{', ...' if len(unchecked) > 4 else ''}) have sequences without labels or boxes: "
                     "a person standing still there cannot be detected, only outvoted by other sequences")
    bg_of = {(s.key, i): g.id for g in groups.values() for s, i in g.members}

    # 3.-4. per sequence: foreground pass where needed, crop boxes, motion
    transcode = TRANSCODES[options.transcode]
    sizes = {"before": 0, "after": 0, "kept": 0}
    prepared = []
    for si, s in enumerate(dataset.sequences):
        log(f"sequence {si + 1}/{len(dataset.sequences)}: {s.key}")
        prepared.append(_prepare_sequence(s, known[s.key], models, bg_of, out, options, transcode, sizes, notes))

    if sizes["kept"]:
        notes.append(f"transcode: {sizes['kept']} videos are already intra-only MJPEG and are used as they are")

    # 5. quality
    quality, rows = _quality(dataset.sequences, models, bg_of, options, log)
    preview = _write_preview(out / "masks_preview.png", rows)

    static = sum(int(p.static.sum()) for p in prepared)
    frames = sum(p.num_frames for p in prepared)
    stats = dict(
        sequences=len(prepared), cameras=len({c.name for p in prepared for c in p.cameras}),
        views=sum(len(p.cameras) for p in prepared), frames=frames,
        view_frames=sum(p.num_frames * len(p.cameras) for p in prepared), static_frames=static,
        box_sources=dict(Counter(p.box_source for p in prepared)),
        motion_sources=dict(Counter(p.motion_source for p in prepared)),
        backgrounds=len(infos), suspect_backgrounds=sum(i.suspect is not None for i in infos.values()),
        borrowed_backgrounds=sum(bool(i.borrowed_from) for i in infos.values()),
        transcode=options.transcode, bytes_before=sizes["before"], bytes_after=sizes["after"],
        preview=preview.name if preview else None)
    return Manifest(dataset_root=Path(dataset.root), name=dataset.name, source=dataset.source, fps=dataset.fps,
                    skeleton=dataset.skeleton, splits=dataset.splits, sequences=prepared, backgrounds=infos,
                    quality=quality, stats=stats, options=asdict(options), notes=notes)


def _validate(s: Sequence):
    where = s.folder or Path(s.key)
    if not s.views:
        raise DataError(where, f"sequence {s.key} has no cameras")
    if s.num_frames < 1:
        raise DataError(where, f"sequence {s.key} has no frames")
    for v in s.views:
        if v.num_frames < s.num_frames:
            raise DataError(v.video, f"holds {v.num_frames} frames but sequence {s.key} claims {s.num_frames}")
    if s.poses3d is not None and np.shape(s.poses3d) != (s.num_frames, 17, 3):
        raise DataError(where, f"3D labels of {s.key} have shape {np.shape(s.poses3d)}, "
                               f"expected ({s.num_frames}, 17, 3)")
    if s.boxes is not None and np.shape(s.boxes) != (s.num_frames, len(s.views), 4):
        raise DataError(where, f"boxes of {s.key} have shape {np.shape(s.boxes)}, "
                               f"expected ({s.num_frames}, {len(s.views)}, 4)")


@dataclass
class _Known:
    """Person boxes of a sequence known before looking at images."""

    source: str  # "labels" | "boxes" | "foreground" (= none known)
    tight: np.ndarray | None  # (T, C, 4) tight person boxes, NaN where unknown


def _known_boxes(s: Sequence, options: PrepareOptions) -> _Known:
    if s.poses3d is not None:
        tight = np.stack([boxes_from_joints(s.poses3d, v.camera, options.box_pad_mm) for v in s.views], 1)
        return _Known("labels", tight)
    if s.boxes is not None:
        return _Known("boxes", np.asarray(s.boxes, np.float32))
    return _Known("foreground", None)


def _background_groups(sequences: list[Sequence]) -> dict[str, _Group]:
    """(subject, camera) groups, split further where a camera's calibration differs between sequences (it moved)."""
    by_name: dict[tuple[str, str], list[list[tuple[Sequence, int]]]] = defaultdict(list)
    for s in sequences:
        for i, v in enumerate(s.views):
            clusters = by_name[(s.subject, v.name)]
            for c in clusters:
                if same_calibration(c[0][0].views[c[0][1]].camera, v.camera):
                    c.append((s, i))
                    break
            else:
                clusters.append([(s, i)])
    groups = {}
    for (subject, cam), clusters in by_name.items():
        for k, members in enumerate(clusters):
            gid = safe_name(f"{subject}_{cam}") + (f"_{k}" if len(clusters) > 1 else "")
            groups[gid] = _Group(gid, subject, cam, members)
    return groups


def _estimate_group(g: _Group, known: dict[str, _Known], options: PrepareOptions) -> BackgroundModel:
    """Sample the group's frames (equal shares per sequence), exclude known person boxes, take the median."""
    per_seq = max(1, round(options.bg_frames / len(g.members)))
    plan = [(s, i, sample_indices(s.num_frames, per_seq)) for s, i in g.members]
    w, h = g.members[0][0].views[g.members[0][1]].camera.size
    n = sum(len(idx) for _, _, idx in plan)
    samples = np.empty((n, h, w, 3), np.uint8)
    checked = all(known[s.key].tight is not None for s, _ in g.members)
    exclude = np.zeros((n, h, w), bool) if checked else None
    body = np.zeros((n, h, w), bool) if checked else None
    k = 0
    for s, i, idx in plan:
        view = s.views[i]
        frames = read_frames_at(view.video, idx)
        if frames.shape[1:3] != (h, w):
            raise DataError(view.video, f"frames are {frames.shape[2]}x{frames.shape[1]} but the calibration "
                                        f"of {view.name} says {w}x{h}")
        samples[k:k + len(idx)] = frames
        if checked:
            tight = known[s.key].tight[idx, i]
            exclude[k:k + len(idx)] = _box_masks(_grow_boxes(tight, 0.1), (w, h))
            if known[s.key].source == "labels":
                uv, depth = project_joints(s.poses3d[idx], view.camera)
                radius = 80.0 * view.camera.K[0, 0] / np.nanmedian(np.where(depth > 1, depth, np.nan), 1)
                body[k:k + len(idx)] = skeleton_masks(uv, radius, (w, h))
            else:
                body[k:k + len(idx)] = ellipse_masks(tight, (w, h))
        k += len(idx)
    return estimate_background(samples, exclude, body)


def _borrow_across_subjects(groups: dict[str, _Group], models: dict[str, BackgroundModel]
                            ) -> dict[str, tuple[list[str], float]]:
    """Fill each model's unreliable pixels from the other groups of the same camera and calibration
    (other subjects on the same static rig), in place; returns group -> (donors used, share filled)."""
    camera_of = {g.id: g.members[0][0].views[g.members[0][1]].camera for g in groups.values()}
    results = {}
    for g in groups.values():  # all from the models as estimated, so the order does not matter
        m = models[g.id]
        if m.unreliable is None or not m.unreliable.any():
            continue
        donors = [d.id for d in groups.values() if d.id != g.id and d.camera == g.camera
                  and models[d.id].unreliable is not None and same_calibration(camera_of[d.id], camera_of[g.id])]
        if donors:
            image, filled, used = borrow_background(m.image, m.unreliable,
                                                    [(models[d].image, models[d].unreliable) for d in donors])
            if filled.any():
                results[g.id] = (image, filled, [donors[k] for k in used])
    out = {}
    for gid, (image, filled, used) in results.items():
        m = models[gid]
        suspect = None if m.suspect is None else m.suspect & ~filled
        models[gid] = replace(m, image=image, unreliable=m.unreliable & ~filled, suspect=suspect)
        out[gid] = (used, float(filled.mean()))
    return out


def _grow_boxes(boxes: np.ndarray, frac: float) -> np.ndarray:
    b = np.asarray(boxes, np.float64)
    d = (b[:, 2:] - b[:, :2]) * frac + 2
    return np.concatenate([b[:, :2] - d, b[:, 2:] + d], 1)


def _box_masks(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    x, y = np.arange(w), np.arange(h)
    out = np.zeros((len(boxes), h, w), bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        if np.isfinite([x0, y0, x1, y1]).all():
            out[i] = ((y >= y0) & (y <= y1))[:, None] & ((x >= x0) & (x <= x1))[None, :]
    return out


def _prepare_sequence(s: Sequence, known: _Known, models: dict[str, BackgroundModel], bg_of: dict,
                      out: Path, options: PrepareOptions, transcode, sizes: dict, notes: list[str]) -> PreparedSequence:
    T = s.num_frames
    need_fg_boxes = known.source == "foreground"
    need_fg_motion = s.poses3d is None
    gap = max(1, round(s.fps / 25))  # mask change over ~40 ms, whatever the frame rate
    tight = known.tight.copy() if known.tight is not None else np.full((T, len(s.views), 4), np.nan, np.float32)
    changes = np.full((T, len(s.views)), np.nan)
    cams = []
    for i, v in enumerate(s.views):
        model = models[bg_of[(s.key, i)]]
        video, codec, count = v.video, v.codec, v.num_frames
        writer = None
        if transcode is not None:
            target, kw = transcode
            sizes["before"] += v.video.stat().st_size
            if target == "mjpeg" and v.codec == "mjpeg" and _intra_only(v):
                sizes["kept"] += 1  # already what the transcode would make: re-encoding would only lose quality
                sizes["after"] += v.video.stat().st_size
            else:
                w, h = v.camera.size
                if w % 2 or h % 2:
                    raise DataError(v.video, f"frames are {w}x{h}; transcoding needs even sizes (4:2:0), "
                                             "use --transcode none")
                video = out / "videos" / safe_name(s.subject) / safe_name(s.name) / (safe_name(v.name)
                                                                                       + CODECS[target][0])
                video.parent.mkdir(parents=True, exist_ok=True)
                writer = VideoWriter(video, s.fps, target, **kw)
                codec, count = target, T
        if need_fg_boxes or need_fg_motion or writer is not None:
            _foreground_pass(v, T, model, writer, tight[:, i] if need_fg_boxes else None,
                             changes[:, i] if need_fg_motion else None, gap)
            if writer is not None:
                sizes["after"] += video.stat().st_size
        cams.append(PreparedCamera(name=v.name, video=video, codec=codec, size=tuple(v.camera.size),
                                   camera=v.camera, background_id=bg_of[(s.key, i)], source_video=v.video,
                                   num_frames=count))

    boxes = np.empty((T, len(s.views), 4), np.float32)
    for i, v in enumerate(s.views):
        if not np.isfinite(tight[:, i]).any():
            w, h = v.camera.size
            notes.append(f"{s.key} {v.name}: no person found in any frame; crops cover the whole frame")
            tight[:, i] = (0, 0, w - 1, h - 1)
        boxes[:, i] = crop_boxes(tight[:, i], options.box_margin, options.box_smooth)

    if s.poses3d is not None:
        motion = motion_from_poses(s.poses3d, options.motion_window)
        source, threshold = "labels", options.motion_threshold
    else:
        seen = np.isfinite(changes)  # the last `gap` frames have no successor to compare with
        mean_change = np.where(seen.any(1), np.where(seen, changes, 0).sum(1) / np.maximum(seen.sum(1), 1), np.nan)
        motion = motion_from_changes(mean_change, options.motion_window)
        source, threshold = "foreground", options.fg_motion_threshold
    poses = None if s.poses3d is None else np.asarray(s.poses3d, np.float32)
    return PreparedSequence(key=s.key, subject=s.subject, name=s.name, action=s.action, fps=s.fps, num_frames=T,
                            cameras=cams, boxes=boxes, motion=motion, static=motion < threshold, poses3d=poses,
                            box_source=known.source, motion_source=source, notes=list(s.notes))


def _intra_only(v: View) -> bool:
    with av.open(str(v.video)) as c:
        s = c.streams.video[0]
        return all(p.is_keyframe for p in c.demux(s) if p.size > 0)


def _foreground_pass(v: View, T: int, model: BackgroundModel, writer: VideoWriter | None,
                     boxes_out: np.ndarray | None, changes_out: np.ndarray | None, gap: int, chunk: int = 8):
    """One decode of the first T frames: transcode, foreground boxes and mask changes, as asked."""
    recent: deque[np.ndarray] = deque(maxlen=gap + 1)
    tolerance = morphology_radius(v.camera.size)
    batch: list[np.ndarray] = []
    t = 0

    def flush():
        nonlocal t
        frames = np.stack(batch)
        batch.clear()
        if boxes_out is None and changes_out is None:
            t += len(frames)
            return
        masks = foreground_masks(frames, model.image, model.threshold)
        if boxes_out is not None:
            boxes_out[t:t + len(frames)] = boxes_from_masks(masks)
        if changes_out is not None:
            for m in masks:
                recent.append(m)
                if len(recent) == gap + 1:  # change between t - gap and t, credited to t - gap
                    changes_out[t - gap] = mask_change(recent[0], recent[-1], tolerance)
                t += 1
        else:
            t += len(frames)

    try:
        for frame in iter_frames(v.video, T):
            if writer is not None:
                writer.write(frame)
            batch.append(frame)
            if len(batch) == chunk:
                flush()
        if batch:
            flush()
    finally:
        if writer is not None:
            writer.close()


# ---------------------------------------------------------------- quality and preview


def _quality(sequences: list[Sequence], models: dict[str, BackgroundModel], bg_of: dict, options: PrepareOptions,
             log: Log) -> tuple[dict, list[dict]]:
    """IoU of predicted vs ground-truth masks over sampled frames, per camera and overall (pooled pixels)."""
    per_cam: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])  # inter, union, raw inter, raw union, frames
    per_frame: list[float] = []
    has_truth = any(s.masks for s in sequences)
    first_rows, more_rows = [], []  # preview: one row per camera first, then others
    for s in sequences:
        for i, v in enumerate(s.views):
            gt_path = s.masks.get(v.name)
            if (has_truth and gt_path is None) or (not has_truth and len(first_rows) + len(more_rows) >= 4):
                continue
            model = models[bg_of[(s.key, i)]]
            idx = sample_indices(s.num_frames, options.quality_frames if has_truth else 1)
            if not len(idx):
                continue
            frames = read_frames_at(v.video, idx)
            pred = foreground_masks(frames, model.image, model.threshold)
            truth = None
            if gt_path is not None:
                raw = foreground_masks(frames, model.image, model.threshold, radius=0)
                truth = load_masks(gt_path, idx)
                if truth.shape != pred.shape:
                    raise DataError(gt_path, f"ground-truth masks of frames {idx.tolist()} have shape {truth.shape}, "
                                             f"the predicted ones (video {v.name}) {pred.shape}")
                acc = per_cam[v.name]
                for p, r, g in zip(pred, raw, truth):
                    a, b = mask_iou(p, g)
                    c, d = mask_iou(r, g)
                    acc[0] += a; acc[1] += b; acc[2] += c; acc[3] += d; acc[4] += 1  # noqa: E702
                    per_frame.append(a / b if b else 1.0)
            j = len(idx) // 2
            row = dict(title=f"{s.key}\n{v.name} t={idx[j]}", frame=frames[j], background=model.image,
                       pred=pred[j], truth=None if truth is None else truth[j])
            if v.name not in {r["camera"] for r in first_rows} and len(first_rows) < 4:
                first_rows.append(dict(row, camera=v.name))
            elif len(more_rows) < 4:
                more_rows.append(row)
    rows = (first_rows + more_rows)[:4]
    if not per_cam:
        return {}, rows
    tot = np.sum([v for v in per_cam.values()], 0)
    quality = dict(
        iou=round(tot[0] / max(tot[1], 1), 4), iou_raw=round(tot[2] / max(tot[3], 1), 4),
        iou_frame_mean=round(float(np.mean(per_frame)), 4), frames=int(tot[4]),
        iou_per_camera={k: round(v[0] / max(v[1], 1), 4) for k, v in sorted(per_cam.items())},
        what="IoU of the predicted foreground (cleaned: iou; raw per-pixel threshold: iou_raw) vs ground-truth "
             "masks, pixels pooled over sampled frames")
    log(f"background removal IoU {quality['iou']:.3f} over {quality['frames']} frames")
    return quality, rows


def _write_preview(path: Path, rows: list[dict]) -> Path | None:
    if not rows:
        return None
    plt = pyplot()

    cols = ["frame", "background model", "predicted mask", "ground truth", "background removed"]
    h, w = rows[0]["frame"].shape[:2]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.6 * len(cols), 2.6 * len(rows) * h / w + 0.4),
                             squeeze=False)
    for r, row in enumerate(rows):
        iou = ""
        if row["truth"] is not None:
            a, b = mask_iou(row["pred"], row["truth"])
            iou = f"\nIoU {a / max(b, 1):.2f}"
        images = [row["frame"], row["background"], row["pred"], row["truth"],
                  remove_background(row["frame"], row["pred"], fill=(0, 0, 0))]
        for c, im in enumerate(images):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if im is None:
                ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
            else:
                ax.imshow(im, cmap="gray" if im.ndim == 2 else None, interpolation="nearest")
            if r == 0:
                ax.set_title(cols[c], fontsize=9)
        axes[r, 0].set_ylabel(row["title"] + iou, fontsize=7)
    return save_figure(fig, path)


# ---------------------------------------------------------------- frame access


def iter_frames(path: Path, count: int) -> Iterator[np.ndarray]:
    """The first ``count`` frames of a video, one uint8 (H, W, 3) at a time (constant memory)."""
    path = Path(path)
    n = 0
    try:
        with av.open(str(path)) as c:
            for f in c.decode(c.streams.video[0]):
                if n >= count:
                    break
                yield f.to_ndarray(format="rgb24")
                n += 1
    except av.error.FFmpegError as e:
        raise DataError(path, f"decoding failed at frame {n} ({e})") from None
    if n < count:
        raise DataError(path, f"holds only {n} decodable frames, the sequence needs {count}")


class _NoSeek(Exception):
    pass


def read_frames_at(path: Path, indices, seek_gap: int = 24) -> np.ndarray:
    """Frames ``indices`` (n, H, W, 3) uint8, seeking to the key frame before each far-apart one.

    Frame i is the i-th in presentation order (timestamps from demuxing, no decoding). Falls back to plain
    sequential decoding when the file's timestamps do not allow exact seeking.
    """
    path = Path(path)
    idx = np.asarray(indices, np.int64).reshape(-1)
    if idx.size == 0:
        return read_frames(path, idx)
    try:
        got = _seek_and_decode(path, np.unique(idx), seek_gap)
    except _NoSeek:
        return read_frames(path, idx)
    return np.stack([got[int(i)] for i in idx])


def _seek_and_decode(path: Path, wanted: np.ndarray, seek_gap: int) -> dict[int, np.ndarray]:
    try:
        c = av.open(str(path))
    except av.error.FFmpegError:
        raise _NoSeek from None  # read_frames reports it properly
    with c:
        s = c.streams.video[0]
        pts = [p.pts for p in c.demux(s) if p.size > 0]
        if not pts or any(p is None for p in pts) or len(set(pts)) != len(pts):
            raise _NoSeek
        pts.sort()
        if wanted[-1] >= len(pts):
            raise DataError(path, f"frame {int(wanted[-1])} is past the end of the video ({len(pts)} frames)")
        index_of = {p: i for i, p in enumerate(pts)}
        got: dict[int, np.ndarray] = {}
        frames = None
        pos = None  # index of the last decoded frame
        for want in wanted.tolist():
            if frames is None or pos is None or want - pos > seek_gap:
                c.seek(pts[want], stream=s, backward=True, any_frame=False)
                frames = c.decode(s)
            for f in frames:
                i = index_of.get(f.pts)
                if i is None:
                    raise _NoSeek
                pos = i
                if i == want:
                    got[want] = f.to_ndarray(format="rgb24")
                    break
                if i > want:
                    raise _NoSeek  # the seek landed after the frame: timestamps are not what they seem
            else:
                raise _NoSeek
        return got


# ---------------------------------------------------------------- the summary


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def summary_lines(report: PrepareReport) -> list[tuple[str, str]]:
    """(label, text) rows of the prepare summary, plain text (the CLI renders them with rich)."""
    m, st = report.manifest, report.stats
    rows = [("manifest", f"{report.path}" + ("  (up to date, reused)" if report.up_to_date else ""))]
    if report.reasons:
        rows.append(("rebuilt because", "; ".join(report.reasons[:8]) + (" ..." if len(report.reasons) > 8 else "")))
    rows += [
        ("sequences", f"{st['sequences']} ({len({s.subject for s in m.sequences})} subjects), "
                      f"{st['cameras']} cameras, {st['views']} videos"),
        ("frames", f"{st['frames']} instants, {st['view_frames']} camera frames"),
        ("static", f"{st['static_frames']} of {st['frames']} instants ({report.static_share:.1%}) have no significant "
                   f"movement and are skipped by the sampler (thresholds: {m.options.get('motion_threshold')} mm/frame "
                   f"with labels, {m.options.get('fg_motion_threshold')} mask change without)"),
        ("boxes from", ", ".join(f"{k}: {v} sequences" for k, v in st["box_sources"].items())),
        ("motion from", ", ".join(f"{k}: {v} sequences" for k, v in st["motion_sources"].items())),
        ("backgrounds", f"{st['backgrounds']} (one per subject and camera); "
                        f"{st.get('borrowed_backgrounds', 0)} filled in where the person never left a spot from "
                        f"other subjects on the same rig; {st['suspect_backgrounds']} may show a person "
                        "standing still"),
    ]
    q = m.quality
    if q:
        per_cam = ", ".join(f"{k} {v:.3f}" for k, v in q["iou_per_camera"].items())
        rows.append(("mask IoU", f"{q['iou']:.3f} (raw threshold {q['iou_raw']:.3f}) over {q['frames']} frames; "
                                 f"per camera: {per_cam}"))
    else:
        rows.append(("mask IoU", "not measurable (no ground-truth masks)"))
    if st.get("transcode", "none") != "none":
        before, after = st["bytes_before"], st["bytes_after"]
        rows.append(("transcode", f"{st['transcode']}: {_bytes(before)} -> {_bytes(after)} "
                                  f"(x{after / max(before, 1):.2f})"))
    if st.get("preview"):
        rows.append(("preview", str(Path(report.path).parent / st["preview"])))
    rows.append(("time", f"{report.seconds:.1f} s" + (f" (build took {st['seconds']:.1f} s)"
                                                       if report.up_to_date and "seconds" in st else "")))
    return rows


def render_report(report: PrepareReport, console=None, max_notes: int = 12) -> None:
    from rich.console import Console
    from rich.table import Table
    console = console or Console()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, text in summary_lines(report):
        grid.add_row(label, text)
    console.print(grid)
    notes = report.manifest.notes
    for note in notes[:max_notes]:
        console.print(f"[yellow]note:[/] {note}")
    if len(notes) > max_notes:
        console.print(f"[yellow]note:[/] ... {len(notes) - max_notes} more in {report.path} (\"notes\")")
