"""Reliability of the data commands, table-driven: every bad input gets one clear line naming the file and what is
wrong (or is handled correctly), and no command changes a file outside its own output.

Each case copies a tiny dataset (64x48 videos, 20 frames), breaks one thing, runs one command in-process
(``syncssl-data inspect``, ``inspect --deep`` or ``prepare``), and checks the class of the answer and the hashes
of every file that is not the command's output.
"""
from __future__ import annotations

import errno
import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_faults import noise, packet_span
from test_sources import SIZE, frames, make_camera, poses, write_sequence

from syncssl import cli
from syncssl.data.decode import damage
from syncssl.data.decode.video import iter_frames, probe, read_frames, write_video
from syncssl.data.sources import open_dataset
from syncssl.data.sources.dataset import write_dataset_json
from syncssl.errors import DataError, DiskError

N = 20  # frames per video
SEQ = ("S1", "walk_00")
REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "real" / "pose2sim_single" / "videos"


# ---------------------------------------------------------------- the datasets every case starts from


def _dataset(root: Path, codec: str, content) -> Path:
    """A dataset root: S1/walk_00 with two cameras, 3D poses and boxes."""
    root.mkdir(parents=True)
    write_dataset_json(root, name="rel", fps=25, subjects=["S1"], splits={"train": ["S1"]})
    cams = [make_camera("cam_01"), make_camera("cam_02", angle=1.3)]
    folder = write_sequence(root / "S1" / "walk_00", cams, {}, poses3d=poses(N),
                            boxes=np.tile(np.array([[[5, 5, 30, 40]]], np.float32), (N, 2, 1)))
    ext = {"mjpeg": ".avi", "h264": ".mp4", "vp9": ".webm"}[codec]
    for i, c in enumerate(cams):
        write_video(folder / "videos" / f"{c.name}{ext}", content(i), 25, codec)
    return root


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    top = tmp_path_factory.mktemp("bases")
    return {
        "flat": _dataset(top / "flat", "mjpeg", lambda i: frames(N, base=40 * i)),
        "mjpeg": _dataset(top / "mjpeg", "mjpeg", lambda i: noise(N, seed=i)),
        "h264": _dataset(top / "h264", "h264", lambda i: noise(N, seed=i)),
        "vp9": _dataset(top / "vp9", "vp9", lambda i: noise(N, seed=i)),
    }


def seq(root: Path) -> Path:
    return root.joinpath(*SEQ)


def video(root: Path, cam: str = "cam_02") -> Path:
    return next(seq(root).joinpath("videos").glob(f"{cam}.*"))


def snapshot(root: Path, skip: Path | None = None) -> dict[str, str]:
    """sha1 of every file under ``root`` except under ``skip`` (the command's own output)."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and (skip is None or not p.is_relative_to(skip))}


# ---------------------------------------------------------------- damage


def _overwrite(path: Path, at: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[at:at + len(data)] = data
    path.write_bytes(bytes(raw))


def random_bytes(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, np.uint8).tobytes()


def mid_file(n: int, seed: int):
    """``n`` random bytes over the middle of the file (the size stays the same)."""
    def apply(root):
        v = video(root)
        _overwrite(v, v.stat().st_size // 2 + 97 * seed, random_bytes(n, seed))
        return v
    return apply


def in_frame(frame: int, n: int | None = None, at: float = 0.5, seed: int = 0):
    """Random bytes inside frame ``frame``'s data (all of it when ``n`` is None), starting at ``at`` of it."""
    def apply(root):
        v = video(root)
        pos, size = packet_span(v, frame)
        n_ = size if n is None else n
        start = pos + int((size - n_) * at) if n is not None else pos
        _overwrite(v, start, random_bytes(n_, seed))
        return v
    return apply


def jpeg_marker_in_scan(root):
    """0xFF 0xC4 (a DHT marker) inside frame 7's entropy-coded data."""
    v = video(root)
    pos, size = packet_span(v, 7)
    _overwrite(v, pos + size - size // 3, b"\xff\xc4")
    return v


def restart_marker_swapped(root):
    """Frame 7's first restart marker (RST0) made RST3: FFmpeg decodes on without a word."""
    v = video(root)
    pos, size = packet_span(v, 7)
    raw = v.read_bytes()
    at = raw.index(b"\xff\xd0", pos, pos + size)
    _overwrite(v, at, b"\xff\xd3")
    return v


def nal_length(root):
    """Frame 5's first NAL length prefix, doubled."""
    v = video(root)
    pos, _ = packet_span(v, 5)
    raw = v.read_bytes()
    n = int.from_bytes(raw[pos:pos + 4], "big")
    _overwrite(v, pos, (2 * n).to_bytes(4, "big"))
    return v


def truncate(fraction: float):
    def apply(root):
        v = video(root)
        v.write_bytes(v.read_bytes()[:int(v.stat().st_size * fraction)])
        return v
    return apply


def zero_bytes(root):
    v = video(root)
    v.write_bytes(b"")
    return v


def text_as_video(root):
    v = video(root)
    v.write_text("this is not a video\n" * 50)
    return v


def renamed(suffix: str):
    """The video under another container's extension (FFmpeg reads the content, not the name)."""
    def apply(root):
        v = video(root)
        v.rename(v.with_suffix(suffix))
    return apply


# ---------------------------------------------------------------- frame counts, rates, sizes


def rewrite(cam: str = "cam_02", n: int = N, fps: float = 25, size=SIZE, codec="mjpeg"):
    def apply(root):
        v = video(root, cam)
        v.unlink()
        out = v.with_suffix({"mjpeg": ".avi", "h264": ".mp4"}[codec])
        write_video(out, frames(n, size, base=40), fps, codec)
        return out
    return apply


def three_cameras(then):
    """A third camera (video, calibration table, boxes column), then ``then``."""
    def apply(root):
        from syncssl.data.sources.calibration import read_calibration, write_calibration
        write_calibration(calib(root), read_calibration(calib(root)) + [make_camera("cam_03", angle=2.6)])
        write_video(seq(root) / "videos" / "cam_03.avi", frames(N, base=90), 25, "mjpeg")
        np.save(seq(root) / "boxes.npy", np.tile(np.array([[[5, 5, 30, 40]]], np.float32), (N, 3, 1)))
        return then(root)
    return apply


def both_rates(root):
    rewrite("cam_01", fps=30)(root)
    rewrite("cam_02", fps=50)(root)
    return seq(root)


def extra_camera(root):
    """A third video without a calibration table."""
    v = seq(root) / "videos" / "cam_03.avi"
    write_video(v, frames(N, base=90), 25, "mjpeg")
    return v


def missing_video(root):
    video(root).unlink()
    return seq(root)


# ---------------------------------------------------------------- calibration.toml


def calib(root) -> Path:
    return seq(root) / "calibration.toml"


def calib_line(key: str, value: str, camera: str = "cam_02"):
    """Replace camera ``camera``'s line for ``key``."""
    def apply(root):
        path = calib(root)
        lines = path.read_text().splitlines()
        start = lines.index(f"[{camera}]")
        at = next(i for i, line in enumerate(lines) if i > start and line.startswith(f"{key} ="))
        lines[at] = f"{key} = {value}"
        path.write_text("\n".join(lines) + "\n")
        return path
    return apply


def calib_text(text: str | bytes):
    def apply(root):
        path = calib(root)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path
    return apply


def calib_delete_key(key: str):
    def apply(root):
        path = calib(root)
        path.write_text("\n".join(line for line in path.read_text().splitlines()
                                   if not line.startswith(f"{key} =")) + "\n")
        return path
    return apply


def calib_edit(fn):
    def apply(root):
        path = calib(root)
        path.write_text(fn(path.read_text()))
        return path
    return apply


def scaled_translations(factor: float):
    def apply(root):
        path = calib(root)
        out = []
        for line in path.read_text().splitlines():
            if line.startswith("translation ="):
                values = [float(v) * factor for v in re.findall(r"-?[\d.e+-]+", line.split("=", 1)[1])]
                line = f"translation = [ {', '.join(map(repr, values))}]"
            out.append(line)
        path.write_text("\n".join(out) + "\n")
        return path
    return apply


def rotation_matrix(valid: bool):
    def apply(root):
        from syncssl.data.sources.calibration import read_calibration
        path = calib(root)
        R = read_calibration(path)[1].R * (1.0 if valid else 1.5)
        return calib_line("rotation", "[ " + ", ".join(f"[ {', '.join(map(repr, r))}]" for r in R.tolist()) + "]")(root)
    return apply


def missing_calibration(root):
    path = calib(root)
    path.unlink()
    return path


# ---------------------------------------------------------------- dataset.json


def meta(**change):
    def apply(root):
        path = root / "dataset.json"
        doc = json.loads(path.read_text())
        for k, v in change.items():
            if v is KeyError:
                doc.pop(k)
            else:
                doc[k] = v
        path.write_text(json.dumps(doc))
        return path
    return apply


def meta_text(text: str):
    def apply(root):
        path = root / "dataset.json"
        path.write_text(text)
        return path
    return apply


# ---------------------------------------------------------------- labels


def npy(name: str, array):
    def apply(root):
        path = seq(root) / name
        np.save(path, array() if callable(array) else array)
        return path
    return apply


def garbage_npy(name: str):
    def apply(root):
        path = seq(root) / name
        path.write_bytes(b"not an array" * 10)
        return path
    return apply


def poses_with(fn):
    def make():
        p = poses(N)
        fn(p)
        return p
    return make


def boxes_with(fn, n=N):
    def make():
        b = np.tile(np.array([[[5, 5, 30, 40]]], np.float32), (n, 2, 1))
        fn(b)
        return b
    return make


def _set(index, value):
    def fn(a):
        a[index] = value
    return fn


def empty_scene(root):
    """The rig's empty-scene images, backgrounds/<camera>.png (a documented feature)."""
    from syncssl.data.preparation.manifest import write_png
    (seq(root) / "backgrounds").mkdir()
    for cam in ("cam_01", "cam_02"):
        write_png(seq(root) / "backgrounds" / f"{cam}.png", np.full((SIZE[1], SIZE[0], 3), 60, np.uint8))


def background_of_wrong_size(root):
    from syncssl.data.preparation.manifest import write_png
    (seq(root) / "backgrounds").mkdir()
    path = seq(root) / "backgrounds" / "cam_02.png"
    write_png(path, np.zeros((10, 10, 3), np.uint8))
    return path


# ---------------------------------------------------------------- the table


@dataclass
class Case:
    id: str
    base: str  # which dataset the case starts from
    setup: Callable  # breaks one thing; returns the path the error must name (None: no error expected)
    expect: str  # regex: the problem (after "<path>: "), or a note / line the output must hold
    command: str = "inspect"  # "inspect" | "deep" (inspect --deep)
    ok: bool = False  # handled correctly (exit 0) rather than refused


CASES = [
    # videos: damage each witness sees, truncation, files that are not videos
    Case("mjpeg-frame-replaced", "mjpeg", in_frame(10), r"corrupt: frame 10 does not decode", "deep"),
    Case("h264-frame-replaced", "h264", in_frame(10), r"corrupt: frame 10 is damaged \(h264 data: a NAL unit"),
    Case("h264-frame-replaced-deep", "h264", in_frame(10), r"corrupt: frame 10 (is damaged|does not decode)", "deep"),
    Case("mjpeg-marker-in-scan", "mjpeg", jpeg_marker_in_scan, r"corrupt: frame 7 is damaged \(JPEG data: "),
    Case("mjpeg-marker-in-scan-deep", "mjpeg", jpeg_marker_in_scan, r"corrupt: frame 7 (is damaged|does not decode)",
         "deep"),
    Case("mjpeg-restart-marker-swapped", "mjpeg", restart_marker_swapped, r"corrupt: frame 7 is damaged \(JPEG data: "
         r"restart marker 0 is out of sequence \(RST3 where RST0 belongs\)"),
    Case("mjpeg-restart-marker-swapped-deep", "mjpeg", restart_marker_swapped, r"corrupt: frame 7 is damaged", "deep"),
    Case("h264-nal-length", "h264", nal_length, r"corrupt: frame 5 is damaged \(h264 data: a NAL unit of \d+ bytes"),
    *[Case(f"h264-64-bytes-mid-slice-{s}", "h264", in_frame(10, 64, 0.5, s), r"corrupt: frame 1\d is damaged \(",
           "deep") for s in (0, 1, 3)],
    *[Case(f"h264-64-bytes-mid-file-{s}", "h264", mid_file(64, s), r"corrupt: .*frames? .*damaged", "deep")
      for s in range(4)],
    *[Case(f"h264-4KiB-mid-file-{s}", "h264", mid_file(4096, s), r"corrupt: .*frames? .*damaged|does not decode")
      for s in range(3)],
    *[Case(f"mjpeg-64-bytes-mid-file-{s}", "mjpeg", mid_file(64, s), r"corrupt: .*damaged|does not decode", "deep")
      for s in (0, 2)],
    *[Case(f"mjpeg-4KiB-mid-file-{s}", "mjpeg", mid_file(4096, s), r"corrupt|truncated") for s in range(2)],
    # VP9: libvpx decodes the same packets as FFmpeg and must agree to the bit; a skipped cluster leaves a time gap
    *[Case(f"vp9-64-bytes-mid-slice-{s}", "vp9", in_frame(10, 64, 0.5, s), r"corrupt: .*\(a second VP9 decoder "
           r"\(libvpx\) (disagrees|cannot)", "deep") for s in (0, 1)],
    *[Case(f"vp9-64-bytes-mid-file-{s}", "vp9", mid_file(64, s), r"corrupt: .*(damaged|missing)", "deep")
      for s in range(3)],
    *[Case(f"vp9-4KiB-mid-file-{s}", "vp9", mid_file(4096, s), r"corrupt: .*(damaged|missing)", "deep")
      for s in range(2)],
    Case("vp9-clusters-lost", "vp9", mid_file(4096, 0), r"corrupt: .* does not decode: its data is damaged \(10 of "
         r"the 20 frames"),
    Case("mjpeg-first-frame-damaged", "mjpeg", in_frame(0), r"corrupt: frame 0 "),
    Case("mjpeg-last-frame-damaged", "mjpeg", in_frame(N - 1), r"corrupt: frame 19 |truncated or corrupt"),
    Case("mjpeg-truncated-half", "mjpeg", truncate(0.5), r"truncated"),
    # its index is at the end
    Case("h264-truncated-half", "h264", truncate(0.5), r"not a readable video \(Invalid data"),
    Case("h264-truncated-90", "h264", truncate(0.9), r"not a readable video", "deep"),
    Case("mjpeg-zero-bytes", "mjpeg", zero_bytes, r"not a readable video"),
    Case("h264-zero-bytes", "h264", zero_bytes, r"not a readable video"),
    Case("text-named-mp4", "h264", text_as_video, r"not a readable video|no video stream"),
    Case("mp4-named-avi", "h264", renamed(".avi"), r"valid", ok=True),
    Case("avi-named-mkv", "flat", renamed(".mkv"), r"valid", "deep", ok=True),
    Case("clean-mjpeg-deep", "mjpeg", lambda root: None, r"valid", "deep", ok=True),
    Case("clean-h264-deep", "h264", lambda root: None, r"valid", "deep", ok=True),
    Case("clean-vp9-deep", "vp9", lambda root: None, r"valid", "deep", ok=True),
    # frame counts, rates and sizes across the cameras
    Case("camera-copied", "flat", lambda root: shutil.copyfile(video(root, "cam_01"), video(root)),
         r"^is byte-identical to cam_01.avi: two cameras hold the same video"),
    Case("count-off-by-two", "flat", rewrite(n=N - 2), r"camera cam_02 \(cam_02.avi\) is shorter", ok=True),
    Case("count-off-by-thirty", "flat", rewrite(n=N + 30), r"frame counts differ by 30, more than the tolerance"),
    Case("single-frame-camera", "flat", three_cameras(rewrite(n=1)), r"holds 1 frames"),
    Case("camera-at-50-among-25", "flat", three_cameras(rewrite(fps=50)),
         r"runs at 50 fps but the other cameras of its sequence at 25 fps"),
    Case("camera-at-12.5-among-25", "flat", three_cameras(rewrite(fps=12.5)), r"runs at 12.5 fps"),
    Case("three-cameras", "flat", three_cameras(lambda root: None), r"valid", "deep", ok=True),
    Case("two-rates-of-two", "flat", both_rates, r"the cameras run at different frame rates"),
    Case("29.97-among-30", "flat", lambda root: (rewrite("cam_01", fps=30)(root), rewrite(fps=30000 / 1001)(root))
         and None, r"valid", ok=True),
    Case("other-aspect-than-calibration", "flat", lambda root: rewrite(size=(48, 48))(root) and calib(root),
         r"camera \[cam_02\] is 64x48 but its video cam_02.avi is 48x48: neither a resize"),
    Case("half-size-video", "flat", rewrite(size=(32, 24)), r"a resize: intrinsics scaled by 0.5", ok=True),
    Case("other-codec-per-camera", "flat", rewrite(codec="h264"), r"valid", ok=True),
    Case("video-without-table", "flat", extra_camera, r"video has no camera table"),
    Case("table-without-video", "flat", missing_video, r"camera cam_02 of calibration.toml has no video"),
    Case("background-of-wrong-size", "flat", background_of_wrong_size, r"the empty scene is 10x10 but camera cam_02"),
    Case("empty-scene-backgrounds", "flat", empty_scene, r"empty-scene backgrounds given", ok=True),
    # calibration.toml
    Case("calibration-missing", "flat", missing_calibration, r"calibration file is missing"),
    Case("calibration-garbled", "flat", calib_text("[cam_01\nsize = [64, 48]\n"), r"cannot parse calibration TOML"),
    Case("calibration-binary", "flat", calib_text(b"\x89PNG\r\n\x1a\n\x00\x00"), r"not UTF-8 text"),
    Case("calibration-empty", "flat", calib_text(""), r"no camera tables found"),
    Case("focal-zero", "flat", calib_line("matrix", "[ [ 0.0, 0.0, 31.5], [ 0.0, 0.0, 23.5], [ 0.0, 0.0, 1.0]]"),
         r"camera \[cam_02\]: focal lengths must be positive pixels, got fx 0"),
    Case("focal-negative", "flat",
         calib_line("matrix", "[ [ -50.0, 0.0, 31.5], [ 0.0, -50.0, 23.5], [ 0.0, 0.0, 1.0]]"),
         r"focal lengths must be positive pixels, got fx -50"),
    Case("matrix-last-row", "flat", calib_line("matrix", "[ [ 50.0, 0.0, 31.5], [ 0.0, 50.0, 23.5], [ 0.0, 0.0, 0.0]]"),
         r"matrix is not a camera matrix"),
    Case("matrix-2x3", "flat", calib_line("matrix", "[ [ 50.0, 0.0, 31.5], [ 0.0, 50.0, 23.5]]"),
         r"matrix must be 3x3"),
    Case("matrix-nan", "flat", calib_line("matrix", "[ [ nan, 0.0, 31.5], [ 0.0, 50.0, 23.5], [ 0.0, 0.0, 1.0]]"),
         r"matrix holds NaN"),
    Case("rotation-not-orthonormal", "flat", rotation_matrix(valid=False), r"rotation is a 3x3 matrix that is not a "
         r"rotation"),
    Case("rotation-as-matrix", "flat", rotation_matrix(valid=True), r"valid", ok=True),
    Case("rotation-two-values", "flat", calib_line("rotation", "[ 0.1, 0.2]"), r"rotation must be 3 numbers"),
    Case("rotation-text", "flat", calib_line("rotation", '"upright"'), r"rotation must (hold|be)"),
    Case("translations-in-millimetres", "flat", scaled_translations(1000.0), r"translations look like millimetres: "
         r"camera cam_0\d stands \d+ m from the world origin"),
    Case("translations-of-a-large-hall", "flat", scaled_translations(20.0), r"valid", ok=True),  # 80 m: still metres
    Case("translation-inf", "flat", calib_line("translation", "[ 0.1, inf, 4.0]"),
         r"translation holds NaN or infinite"),
    Case("size-missing", "flat", calib_delete_key("size"), r"camera table \[cam_01\] lacks size"),
    Case("size-fractional", "flat", calib_line("size", "[ 64.5, 48.0]"), r"not a positive whole number of pixels"),
    Case("fisheye", "flat", calib_line("fisheye", "true"), r"fisheye camera"),
    Case("camera-names-repeat", "flat", calib_edit(lambda t: t.replace('name = "cam_02"', 'name = "cam_01"')),
         r"camera names repeat"),
    # dataset.json
    Case("fps-zero", "flat", meta(fps=0), r"field 'fps' must be a frame rate in \(0, 1000\]"),
    Case("fps-negative", "flat", meta(fps=-25), r"field 'fps' must be a frame rate"),
    Case("fps-huge", "flat", meta(fps=25000), r"field 'fps' must be a frame rate"),
    Case("fps-nan", "flat", meta_text('{"name": "x", "fps": NaN, "subjects": ["S1"], "splits": {}}'),
         r"field 'fps' must be a frame rate"),
    Case("fps-text", "flat", meta(fps="25"), r"field 'fps' is missing or not a number"),
    Case("fps-true", "flat", meta(fps=True), r"field 'fps' is missing or not a number"),
    Case("fps-missing", "flat", meta(fps=KeyError), r"field 'fps' is missing"),
    Case("name-empty", "flat", meta(name=" "), r"field 'name' is empty"),
    Case("subjects-empty", "flat", meta(subjects=[]), r"field 'subjects' must be a non-empty list"),
    Case("subjects-repeat", "flat", meta(subjects=["S1", "S1"]), r"field 'subjects' names S1 more than once"),
    Case("subject-a-number", "flat", meta(subjects=[1]), r"field 'subjects' must be a non-empty list"),
    Case("subject-folder-missing", "flat", lambda root: meta(subjects=["S1", "S2"])(root) and root / "S2",
         r"subject 'S2' is listed in dataset.json but its folder is missing"),
    Case("split-unknown-subject", "flat", meta(splits={"train": ["S7"]}), r"split 'train' names subjects \['S7'\]"),
    Case("split-not-a-list", "flat", meta(splits={"train": "S1"}), r"split 'train' must be a list"),
    Case("test-subject-also-trained", "flat", meta(splits={"train": ["S1"], "test": ["S1"]}),
         r"splits 'test' and 'train' both hold S1: a held-out subject must be in no other split"),
    Case("val-subject-also-tested", "flat", meta(splits={"val": ["S1"], "test": ["S1"]}), r"splits 'val' and 'test'"),
    Case("pretrain-overlaps-train", "flat", meta(splits={"train": ["S1"], "pretrain": ["S1"]}), r"valid", ok=True),
    Case("skeleton-unknown", "flat", meta(skeleton="coco17"), r"field 'skeleton' is 'coco17'"),
    Case("actions-not-a-map", "flat", meta(actions=["walk"]), r"field 'actions' must map"),
    Case("dataset-json-list", "flat", meta_text("[1, 2]"), r"expected a JSON object"),
    Case("dataset-json-invalid", "flat", meta_text("{name: x"), r"not valid JSON"),
    # labels
    Case("poses-wrong-joints", "flat", npy("poses3d.npy", lambda: poses(N)[:, :16]), r"\(T, 17, 3\)"),
    Case("poses-2d", "flat", npy("poses3d.npy", lambda: poses(N)[..., :2]), r"\(T, 17, 3\)"),
    Case("poses-too-long", "flat", npy("poses3d.npy", lambda: poses(3 * N)), r"labels do not match the frames: 60 "
         r"poses vs 20 frames"),
    Case("poses-too-short", "flat", npy("poses3d.npy", lambda: poses(N // 2)), r"10 poses vs 20 frames"),
    Case("poses-two-short", "flat", npy("poses3d.npy", lambda: poses(N - 2)), r"both truncated to 18", ok=True),
    Case("poses-nan", "flat", npy("poses3d.npy", poses_with(_set((7, 3, 1), np.nan))), r"NaN .*first at frame 7"),
    Case("poses-inf", "flat", npy("poses3d.npy", poses_with(_set((2, 0, 0), np.inf))), r"first at frame 2"),
    Case("poses-integers", "flat", npy("poses3d.npy", lambda: poses(N).astype(np.int32)), r"floating-point poses"),
    Case("poses-in-metres", "flat", npy("poses3d.npy", lambda: poses(N) / 1000.0), r"they look like metres", ok=True),
    Case("poses-not-npy", "flat", garbage_npy("poses3d.npy"), r"not a readable .npy array"),
    Case("boxes-wrong-cameras", "flat", npy("boxes.npy", lambda: np.zeros((N, 3, 4), np.float32)),
         r"expected boxes of shape \(T, 2, 4\)"),
    Case("boxes-2d", "flat", npy("boxes.npy", lambda: np.zeros((N, 4), np.float32)), r"expected boxes of shape"),
    Case("boxes-too-long", "flat", npy("boxes.npy", boxes_with(lambda b: None, 3 * N)), r"60 boxes vs 20 frames"),
    Case("boxes-inf", "flat", npy("boxes.npy", boxes_with(_set((3, 1, 2), np.inf))), r"infinite values"),
    Case("boxes-inverted", "flat", npy("boxes.npy", boxes_with(_set((4, 0, 2), 1.0))), r"the box of frame 4, camera "
         r"column 0 ends before it starts"),
    Case("boxes-partly-nan", "flat", npy("boxes.npy", boxes_with(_set((6, 1, 0), np.nan))), r"the box of frame 6, "
         r"camera column 1 is partly NaN"),
    Case("boxes-text", "flat", npy("boxes.npy", lambda: np.array([["a"] * 4] * 2)), r"expected boxes of shape"),
    Case("boxes-all-nan", "flat", npy("boxes.npy", lambda: np.full((N, 2, 4), np.nan, np.float32)), r"valid", ok=True),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_inspect(case: Case, bases, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(bases[case.base], root)
    named = case.setup(root)
    before = snapshot(root)
    res = CliRunner().invoke(cli.data, ["inspect", str(root)] + (["--deep"] if case.command == "deep" else []),
                             env={"COLUMNS": "400"})
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    if case.ok:
        assert res.exit_code == 0, res.output
        assert re.search(case.expect, res.output), res.output
    else:
        assert res.exit_code != 0, res.output
        line = res.output.strip().splitlines()[0]
        assert line.startswith(f"Error: {named}: "), line
        assert re.search(case.expect, line[len(f"Error: {named}: "):]), line
    assert snapshot(root) == before  # inspect reads, never writes


# ---------------------------------------------------------------- prepare: what it owns, and faults


def _prepare(root: Path, out: Path, **kw):
    from syncssl.data.preparation.prepare import prepare
    return prepare(open_dataset(root), out, workers=1, **kw)


@pytest.fixture(scope="module")
def prepared(bases, tmp_path_factory):
    """The flat dataset prepared once; cases copy both."""
    root = tmp_path_factory.mktemp("prep") / "ds"
    shutil.copytree(bases["flat"], root)
    _prepare(root, root / "prepared")
    return root


def _copy(prepared: Path, tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "ds"
    shutil.copytree(prepared, root)
    return root, root / "prepared"


def _add_user_files(out: Path) -> list[Path]:
    """Files of the user's inside prepare's folders, at names prepare does not write."""
    files = [out / "videos" / "mine" / "take.avi", out / "arrays" / "mine.npz", out / "backgrounds" / "mine.png",
             out / "tiles" / "mine" / "frames.u8", out / "notes.txt"]
    for i, f in enumerate(files):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(bytes([i]) * 100)
    return files


def test_prepare_rebuild_keeps_files_it_did_not_write(prepared, tmp_path):
    root, out = _copy(prepared, tmp_path)
    mine = _add_user_files(out)
    user = {f: f.read_bytes() for f in mine}
    before = snapshot(root, skip=out)
    report = _prepare(root, out, force=True)
    assert not report.up_to_date
    assert {f: f.read_bytes() for f in mine} == user
    assert snapshot(root, skip=out) == before


def test_prepare_removes_only_its_own_stale_files(prepared, tmp_path):
    root, out = _copy(prepared, tmp_path)
    mine = _add_user_files(out)
    old_arrays = sorted((out / "arrays").glob("S1__*.npz"))
    assert old_arrays
    # the sequence is renamed: the arrays and backgrounds of the old name are stale, and prepare's own
    seq(root).rename(seq(root).with_name("walk_01"))
    _prepare(root, out)
    assert not any(p.exists() for p in old_arrays)
    assert (out / "arrays" / "S1__walk_01.npz").is_file()
    assert all(f.exists() for f in mine)


def test_prepare_refuses_a_folder_it_did_not_make(bases, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(bases["flat"], root)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    (out / "arrays").mkdir()
    (out / "arrays" / "S1__walk_00.npz").write_bytes(b"mine")
    before = snapshot(tmp_path)
    with pytest.raises(DataError) as e:
        _prepare(root, out)
    assert e.value.path == out
    assert e.value.problem.startswith("already holds files that syncssl-data prepare did not write (arrays, "
                                      "thesis.tex); choose an empty or new --out, or pass --force")
    assert snapshot(tmp_path) == before
    # the command line says the same in one line
    res = CliRunner().invoke(cli.data, ["prepare", str(root), "--out", str(out), "--tiles", "none", "--workers", "1"])
    assert res.exit_code != 0 and res.output.startswith(f"Error: {out}: already holds files"), res.output
    # --force prepares into it: its own paths replaced, everything else kept
    _prepare(root, out, force=True)
    assert (out / "thesis.tex").read_text() == "years of work" and (out / "manifest.json").is_file()
    assert (out / "arrays" / "S1__walk_00.npz").read_bytes() != b"mine"


def test_prepare_refuses_a_users_file_where_it_would_write(prepared, tmp_path):
    root, out = _copy(prepared, tmp_path)
    (seq(root) / "backgrounds").mkdir()  # not needed; the new background id decides the path
    target = out / "backgrounds" / "S1-cam_03.png"
    target.write_bytes(b"user's")
    extra_camera(root)  # a third camera: calibration gets its table below
    from syncssl.data.sources.calibration import read_calibration, write_calibration
    cams = read_calibration(calib(root))
    write_calibration(calib(root), cams + [make_camera("cam_03", angle=2.6)])
    np.save(seq(root) / "boxes.npy", np.tile(np.array([[[5, 5, 30, 40]]], np.float32), (N, 3, 1)))
    ds = open_dataset(root)
    from syncssl.data.preparation.prepare import _background_groups
    gid = next(g for g in _background_groups(ds.sequences) if g.endswith("cam_03"))
    target.rename(out / "backgrounds" / f"{gid}.png")
    target = out / "backgrounds" / f"{gid}.png"
    before = snapshot(root)
    with pytest.raises(DataError) as e:
        _prepare(root, out)
    assert e.value.path == target
    assert e.value.problem.startswith("exists but was not written by syncssl-data prepare, which never replaces files")
    assert snapshot(root) == before


def test_prepare_adopts_a_folder_prepared_before_the_record(prepared, tmp_path):
    from syncssl.data.preparation.owned import RECORD
    root, out = _copy(prepared, tmp_path)
    (out / RECORD).unlink()
    report = _prepare(root, out)  # up to date: reused as before
    assert report.up_to_date
    report = _prepare(root, out, force=True)
    assert (out / RECORD).is_file() and not report.up_to_date


@pytest.mark.parametrize("what", ["file", "record"])
def test_prepare_out_that_is_a_file_or_a_damaged_record(prepared, tmp_path, what):
    from syncssl.data.preparation.owned import RECORD
    root, out = _copy(prepared, tmp_path)
    if what == "file":
        shutil.rmtree(out)
        out.write_text("a file")
        named, problem = out, "is a file, not a folder; choose another --out"
    else:
        (out / RECORD).write_text("{broken")
        named, problem = out / RECORD, "is not a record written by syncssl-data prepare (damaged?)"
    before = snapshot(root)
    with pytest.raises(DataError) as e:
        _prepare(root, out, force=True)
    assert e.value.path == named and e.value.problem.startswith(problem)
    assert snapshot(root) == before


def test_prepare_with_empty_scene_backgrounds(bases, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(bases["flat"], root)
    empty_scene(root)
    before = snapshot(root, skip=root / "prepared")
    report = _prepare(root, root / "prepared")
    assert all(b.empty_scene for b in report.manifest.backgrounds.values())
    assert snapshot(root, skip=root / "prepared") == before


@pytest.mark.parametrize("codec, damage", [("mjpeg", restart_marker_swapped), ("h264", in_frame(10, 64, 0.5, 1))])
def test_prepare_refuses_a_damaged_video_in_its_decoding_pass(bases, tmp_path, codec, damage):
    root = tmp_path / "ds"
    shutil.copytree(bases[codec], root)
    v = damage(root)
    ds = open_dataset(root, verify="none")  # unchecked: the decoding pass itself must see it
    before = snapshot(root)
    with pytest.raises(DataError) as e:
        from syncssl.data.preparation.prepare import prepare
        prepare(ds, tmp_path / "out", workers=1)
    assert e.value.path == v and re.match(r"corrupt: frame \d+ is damaged \(.+\); a video with damaged frames is "
                                          "refused", e.value.problem), e.value.problem
    assert snapshot(root) == before


def test_prepare_full_disk_is_named(prepared, tmp_path, monkeypatch):
    import numpy
    root, out = _copy(prepared, tmp_path)
    real = numpy.savez

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(numpy, "savez", full)
    with pytest.raises(DataError) as e:
        _prepare(root, out, force=True)
    monkeypatch.setattr(numpy, "savez", real)
    assert str(e.value).startswith(f"no space left on {out} while writing the prepared data (")


def test_a_worker_killed_on_a_full_disk_is_named(tmp_path, monkeypatch):
    """A memory-mapped write on a full disk kills the process (SIGBUS): the pool breaks, and the disk is named."""
    from concurrent.futures.process import BrokenProcessPool

    from syncssl import storage
    monkeypatch.setattr(storage, "free_bytes", lambda path: 0)
    with pytest.raises(DiskError) as e:
        with storage.translate_disk_errors(tmp_path, "the tiles"):
            raise BrokenProcessPool("A process in the process pool was terminated abruptly")
    assert str(e.value).startswith(f"no space left on {tmp_path} while writing the tiles (0 B free; a worker process "
                                   "died writing")
    monkeypatch.setattr(storage, "free_bytes", lambda path: 10 << 30)
    with pytest.raises(BrokenProcessPool):  # with room on the disk it is something else: not called a disk error
        with storage.translate_disk_errors(tmp_path, "the tiles"):
            raise BrokenProcessPool("A process in the process pool was terminated abruptly")


def test_tiles_reserve_their_space_up_front(tmp_path, monkeypatch):
    """The raw tile files are allocated for real (not sparse), so a full disk fails there, in one line."""
    import os

    from syncssl.data.preparation.tiles import TileSpec, allocate
    spec = TileSpec(size=16, margin=1.2)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "posix_fallocate", full)
    from syncssl.storage import translate_disk_errors
    with pytest.raises(DataError, match="^no space left on"):
        with translate_disk_errors(tmp_path, "the tiles"):
            allocate(tmp_path / "t", spec, 100)
    monkeypatch.undo()
    allocate(tmp_path / "t", spec, 100)
    st = os.stat(tmp_path / "t" / "frames.u8")
    assert st.st_size == 100 * spec.bytes_per_tile() and st.st_blocks * 512 >= st.st_size


# ---------------------------------------------------------------- syncssl-sync: one dark camera


def test_a_dark_reference_camera_hands_the_reference_on(tmp_path):
    from types import SimpleNamespace

    from syncssl.data.sources.dataset import Sequence, View
    from syncssl.sync.pipeline import SyncOptions, _plan
    T = 60
    views = [View(make_camera(c), Path(f"{c}.avi"), "mjpeg", T) for c in ("cam_01", "cam_02", "cam_03")]
    s = Sequence("S1", "walk", "walk", 25.0, views, T)
    moving = np.zeros(T, bool)
    box = np.tile(np.array([[[5, 5, 30, 40]]], np.float32), (T, 1, 1))
    dark = SimpleNamespace(num_frames=T, static=~moving | True, tight=np.full((T, 1, 4), np.nan, np.float32))
    lit = SimpleNamespace(num_frames=T, static=moving, tight=box)
    manifest = SimpleNamespace(sequences=[dark, lit, lit])
    plan = _plan(s, manifest, {"cam_01": 0, "cam_02": 1, "cam_03": 2}, SyncOptions(max_offset_s=0.4), 10)
    assert plan.reference == "cam_02" and plan.cameras == ["cam_02", "cam_01", "cam_03"]
    assert not plan.usable["cam_01"].any() and plan.usable["cam_03"].all()
    # asked for by name, the dark camera stays the reference (the user's choice)
    plan = _plan(s, manifest, {"cam_01": 0, "cam_02": 1, "cam_03": 2},
                 SyncOptions(max_offset_s=0.4, reference="cam_01"), 10)
    assert plan.reference == "cam_01"


def test_timestamp_gap_judges_only_constant_rate_streams():
    from syncssl.data.decode.damage import timestamp_gap
    assert timestamp_gap([0, 40, 80, 120, 160]) is None
    assert re.match(r"corrupt: about 7 frames are missing after frame 2 ", timestamp_gap([0, 40, 80, 400, 440, 480]))
    assert timestamp_gap([0, 33, 70, 100, 140, 300]) is None  # variable frame rate: not judged


# ---------------------------------------------------------------- the pixel witness


@pytest.fixture(scope="module")
def filmed(tiny_dataset, tmp_path_factory):
    """One camera of the tiny synthetic dataset (a room filmed from a fixed camera, MJPEG) and an H.264 copy."""
    mjpeg = tiny_dataset / "S1" / "Walking_01" / "videos" / "cam_01.avi"
    h264 = write_video(tmp_path_factory.mktemp("filmed") / "cam_01.mp4", read_frames(mjpeg), 25, "h264")
    return {"mjpeg": mjpeg, "h264": h264}


def _random_bytes_mid_file(src: Path, dst: Path, seed: int) -> Path:
    """64 random bytes at a random offset in the middle third (benchmarks/analysis/damage_detection.py's copies)."""
    rng = np.random.default_rng(seed)
    raw = bytearray(src.read_bytes())
    at = int(rng.integers(len(raw) // 3, 2 * len(raw) // 3 - 64))
    raw[at:at + 64] = rng.integers(0, 256, 64, np.uint8).tobytes()
    dst.write_bytes(bytes(raw))
    return dst


@pytest.mark.parametrize("codec, seed, frame", [("mjpeg", 8, 22), ("mjpeg", 45, 25), ("h264", 0, 20), ("h264", 34, 10)])
def test_pixel_witness_refuses_damage_every_other_witness_passes(filmed, tmp_path, monkeypatch, codec, seed, frame):
    clean = filmed[codec]
    v = _random_bytes_mid_file(clean, tmp_path / clean.name, seed)
    assert np.abs(read_frames(v).astype(int) - read_frames(clean)).max() > 100  # wrong pixels come out
    with monkeypatch.context() as m:
        m.setattr(damage, "PIXEL_THRESHOLD", {})  # the other witnesses alone: framing, decoder, second decoder
        probe(v, verify="all")
    with pytest.raises(DataError) as e:
        probe(v, verify="all")
    assert re.match(rf"corrupt: frame {frame} is damaged \((in MCU row|from macroblock row) .* the picture changes at "
                    r"once, by \d+ grey levels, .*\); a video with damaged frames is refused", e.value.problem), \
        e.value.problem
    assert probe(clean, verify="all").num_frames == 40


@pytest.mark.parametrize("contrast", [18, 45])
def test_an_arm_reaching_the_frame_edge_inside_one_mcu_row_is_not_damage(tmp_path, contrast):
    """Clean MJPEG in which something appears at the frame's right edge, inside one MCU row, and stays (an
    outstretched arm): one frame's change looks like damage, but the next frame does not go back, so nothing is
    refused nor named suspect; planted damage, gone in the next frame, still is (the test above)."""
    rng = np.random.default_rng(0)
    base = np.repeat(np.repeat(np.clip(rng.normal(128, 20, (32, 40, 3)), 0, 255), 4, 0), 4, 1).astype(np.uint8)
    clip = np.repeat(base[None], 12, 0)
    clip[6:, 48:64, 120:] = np.clip(base[48:64, 120:].astype(int) + contrast, 0, 255)
    v = write_video(tmp_path / "arm.avi", clip, 25, "mjpeg", quality=3)
    frames_ = luma(v)
    assert damage.row_run_score(frames_[6], frames_[5], 16, 16)[0] >= damage.PIXEL_SUSPECT["mjpeg"]  # it looks so
    info = probe(v, verify="all")
    assert info.num_frames == 12 and info.suspect == ""
    assert len(list(iter_frames(v, 12))) == 12
    run = (slice(48, 64), slice(128, 160))
    assert damage.reverts(frames_[5], frames_[5], run, 20.0) and not damage.reverts(frames_[5], frames_[7], run, 20.0)


def test_weaker_signs_in_the_pixels_name_suspect_frames_without_refusing(filmed, tmp_path):
    """H.264 damage scoring where clean video at x264's lowest quality can too: named in the notes, not refused."""
    v = _random_bytes_mid_file(filmed["h264"], tmp_path / "cam_01.mp4", seed=2)
    info = probe(v, verify="all")
    assert re.match(r"1 suspect frame \(frame 20: from macroblock row \d+, column \d+ to the end of the picture the "
                    r"picture changes at once, by \d+ grey levels.*\); check them by eye", info.suspect), info.suspect
    assert probe(filmed["h264"], verify="all").suspect == ""


@pytest.mark.skipif(not REAL.is_dir(), reason="the real recording (../shared/real) is absent")
@pytest.mark.parametrize("codec, quality", [("mjpeg", 31), ("h264", 30)])
def test_pixel_witness_passes_real_footage_at_low_quality(tmp_path, codec, quality):
    """A real person moving fast in front of a still background, at the lowest qualities (blocky, noisy)."""
    real = read_frames(REAL / "cam01.mp4", range(60, 90), size=(270, 480))
    v = write_video(tmp_path / f"real.{'avi' if codec == 'mjpeg' else 'mp4'}", real, 60, codec, quality=quality)
    assert probe(v, verify="all").num_frames == 30
    frames = luma(v)
    scores = [damage.picture_run_score(b, a) if codec == "h264" else
              damage.row_run_score(b, a, 16, 16) for a, b in zip(frames, frames[1:])]
    assert max(s for s, _, _ in scores) < damage.PIXEL_THRESHOLD[codec] / 2


def luma(path: Path) -> list[np.ndarray]:
    from syncssl.optional import av
    with av.open(str(path)) as c:
        return [damage._luma(f).copy() for f in c.decode(c.streams.video[0])]


def test_prepare_excludes_suspect_frames_from_sampling_and_names_them(tiny_dataset, filmed, tmp_path):
    """A suspect frame (weaker signs of damage) is used for nothing: its instant is no anchor and no partner."""
    from syncssl.data.preparation.prepare import prepare
    damaged = _random_bytes_mid_file(filmed["h264"], tmp_path / "cam_01.mp4", seed=2)
    suspects: dict[int, str] = {}
    assert len(list(iter_frames(damaged, 30, 5, suspects=suspects))) == 30
    assert list(suspects) == [20 - 5]  # counted from the first frame asked for
    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset / "S1" / "Walking_01", root / "S1" / "Walking_01")
    write_dataset_json(root, name="one", fps=25, subjects=["S1"], splits={"train": ["S1"]})
    videos = root / "S1" / "Walking_01" / "videos"
    (videos / "cam_01.avi").unlink()
    shutil.copy(damaged, videos / "cam_01.mp4")
    report = prepare(open_dataset(root), root / "prepared")
    notes = " ".join(report.report["notes"])
    assert re.search(r"S1/Walking_01 cam_01: 1 suspect frame excluded from sampling \(frames 20; frame 20: ", notes), \
        notes
    assert report.stats["suspect_frames"] == 1
    assert report.manifest.sequences[0].static[20]
