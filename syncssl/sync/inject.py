"""Shifted copies of a dataset with known camera offsets (the tests and ``syncssl-bench sync``).

A copy of a sequence folder in which camera c's video starts at original frame ``first - offset[c]``: its frame
t + offset[c] then shows the instant of the reference's frame t (the reference has offset 0 and starts at
``first``). Every video is re-encoded (the reference too, so that all cameras lose the same generation), ground-
truth masks and person boxes are cut like their camera's video, 3D poses like the reference's.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data.decode.video import CODECS, iter_frames, probe, read_frames, write_video
from ..data.sources.calibration import match_cameras, read_calibration, write_calibration
from ..data.sources.dataset import load_masks, read_dataset_json, save_masks
from ..data.sources.layout import find_videos
from ..errors import DataError


def random_offsets(cameras: list[str], reference: str, max_frames: int, rng: np.random.Generator) -> dict[str, int]:
    """A uniform integer offset in [-max_frames, max_frames] per camera; the reference's is 0."""
    return {c: 0 if c == reference else int(rng.integers(-max_frames, max_frames + 1)) for c in cameras}


def shift_sequence(src: Path, dst: Path, offsets: dict[str, int], *, first: int | None = None,
                   length: int | None = None, trim_end: dict[str, int] | None = None, codec: str | None = None,
                   labels: bool = True) -> dict:
    """Copy the sequence folder ``src`` to ``dst`` with camera c's frames starting at original frame
    ``first - offsets[c]`` (default ``first``: the largest offset, the least that fits), ``length`` frames each
    (default: as many as every camera has), minus ``trim_end[c]`` more at its end (cameras of different lengths).
    ``labels=False`` leaves poses, boxes and masks out (a bare session). Returns what was written."""
    src, dst = Path(src), Path(dst)
    cams = [c.name for c in read_calibration(src / "calibration.toml")]
    unknown = sorted(set(offsets) - set(cams))
    if unknown:
        raise DataError(src, f"offsets for unknown cameras {unknown}; cameras are {', '.join(cams)}")
    offsets = {c: int(offsets.get(c, 0)) for c in cams}
    videos, _ = match_cameras(cams, find_videos(src))
    total = min(probe(videos[c], verify="none").num_frames for c in cams)
    first = max(max(offsets.values()), 0) if first is None else int(first)
    starts = {c: first - d for c, d in offsets.items()}
    if min(starts.values()) < 0:
        raise DataError(src, f"first={first} is smaller than the largest offset {max(offsets.values())}")
    room = total - max(starts.values())
    length = room if length is None else int(length)
    if not 0 < length <= room:
        raise DataError(src, f"{length} frames do not fit: the videos hold {total}, the latest camera starts at "
                             f"{max(starts.values())}")
    trim_end = trim_end or {}
    (dst / "videos").mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "calibration.toml", dst / "calibration.toml")
    if (src / "backgrounds").is_dir():
        shutil.copytree(src / "backgrounds", dst / "backgrounds", dirs_exist_ok=True)
    for c in cams:
        n = length - int(trim_end.get(c, 0))
        frames = read_frames(videos[c], np.arange(starts[c], starts[c] + n))
        info = probe(videos[c], verify="none")
        out_codec = codec or info.codec
        write_video(dst / "videos" / f"{c}{CODECS[out_codec][0]}", frames, info.fps or 25.0, out_codec)
    if labels:
        if (src / "poses3d.npy").is_file():
            np.save(dst / "poses3d.npy", np.load(src / "poses3d.npy")[first:first + length])  # the reference's
        if (src / "boxes.npy").is_file():
            boxes = np.load(src / "boxes.npy")
            kept = [boxes[starts[c]:starts[c] + length, i] for i, c in enumerate(cams)]
            np.save(dst / "boxes.npy", np.stack(kept, 1))
        for c in cams:
            mask = src / "masks" / f"{c}.npz"
            if mask.is_file():
                (dst / "masks").mkdir(exist_ok=True)
                n = length - int(trim_end.get(c, 0))
                save_masks(dst / "masks" / f"{c}.npz", load_masks(mask, slice(starts[c], starts[c] + n)))
    return dict(offsets=offsets, first=first, length=length, starts=starts)


def cut_session(src: Path, dst: Path, cuts: dict[str, int], *, scale: int = 1, codec: str = "mjpeg",
                frames: int | None = None) -> dict[str, int]:
    """A bare session (calibration + videos) in which camera c lost its first ``cuts[c]`` frames, as a camera that
    started recording late looks; every frame shrunk ``scale`` times (block means; the calibration with it), at
    most ``frames`` frames per camera kept. Returns the true offsets against the first camera (its frame t + d
    shows the first camera's frame t): ``cuts[first] - cuts[c]``."""
    from ..data.preparation.prepare import downsample
    src, dst = Path(src), Path(dst)
    cams = read_calibration(src / "calibration.toml")
    names = [c.name for c in cams]
    unknown = sorted(set(cuts) - set(names))
    if unknown:
        raise DataError(src, f"cuts for unknown cameras {unknown}; cameras are {', '.join(names)}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    videos, _ = match_cameras(names, find_videos(src))
    (dst / "videos").mkdir(parents=True, exist_ok=True)
    scaled = []
    for cam in cams:
        K = cam.K.copy()
        K[:2] /= scale
        K[:2, 2] = (cam.K[:2, 2] + 0.5) / scale - 0.5  # a block's mean sits at its centre (pixel centres are integers)
        scaled.append(replace(cam, K=K, size=(cam.size[0] // scale, cam.size[1] // scale)))
        info = probe(videos[cam.name], verify="none")
        cut = int(cuts.get(cam.name, 0))
        n = info.num_frames - cut if frames is None else min(frames, info.num_frames - cut)
        if n <= 0:
            raise DataError(videos[cam.name], f"cutting {cut} frames leaves nothing of its {info.num_frames}")
        shrunk = (downsample(f, scale) for f in iter_frames(videos[cam.name], n, cut))
        write_video(dst / "videos" / f"{cam.name}{CODECS[codec][0]}", shrunk, info.fps or 25.0, codec)
    write_calibration(dst / "calibration.toml", scaled)
    return {c: int(cuts.get(names[0], 0)) - int(cuts.get(c, 0)) for c in names}


def shift_dataset(src: Path, dst: Path, offsets: dict[str, dict[str, int]], *, first: int | None = None,
                  length: int | None = None, splits: dict[str, list[str]] | None = None) -> dict:
    """A dataset root holding the sequences named in ``offsets`` ("subject/name" -> camera -> offset), each
    shifted by :func:`shift_sequence`; ``dataset.json`` copied, with its subjects reduced to those present and
    ``splits`` if given. Returns {"sequences": {key: what shift_sequence wrote}}."""
    src, dst = Path(src), Path(dst)
    meta = read_dataset_json(src / "dataset.json")
    done = {}
    for key, offs in offsets.items():
        subject, name = key.split("/", 1)
        done[key] = shift_sequence(src / subject / name, dst / subject / name, offs, first=first, length=length)
    subjects = [s for s in meta["subjects"] if any(k.split("/", 1)[0] == s for k in offsets)]
    meta = dict(meta, subjects=subjects,
                splits=splits or {k: [s for s in v if s in subjects] for k, v in meta["splits"].items()},
                frames_per_sequence=min(d["length"] for d in done.values()),
                shifted_from=str(src), injected_offsets={k: d["offsets"] for k, d in done.items()})
    meta.pop("generator", None)  # a shifted copy is not the generator's output: never mistaken for it (or replaced)
    (dst / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return {"sequences": done}
