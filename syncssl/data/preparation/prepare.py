"""``syncssl-data prepare``: from a :class:`Dataset` to a :class:`Manifest` and the person tiles the loader reads.

Nothing that pre-training uses comes from labels: backgrounds, person boxes, crops, static frames and the
silhouettes of the unsynchronized-pair filter all come from the images (foreground masks against each camera's
background model). Labels, where a dataset has them, are kept for fine-tuning and evaluation, and used here only
to *measure* the label-free path (box agreement, static agreement, mask IoU), or, by explicit opt-in
(``label_boxes``: the Human3.6M literature's ground-truth crops), for the crop boxes.

Steps:

1. one background model per (subject, camera) group with identical calibration, pooled over the group's
   sequences: a median, then a median without each sample's foreground (``background.model_from_images``);
   spots the person never left are filled in from other subjects filmed by the same camera in the same scene;
   a video whose frames at work size fit ``KEEP_DECODED_BYTES`` is decoded whole here, and its frames are kept
   (memory-mapped, deleted after step 2) so that step 2 does not decode it again;
2. one decoding pass per video, all videos in parallel, every frame decoded once, in order: the foreground
   mask of each frame gives the person's box and the mask change (motion) and silhouette; a few frames later
   (``boxes.CropBoxStream``) its smoothed square crop box is final and the frame's tile is cut and written;
   the same pass writes the optional transcoded copy and measures the mask against ground truth (synthetic);
3. per sequence: static frames from the mask change; the manifest, the tile set's checksums, ``report.json``
   (mask IoU, the op's mask at training settings per subject, agreement with labels) and ``masks_preview.png``.

The manifest is reused while the fingerprint of the sources and options matches; a tile set (one per tile
spec: crop size and jitter) is reused while it matches the manifest and its checksums, and only damaged blocks
are cut again.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...figures import pyplot, save_figure
from ...geometry import Camera, ray_distance, rig_focus
from ...parallel import Workers, usable_cpus
from ...storage import translate_disk_errors
from ..decode.damage import SUSPECT_RULE
from ..decode.video import CODECS, VIDEO_EXTENSIONS, VideoWriter, iter_frames, probe, read_frames_at
from ..sources.dataset import Dataset, Sequence, View, load_masks
from .background import (
    BackgroundModel,
    borrow_background,
    foreground_masks,
    ghost_region,
    mask_change,
    mask_iou,
    model_from_empty_scene,
    model_from_images,
    morphology_radius,
    sample_indices,
)
from .boxes import (
    CropBoxStream,
    PersonTrack,
    boxes_from_joints,
    motion_from_changes,
    motion_from_poses,
    tile_rect,
)
from .crops import MaskSettings
from .manifest import (
    MANIFEST_NAME,
    BackgroundInfo,
    Manifest,
    PreparedCamera,
    PreparedSequence,
    arrays_file,
    fingerprint,
    fingerprint_changes,
    read_png,
    safe_name,
    same_calibration,
    write_png,
)
from .owned import OwnedFolder, as_folder
from .tiles import (
    TileLayout,
    TileSpec,
    allocate,
    block_crc,
    check,
    encode_jpeg,
    resolve_format,
    tile_folder,
    write_block,
    write_meta,
)

TRANSCODES = {"none": None, "mjpeg": ("mjpeg", {}), "h264-gop8": ("h264", {"gop": 8})}
# Bump when what prepare computes changes, so that existing manifests are rebuilt (part of the fingerprint).
ALGORITHM_VERSION = 4  # 4: a person track starts on the person nearest the rig's focus
MOTION_GAP_S = 0.08  # masks this far apart are compared for motion: at 1/2 resolution a 40 ms gap drowns slow
#                      movement in edge flicker (measured on the synthetic data: 91% agreement with the labels'
#                      static frames at 80 ms, 74-84% at 40 ms)
WORK_SIDE = 270  # px: a frame whose shorter side is at least twice this is worked on shrunk (work_scale)
SILHOUETTE = 16  # cells along each side of the box-normalised silhouette kept per frame and camera
REPORT_NAME = "report.json"
PREVIEW_NAME = "masks_preview.png"
PREVIEW_ROWS = 400  # image rows drawn per panel of masks_preview.png
UNMODELLED_NOTE = 0.002  # share of the frame above which unmodelled background pixels are reported
KEEP_DECODED_BYTES = 1 << 30  # a video's frames at work size up to this are decoded once, for both its background
#                               samples and the pass (kept on disk, memory-mapped); longer ones are decoded twice


@dataclass(frozen=True)
class PrepareOptions:
    """Everything that changes the prepared manifest (part of its fingerprint)."""

    bg_frames: int = 48  # frames sampled per background group, in equal shares over its sequences (>= 1 each)
    fg_motion_threshold: float = 0.02  # changed share of the person's mask below which a frame is static
    motion_window: int = 5  # frames over which motion is measured
    box_margin: float = 0.2  # square crop side = max(w, h) of the person box * (1 + margin)
    box_smooth: int = 9  # frames of the centred temporal smoothing of crop boxes
    max_gap_s: float = 1.0  # seconds without a detection that are interpolated (longer: the last box is held)
    transcode: str = "none"  # "none" | "mjpeg" (intra-only) | "h264-gop8"
    quality_frames: int = 8  # frames per sequence and camera for the IoU against ground-truth masks
    borrow_backgrounds: bool = True  # fill spots a person never left from other subjects on the same rig
    label_boxes: bool = False  # OPT-IN: crop boxes from the 3D labels (or the dataset's own boxes), as the
    #                            Human3.6M literature's ground-truth crops; never the default
    box_pad_mm: float = 150.0  # label boxes: body thickness beyond the joints (also for measuring agreement)
    label_motion_threshold: float = 2.0  # mm/frame: static from labels, only to measure agreement with the images

    def __post_init__(self):
        if self.transcode not in TRANSCODES:
            raise ValueError(f"transcode: choose one of {', '.join(TRANSCODES)}, got {self.transcode!r}")
        for k in ("bg_frames", "motion_window", "box_smooth"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be at least 1, got {getattr(self, k)}")
        if self.quality_frames < 0 or self.box_margin < 0 or self.box_pad_mm < 0 or self.max_gap_s < 0:
            raise ValueError("quality_frames, box_margin, box_pad_mm and max_gap_s must not be negative")


@dataclass
class PrepareReport:
    """What prepare did, for the summary the CLI prints."""

    manifest: Manifest
    path: Path  # manifest.json
    up_to_date: bool  # the manifest was reused without rebuilding
    reasons: list[str]  # why it was rebuilt (empty on a first build or when reused)
    seconds: float
    tiles: Path | None = None  # the tile set folder, when tiles were asked for
    tiles_note: str = ""  # what happened to the tile set (reused, built, repaired, and why)
    report: dict = field(default_factory=dict)  # report.json

    @property
    def stats(self) -> dict:
        return self.manifest.stats

    @property
    def static_share(self) -> float:
        return self.stats["static_frames"] / max(1, self.stats["frames"])


Log = Callable[[str], None]


def prepare(dataset: Dataset, out: Path | None = None, options: PrepareOptions | None = None, *,
            tiles: TileSpec | None = None, mask: MaskSettings | None = None, crop_size: int = 64,
            force: bool = False, workers: int | None = None, log: Log | None = None) -> PrepareReport:
    """Prepare ``dataset`` into ``out`` (default ``<dataset root>/prepared``), or reuse what is there.

    tiles: the tile set to make (or check); None: no tiles (the loader then decodes videos). mask, crop_size:
    the op's background removal and crop size that training uses, at which the op's mask is measured
    (``report.json``'s ``op_mask``). workers: processes decoding videos in parallel (default: every core).
    force: rebuild even if up to date, and write into an ``out`` that prepare did not make (see
    :mod:`syncssl.data.preparation.owned`: files prepare did not write are never deleted, with or without it).
    """
    t0 = time.perf_counter()
    options = options or PrepareOptions()
    mask = mask or MaskSettings()
    out = Path(out) if out is not None else Path(dataset.root) / "prepared"
    log = log or (lambda msg: None)
    workers = max(1, workers or usable_cpus())
    if not dataset.sequences:
        raise DataError(dataset.root, "the dataset holds no sequences to prepare")
    fp = fingerprint(dataset, dict(asdict(options), algorithm=ALGORITHM_VERSION))
    path = out / MANIFEST_NAME
    reasons: list[str] = []
    manifest = None
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
                manifest = old
    up_to_date = manifest is not None
    previews = None
    tiles = resolve_spec(tiles, dataset) if tiles else None
    tile_dir, tiles_note = (tile_folder(out, tiles) if tiles else None), ""
    owned = OwnedFolder.open(out, force)  # prepare removes or replaces only what it wrote itself
    if manifest is None:
        planned = _planned_files(dataset, out, options, tile_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
            owned.claim(planned)  # recorded before they are written: a killed run still owns its partial files
        except OSError as e:
            raise DataError(out, f"cannot write the prepared files here ({e.strerror}); choose another --out") from None
        with translate_disk_errors(out, "the prepared data"):  # a full disk is said in one line, naming the place
            build = _Build(dataset, out, options, tiles, workers, log)
            manifest = build.run()
            previews = build.previews
            manifest.fingerprint = fp
            manifest.stats["seconds"] = round(time.perf_counter() - t0, 2)
            manifest.stats["camera_frames_per_s"] = round(manifest.stats["view_frames"] / max(
                manifest.stats["seconds"], 1e-9), 1)  # the whole build: backgrounds, decoding pass, tiles
            manifest.save(path)
            if tiles:
                _finish_tiles(manifest, tiles, tile_dir)
                tiles_note = f"cut in the decoding pass ({manifest.stats['tiles']['note']})"
            owned.keep_only(planned)  # what an earlier build wrote and this one did not
    elif tiles:
        owned.claim([as_folder(tile_dir)])
        with translate_disk_errors(tile_dir, "the tiles"):
            tiles_note = _ensure_tiles(dataset, manifest, tiles, tile_dir, workers, log)
    with translate_disk_errors(out, "the prepare report"):
        report = _write_report(manifest, out, tiles, tile_dir, mask, crop_size, log, previews)
    return PrepareReport(manifest, path, up_to_date, reasons, time.perf_counter() - t0, tile_dir, tiles_note, report)


def resolve_spec(spec: TileSpec, dataset) -> TileSpec:
    """A tile spec with ``format="auto"`` made concrete for ``dataset`` (a Dataset or a Manifest): raw tiles when
    they fit half of this machine's memory, else JPEG records."""
    count = sum(s.num_frames * len(getattr(s, "views", None) or s.cameras) for s in dataset.sequences)
    return resolve_format(spec, count)


def _planned_files(dataset: Dataset, out: Path, options: PrepareOptions, tile_dir: Path | None) -> list:
    """Every path a build writes under ``out`` (the tile set as a whole folder)."""
    paths = [out / name for name in (MANIFEST_NAME, MANIFEST_NAME + ".tmp", REPORT_NAME, REPORT_NAME + ".tmp",
                                     PREVIEW_NAME)]
    paths += [arrays_file(out, s.subject, s.name) for s in dataset.sequences]
    for gid in _background_groups(dataset.sequences):  # the background and its map of unmodelled pixels
        paths += [out / "backgrounds" / f"{gid}.png", out / "backgrounds" / f"{gid}.unmodelled.png"]
    target = TRANSCODES[options.transcode]
    if target is not None:
        paths += [_transcode_path(out, s, v, target[0]) for s in dataset.sequences for v in s.views]
    paths.append(as_folder(out / "decoded"))  # frames kept between the background step and the pass
    return paths + ([as_folder(tile_dir)] if tile_dir is not None else [])


# ---------------------------------------------------------------- the build


@dataclass
class _Group:
    """Cameras that share one background: same subject, camera name and calibration."""

    id: str
    subject: str
    camera: str
    members: list[tuple[Sequence, int]] = field(default_factory=list)  # (sequence, view index)


@dataclass
class _Job:
    """One video's decoding pass (runs in a worker process)."""

    seq: int  # index in the dataset's sequences
    cam: int
    video: Path
    num_frames: int
    size: tuple[int, int]  # (w, h)
    gap: int  # frames between the masks compared for motion (MOTION_GAP_S)
    masks: bool  # compute foreground masks (boxes, motion, silhouettes); False: cut tiles only
    background: np.ndarray | None  # (H, W, 3) uint8 background model: for the masks, and each tile's background
    threshold: float
    box_margin: float
    box_smooth: int
    max_gap: int
    known: np.ndarray | None  # (T, 4) crop source boxes given upfront (label_boxes opt-in)
    crops: np.ndarray | None  # (T, 4) final crop boxes (tiles-only pass); None: computed here
    tiles: TileSpec | None
    tile_dir: Path | None
    tile_count: int
    tile_first: int
    transcode: tuple | None  # (path, fps, codec, kwargs)
    quality_index: np.ndarray  # frames compared with the ground truth
    truth: Path | None  # ground-truth masks (synthetic data), per file frame of ``video``
    start: int = 0  # sequence frame t is file frame t + start of ``video`` (sync.toml)
    scale: int = 1  # frames are decoded shrunk by this factor (work_scale); ``background`` is at that size
    decoded: Path | None = None  # the frames at work size, kept when the background samples were decoded (.npy)
    preview: int = -1  # the frame masks_preview.png shows of this camera (returned at work size), -1: none
    camera: Camera | None = None  # the camera's calibration, with ``focus``: where the person track starts
    focus: np.ndarray | None = None  # where the rig looks (world mm): a track starts on the person nearest it


def _run_job(job: _Job) -> dict:
    """Decode one video once, in order: masks, boxes, motion, silhouettes, tiles, transcode, mask quality."""
    import torch
    torch.set_num_threads(1)  # one process per core already
    from .crops import cut
    t0 = time.perf_counter()
    T, full = job.num_frames, job.size
    w, h = work_size(full, job.scale)  # everything below is in the decoded (shrunk) frame's pixels
    to_work = np.array([w / full[0], h / full[1]] * 2, np.float32)  # full-size pixel edges -> decoded ones
    background = shrink(job.background, (w, h))
    need_masks = job.masks
    tight = np.full((T, 4), np.nan, np.float32)
    crops = np.full((T, 4), np.nan, np.float32) if job.crops is None else job.crops.astype(np.float32) * to_work
    known = None if job.known is None else job.known * to_work
    rects = np.zeros((T, 4), np.float32)
    changes = np.full(T, np.nan)
    silhouettes = np.zeros((T, SILHOUETTE * SILHOUETTE // 8), np.uint8)
    stream = None if job.crops is not None else CropBoxStream(job.box_margin, job.box_smooth, job.max_gap)
    k = mask_scale((w, h))  # masks for boxes, motion and silhouettes at 1/k resolution: ~k^2 cheaper, box error < k px
    track = PersonTrack(grid=32, patience=job.max_gap, prefer=_nearest_focus(job, k / to_work[:2]))
    small_bg = downsample(background, k) if need_masks else None
    radius = morphology_radius((w // k, h // k))
    recent: deque = deque(maxlen=job.gap + 1)
    pending: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}  # frame -> (image, mask) until its crop is final
    S = job.tiles.size if job.tiles else 0
    tile_out = np.zeros((T, S, S, 3), np.uint8) if job.tiles else None
    bg_out = np.zeros((T, S, S, 3), np.uint8) if job.tiles and job.tiles.backgrounds and job.tiles.format == "raw" \
        else None
    quality = {"inter": 0, "union": 0, "inter_raw": 0, "union_raw": 0, "frames": 0}
    truth = load_masks(job.truth, job.quality_index + job.start) if job.truth is not None and len(job.quality_index) \
        else None
    if truth is not None and truth.shape[1:] != (h, w):  # measured at the decoded size: the truth's nearest pixels
        rows = ((np.arange(h) + 0.5) * truth.shape[1] / h).astype(int)
        cols = ((np.arange(w) + 0.5) * truth.shape[2] / w).astype(int)
        truth = truth[:, rows][:, :, cols]
    want_quality = {int(t): k for k, t in enumerate(job.quality_index)} if truth is not None else {}
    writer = VideoWriter(*job.transcode[:3], **job.transcode[3]) if job.transcode else None
    ready: list[tuple[int, np.ndarray]] = []  # (frame, crop box) final, waiting to be cut in a batch

    def cut_ready(final: bool = False):
        if not ready or (len(ready) < 16 and not final):
            return
        idx = [t for t, _ in ready]
        images = torch.from_numpy(np.stack([pending[t][0] for t in idx]))
        rect = np.stack([tile_rect(b, job.tiles.margin, (w, h)) for _, b in ready]) if job.tiles else None
        if job.tiles:
            rects[idx] = rect / to_work
            tile_out[idx] = cut(images, torch.from_numpy(rect), S).numpy()
            if bg_out is not None:
                bg = torch.from_numpy(np.array(background))[None]
                bg_out[idx] = cut(bg, torch.from_numpy(rect), S, index=torch.zeros(len(idx), dtype=torch.int64)).numpy()
        for t, b in ready:
            m = pending[t][1]
            if m is not None:
                silhouettes[t] = _silhouette(m, b / k)
            pending.pop(t)
        ready.clear()

    def finalise(t: int, box: np.ndarray):
        if not np.isfinite(box).all():  # no person known yet: the crop covers the whole frame
            box = np.array([0, 0, w, h], np.float32)
        crops[t] = box
        ready.append((t, box))
        cut_ready()

    n = 0
    batch: list[np.ndarray] = []
    preview: list[np.ndarray] = []

    def process(frames: list[np.ndarray]):
        nonlocal n
        small = downsample(np.stack(frames), k) if need_masks else None
        masks = foreground_masks(small, small_bg, job.threshold) if need_masks else [None] * len(frames)
        if need_masks:
            tight[n:n + len(frames)] = track.push(masks, small) * k
        for frame, m in zip(frames, masks):
            t = n
            pending[t] = (frame, m)
            if t == job.preview:
                preview.append(np.array(frame))
            if m is not None:
                recent.append(m)
                if len(recent) == job.gap + 1:  # change between t - gap and t, credited to t - gap
                    changes[t - job.gap] = mask_change(recent[0], recent[-1], radius)
                q = want_quality.get(t)
                if q is not None:  # prepare's mask at full resolution, as a user of the masks would compute it
                    cleaned = foreground_masks(frame, background, job.threshold)
                    raw = foreground_masks(frame, background, job.threshold, radius=0)
                    a, b = mask_iou(cleaned, truth[q])
                    c, d = mask_iou(raw, truth[q])
                    quality["inter"] += a; quality["union"] += b; quality["inter_raw"] += c  # noqa: E702
                    quality["union_raw"] += d; quality["frames"] += 1  # noqa: E702
            if stream is not None:
                src = tight[t] if known is None else known[t]
                for te, box in stream.push(src):
                    finalise(te, box)
            else:
                finalise(t, crops[t])
            n += 1

    suspects: dict[int, str] = {}  # frames with weaker signs of damage: excluded from sampling (_sequence)
    try:
        if job.decoded is not None:  # decoded once before: what that decode found is kept beside the frames
            frames = np.load(job.decoded, mmap_mode="r")
            suspects = _read_suspects(job.decoded)
        else:
            frames = iter_frames(job.video, T, job.start, size=(w, h) if job.scale > 1 else None, suspects=suspects)
        for frame in frames:
            if writer is not None:
                writer.write(frame)
            batch.append(frame)
            if len(batch) == 8:
                process(batch)
                batch = []
        if batch:
            process(batch)
    finally:
        if writer is not None:
            writer.close()
    if stream is not None:
        for te, box in stream.finish():
            finalise(te, box)
    cut_ready(final=True)

    result = dict(seq=job.seq, cam=job.cam, tight=tight / to_work, crops=crops / to_work, changes=changes,
                  silhouettes=silhouettes,
                  quality=quality, frames=T, seconds=time.perf_counter() - t0, suspects=suspects,
                  preview=(job.preview, preview[0]) if preview else None,
                  no_person=int(np.isnan(tight).any(1).sum()) if need_masks else 0)
    if job.tiles:
        result["rects"] = rects
        if job.tiles.format == "raw":
            write_block(job.tile_dir, job.tiles, job.tile_count, job.tile_first, tile_out, bg_out)
            result["crc"] = block_crc(job.tile_dir, job.tiles, job.tile_count, job.tile_first, T)
        else:
            result["jpeg"] = encode_jpeg(tile_out, job.tiles.jpeg_quality)
    return result


def _nearest_focus(job: _Job, to_full: np.ndarray):
    """The person track's preference (a box in mask pixels -> its cost): the distance in mm between the rig's focus
    and the viewing ray through the box's centre. Every camera then starts on the person nearest where the rig looks,
    the same person in each, where the largest region is often another one (the nearer of two people differs by
    camera). None without a calibrated rig."""
    if job.focus is None or job.camera is None:
        return None

    def cost(box: np.ndarray) -> float:
        centre = (box[:2] + box[2:]) / 2 * to_full - 0.5  # pixel edges (mask pixels) -> OpenCV's full-size pixels
        return float(ray_distance(job.camera, centre, job.focus))
    return cost


def work_scale(size: tuple[int, int], transcode: str = "none") -> int:
    """The factor by which prepare shrinks a camera's frames while decoding them (1 below 540 px, 4 at 1080p): a
    120 px tile holds a person region of 400-1000 px of a 1080p frame, and the op's crop is smaller still, so
    full-size frames only cost time (measured on 1080 x 1920 H.264: decoding to RGB at 1/4 size 191 frames/s per
    core against 137 at full size, and the masks, the background model and the tile cutting ~16x less work). A
    transcoded copy needs every pixel: 1."""
    return 1 if transcode != "none" else max(1, min(size) // WORK_SIDE)


def work_size(size: tuple[int, int], scale: int) -> tuple[int, int]:
    """The (w, h) of frames of ``size`` shrunk by ``scale``."""
    return (int(size[0]), int(size[1])) if scale <= 1 else (round(size[0] / scale), round(size[1] / scale))


def shrink(image: np.ndarray | None, size: tuple[int, int]) -> np.ndarray | None:
    """An (H, W, 3) uint8 image resized to ``size`` (w, h): area averaging to shrink (as the decoder does),
    bilinear to enlarge; unchanged when it has that size."""
    if image is None or (image.shape[1], image.shape[0]) == tuple(size):
        return image
    from PIL import Image
    smaller = size[0] < image.shape[1]
    return np.asarray(Image.fromarray(image).resize(tuple(size), Image.Resampling.BOX if smaller
                                                    else Image.Resampling.BILINEAR))


def mask_scale(size: tuple[int, int]) -> int:
    """The factor by which prepare's decoding pass shrinks frames before finding the person (1 below ~240 px)."""
    return max(1, round(min(size) / 120))


def downsample(images: np.ndarray, k: int) -> np.ndarray:
    """uint8 images (..., H, W, 3) averaged over k x k blocks (rows and columns that do not fill a block are
    dropped); strided sums, much faster than a reshaped mean."""
    if k == 1:
        return images
    H, W = images.shape[-3] // k * k, images.shape[-2] // k * k
    acc = np.zeros(images.shape[:-3] + (H // k, W // k, 3), np.uint16)
    for dy in range(k):
        for dx in range(k):
            acc += images[..., dy:H:k, dx:W:k, :]
    return ((acc + k * k // 2) // (k * k)).astype(np.uint8)


def _silhouette(mask: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The person's mask inside its crop box on a SILHOUETTE x SILHOUETTE grid (cell centres), bit-packed: a pose
    descriptor that needs no labels (two instants whose silhouettes barely differ are ambiguous pairs)."""
    H, W = mask.shape
    u = (np.arange(SILHOUETTE) + 0.5) / SILHOUETTE
    xs = np.floor(box[0] + u * (box[2] - box[0])).astype(np.int64)
    ys = np.floor(box[1] + u * (box[3] - box[1])).astype(np.int64)
    inside = ((ys >= 0) & (ys < H))[:, None] & ((xs >= 0) & (xs < W))[None, :]
    grid = mask[ys.clip(0, H - 1)[:, None], xs.clip(0, W - 1)[None, :]] & inside
    return np.packbits(grid.reshape(-1))


class _Build:
    """One full build: backgrounds, the decoding pass, the manifest (the tile set's files are written too)."""

    def __init__(self, dataset: Dataset, out: Path, options: PrepareOptions, tiles: TileSpec | None, workers: int,
                 log: Log):
        self.dataset, self.out, self.options = dataset, out, options
        self.tiles, self.workers, self.log = tiles, workers, log
        self.notes = list(dataset.notes)
        self.previews: dict[tuple[str, str], tuple[int, np.ndarray]] = {}  # (sequence, camera) -> (frame, image
        #                                                                     at work size) for masks_preview.png

    def run(self) -> Manifest:
        ds = self.dataset
        for s in ds.sequences:
            _validate(s)
            self.notes += [f"{s.key}: {n}" for n in s.notes]
            if len(s.views) < 2:
                self.notes.append(f"{s.key}: only one camera ({s.views[0].name}); it cannot form multi-view pairs")
        with Workers(min(self.workers, sum(len(s.views) for s in ds.sequences)), preload=(__name__,)) as self.pool:
            return self._run()

    def _run(self) -> Manifest:
        ds, options = self.dataset, self.options
        groups = _background_groups(ds.sequences)
        models, infos = self._backgrounds(groups)
        bg_of = {(s.key, i): g.id for g in groups.values() for s, i in g.members}

        layout = TileLayout([s.key for s in ds.sequences], [s.num_frames for s in ds.sequences],
                            [len(s.views) for s in ds.sequences])
        tile_dir = tile_folder(self.out, self.tiles) if self.tiles else None
        if self.tiles:
            self._announce_tiles(layout)
            allocate(tile_dir, self.tiles, layout.count)
        sizes = {"before": 0, "after": 0, "kept": 0}
        jobs, cams = [], {}
        first = {(i, c): row for i, c, row, _ in layout.blocks()}
        shown = _preview_views(ds.sequences)
        for i, s in enumerate(ds.sequences):
            known = _label_boxes(s, options) if options.label_boxes else None
            focus = s.focus if s.focus is not None else rig_focus(s.cameras)
            for c, v in enumerate(s.views):
                model = models[bg_of[(s.key, c)]]
                video, codec, count, transcode = self._transcode(s, v, sizes)
                cams[(i, c)] = PreparedCamera(name=v.name, video=video, codec=codec, size=tuple(v.camera.size),
                                              camera=v.camera, background_id=bg_of[(s.key, c)], source_video=v.video,
                                              num_frames=count, start=v.start if video == v.video else 0,
                                              source_start=v.start)  # a transcoded copy starts at the overlap
                q = sample_indices(s.num_frames, options.quality_frames) if v.name in s.masks else np.zeros(0, np.int64)
                jobs.append(_Job(seq=i, cam=c, video=v.video, num_frames=s.num_frames, size=tuple(v.camera.size),
                                 gap=max(1, round(s.fps * MOTION_GAP_S)), masks=True, background=model.image,
                                 threshold=model.threshold,
                                 box_margin=options.box_margin, box_smooth=options.box_smooth,
                                 max_gap=round(options.max_gap_s * s.fps), known=None if known is None else known[:, c],
                                 crops=None, tiles=self.tiles, tile_dir=tile_dir, tile_count=layout.count,
                                 tile_first=first[(i, c)], transcode=transcode, quality_index=q,
                                 truth=s.masks.get(v.name), start=v.start,
                                 scale=work_scale(v.camera.size, options.transcode),
                                 decoded=self._decoded(s, v) if video == v.video and self._decoded(s, v).is_file()
                                 else None,
                                 preview=_preview_frame(s.num_frames, v.name in s.masks, options.quality_frames)
                                 if (i, c) in shown else -1, camera=v.camera, focus=focus))
        results = {}
        t_pass = time.perf_counter()
        for r in self.pool.map(_run_job, jobs, self.log, "decoding pass: video"):
            results[(r["seq"], r["cam"])] = r
            if r["preview"] is not None:
                self.previews[(ds.sequences[r["seq"]].key, ds.sequences[r["seq"]].views[r["cam"]].name)] = r["preview"]
        pass_s = time.perf_counter() - t_pass
        shutil.rmtree(self.out / "decoded", ignore_errors=True)
        sizes["after"] += sum(p.stat().st_size for p in sizes.pop("after_paths", []))  # the copies just written
        if sizes["kept"]:
            self.notes.append(f"transcode: {sizes['kept']} videos are already intra-only MJPEG and are used as "
                              "they are")
        for (i, c), r in results.items():
            if r["no_person"] == r["frames"]:
                s = ds.sequences[i]
                self.notes.append(f"{s.key} {s.views[c].name}: no person found in any frame; crops cover the whole "
                                  "frame")

        prepared = [self._sequence(i, s, [cams[(i, c)] for c in range(len(s.views))],
                                   [results[(i, c)] for c in range(len(s.views))])
                    for i, s in enumerate(ds.sequences)]
        self._ghosts(groups, models, infos)
        quality = _quality(ds.sequences, results)
        agreement = _label_agreement(ds.sequences, prepared, options)
        static = sum(int(p.static.sum()) for p in prepared)
        frames = sum(p.num_frames for p in prepared)
        view_frames = sum(p.num_frames * len(p.cameras) for p in prepared)
        stats = dict(
            sequences=len(prepared), cameras=len({c.name for p in prepared for c in p.cameras}),
            views=sum(len(p.cameras) for p in prepared), frames=frames, view_frames=view_frames,
            static_frames=static, suspect_frames=sum(len(r["suspects"]) for r in results.values()),
            box_sources=dict(Counter(p.box_source for p in prepared)),
            backgrounds=len(infos), suspect_backgrounds=sum(i.suspect is not None for i in infos.values()),
            borrowed_backgrounds=sum(bool(i.borrowed_from) for i in infos.values()),
            transcode=options.transcode, bytes_before=sizes["before"], bytes_after=sizes["after"],
            decode_pass_s=round(pass_s, 2), decoded_camera_frames_per_s=round(view_frames / max(pass_s, 1e-9), 1),
            workers=min(self.workers, len(jobs)))
        manifest = Manifest(dataset_root=Path(ds.root), name=ds.name, source=ds.source, fps=ds.fps,
                            skeleton=ds.skeleton, splits=ds.splits, sequences=prepared, backgrounds=infos,
                            quality=dict(quality, **({"labels": agreement} if agreement else {})), stats=stats,
                            options=asdict(options), notes=list(dict.fromkeys(self.notes)))  # each note once
        manifest.folder = self.out
        if self.tiles:
            manifest.stats["tiles"] = _tile_files(tile_dir, self.tiles, layout, results, pass_s)
        return manifest

    # ------------------------------------------------------------ pieces

    def _announce_tiles(self, layout: TileLayout):
        spec = self.tiles
        per = spec.bytes_per_tile() * (2 if spec.backgrounds and spec.format == "raw" else 1)
        what = "raw uint8, memory-mapped" if spec.format == "raw" else f"JPEG records (quality {spec.jpeg_quality})"
        self.log(f"tiles: {layout.count} of {spec.size}x{spec.size} ({what}; raw would be "
                 f"{_bytes(layout.count * per)})")

    def _transcode(self, s: Sequence, v: View, sizes: dict):
        transcode = TRANSCODES[self.options.transcode]
        if transcode is None:
            return v.video, v.codec, v.num_frames, None
        target, kw = transcode
        sizes["before"] += v.video.stat().st_size
        if target == "mjpeg" and v.codec == "mjpeg" and _intra_only(v):
            sizes["kept"] += 1  # already what the transcode would make: re-encoding would only lose quality
            sizes["after"] += v.video.stat().st_size
            return v.video, v.codec, v.num_frames, None
        w, h = v.camera.size
        if w % 2 or h % 2:
            raise DataError(v.video, f"frames are {w}x{h}; transcoding needs even sizes (4:2:0), use --transcode none")
        video = _transcode_path(self.out, s, v, target)
        video.parent.mkdir(parents=True, exist_ok=True)
        sizes["after_paths"] = sizes.get("after_paths", []) + [video]
        return video, target, s.num_frames, (video, s.fps, target, kw)

    def _backgrounds(self, groups: dict[str, _Group]) -> tuple[dict[str, BackgroundModel], dict[str, BackgroundInfo]]:
        (self.out / "backgrounds").mkdir(parents=True, exist_ok=True)
        work = [(g.id, _group_samples(g, self.options)) for g in groups.values()]
        scales = {g.id: work_scale(g.members[0][0].views[g.members[0][1]].camera.size, self.options.transcode)
                  for g in groups.values()}
        shutil.rmtree(self.out / "decoded", ignore_errors=True)  # what a killed run left
        keep = {g.id: [self._decoded(s, s.views[i]) if self._keep_decoded(s, s.views[i]) else None
                       for s, i in g.members] for g in groups.values()}
        work = [(gid, (plan, e, scales[gid], keep[gid])) for gid, (plan, e) in work]
        empty = {gid: e for gid, (_, e, _, _) in work if e is not None}
        models = dict(self.pool.map(_estimate_group, work, self.log, "background"))
        borrowed = _borrow_across_subjects(groups, models) if self.options.borrow_backgrounds else {}
        infos: dict[str, BackgroundInfo] = {}
        for g in groups.values():
            model = models[g.id]
            camera = g.members[0][0].views[g.members[0][1]].camera
            path = write_png(self.out / "backgrounds" / f"{g.id}.png", shrink(model.image, tuple(camera.size)))
            donors, filled = borrowed.get(g.id, ([], 0.0))
            if donors:
                self.notes.append(f"background {g.id}: {filled:.1%} of the frame, where the person covered nearly "
                                  f"every sample, filled in from {', '.join(donors)} (same camera, calibration and "
                                  "scene)")
            w, h = (int(v) for v in camera.size)
            infos[g.id] = BackgroundInfo(id=g.id, path=path, size=(w, h), subject=g.subject, camera=g.camera,
                                         sequences=[s.key for s, _ in g.members], samples=model.samples,
                                         threshold=round(model.threshold, 3), noise=round(model.noise, 3),
                                         borrowed_from=donors, borrowed_share=round(filled, 4),
                                         empty_scene=str(empty[g.id]) if g.id in empty else None,
                                         work_scale=scales[g.id])
            self._unmodelled(g, model, infos[g.id], camera.size)
        return models, infos

    def _decoded(self, s: Sequence, v: View) -> Path:
        return self.out / "decoded" / f"{safe_name(s.key.replace('/', '__'))}__{safe_name(v.name)}.npy"

    def _keep_decoded(self, s: Sequence, v: View) -> bool:
        """Decode the video once (background samples and pass) when its frames at work size are few enough to keep."""
        w, h = work_size(tuple(v.camera.size), work_scale(v.camera.size, self.options.transcode))
        return self.options.transcode == "none" and s.num_frames * w * h * 3 <= KEEP_DECODED_BYTES

    def _unmodelled(self, g: _Group, model: BackgroundModel, info: BackgroundInfo, size: tuple[int, int]):
        """Say where no sample showed the scene without the person (a person who never left the spot): a map beside
        the background, its share in the report, a note, and the background flagged as suspect."""
        region = model.unmodelled
        if region is None or region.mean() <= UNMODELLED_NOTE:
            return
        from PIL import Image
        name = f"backgrounds/{g.id}.unmodelled.png"
        write_png(self.out / name, np.asarray(Image.fromarray(region.astype(np.uint8) * 255).resize(
            tuple(size), Image.Resampling.NEAREST)))
        info.unmodelled, info.unmodelled_share = name, round(float(region.mean()), 4)
        info.suspect, info.suspect_share = _region_box(region, size), info.unmodelled_share
        self.notes.append(
            f"background {g.id}: the person covered {info.unmodelled_share:.1%} of the frame (x {info.suspect[0]}.."
            f"{info.suspect[2]}, y {info.suspect[1]}..{info.suspect[3]}) in every sample of "
            f"{', '.join(s.key for s, _ in g.members)}, so no frame shows the scene there; it is filled from the "
            f"background around it (not a ghost of the person; map: {name}). Give prepare the empty scene "
            f"(backgrounds/{g.camera}.png or .mp4 next to the videos) to model it exactly.")

    def _ghosts(self, groups, models, infos):
        """Warn where a background probably shows the person: a foreground region that hardly moves (foreground
        against the first median in many samples, always in one place; a moving person never is)."""
        for g in groups.values():
            model, info = models[g.id], infos[g.id]
            region = ghost_region(model.persistence)
            if region.mean() > 0.002:
                box = _region_box(region, info.size)  # the model may be of shrunk frames
                old = info.suspect
                info.suspect = box if old is None else [min(old[0], box[0]), min(old[1], box[1]),
                                                        max(old[2], box[2]), max(old[3], box[3])]
                info.suspect_share = max(info.suspect_share, round(float(region.mean()), 4))
                self.notes.append(
                    f"background {g.id}: a foreground region hardly moves at x {box[0]}..{box[2]}, "
                    f"y {box[1]}..{box[3]} "
                    f"({region.mean():.1%} of the frame) in the "
                    f"samples of {', '.join(s.key for s, _ in g.members)}; the background model there probably shows "
                    "a person who stood still (a ghost), which cuts the body out of the masks. Give prepare the empty "
                    f"scene (backgrounds/{g.camera}.png or .mp4 next to the videos) or more sequences of this camera.")
            models[g.id] = replace(model, unreliable=None, persistence=None)

    def _sequence(self, i: int, s: Sequence, cams: list[PreparedCamera], results: list[dict]) -> PreparedSequence:
        T = s.num_frames
        changes = np.stack([r["changes"] for r in results], 1)
        seen = np.isfinite(changes)  # the last `gap` frames have no successor to compare with
        mean_change = np.where(seen.any(1), np.where(seen, changes, 0).sum(1) / np.maximum(seen.sum(1), 1), np.nan)
        motion = motion_from_changes(mean_change, self.options.motion_window)
        suspect = np.zeros(T, bool)  # an instant with a suspect frame in any camera is no anchor and no partner
        for v, r in zip(s.views, results):
            if r["suspects"]:
                suspect[sorted(r["suspects"])] = True
                (first, why), *_ = sorted(r["suspects"].items())
                n = len(r["suspects"])
                self.notes.append(f"{s.key} {v.name}: {n} suspect frame{'s' * (n > 1)} excluded from sampling "
                                  f"(frames {_frame_list(r['suspects'])}; frame {first}: {why}); {SUSPECT_RULE}")
        source = ("labels" if s.poses3d is not None else "boxes") if self.options.label_boxes else "foreground"
        return PreparedSequence(
            key=s.key, subject=s.subject, name=s.name, action=s.action, fps=s.fps, num_frames=T, cameras=cams,
            boxes=np.stack([r["crops"] for r in results], 1), motion=motion,
            static=(motion < self.options.fg_motion_threshold) | suspect,
            poses3d=None if s.poses3d is None else np.asarray(s.poses3d, np.float32), box_source=source,
            motion_source="foreground", notes=list(s.notes), tight=np.stack([r["tight"] for r in results], 1),
            silhouettes=np.stack([r["silhouettes"] for r in results], 1))


def _suspects_path(decoded: Path) -> Path:
    return decoded.with_suffix(".suspects.json")


def _read_suspects(decoded: Path) -> dict[int, str]:
    path = _suspects_path(decoded)
    return {int(k): v for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}


def _frame_list(frames, shown: int = 8) -> str:
    listed = ", ".join(str(f) for f in sorted(frames)[:shown])
    return listed + (f" and {len(frames) - shown} more" if len(frames) > shown else "")


def _region_box(region: np.ndarray, size: tuple[int, int]) -> list[int]:
    """x0 y0 x1 y1 (pixel edges) of a boolean map's pixels, in the pixels of a frame of ``size`` (w, h)."""
    ys, xs = np.nonzero(region)
    f = np.array([size[0] / region.shape[1], size[1] / region.shape[0]] * 2)
    return [int(v) for v in np.round(np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) * f)]


def _validate(s: Sequence):
    where = s.folder or Path(s.key)
    if not s.views:
        raise DataError(where, f"sequence {s.key} has no cameras")
    if s.num_frames < 1:
        raise DataError(where, f"sequence {s.key} has no frames")
    for v in s.views:
        if v.num_frames < s.num_frames + v.start:
            skip = f" after skipping {v.start}" if v.start else ""
            raise DataError(v.video, f"holds {v.num_frames} frames but sequence {s.key} claims {s.num_frames}{skip}")
    if s.poses3d is not None and np.shape(s.poses3d) != (s.num_frames, 17, 3):
        raise DataError(where, f"3D labels of {s.key} have shape {np.shape(s.poses3d)}, "
                               f"expected ({s.num_frames}, 17, 3)")
    if s.boxes is not None and np.shape(s.boxes) != (s.num_frames, len(s.views), 4):
        raise DataError(where, f"boxes of {s.key} have shape {np.shape(s.boxes)}, "
                               f"expected ({s.num_frames}, {len(s.views)}, 4)")


def _label_boxes(s: Sequence, options: PrepareOptions) -> np.ndarray | None:
    """(T, C, 4) tight person boxes from the labels (projected joints + body thickness) or the dataset's own
    boxes, pixel edges; None without either. Only for measuring, and for the ``label_boxes`` opt-in."""
    if s.poses3d is not None:
        return np.stack([boxes_from_joints(s.poses3d, v.camera, options.box_pad_mm) for v in s.views], 1)
    if s.boxes is not None:
        return np.asarray(s.boxes, np.float32)
    return None


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


def _group_samples(g: _Group, options: PrepareOptions) -> tuple[list, Path | None]:
    """Which frames model a group's background (equal shares of ``bg_frames`` per sequence, spread over each),
    and the empty scene the rig recorded for the camera, if any."""
    per_seq = max(1, round(options.bg_frames / len(g.members)))
    plan = [(s.views[i].video, s.views[i].name, sample_indices(s.num_frames, per_seq) + s.views[i].start,
             tuple(s.views[i].camera.size), s.views[i].start, s.num_frames) for s, i in g.members]
    empty = next((s.backgrounds[s.views[i].name] for s, i in g.members if s.views[i].name in s.backgrounds), None)
    return plan, empty


def _estimate_group(work: tuple[str, tuple[list, Path | None]]) -> tuple[str, BackgroundModel]:
    """(group id, the group's background model from the images alone), in a worker process."""
    gid, (plan, empty, scale, keep) = work
    w, h = plan[0][3]
    ws, hs = work_size((w, h), scale)  # the model is made at the size the decoding pass works at
    samples = np.empty((sum(len(p[2]) for p in plan), hs, ws, 3), np.uint8)
    k = 0
    for (video, name, idx, _, start, count), kept in zip(plan, keep):
        if kept is not None or scale > 1:  # frames decoded shrunk: the true size from the container
            info = probe(video, verify="none")
            true_size = (info.height, info.width)
        else:
            frames = read_frames_at(video, idx)
            true_size = frames.shape[1:3]
        if true_size != (h, w):
            raise DataError(video, f"frames are {true_size[1]}x{true_size[0]} but the calibration of {name} says "
                                   f"{w}x{h}")
        if kept is not None:  # every frame, once: the pass reads them from here
            kept.parent.mkdir(parents=True, exist_ok=True)
            store = np.lib.format.open_memmap(kept.with_suffix(".tmp.npy"), "w+", np.uint8, (count, hs, ws, 3))
            suspects: dict[int, str] = {}
            for t, frame in enumerate(iter_frames(video, count, start, size=(ws, hs) if scale > 1 else None,
                                                  suspects=suspects)):
                store[t] = frame
            store.flush()
            _suspects_path(kept).write_text(json.dumps(suspects))
            os.replace(kept.with_suffix(".tmp.npy"), kept)
            frames = store[idx - start]
        elif scale > 1:
            frames = read_frames_at(video, idx, size=(ws, hs))
        samples[k:k + len(idx)] = frames
        k += len(idx)
    if empty is not None:
        return gid, model_from_empty_scene(shrink(_empty_scene(empty), (ws, hs)), samples)
    return gid, model_from_images(samples)


def _empty_scene(path: Path) -> np.ndarray:
    """An empty-scene image, or the per-pixel median of (up to 48 frames spread over) an empty-scene clip."""
    from .manifest import read_png
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        return read_png(path)
    n = probe(path).num_frames
    return np.median(read_frames_at(path, sample_indices(n, 48)), axis=0).round().astype(np.uint8)


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
        models[gid] = replace(m, image=image, unreliable=m.unreliable & ~filled,
                              unmodelled=None if m.unmodelled is None else m.unmodelled & ~filled)
        out[gid] = (used, float(filled.mean()))
    return out


def _transcode_path(out: Path, s: Sequence, v: View, target: str) -> Path:
    return out / "videos" / safe_name(s.subject) / safe_name(s.name) / (safe_name(v.name) + CODECS[target][0])


def _intra_only(v: View) -> bool:
    return probe(v.video, verify="none").intra_only


# ---------------------------------------------------------------- tiles


def _tile_files(folder: Path, spec: TileSpec, layout: TileLayout, results: dict, pass_s: float) -> dict:
    """Write the set's rects (and JPEG records) from the pass's results; returns its stats. The meta (with the
    checksums) is written by :func:`_finish_tiles` once the manifest it belongs to is saved."""
    rects = np.zeros((layout.count, 4), np.float32)
    if spec.format == "jpeg":
        index = np.zeros((layout.count, 2), np.int64)
        with open(folder / "frames.jpg", "wb") as f:
            for i, c, first, _rows in layout.blocks():
                records = results[(i, c)]["jpeg"]
                pos = f.tell()
                for k, rec in enumerate(records):
                    index[first + k] = (pos, pos + len(rec))
                    f.write(rec)
                    pos += len(rec)
        np.save(folder / "jpg_index.npy", index)
    for i, c, first, rows in layout.blocks():
        rects[first:first + rows] = results[(i, c)]["rects"]
    np.save(folder / "rects.npy", rects)
    return _set_stats(folder, spec, layout, sum(r["frames"] for r in results.values()), pass_s)


def _set_stats(folder: Path, spec: TileSpec, layout: TileLayout, frames: int, seconds: float) -> dict:
    stored = sum((folder / n).stat().st_size for n in ("frames.u8", "backgrounds.u8", "frames.jpg")
                 if (folder / n).is_file())
    return dict(folder=str(folder), spec=asdict(spec), count=layout.count, bytes=stored,
                bytes_per_tile=round(stored / max(layout.count, 1), 1),
                camera_frames_per_s=round(frames / max(seconds, 1e-9), 1), seconds=round(seconds, 2),
                note=f"{layout.count} tiles, {_bytes(stored)}, {round(stored / max(layout.count, 1))} bytes each")


def _finish_tiles(manifest: Manifest, spec: TileSpec, folder: Path):
    layout = _layout(manifest)
    index = np.load(folder / "jpg_index.npy") if spec.format == "jpeg" else None
    crcs = [block_crc(folder, spec, layout.count, first, rows, index) for _, _, first, rows in layout.blocks()]
    write_meta(folder, spec, layout, manifest_digest(manifest), crcs, manifest.stats.get("tiles", {}))


def _layout(manifest: Manifest) -> TileLayout:
    return TileLayout([s.key for s in manifest.sequences], [s.num_frames for s in manifest.sequences],
                      [len(s.cameras) for s in manifest.sequences])


def manifest_digest(manifest: Manifest) -> str:
    """What a tile set depends on in a manifest: its sources' fingerprint and every crop box."""
    import hashlib
    h = hashlib.sha1(json.dumps(manifest.fingerprint, sort_keys=True, default=str).encode())
    for s in manifest.sequences:
        h.update(np.ascontiguousarray(s.boxes, np.float32).tobytes())
    return h.hexdigest()


def _ensure_tiles(dataset: Dataset, manifest: Manifest, spec: TileSpec, folder: Path, workers: int, log: Log) -> str:
    """Check the tile set of an up-to-date manifest; cut what is missing or damaged. Returns what happened."""
    layout = _layout(manifest)
    digest = manifest_digest(manifest)
    why, damaged = check(folder, spec, layout, digest)
    blocks = layout.blocks()
    if not why and not damaged:
        return "reused (checksums verified)"
    if damaged and spec.format == "jpeg":
        why = f"{len(damaged)} damaged blocks in the JPEG records"  # one file of records: write it again whole
    todo = list(range(len(blocks))) if why else damaged
    log(f"tiles: {why or f'{len(damaged)} damaged blocks'}; cutting {sum(blocks[k][3] for k in todo)} tiles")
    if why:
        allocate(folder, spec, layout.count)
    jobs = []
    for k in todo:
        i, c, first, rows = blocks[k]
        s, cam = manifest.sequences[i], manifest.sequences[i].cameras[c]
        jobs.append(_Job(seq=i, cam=c, video=cam.video, num_frames=s.num_frames, size=tuple(cam.size), gap=1,
                         masks=False, background=manifest.background(cam.background_id), threshold=0.0,
                         box_margin=0.0, box_smooth=1, max_gap=0, known=None, crops=s.boxes[:, c], tiles=spec,
                         tile_dir=folder, tile_count=layout.count, tile_first=first, transcode=None,
                         quality_index=np.zeros(0, np.int64), truth=None, start=cam.start,
                         scale=work_scale(cam.size, manifest.options.get("transcode", "none"))))
    t0 = time.perf_counter()
    with Workers(min(workers, len(jobs)), preload=(__name__,)) as pool:
        results = {(r["seq"], r["cam"]): r for r in pool.map(_run_job, jobs, log, "tiles: video")}
    seconds = time.perf_counter() - t0
    if spec.format == "jpeg":
        stats = _tile_files(folder, spec, layout, results, seconds)
    else:
        rects = np.zeros((layout.count, 4), np.float32) if why else np.load(folder / "rects.npy")
        for k in todo:
            i, c, first, rows = blocks[k]
            rects[first:first + rows] = results[(i, c)]["rects"]
        np.save(folder / "rects.npy", rects)
        stats = _set_stats(folder, spec, layout, sum(r["frames"] for r in results.values()), seconds)
    index = np.load(folder / "jpg_index.npy") if spec.format == "jpeg" else None
    crcs = [block_crc(folder, spec, layout.count, first, rows, index) for _, _, first, rows in blocks]
    write_meta(folder, spec, layout, digest, crcs, stats)
    return f"{why or f'{len(damaged)} damaged blocks'}: cut {sum(r['frames'] for r in results.values())} tiles again"


# ---------------------------------------------------------------- measuring


def _quality(sequences: list[Sequence], results: dict) -> dict:
    """IoU of prepare's masks (cleaned: iou; per-pixel rule alone: iou_raw) against ground-truth masks, pixels
    pooled over the sampled frames, per camera and overall; {} without ground truth."""
    per_cam: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(5))
    for (i, c), r in results.items():
        q = r["quality"]
        if q["frames"]:
            per_cam[sequences[i].views[c].name] += [q["inter"], q["union"], q["inter_raw"], q["union_raw"], q["frames"]]
    if not per_cam:
        return {}
    tot = np.sum(list(per_cam.values()), 0)
    return dict(iou=round(tot[0] / max(tot[1], 1), 4), iou_raw=round(tot[2] / max(tot[3], 1), 4), frames=int(tot[4]),
                iou_per_camera={k: round(v[0] / max(v[1], 1), 4) for k, v in sorted(per_cam.items())},
                what="IoU of prepare's foreground masks (cleaned: iou; per-pixel rule: iou_raw) vs ground-truth masks "
                     "at full resolution, pixels pooled over sampled frames")


def _label_agreement(sequences: list[Sequence], prepared: list[PreparedSequence], options: PrepareOptions) -> dict:
    """How the label-free boxes and static flags agree with the labels, where a dataset has labels (measuring
    only: nothing here feeds pre-training)."""
    ious, static_both, frames = [], [], 0
    for s, p in zip(sequences, prepared):
        labelled = _label_boxes(s, options)
        if labelled is not None:
            a, b = p.tight, labelled
            ok = np.isfinite(a).all(-1) & np.isfinite(b).all(-1)
            inter = (np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None)).prod(-1)
            union = (a[..., 2:] - a[..., :2]).prod(-1) + (b[..., 2:] - b[..., :2]).prod(-1) - inter
            ious.append(np.where(ok, inter / np.maximum(union, 1e-9), 0.0)[np.isfinite(b).all(-1)])
        if s.poses3d is not None:
            label_static = motion_from_poses(s.poses3d, options.motion_window) < options.label_motion_threshold
            static_both.append(np.stack([p.static, label_static], 1))
            frames += s.num_frames
    out = {}
    if ious:
        iou = np.concatenate(ious)
        out["boxes"] = dict(mean_iou=round(float(iou.mean()), 4),
                            share_iou_over_half=round(float((iou > 0.5).mean()), 4),
                            views=int(iou.size), what="IoU of the person boxes found in the images vs the boxes of "
                            "the labels (projected joints + body thickness; frames where either is missing count 0)")
    if static_both:
        both = np.concatenate(static_both)
        fg, lab = both[:, 0], both[:, 1]
        out["static"] = dict(agree=round(float((fg == lab).mean()), 4), frames=int(frames),
                             static_from_images=int(fg.sum()), static_from_labels=int(lab.sum()),
                             both=int((fg & lab).sum()),
                             what=f"static frames from the mask change vs from the labels' joint speed "
                                  f"(< {options.label_motion_threshold} mm/frame)")
    return out


def _preview_views(sequences) -> set[tuple[int, int]]:
    """(sequence, camera) of the rows of masks_preview.png: each camera's first view, up to 4 cameras."""
    shown: dict[str, tuple[int, int]] = {}
    for i, s in enumerate(sequences):
        for c, cam in enumerate(getattr(s, "views", None) or s.cameras):
            if len(shown) < 4 and cam.name not in shown:
                shown[cam.name] = (i, c)
    return set(shown.values())


def _measured_frames(num_frames: int, has_truth: bool, frames_per_view: int) -> np.ndarray:
    """The frames of a view that the report measures the op's mask on (with ground truth), or the one it shows."""
    return sample_indices(num_frames, (frames_per_view or 8) if has_truth else 1)


def _preview_frame(num_frames: int, has_truth: bool, frames_per_view: int) -> int:
    """The frame of a view that masks_preview.png shows: the middle one of those its mask is measured on."""
    idx = _measured_frames(num_frames, has_truth, frames_per_view)
    return int(idx[len(idx) // 2])


def _op_mask(manifest: Manifest, store, mask: MaskSettings, crop_size: int, frames_per_view: int,
             previews: dict | None = None) -> tuple[dict, list]:
    """The op's mask at the training settings against the ground truth, per subject, on the views training reads
    (the tiles when there are some, else the frames), at crop resolution and without jitter; plus preview rows (one
    per camera, up to 4, with or without ground truth), whose frames come from ``previews`` ((sequence, camera) ->
    (frame, image at work size), kept by the decoding pass) or are decoded again."""
    import torch

    from .crops import mask_scores, op_alpha, truth_at_crops
    from .tiles import TileStore, frame_to_tile
    acc: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(5))
    rows = []
    shown = _preview_views(manifest.sequences)
    for i, s in enumerate(manifest.sequences):
        gt_paths = _truth_paths(manifest, s)
        for c, cam in enumerate(s.cameras):
            has_truth, want_row = cam.name in gt_paths, (i, c) in shown
            if not has_truth and not want_row:
                continue
            idx = _measured_frames(s.num_frames, has_truth, frames_per_view)
            truth = load_masks(gt_paths[cam.name], idx + cam.source_start) if has_truth else None  # masks follow the
            info = manifest.backgrounds[cam.background_id]
            thr = torch.full((len(idx),), float(info.threshold))
            boxes = torch.from_numpy(s.boxes[idx, c].astype(np.float32))
            if isinstance(store, TileStore):
                rows_ = store.layout.row(i, c, idx)
                frames = store.frames(rows_)
                rects = store.rects[rows_]
                bgs = (store.backgrounds(rows_) if store.has_backgrounds else
                       _cut_backgrounds(manifest, cam, rects, store.spec.size, len(idx)))
                tboxes = frame_to_tile(boxes, rects, store.spec.size)
                alpha = op_alpha(frames, bgs, thr, tboxes, crop_size, mask)
                gt = truth_at_crops(truth, tboxes, crop_size, rects, store.spec.size) if has_truth else None
            else:
                frames = torch.from_numpy(read_frames_at(cam.video, idx + cam.start))
                bg = torch.from_numpy(np.array(manifest.background(cam.background_id)))
                bgs = bg[None].expand(len(idx), -1, -1, -1)
                alpha = op_alpha(frames, bgs.contiguous(), thr, boxes, crop_size, mask)
                gt = truth_at_crops(truth, boxes, crop_size) if has_truth else None
            if has_truth:
                a, u, g, lost = mask_scores(alpha, gt)
                acc[s.subject] += [a, u, g, lost, len(idx)]
            if want_row:
                j = len(idx) // 2  # _preview_frame's: the decoding pass kept that frame
                size = work_size(cam.size, info.work_scale)  # prepare's mask as the decoding pass computed it
                t, full = (previews or {}).get((s.key, cam.name), (-1, None))
                if t != idx[j]:  # not kept (an older preparation's report made again): decode it
                    full = read_frames_at(cam.video, idx[j:j + 1] + cam.start, size=size)[0]
                bg = manifest.background(cam.background_id)
                unmodelled = read_png(manifest.folder / info.unmodelled)[..., 0] > 0 if info.unmodelled else None
                scale = np.array([full.shape[1] / cam.size[0], full.shape[0] / cam.size[1]] * 2, np.float32)
                rows.append(dict(title=f"{s.key}\n{cam.name} t={idx[j]}", frame=full, box=s.boxes[idx[j], c] * scale,
                                 background=bg, unmodelled=unmodelled,
                                 pred=foreground_masks(full, shrink(bg, size), info.threshold),
                                 truth=truth[j] if has_truth else None, op_alpha=alpha[j].numpy(),
                                 op_truth=gt[j].numpy() if has_truth else None))
    per_subject = {k: dict(iou=round(v[0] / max(v[1], 1), 4), body_lost=round(v[3] / max(v[2], 1), 4), views=int(v[4]))
                   for k, v in acc.items()}
    return per_subject, rows


def _truth_paths(manifest: Manifest, s: PreparedSequence) -> dict[str, Path]:
    """Ground-truth masks of a prepared sequence (the synthetic layout keeps them in masks/<camera>.npz)."""
    folder = Path(manifest.dataset_root) / s.subject / s.name / "masks"
    return {c.name: folder / f"{c.name}.npz" for c in s.cameras if (folder / f"{c.name}.npz").is_file()}


def _cut_backgrounds(manifest: Manifest, cam: PreparedCamera, rects, size: int, n: int):
    import torch

    from .crops import cut
    bg = torch.from_numpy(np.array(manifest.background(cam.background_id)))[None]
    return cut(bg, rects, size, index=torch.zeros(n, dtype=torch.int64))


def _write_report(manifest: Manifest, out: Path, tiles: TileSpec | None, tile_dir: Path | None, mask: MaskSettings,
                  crop_size: int, log: Log, previews: dict | None = None) -> dict:
    """report.json (what prepare measured) and masks_preview.png."""
    from .tiles import TileStore
    store = TileStore(tile_dir) if tiles else None
    log("measuring the op's mask at the training settings")
    op_mask, rows = _op_mask(manifest, store, mask, crop_size, manifest.options.get("quality_frames", 8) or 8,
                             previews)
    _write_preview(out / PREVIEW_NAME, rows, mask)
    backgrounds = {k: dict(work_scale=b.work_scale, threshold=b.threshold, suspect=b.suspect,
                           unmodelled_share=b.unmodelled_share, unmodelled=b.unmodelled, borrowed_from=b.borrowed_from)
                   for k, b in manifest.backgrounds.items()}
    backgrounds["what"] = ("per background: the factor its frames were shrunk by; unmodelled: the pixels no sample "
                           "showed without the person (PNG map beside the background; filled from the background "
                           "around them), and their share of the frame; suspect: x0 y0 x1 y1 of a probable ghost or "
                           "of the unmodelled pixels")
    report = dict(quality=manifest.quality, op_mask=op_mask, backgrounds=backgrounds,
                  op_mask_settings=dict(asdict(mask), crop_size=crop_size, views="tiles" if tiles else "frames",
                                        what="IoU of the op's alpha >= 0.5 vs the ground-truth mask seen at crop "
                                             "resolution; body_lost = share of the true body's pixel weight the op "
                                             "blends away (1 - alpha)"),
                  tiles=(store.stats | {"format": store.spec.format, "size": store.spec.size}) if store else None,
                  stats=manifest.stats, notes=manifest.notes)
    tmp = out / (REPORT_NAME + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str) + "\n")
    os.replace(tmp, out / REPORT_NAME)
    if op_mask:
        worst = max(op_mask.items(), key=lambda kv: kv[1]["body_lost"])
        log(f"op mask: mean IoU {np.mean([v['iou'] for v in op_mask.values()]):.3f}, most body lost "
            f"{worst[1]['body_lost']:.1%} ({worst[0]})")
    return report


def _write_preview(path: Path, rows: list[dict], mask: MaskSettings | None) -> Path | None:
    if not rows:
        return None
    plt = pyplot()
    with_truth = any(row["truth"] is not None for row in rows)
    cols = ["frame (crop box)", "background (red: unmodelled)", "prepare's mask", "ground truth", "op input (crop)",
            "op alpha", "truth at crop"]
    if not with_truth:
        cols = [c for c in cols if "truth" not in c]
    h, w = rows[0]["frame"].shape[:2]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.4 * len(cols), 2.4 * len(rows) * h / w + 0.5),
                             squeeze=False)
    for r, row in enumerate(rows):
        iou = ""
        if row["truth"] is not None:
            a, b = mask_iou(row["pred"], row["truth"])
            iou = f"\nprepare IoU {a / max(b, 1):.2f}"
        oa, ot = row["op_alpha"] >= 0.5, row["op_truth"]
        if ot is not None:
            iou += f"\nop IoU {(oa & ot).sum() / max((oa | ot).sum(), 1):.2f}"
        crop = _crop_preview(row["frame"], row["box"], row["op_alpha"])
        background = row["background"]
        if row.get("unmodelled") is not None:
            background = background.copy()
            background[row["unmodelled"]] = (0.5 * background[row["unmodelled"]] + [127, 0, 0]).astype(np.uint8)
        images = [row["frame"], background, row["pred"], row["truth"], crop, row["op_alpha"], ot]
        if not with_truth:
            images = [images[k] for k in (0, 1, 2, 4, 5)]
        for c, im in enumerate(images):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if im is None:
                ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
            else:
                step = max(1, im.shape[0] // PREVIEW_ROWS)  # drawn from every step-th pixel: a 1080p frame
                extent = (-0.5, im.shape[1] - 0.5, im.shape[0] - 0.5, -0.5)  # costs seconds at full size
                ax.imshow(im[::step, ::step], cmap="gray" if im.ndim == 2 else None, interpolation="nearest", vmin=0,
                          vmax=1 if im.ndim == 2 else None, extent=extent)
            if r == 0:
                ax.set_title(cols[c], fontsize=8)
        x0, y0, x1, y1 = row["box"]
        axes[r, 0].add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="yellow", lw=1))
        axes[r, 0].set_ylabel(row["title"] + iou, fontsize=7)
    if mask is not None:
        fig.suptitle(f"op at training settings: {mask.mode}, threshold x{mask.threshold_scale:g}, shadow test "
                     f"{'on' if mask.shadow_chroma > 0 else 'off'}, clean-up {'on' if mask.clean else 'off'}",
                     fontsize=9)
    return save_figure(fig, path)


def _crop_preview(frame: np.ndarray, box, alpha: np.ndarray) -> np.ndarray:
    """The crop as the network sees it (grey where the op removed the background), for the preview."""
    import torch

    from .crops import cut
    S = alpha.shape[0]
    boxes = torch.from_numpy(np.asarray(box, np.float32))[None]
    crop = cut(torch.from_numpy(frame)[None], boxes, S).numpy()[0].astype(np.float32)
    return (alpha[..., None] * crop + (1 - alpha[..., None]) * 115).astype(np.uint8)


# ---------------------------------------------------------------- the summary


def _bytes(n: float) -> str:
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
        ("frames", f"{st['frames']} instants, {st['view_frames']} camera frames"
                   + (f"; the pass over every frame at {st['decoded_camera_frames_per_s']:.0f} camera-frames/s "
                      f"({st.get('workers', 1)} processes)" if "decoded_camera_frames_per_s" in st else "")
                   + (f"; whole build {st['camera_frames_per_s']:.0f} camera-frames/s" if "camera_frames_per_s" in st
                      else "")),
        ("static", f"{st['static_frames']} of {st['frames']} instants ({report.static_share:.1%}) have no significant "
                   f"movement (mask change < {m.options.get('fg_motion_threshold')}) and are skipped by the sampler"),
        ("boxes from", ", ".join(f"{k}: {v} sequences" for k, v in st["box_sources"].items())),
        ("backgrounds", f"{st['backgrounds']} (one per subject and camera, from the images); "
                        f"{st.get('borrowed_backgrounds', 0)} filled in where the person never left a spot from "
                        f"other subjects on the same rig; {st['suspect_backgrounds']} may show a person who hardly "
                        "moves"
                        + ("; unmodelled (no sample shows the scene without the person): " + ", ".join(
                            f"{b.id} {b.unmodelled_share:.1%}" for b in m.backgrounds.values() if b.unmodelled)
                           if any(b.unmodelled for b in m.backgrounds.values()) else "")),
    ]
    q = m.quality
    if q.get("iou") is not None:
        per_cam = ", ".join(f"{k} {v:.3f}" for k, v in q["iou_per_camera"].items())
        rows.append(("mask IoU", f"{q['iou']:.3f} (per-pixel rule {q['iou_raw']:.3f}) over {q['frames']} frames; "
                                 f"per camera: {per_cam}"))
    else:
        rows.append(("mask IoU", "not measurable (no ground-truth masks)"))
    op = report.report.get("op_mask") or {}
    if op:
        settings = report.report["op_mask_settings"]
        rows.append(("op mask", f"what the network sees ({settings['mode']}, crop {settings['crop_size']}, from "
                                f"{settings['views']}): " + ", ".join(
                                    f"{k} IoU {v['iou']:.3f} lost {v['body_lost']:.1%}" for k, v in op.items())))
    labels = q.get("labels") or {}
    if "boxes" in labels:
        b = labels["boxes"]
        rows.append(("boxes vs labels", f"mean IoU {b['mean_iou']:.3f}, {b['share_iou_over_half']:.1%} of "
                                        f"{b['views']} views above 0.5 (measured only: labels are not used)"))
    if "static" in labels:
        sa = labels["static"]
        rows.append(("static vs labels", f"{sa['agree']:.1%} of {sa['frames']} instants agree (images: "
                                         f"{sa['static_from_images']}, labels: {sa['static_from_labels']}, both: "
                                         f"{sa['both']})"))
    tiles = report.report.get("tiles")
    if tiles:
        rows.append(("tiles", f"{report.tiles}: {tiles.get('note', '')} ({report.tiles_note}); "
                              f"cut at {tiles.get('camera_frames_per_s', 0):.0f} camera-frames/s"))
    if st.get("transcode", "none") != "none":
        before, after = st["bytes_before"], st["bytes_after"]
        rows.append(("transcode", f"{st['transcode']}: {_bytes(before)} -> {_bytes(after)} "
                                  f"(x{after / max(before, 1):.2f})"))
    rows.append(("preview", str(Path(report.path).parent / "masks_preview.png")))
    rows.append(("report", str(Path(report.path).parent / REPORT_NAME)))
    rows.append(("time", f"{report.seconds:.1f} s" + (f" (build took {st['seconds']:.1f} s)"
                                                       if report.up_to_date and "seconds" in st else
                                                       f" ({st['view_frames'] / max(report.seconds, 1e-9):.0f} "
                                                       "camera-frames/s with the report and preview)")))
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
