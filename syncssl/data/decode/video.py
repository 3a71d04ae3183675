"""Video files through PyAV: probing (codec, size, exact frame count, damage), writing, and plain reading
(sequential, or seeking to key frames); reading turns every PyAV error into a DataError naming the file.

Frames are uint8 RGB, (H, W, 3). Frame index i is the i-th frame in presentation order.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...optional import av
from .damage import FrameCheck, FramingCheck, configure, decoder_errors, describe, logged_error, timestamp_gap

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
    suspect: str = ""  # frames with weaker signs of damage (verify="all"; damage.PIXEL_SUSPECT)

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


def av_error_text(e: Exception) -> str:
    """PyAV's message without its errno prefix: "Invalid data found when processing input: 'avcodec_send_packet()'"."""
    return re.sub(r"^\[Errno -?\d+\] ", "", str(e)) or type(e).__name__


# What PyAV raises for damaged data: FFmpegError (InvalidDataError is also a ValueError), and ValueError from
# frame conversion. DataError is a ValueError too: it is re-raised untouched. (A function: PyAV loads on first use.)
def _decode_errors() -> tuple:
    return av.error.FFmpegError, ValueError


@contextmanager
def _decoding(path: Path, frame):
    """Any PyAV error inside becomes ``DataError(path, "corrupt: frame N does not decode (...)")``; ``frame()``
    gives N, the frame being decoded when it failed."""
    try:
        yield
    except DataError:
        raise
    except _decode_errors() as e:
        raise DataError(path, f"corrupt: frame {frame()} does not decode ({av_error_text(e)})") from None


def _missing_frames(path: Path, packets: list, header_frames: int) -> DataError:
    """Fewer packets than the header promises: a truncated file, or damage that made the demuxer drop frames.

    A truncated file ends inside (or right after) its last packet; a damaged one that is still full size has
    more after its last packet (an index, a trailer), and the dropped frames leave a hole between two packets.
    """
    where = sorted((p.pos, p.size) for p in packets if p.pos is not None and p.pos >= 0)
    missing = header_frames - len(packets)
    if where:
        size = path.stat().st_size
        # a gap between two packets far larger than a chunk header: the frame that was there is unreadable
        hole = next((i + 1 for i, (a, b) in enumerate(zip(where, where[1:])) if b[0] - (a[0] + a[1]) > 64), None)
        data_end = where[-1][0] + where[-1][1]
        if hole is not None or size - data_end > 16:
            first = f"frame {hole}" if hole is not None else f"one of the last {missing} frames"
            return DataError(path, f"corrupt: {first} does not decode: its data is damaged ({missing} of the "
                                   f"{header_frames} frames the header promises cannot be read; the file is full "
                                   "size, so it is not truncated)")
    return DataError(path, f"truncated: the header promises {header_frames} frames, the file holds {len(packets)}")


def probe(path: Path, verify: str = "ends") -> VideoInfo:
    """What a video holds, counted by demuxing every packet (headers can lie).

    verify: "none"; "ends" decodes the first and the last frame; "all" decodes every frame.
    A truncated file (fewer packets than its header promises, or a last frame that does not decode) and a
    corrupt one (a frame that does not decode, or frames the demuxer cannot read in a full-size file) raise
    :class:`DataError` naming the file and, where known, the frame. Damage (:mod:`syncssl.data.decode.damage`): every
    mode but "none" checks each packet's framing; "all" also has every frame judged by the decoder (errors,
    corrupt flags, concealment) and, for MJPEG, by a second JPEG decoder; damaged frames are counted and refused.
    """
    path = Path(path)
    with _open(path) as c:
        if not c.streams.video:
            raise DataError(path, "holds no video stream (corrupt, truncated, or not a video)")
        s = c.streams.video[0]
        configure(s)
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
            raise DataError(path, f"corrupt or truncated: demuxing failed after {len(packets)} frames "
                                  f"({av_error_text(e)})") from None
        if not packets:
            raise DataError(path, "holds no frames")
        if header_frames and len(packets) < header_frames:
            raise _missing_frames(path, packets, header_frames)
        by_duration = round(c.duration / 1e6 * fps) if c.duration and fps and verify != "none" else 0
        if not header_frames and by_duration - len(packets) > max(1, by_duration // 50):  # WebM / MKV: no count
            raise _missing_frames(path, packets, by_duration)
        gap = timestamp_gap([p.pts for p in packets]) if verify != "none" else None
        if gap:
            raise DataError(path, gap)
        last = len(packets) - 1
        to_check = {"none": [], "ends": [0, last] if last else [0], "all": range(len(packets))}[verify]
        width, height = s.codec_context.width, s.codec_context.height
        decoded, silent = 0, None
        damaged: dict[int, str] = {}  # frame -> what gives its damage away (syncssl.data.decode.damage)
        check_frame = FrameCheck(s, every_packet=verify == "all")
        with decoder_errors() as logs:
            for i in to_check:
                seen = len(logs)
                try:
                    frames = s.codec_context.decode(packets[i])
                except _decode_errors() as e:
                    if i == last and verify == "ends" and _ends_at_eof(path, packets[i]):
                        raise DataError(path, f"truncated or corrupt: the last frame ({i}) does not decode "
                                              f"({av_error_text(e)})") from None
                    raise DataError(path, f"corrupt: frame {i} does not decode ({av_error_text(e)})") from None
                decoded += len(frames)
                if not frames and silent is None and keyframes == len(packets):
                    silent = i  # intra-only: every packet gives its frame at once, so an empty one was dropped
                for f in frames:
                    width, height = f.width, f.height
                # "ends" decodes the last frame without its references: only a whole decode can judge it
                if verify == "all" or i == 0 or keyframes == len(packets):
                    data = bytes(packets[i])
                    fed = check_frame.feed(data)
                    seen_in_frames = [check_frame(f, data) for f in frames]  # every frame: a second decoder keeps pace
                    why = (fed or logged_error(logs, seen, s.codec_context.name)
                           or next(filter(None, seen_in_frames), None))
                    if why:
                        damaged[i] = why
        if verify == "all":
            with decoder_errors() as logs:
                try:
                    rest = s.codec_context.decode(None)  # frames a threaded decoder still held
                except _decode_errors() as e:
                    raise DataError(path, f"corrupt: flushing the decoder failed ({av_error_text(e)})") from None
                last_packet = check_frame.feed(None)
                for k, f in enumerate(rest):
                    why = last_packet or logged_error(logs, 0, s.codec_context.name) or check_frame(f, None)
                    if why:
                        damaged.setdefault(decoded + k, why)
            decoded += len(rest)
            check_frame.finish()
            for i, why in check_frame.late.items():
                damaged.setdefault(i, why)
            if decoded != len(packets):
                first = f"frame {silent} does not decode; " if silent is not None else ""
                raise DataError(path, f"corrupt: {first}{len(packets)} frames stored but {decoded} decoded")
        if verify != "none":
            framing = FramingCheck(s)
            if framing.active:
                for i, p in enumerate(packets):
                    why = framing(bytes(p))
                    if why:
                        damaged.setdefault(i, why)
        if damaged:
            raise DataError(path, describe(damaged, len(packets)))
    return VideoInfo(path, codec, int(width), int(height), len(packets), fps, keyframes == len(packets),
                     check_frame.suspects)


def _ends_at_eof(path: Path, packet) -> bool:
    """The packet's data runs to the end of the file (what a cut file looks like)."""
    if packet.pos is None or packet.pos < 0:
        return True
    return path.stat().st_size - (packet.pos + packet.size) <= 16


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


def _rgb(frame, size: tuple[int, int] | None = None) -> np.ndarray:
    """A decoded frame as uint8 RGB (H, W, 3), through one reused colour-conversion context per thread:
    ``to_ndarray(format="rgb24")`` builds a new one per frame, ~4x slower (580 vs 2260 frames/s, 320x240 MJPEG).

    size: (w, h) to shrink to in the same conversion (area averaging, pixel edges kept: pixel k of the result covers
    the source's [k W/w, (k + 1) W/w]); FFmpeg's scaler does it at a fraction of the cost of a full-size frame."""
    convert = getattr(_local, "convert", None)
    if convert is None:
        from av.video.reformatter import VideoReformatter
        convert = _local.convert = VideoReformatter()
    if size is None or tuple(size) == (frame.width, frame.height):
        return convert.reformat(frame, format="rgb24").to_ndarray()
    from av.video.reformatter import Interpolation
    return convert.reformat(frame, width=int(size[0]), height=int(size[1]), format="rgb24",
                            interpolation=Interpolation.AREA).to_ndarray()


_local = threading.local()


def iter_frames(path: Path, count: int, start: int = 0, size: tuple[int, int] | None = None,
                suspects: dict[int, str] | None = None) -> Iterator[np.ndarray]:
    """``count`` frames of a video from frame ``start`` on, one uint8 (H, W, 3) at a time (constant memory);
    shrunk to ``size`` (w, h) while converting, if given. ``suspects``, if given, receives the frames (counted from
    ``start``) with weaker signs of damage than a refusal needs, and why (:data:`damage.PIXEL_SUSPECT`).

    Damaged data raises ``DataError(path, "corrupt: frame N does not decode (...)")``, and so does a file that
    ends before ``start + count`` frames; PyAV's own errors never escape.
    """
    path = Path(path)
    n = -start  # frames delivered, counted from ``start``: the skipped ones are decoded (in order) and dropped
    with _open(path) as c, decoder_errors() as logs:
        if not c.streams.video:
            raise DataError(path, "holds no video stream (corrupt, truncated, or not a video)")
        s = c.streams.video[0]
        configure(s)
        promised = int(s.frames or 0)
        framing, check_frame = FramingCheck(s), FrameCheck(s)
        damage = None  # what gives away damage in a packet whose frame has not come out yet
        with _decoding(path, lambda: n + start):
            for packet in c.demux(s):
                data = bytes(packet) if packet.size else None
                seen = len(logs)
                frames = s.codec_context.decode(packet if data else None)  # a decode error is said first
                damage = (damage or (framing(data) if data else None) or check_frame.feed(data)
                          or logged_error(logs, seen, s.codec_context.name))
                for f in frames:
                    damage = damage or check_frame(f, data)
                    if damage:
                        raise DataError(path, describe({n + start: damage}, promised))
                    if check_frame.late:  # the frame before, seen again from this one (MJPEG's pixels)
                        raise DataError(path, describe(check_frame.late, promised))
                    if n >= 0:
                        yield _rgb(f, size)
                    n += 1
                    if n >= count:
                        break
                if n >= count:
                    break
            check_frame.finish()
            if check_frame.late:
                raise DataError(path, describe(check_frame.late, promised))
        if suspects is not None:
            suspects.update({i - start: why for i, why in check_frame.suspect_frames.items() if 0 <= i - start < count})
    if n < count:
        got = n + start
        damaged = f" of the {promised} its header promises (damaged or truncated)" if promised > got else ""
        need = f"{start} + {count}" if start else f"{count}"
        raise DataError(path, f"holds only {got} decodable frames{damaged}, the sequence needs {need}")


def read_frames(path: Path, indices=None, size: tuple[int, int] | None = None) -> np.ndarray:
    """Frames ``indices`` (default: all) as uint8 (n, H, W, 3), in the order asked (shrunk to ``size``, if given).

    Plain and sequential: decodes from the start up to the last wanted frame. The training decoders
    (``syncssl.data.decode``) are the fast path; this one serves tools and tests. Damaged data raises
    ``DataError(path, "corrupt: frame N does not decode (...)")``.
    """
    path = Path(path)
    with _open(path) as c:
        if not c.streams.video:
            raise DataError(path, "holds no video stream (corrupt, truncated, or not a video)")
        s = c.streams.video[0]
        want = None if indices is None else np.asarray(indices, np.int64).reshape(-1)
        wanted = None if want is None else set(want.tolist())
        last = None if want is None else int(want.max()) if want.size else -1
        got: dict[int, np.ndarray] = {}
        out = []
        i = -1  # the last frame delivered
        with _decoding(path, lambda: i + 1):
            if last != -1:
                for f in c.decode(s):
                    i += 1
                    if want is None:
                        out.append(_rgb(f, size))
                    elif i in wanted:
                        got[i] = _rgb(f, size)
                    if last is not None and i >= last:
                        break
    w, h = size or (s.width, s.height)
    if want is None:
        return np.stack(out) if out else np.zeros((0, h, w, 3), np.uint8)
    missing = sorted(wanted - set(got))
    if missing:
        raise DataError(path, f"frames {missing[:5]}{'...' if len(missing) > 5 else ''} are past the end of the video")
    return np.stack([got[int(i)] for i in want]) if want.size else np.zeros((0, h, w, 3), np.uint8)


class _NoSeek(Exception):
    pass


def read_frames_at(path: Path, indices, seek_gap: int = 24, size: tuple[int, int] | None = None) -> np.ndarray:
    """Frames ``indices`` (n, H, W, 3) uint8, seeking to the key frame before each far-apart one (shrunk to ``size``
    (w, h) while converting, if given).

    Frame i is the i-th in presentation order (timestamps from demuxing, no decoding). Falls back to plain
    sequential decoding (:func:`read_frames`) when the file's timestamps do not allow exact seeking. Damaged
    data raises ``DataError(path, "corrupt: frame N does not decode (...)")``.
    """
    path = Path(path)
    idx = np.asarray(indices, np.int64).reshape(-1)
    if idx.size == 0:
        return read_frames(path, idx, size)
    try:
        got = _seek_and_decode(path, np.unique(idx), seek_gap, size)
    except _NoSeek:
        return read_frames(path, idx, size)
    return np.stack([got[int(i)] for i in idx])


def _seek_and_decode(path: Path, wanted: np.ndarray, seek_gap: int, size=None) -> dict[int, np.ndarray]:
    try:
        c = av.open(str(path))
    except av.error.FFmpegError:
        raise _NoSeek from None  # read_frames reports it properly
    with c:
        if not c.streams.video:
            raise _NoSeek
        s = c.streams.video[0]
        try:
            packets = [(p.pts, bool(p.is_keyframe)) for p in c.demux(s) if p.size > 0]
        except av.error.FFmpegError:
            raise _NoSeek from None
        pts = [p for p, _ in packets]
        if not pts or any(p is None for p in pts) or len(set(pts)) != len(pts):
            raise _NoSeek
        packets.sort()
        pts = [p for p, _ in packets]
        keys = np.maximum.accumulate(np.where([k for _, k in packets], np.arange(len(pts)), -1))
        if wanted[-1] >= len(pts):
            raise DataError(path, f"frame {int(wanted[-1])} is past the end of the video ({len(pts)} frames)")
        index_of = {p: i for i, p in enumerate(pts)}
        got: dict[int, np.ndarray] = {}
        frames = None
        pos = None  # index of the last decoded frame
        with _decoding(path, lambda: pos + 1):
            for want in wanted.tolist():
                if frames is None or pos is None or want - pos > seek_gap:
                    c.seek(pts[want], stream=s, backward=True, any_frame=False)
                    frames = c.decode(s)
                    pos = int(keys[want]) - 1 if keys[want] >= 0 else want - 1  # the seek lands on that key frame
                for f in frames:
                    i = index_of.get(f.pts)
                    if i is None:
                        raise _NoSeek
                    pos = i
                    if i == want:
                        got[want] = _rgb(f, size)
                        break
                    if i > want:
                        raise _NoSeek  # the seek landed after the frame: timestamps are not what they seem
                else:
                    raise _NoSeek
        return got
