"""The prepared dataset: what ``syncssl-data prepare`` writes and the training loader reads.

On disk, under one folder (default ``<dataset>/prepared``)::

    manifest.json                 everything small: sequences, cameras (calibration numbers), backgrounds,
                                  splits, quality, the sources' fingerprint and the options used
    arrays/<subject>__<seq>.npz   per sequence: boxes (T, C, 4) crop boxes, tight (T, C, 4) person boxes found in
                                  the images, silhouettes (T, C, 32) bit-packed 16x16 masks in the crop box,
                                  motion (T,), static (T,), poses3d (T, 17, 3) (labels, for fine-tuning only)
    backgrounds/<id>.png          one background per (subject, camera) group, lossless RGB
    videos/<subject>/<seq>/...    transcoded copies (only with --transcode)
    tiles/<spec>/                 person tiles (see syncssl.data.preparation.tiles)
    report.json                   what prepare measured: mask IoU, the op's mask per subject, agreement with labels
    masks_preview.png             frame | background | prepare's mask | truth | the op's crop, alpha and truth

Boxes are in pixel edges (syncssl.data.preparation.boxes): the whole W x H frame is (0, 0, W, H).

Paths inside manifest.json are relative to its folder, so the dataset and its prepared folder can move
together.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...geometry import Camera
from ..sources.dataset import Dataset

FORMAT = "syncssl-manifest"
VERSION = 2  # 2: boxes in pixel edges, label-free boxes and motion, silhouettes
MANIFEST_NAME = "manifest.json"


@dataclass
class PreparedCamera:
    """One camera of one prepared sequence."""

    name: str
    video: Path  # the file to decode: the transcoded copy if there is one, else the source video
    codec: str  # codec of ``video`` as FFmpeg names it
    size: tuple[int, int]  # (width, height) of ``video``'s frames
    camera: Camera  # calibration
    background_id: str  # key into Manifest.backgrounds / Manifest.background()
    source_video: Path  # the original video (== video without transcode)
    num_frames: int  # frames in ``video`` (>= start + the sequence's num_frames)
    start: int = 0  # sequence frame t is frame t + start of ``video`` (sync.toml; 0 for a transcoded copy)
    source_start: int = 0  # ... and frame t + source_start of ``source_video`` (and of its ground-truth masks)


@dataclass
class PreparedSequence:
    """One synchronized multi-camera sequence, ready for sampling."""

    key: str  # "<subject>/<name>", unique
    subject: str
    name: str
    action: str  # for per-action metrics
    fps: float
    num_frames: int  # usable frames: every camera has at least this many
    cameras: list[PreparedCamera]  # this sequence's cameras (a sequence may have fewer than others)
    boxes: np.ndarray  # (T, C, 4) float32 square crop boxes x0 y0 x1 y1 (pixel edges), C = len(cameras);
    #                    may leave the frame
    motion: np.ndarray  # (T,) float32: changed share of the person's mask over ~40 ms, smoothed
    static: np.ndarray  # (T,) bool: too little motion to tell synchronized from unsynchronized pairs
    poses3d: np.ndarray | None  # (T, 17, 3) float32 world mm, None without labels (fine-tuning and evaluation only)
    box_source: str = "foreground"  # "foreground" | "labels" or "boxes" (the label_boxes opt-in)
    motion_source: str = "foreground"  # always the images
    notes: list[str] = field(default_factory=list)
    tight: np.ndarray | None = None  # (T, C, 4) float32 person boxes found in the images, NaN where none
    silhouettes: np.ndarray | None = None  # (T, C, 32) uint8: 16 x 16 person mask in the crop box, bit-packed

    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras]


@dataclass
class BackgroundInfo:
    """One background model, shared by the cameras of a (subject, camera) group with identical calibration."""

    id: str
    path: Path  # lossless PNG
    size: tuple[int, int]  # (width, height)
    subject: str
    camera: str
    sequences: list[str]  # keys of the sequences it was pooled over
    samples: int  # frames sampled
    threshold: float  # Euclidean RGB distance (0..255) above which a pixel is foreground
    noise: float  # robust sigma of background pixels' distance to the model
    suspect: list[int] | None = None  # x0 y0 x1 y1 of where the model probably shows a person who hardly moved
    suspect_share: float = 0.0  # share of the frame's pixels in that region
    borrowed_from: list[str] = field(default_factory=list)  # backgrounds (other subjects, same rig) that filled
    borrowed_share: float = 0.0  # ... this share of the frame, where the person never left a spot
    empty_scene: str | None = None  # the rig's recording of the empty scene used instead of the median
    work_scale: int = 1  # the model was made from frames shrunk by this factor (then enlarged to the video's size)
    unmodelled: str | None = None  # PNG map of the pixels no sample showed without the person (filled from around)
    unmodelled_share: float = 0.0  # ... their share of the frame


@dataclass
class Manifest:
    """The prepared dataset; see the module docstring for the files."""

    dataset_root: Path
    name: str
    source: str  # "synthetic" | "session" | "h36m"
    fps: float
    skeleton: str  # "h36m17"
    splits: dict[str, list[str]]  # split -> subjects
    sequences: list[PreparedSequence]
    backgrounds: dict[str, BackgroundInfo]
    quality: dict = field(default_factory=dict)  # background-removal IoU vs ground truth, when measurable
    stats: dict = field(default_factory=dict)  # counts, transcode sizes, seconds: what the prepare summary shows
    options: dict = field(default_factory=dict)  # the prepare options used
    fingerprint: dict = field(default_factory=dict)  # of the sources and options; see fingerprint()
    notes: list[str] = field(default_factory=list)
    folder: Path | None = None  # where manifest.json lives (set by save/load)
    _bg_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    # ------------------------------------------------------------ queries

    def resolve_split(self, name: str) -> str:
        """``name``, or for "auto" the pre-training split: "pretrain" when the dataset has one, else "train" (a
        dataset with a single split, such as a bare session's "all": that one)."""
        if name != "auto":
            return name
        if "pretrain" not in self.splits and "train" not in self.splits and len(self.splits) == 1:
            return next(iter(self.splits))  # a bare session: its one split ("all")
        return "pretrain" if "pretrain" in self.splits else "train"

    def resolve_eval_split(self, name: str, train: str) -> tuple[str, bool]:
        """(the split evaluated, whether it is held out: no subject in common with ``train``). A bare session has
        one split and no held-out people: the default "test" then evaluates the training split, on seen people."""
        if name == "test" and name not in self.splits and len(self.splits) == 1:
            name = train
        return name, not set(self.splits.get(name, [])) & set(self.splits.get(train, []))

    def split(self, name: str) -> list[int]:
        """Indices into ``sequences`` of split ``name``'s subjects; an unknown or empty split is a DataError."""
        where = self.folder / MANIFEST_NAME if self.folder else self.dataset_root
        if name not in self.splits:
            raise DataError(where, f"no split {name!r}; splits are {', '.join(self.splits) or 'none'}")
        idx = [i for i, s in enumerate(self.sequences) if s.subject in self.splits[name]]
        if not idx:
            raise DataError(where, f"split {name!r} (subjects {', '.join(self.splits[name]) or 'none'}) "
                                   "has no prepared sequences")
        return idx

    def sequence(self, key: str) -> PreparedSequence:
        for s in self.sequences:
            if s.key == key:
                return s
        raise KeyError(f"no sequence {key!r}")

    def background(self, background_id: str) -> np.ndarray:
        """The background image (H, W, 3) uint8, loaded once and cached."""
        if background_id not in self._bg_cache:
            info = self.backgrounds.get(background_id)
            if info is None:
                raise KeyError(f"no background {background_id!r}")
            image = read_png(info.path)
            if (image.shape[1], image.shape[0]) != tuple(info.size):
                raise DataError(info.path, f"background is {image.shape[1]}x{image.shape[0]} but its cameras' "
                                           f"videos are {info.size[0]}x{info.size[1]}; run prepare again")
            self._bg_cache[background_id] = image
        return self._bg_cache[background_id]

    @property
    def num_frames(self) -> int:
        return sum(s.num_frames for s in self.sequences)

    def check_videos(self, verify: str = "ends") -> None:
        """Re-probe every video; missing, unreadable, of another size or shorter than its sequence: DataError."""
        from ..decode.video import probe
        for s in self.sequences:
            for c in s.cameras:
                info = probe(c.video, verify=verify)
                if info.size != tuple(c.size):
                    raise DataError(c.video, f"frames are {info.width}x{info.height} but the manifest says "
                                             f"{c.size[0]}x{c.size[1]}; run prepare again")
                if info.num_frames < s.num_frames + c.start:
                    raise DataError(c.video, f"holds {info.num_frames} frames but sequence {s.key} needs "
                                             f"{s.num_frames + c.start}; the file changed since prepare: run it again")

    def problems(self) -> list[str]:
        """What is missing or inconsistent among the prepared files (cheap: no decoding)."""
        out = []
        for info in self.backgrounds.values():
            if not info.path.is_file():
                out.append(f"background {info.path.name} is missing")
                continue
            size = png_size(info.path)
            if size != tuple(info.size):
                out.append(f"background {info.path.name} is {size[0]}x{size[1]}, its cameras' videos are "
                           f"{info.size[0]}x{info.size[1]}")
        for s in self.sequences:
            for c in s.cameras:
                if not c.video.is_file():
                    out.append(f"video {c.video} is missing")
                if c.background_id not in self.backgrounds:
                    out.append(f"{s.key} {c.name}: unknown background {c.background_id!r}")
                elif tuple(self.backgrounds[c.background_id].size) != tuple(c.size):
                    out.append(f"{s.key} {c.name}: background {c.background_id} does not match the video size")
        return out

    # ------------------------------------------------------------ files

    def save(self, path: Path) -> Path:
        """Write manifest.json (``path`` is the file or its folder) and the per-sequence arrays beside it."""
        path = Path(path)
        folder = path.parent if path.suffix == ".json" else path
        path = folder / MANIFEST_NAME if path.suffix != ".json" else path
        (folder / "arrays").mkdir(parents=True, exist_ok=True)
        rel = lambda p: _relative(p, folder)  # noqa: E731
        seqs = []
        for s in self.sequences:
            arrays = arrays_file(folder, s.subject, s.name)
            _check_arrays(s, arrays)
            extra = {k: getattr(s, k) for k in ("poses3d", "tight", "silhouettes") if getattr(s, k) is not None}
            np.savez(arrays, boxes=np.asarray(s.boxes, np.float32), motion=np.asarray(s.motion, np.float32),
                     static=np.asarray(s.static, bool), **extra)
            seqs.append(dict(
                key=s.key, subject=s.subject, name=s.name, action=s.action, fps=s.fps, num_frames=s.num_frames,
                arrays=rel(arrays), box_source=s.box_source, motion_source=s.motion_source, notes=s.notes,
                cameras=[dict(name=c.name, video=rel(c.video), source_video=rel(c.source_video), codec=c.codec,
                              size=list(c.size), num_frames=c.num_frames, background_id=c.background_id,
                              camera=camera_to_json(c.camera),
                              **{k: getattr(c, k) for k in ("start", "source_start") if getattr(c, k)})
                         for c in s.cameras]))
        doc = dict(
            format=FORMAT, version=VERSION, dataset_root=rel(self.dataset_root), name=self.name, source=self.source,
            fps=self.fps, skeleton=self.skeleton, splits=self.splits,
            backgrounds={k: dict(asdict(b), path=rel(b.path), size=list(b.size)) for k, b in self.backgrounds.items()},
            quality=self.quality, stats=self.stats, options=self.options, fingerprint=self.fingerprint,
            notes=self.notes, sequences=seqs)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.replace(tmp, path)  # a half-written manifest never looks valid
        self.folder = folder
        return path

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read manifest.json (``path`` is the file or its folder) and its arrays."""
        path = Path(path)
        if path.suffix != ".json":
            path = path / MANIFEST_NAME
        folder = path.parent
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(path, "no prepared manifest here; run `syncssl-data prepare DATASET` first") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(path, f"not a valid manifest ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise DataError(path, "not a syncssl manifest")
        if doc.get("version") != VERSION:
            raise DataError(path, f"manifest version {doc.get('version')} (this syncssl reads {VERSION}); "
                                  "run prepare again")
        at = lambda p: _absolute(p, folder)  # noqa: E731
        try:
            backgrounds = {k: BackgroundInfo(**dict(b, path=at(b["path"]), size=tuple(b["size"])))
                           for k, b in doc["backgrounds"].items()}
            seqs = []
            for s in doc["sequences"]:
                arrays_path = at(s["arrays"])
                try:
                    with np.load(arrays_path) as z:
                        arrays = {k: z[k] for k in z.files}
                except (FileNotFoundError, OSError, ValueError) as e:
                    raise DataError(arrays_path, f"cannot read the prepared arrays of {s['key']} ({e}); "
                                                 "run prepare again") from None
                cams = [PreparedCamera(name=c["name"], video=at(c["video"]), codec=c["codec"], size=tuple(c["size"]),
                                       camera=camera_from_json(c["camera"]), background_id=c["background_id"],
                                       source_video=at(c["source_video"]), num_frames=c["num_frames"],
                                       start=int(c.get("start", 0)), source_start=int(c.get("source_start", 0)))
                        for c in s["cameras"]]
                seq = PreparedSequence(
                    key=s["key"], subject=s["subject"], name=s["name"], action=s["action"], fps=s["fps"],
                    num_frames=s["num_frames"], cameras=cams, boxes=arrays["boxes"], motion=arrays["motion"],
                    static=arrays["static"], poses3d=arrays.get("poses3d"), box_source=s["box_source"],
                    motion_source=s["motion_source"], notes=s.get("notes", []), tight=arrays.get("tight"),
                    silhouettes=arrays.get("silhouettes"))
                _check_arrays(seq, arrays_path)
                seqs.append(seq)
            return cls(dataset_root=at(doc["dataset_root"]), name=doc["name"], source=doc["source"], fps=doc["fps"],
                       skeleton=doc["skeleton"], splits=doc["splits"], sequences=seqs, backgrounds=backgrounds,
                       quality=doc.get("quality", {}), stats=doc.get("stats", {}), options=doc.get("options", {}),
                       fingerprint=doc.get("fingerprint", {}), notes=doc.get("notes", []), folder=folder)
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, DataError):
                raise
            raise DataError(path, f"malformed manifest ({type(e).__name__}: {e}); run prepare again") from None


def _check_arrays(s: PreparedSequence, where: Path):
    T, C = s.num_frames, len(s.cameras)
    shapes = {"boxes": (T, C, 4), "motion": (T,), "static": (T,)}
    if s.poses3d is not None:
        shapes["poses3d"] = (T, 17, 3)
    if s.tight is not None:
        shapes["tight"] = (T, C, 4)
    if s.silhouettes is not None:
        shapes["silhouettes"] = (T, C, 32)
    for k, shape in shapes.items():
        got = np.shape(getattr(s, k))
        if got != shape:
            raise DataError(where, f"{s.key}: {k} has shape {got}, expected {shape}")


def _relative(p: Path, folder: Path) -> str:
    try:
        return os.path.relpath(Path(p).absolute(), folder.absolute())
    except ValueError:  # another drive
        return str(Path(p).absolute())


def _absolute(p: str, folder: Path) -> Path:
    return Path(os.path.normpath(folder.absolute() / p))


def safe_name(s: str) -> str:
    """A file-name-safe form of a subject, sequence or camera name; names that had to change get a short
    hash of the original, so that "Walking 1" and "Walking-1" stay apart."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-.") or "_"
    return safe if safe == s else f"{safe}-{hashlib.sha1(s.encode()).hexdigest()[:6]}"


def arrays_file(folder: Path, subject: str, name: str) -> Path:
    """Where a sequence's arrays live under a manifest's folder."""
    return Path(folder) / "arrays" / f"{safe_name(subject)}__{safe_name(name)}.npz"


# ---------------------------------------------------------------- cameras in JSON


def camera_to_json(c: Camera) -> dict:
    return dict(name=c.name, size=list(c.size), K=c.K.tolist(), dist=c.dist.tolist(), R=c.R.tolist(),
                t=c.t.tolist(), model=c.model)


def camera_from_json(d: dict) -> Camera:
    return Camera(name=d["name"], size=tuple(d["size"]), K=np.array(d["K"]), dist=np.array(d["dist"]),
                  R=np.array(d["R"]), t=np.array(d["t"]), model=d["model"])


def same_calibration(a: Camera, b: Camera) -> bool:
    """Same camera, same place: a static rig shares one background across sequences."""
    return (tuple(a.size) == tuple(b.size) and a.model == b.model and np.allclose(a.K, b.K, atol=1e-6)
            and np.allclose(a.dist, b.dist, atol=1e-9) and np.allclose(a.R, b.R, atol=1e-9)
            and np.allclose(a.t, b.t, atol=1e-3))


# ---------------------------------------------------------------- PNG


def write_png(path: Path, image: np.ndarray) -> Path:
    from PIL import Image  # Pillow comes with matplotlib
    Image.fromarray(np.ascontiguousarray(image, np.uint8)).save(path, optimize=False, compress_level=3)
    return Path(path)


def read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(path, "background image is missing; run prepare again") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(path, f"background image is unreadable ({e}); run prepare again") from None


def png_size(path: Path) -> tuple[int, int]:
    from PIL import Image
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
        raise DataError(path, f"background image is unreadable ({e})") from None


# ---------------------------------------------------------------- fingerprint of the sources


def file_digest(path: Path, chunk: int = 1 << 20) -> dict:
    """Size in bytes and a SHA-1 of the whole file: damage anywhere in it makes the prepared data stale.

    Every byte is hashed, not a sample: a sample misses a damaged block, and bit rot keeps size and mtime.
    Probing has just demuxed the whole file, so it is usually in the page cache; SHA-1 (SHA-NI) reads it at
    ~1.4 GB/s on one core, about as fast as that demuxing pass (measured: 1.0-1.2 GB/s), so checking the
    sources costs about twice what probing alone did. ``chunk`` is the read size.
    """
    path = Path(path)
    h = hashlib.sha1()
    buf = bytearray(chunk)
    view = memoryview(buf)
    try:
        size = path.stat().st_size
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                h.update(view[:n])
    except OSError as e:
        raise DataError(path, f"cannot read it ({e.strerror})") from None
    return {"bytes": size, "sha1": h.hexdigest()}


def _array_digest(a) -> str | None:
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    return hashlib.sha1(str((a.dtype.str, a.shape)).encode() + a.tobytes()).hexdigest()


def _camera_digest(c: Camera) -> str:
    h = hashlib.sha1(f"{c.name}|{tuple(c.size)}|{c.model}".encode())
    for a in (c.K, c.dist, c.R, c.t):
        h.update(np.ascontiguousarray(a, np.float64).tobytes())
    return h.hexdigest()


def fingerprint(dataset: Dataset, options: dict) -> dict:
    """What the prepared files depend on: per video its size, hash, frame count and sync offset; calibration,
    labels, boxes and ground-truth masks by content; the dataset's splits and the prepare options."""
    seqs = {}
    for s in dataset.sequences:
        seqs[s.key] = dict(
            num_frames=s.num_frames, fps=s.fps, action=s.action,
            # a sync offset only when there is one, so that manifests made before offsets existed stay valid
            videos={v.name: dict(file_digest(v.video), frames=v.num_frames, codec=v.codec,
                                 **({"start": v.start} if v.start else {})) for v in s.views},
            calibration={v.name: _camera_digest(v.camera) for v in s.views},
            labels=_array_digest(s.poses3d), boxes=_array_digest(s.boxes),
            masks={k: file_digest(p)["sha1"] for k, p in sorted(s.masks.items()) if Path(p).is_file()},
            backgrounds={k: file_digest(p)["sha1"] for k, p in sorted(s.backgrounds.items())})
    return dict(version=VERSION, dataset=dict(name=dataset.name, fps=dataset.fps, skeleton=dataset.skeleton,
                                              splits=dataset.splits, source=dataset.source),
                options=options, sequences=seqs)


def fingerprint_changes(old: dict, new: dict) -> list[str]:
    """Human-readable differences between two fingerprints (empty: up to date)."""
    if old.get("version") != new.get("version"):
        return [f"manifest version {old.get('version')} -> {new.get('version')}"]
    out = []
    for k in sorted(set(old.get("options", {})) | set(new.get("options", {}))):
        a, b = old.get("options", {}).get(k), new.get("options", {}).get(k)
        if a != b:
            out.append(f"option {k}: {a} -> {b}")
    if old.get("dataset") != new.get("dataset"):
        diff = [k for k in new.get("dataset", {}) if old.get("dataset", {}).get(k) != new["dataset"][k]]
        out.append(f"dataset {', '.join(diff) or 'description'} changed")
    olds, news = old.get("sequences", {}), new.get("sequences", {})
    for key in sorted(set(olds) - set(news)):
        out.append(f"sequence {key} removed")
    for key in sorted(set(news) - set(olds)):
        out.append(f"sequence {key} added")
    for key in sorted(set(olds) & set(news)):
        a, b = olds[key], news[key]
        for cam in sorted(set(a["videos"]) | set(b["videos"])):
            va, vb = a["videos"].get(cam), b["videos"].get(cam)
            if va is None or vb is None:
                out.append(f"{key}: camera {cam} {'added' if va is None else 'removed'}")
            elif va != vb:
                what = [k for k in ("bytes", "sha1", "frames", "codec", "start") if va.get(k) != vb.get(k)]
                out.append(f"{key}: video of {cam} changed ({', '.join(what)})")
        if a["calibration"] != b["calibration"]:
            out.append(f"{key}: calibration changed")
        for k in ("labels", "boxes", "masks", "backgrounds", "num_frames", "fps", "action"):
            if a.get(k) != b.get(k):
                out.append(f"{key}: {k} changed")
    return out
