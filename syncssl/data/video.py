"""Video files through PyAV: probing (codec, size, exact frame count, damage), writing, and plain reading.

Frames are uint8 RGB, (H, W, 3). Frame index i is the i-th frame in presentation order.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from .dataset import DataError

# codec -> (container extension, pixel format, encoder)
CODECS = {
    "mjpeg": (".avi", "yuvj420p", "mjpeg"),  # intra-only: every frame is a key frame; DALI decodes it on CPU
    "h264": (".mp4", "yuv420p", "libx264"),  # NVDEC on GPU; PyAV on CPU
    "vp9": (".webm", "yuv420p", "libvpx-vp9"),  # DALI decodes it on CPU and GPU
}
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v")


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    codec: str
    width: int
    height: int
    num_frames: int  # packets actually present (what a decoder can deliver)
    fps: float
    intra_only: bool  # every frame a key frame: random access without decoding neighbours

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def _open(path: Path):
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "video file is missing")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as e:
        raise DataError(path, f"not a readable video ({e.strerror or e})") from None


def probe(path: Path, verify: str = "ends") -> VideoInfo:
    """What a video holds, counted by demuxing every packet (headers can lie).

    verify: "none"; "ends" decodes the first and the last frame; "all" decodes every frame.
    A truncated file (fewer packets than its header promises, or a last frame that does not decode) and a
    corrupt one (a frame that does not decode) raise :class:`DataError` naming the file.
    """
    path = Path(path)
    with _open(path) as c:
        if not c.streams.video:
            raise DataError(path, "holds no video stream (corrupt, truncated, or not a video)")
        s = c.streams.video[0]
        header_frames = int(s.frames or 0)
        fps = float(s.average_rate or s.guessed_rate or 0)
        codec = s.codec_context.name
        packets, keyframes = [], 0
        try:
            for p in c.demux(s):
                if p.size > 0:
                    packets.append(p)
                    keyframes += bool(p.is_keyframe)
        except av.error.FFmpegError as e:
            raise DataError(path, f"corrupt or truncated: demuxing failed after {len(packets)} frames ({e})") from None
        if not packets:
            raise DataError(path, "holds no frames")
        if header_frames and len(packets) < header_frames:
            raise DataError(path, f"truncated: the header promises {header_frames} frames, the file holds {len(packets)}")
        to_check = {"none": [], "ends": [packets[0], packets[-1]], "all": packets}[verify]
        width, height = s.codec_context.width, s.codec_context.height
        decoded = 0
        for i, p in enumerate(to_check):
            try:
                frames = s.codec_context.decode(p)
            except (av.error.FFmpegError, ValueError) as e:
                where = "last" if p is packets[-1] else f"frame {packets.index(p)}"
                raise DataError(path, f"corrupt or truncated: the {where} frame does not decode ({e})") from None
            decoded += len(frames)
            for f in frames:
                width, height = f.width, f.height
        if verify == "all":
            try:
                decoded += len(s.codec_context.decode(None))
            except av.error.FFmpegError as e:
                raise DataError(path, f"corrupt: flushing the decoder failed ({e})") from None
            if decoded != len(packets):
                raise DataError(path, f"corrupt: {len(packets)} frames stored but {decoded} decoded")
    return VideoInfo(path, codec, int(width), int(height), len(packets), fps, keyframes == len(packets))


class VideoWriter:
    """``with VideoWriter(path, fps) as w: w.write(frame)`` for uint8 RGB frames (H, W, 3)."""

    def __init__(self, path: Path, fps: float, codec: str = "mjpeg", quality: int = 3, gop: int = 10):
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
        self.path, self.codec, self.fps = Path(path), codec, fps
        self.quality, self.gop = quality, gop
        self._c = self._s = None
        self.frames = 0

    def _start(self, width: int, height: int):
        _, pix_fmt, encoder = CODECS[self.codec]
        self._c = av.open(str(self.path), "w")
        s = self._c.add_stream(encoder, rate=Fraction(self.fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = width, height, pix_fmt
        if self.codec == "mjpeg":
            # qscale 2 (best) .. 31; fixed quality for every frame
            s.codec_context.qmin = s.codec_context.qmax = self.quality
        elif self.codec == "h264":
            s.options = {"crf": str(18 + self.quality), "g": str(self.gop), "bf": "0", "preset": "veryfast"}
        else:
            s.options = {"crf": str(24 + self.quality), "b": "0", "g": str(self.gop), "deadline": "realtime",
                         "cpu-used": "8", "row-mt": "1"}
        self._s = s

    def write(self, frame: np.ndarray):
        frame = np.ascontiguousarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"{self.path}: frames must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        if self._c is None:
            if frame.shape[0] % 2 or frame.shape[1] % 2:
                raise ValueError(f"{self.path}: frame size {frame.shape[1]}x{frame.shape[0]} must be even (4:2:0)")
            self._start(frame.shape[1], frame.shape[0])
        elif (frame.shape[1], frame.shape[0]) != (self._s.width, self._s.height):
            raise ValueError(f"{self.path}: frame {self.frames} is {frame.shape[1]}x{frame.shape[0]}, "
                             f"the video is {self._s.width}x{self._s.height}")
        for p in self._s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self._c.mux(p)
        self.frames += 1

    def close(self):
        if self._c is not None:
            for p in self._s.encode():
                self._c.mux(p)
            self._c.close()
            self._c = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_video(path: Path, frames, fps: float, codec: str = "mjpeg", **kw) -> Path:
    with VideoWriter(path, fps, codec, **kw) as w:
        for f in frames:
            w.write(f)
    return Path(path)


def read_frames(path: Path, indices=None) -> np.ndarray:
    """Frames ``indices`` (default: all) as uint8 (n, H, W, 3), in the order asked.

    Plain and sequential: seeks once to the key frame before the first wanted frame and decodes forward.
    The training decoders (``syncssl.data.decode``) are the fast path; this one serves tools and tests.
    """
    path = Path(path)
    with _open(path) as c:
        s = c.streams.video[0]
        want = None if indices is None else np.asarray(indices, np.int64).reshape(-1)
        last = None if want is None else int(want.max()) if want.size else -1
        got: dict[int, np.ndarray] = {}
        out = []
        try:
            for i, f in enumerate(c.decode(s)):
                if want is None:
                    out.append(f.to_ndarray(format="rgb24"))
                elif i in set(want.tolist()):
                    got[i] = f.to_ndarray(format="rgb24")
                if last is not None and i >= last:
                    break
        except av.error.FFmpegError as e:
            raise DataError(path, f"corrupt: decoding failed at frame {len(out) or len(got)} ({e})") from None
    if want is None:
        return np.stack(out) if out else np.zeros((0, s.height, s.width, 3), np.uint8)
    missing = sorted(set(want.tolist()) - set(got))
    if missing:
        raise DataError(path, f"frames {missing[:5]}{'...' if len(missing) > 5 else ''} are past the end of the video")
    return np.stack([got[int(i)] for i in want]) if want.size else np.zeros((0, s.height, s.width, 3), np.uint8)


def iter_frames(path: Path, count: int) -> Iterator[np.ndarray]:
    """The first ``count`` frames of a video, one uint8 (H, W, 3) at a time (constant memory)."""
    from av.video.reformatter import VideoReformatter
    path = Path(path)
    convert = VideoReformatter()  # one colour-conversion context for every frame: ~4x faster than to_ndarray(format=)
    n = 0
    try:
        with av.open(str(path)) as c:
            for f in c.decode(c.streams.video[0]):
                if n >= count:
                    break
                yield convert.reformat(f, format="rgb24").to_ndarray()
                n += 1
    except (av.error.FFmpegError, ValueError) as e:
        raise DataError(path, f"corrupt: frame {n} does not decode ({e})") from None
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
    except (av.error.FFmpegError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(path, f"corrupt: decoding failed while reading frames {idx.tolist()[:5]} ({e})") from None
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
