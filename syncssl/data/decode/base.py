"""The decode contract shared by every backend: requests, results, counters, the failure policy, file indexes.

A backend only has to turn one *job* (one file, its wanted frames sorted and unique) into an array of frames;
everything else lives here, once: grouping requests by file, checking codecs and frame ranges before decoding,
checking the shape of what came back, duplicating and reordering frames per request, counting, and the
failure policy.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ...errors import DataError, TooManyDecodeFailures, UnsupportedCodec
from ...optional import av

log = logging.getLogger("syncssl.decode")

# What each backend can decode, as FFmpeg names the codecs (see fn.decoders.video's documentation).
DALI_CPU_CODECS = frozenset({"mjpeg", "vp8", "vp9"})
NVDEC_CODECS = frozenset({"h264", "hevc", "av1", "vp8", "vp9", "mjpeg", "mpeg4"})
_ALIASES = {"h265": "hevc", "avc": "h264", "libdav1d": "av1", "libaom-av1": "av1", "libvpx-vp9": "vp9",
            "libvpx": "vp8", "mjpg": "mjpeg"}


def normalize_codec(name: str) -> str:
    """FFmpeg's canonical codec name for ``name`` ("H265" -> "hevc", "libvpx-vp9" -> "vp9")."""
    name = str(name).strip().lower()
    return _ALIASES.get(name, name)


@dataclass(frozen=True, eq=False)
class FrameRequest:
    """Frames of one video file, wanted in this order (duplicates allowed)."""

    path: Path
    frames: np.ndarray  # (n,) int64 frame indices in presentation order, any order
    codec: str  # as FFmpeg names it ("mjpeg", "h264", "vp9", ...): checked against the backend before decoding
    size: tuple[int, int] | None = None  # (width, height) the caller expects (the manifest's); None: the file's

    def __post_init__(self):
        frames = np.asarray(self.frames)
        if frames.ndim > 1 or (frames.size and not np.issubdtype(frames.dtype, np.integer)):
            raise ValueError(f"{self.path}: frames must be a 1-D array of integers, got {frames.dtype} {frames.shape}")
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "frames", frames.astype(np.int64).reshape(-1))
        object.__setattr__(self, "codec", normalize_codec(self.codec))
        if self.size is not None:
            object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))


@dataclass
class DecodeStats:
    """Counters of one decoder (what ``state_dict`` saves)."""

    batches: int = 0  # decode() calls
    requests: int = 0  # requests seen
    failed_requests: int = 0  # requests skipped under the failure policy (their result is None)
    used_frames: int = 0  # frames handed to callers (a duplicate counts each time)
    decoded_frames: int = 0  # frames the codec produced, including those decoded only to reach a wanted one
    failures: dict[str, str] = field(default_factory=dict)  # file -> its first error (at most 100 files kept)

    @property
    def decoded_per_used(self) -> float:
        """Decoding work per delivered frame: 1.0 is ideal; above it, frames were decoded only to be skipped."""
        return self.decoded_frames / self.used_frames if self.used_frames else 0.0

    @property
    def failure_share(self) -> float:
        return self.failed_requests / self.requests if self.requests else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "decoded_per_used": self.decoded_per_used}


@dataclass(frozen=True)
class FailurePolicy:
    """What to do when a file fails to decode (corrupt, truncated, shorter than the manifest says...)."""

    max_failure_share: float = 0.01  # skip=True: raise once failed requests exceed this share of requests
    skip: bool = True  # True: skip the request (result None, counted, the caller drops the pair); False: raise
    grace_requests: int = 200  # the share is taken over max(requests seen, this), so one early failure is no alarm


@runtime_checkable
class Decoder(Protocol):
    """One interface, several backends (see :func:`syncssl.data.decode.make_decoder`).

    The decoder is stateless between batches: a training checkpoint needs only the sampler's step. Its
    ``state_dict`` holds the counters (``stats``), so that the failure share carries over a resume.
    """

    name: str  # "pyav" | "dali"
    device: str  # "cpu" | "cuda": where the returned tensors live
    stats: DecodeStats

    def decode(self, requests: list[FrameRequest]) -> list[torch.Tensor | None]:
        """uint8 (n, H, W, 3) per request, frames in the requested order; None for a request skipped by policy.

        Results of one batch may share memory (views of one decoded block): copy before writing into them.
        """
        ...

    def close(self) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


# ---------------------------------------------------------------- file index


@dataclass(frozen=True, eq=False)
class VideoIndex:
    """What one demuxing pass (no decoding) learns about a video: enough to seek and to check requests."""

    path: Path
    codec: str  # canonical FFmpeg name
    width: int
    height: int
    pts: np.ndarray  # (n,) int64, ascending: frame i (presentation order) has timestamp pts[i]
    keyframe: np.ndarray  # (n,) bool: frame i is a key frame (decoding can start there)
    decode_pos: np.ndarray  # (n,) int64: position of frame i's packet in the file (decode order)
    last_key: np.ndarray  # (n,) int64: the key frame at or before frame i (presentation order), -1 if none
    time_base: Fraction
    fps: float  # the stream's average frame rate (0 if it does not say)

    @property
    def num_frames(self) -> int:
        return len(self.pts)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def intra_only(self) -> bool:
        return bool(self.keyframe.all())

    def frame_of(self, pts: int | None) -> int:
        """Presentation index of the frame with timestamp ``pts``, or -1."""
        if pts is None:
            return -1
        i = int(np.searchsorted(self.pts, pts))
        return i if i < len(self.pts) and self.pts[i] == pts else -1


def index_video(path: Path) -> VideoIndex:
    """Demux every packet of ``path`` once (no decoding); damaged or unusable files raise DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "video file is missing")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise DataError(path, f"not a readable video ({e.strerror or e})") from None
    with container:
        if not container.streams.video:
            raise DataError(path, "holds no video stream (corrupt, truncated, or not a video)")
        stream = container.streams.video[0]
        header_frames = int(stream.frames or 0)
        ts, keys = [], []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                ts.append(packet.pts if packet.pts is not None else packet.dts)
                keys.append(bool(packet.is_keyframe))
        except av.error.FFmpegError as e:
            raise DataError(path, f"corrupt or truncated: demuxing failed after {len(ts)} frames ({e})") from None
        codec = stream.codec_context.codec
        codec = normalize_codec(getattr(codec, "canonical_name", None) or codec.name)
        width, height = stream.codec_context.width, stream.codec_context.height
        time_base = stream.time_base
        fps = float(stream.average_rate or stream.guessed_rate or 0)
    if not ts:
        raise DataError(path, "holds no frames")
    if any(t is None for t in ts):
        raise DataError(path, "has frames without timestamps; remux it into .mkv or .mp4 (ffmpeg -i IN -c copy OUT)")
    if header_frames and len(ts) < header_frames:
        raise DataError(path, f"truncated: the header promises {header_frames} frames, the file holds {len(ts)}")
    if not width or not height:
        raise DataError(path, "the video stream does not say its frame size")
    ts = np.asarray(ts, np.int64)
    order = np.argsort(ts, kind="stable")
    pts = ts[order]
    if len(pts) > 1 and (np.diff(pts) == 0).any():
        raise DataError(path, "two frames share a timestamp; remux or transcode it")
    keyframe = np.asarray(keys, bool)[order]
    last_key = np.maximum.accumulate(np.where(keyframe, np.arange(len(pts)), -1))
    return VideoIndex(path, codec, int(width), int(height), pts, keyframe, order.astype(np.int64), last_key,
                      Fraction(time_base) if time_base is not None else Fraction(1, 1), fps)


# ---------------------------------------------------------------- open containers


class OpenVideo:
    """An open container, its video stream, and per-file helpers a backend keeps with it."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.container = av.open(str(path))
        except av.error.FFmpegError as e:
            raise DataError(path, f"not a readable video ({e.strerror or e})") from None
        self.stream = self.container.streams.video[0]
        self.extra = {}  # backend-specific state, e.g. a reusable colour converter

    def close(self):
        self.container.close()


class ContainerCache:
    """A bounded LRU of open containers. A checked-out container is owned by one thread until checked in."""

    def __init__(self, capacity: int = 64):
        self.capacity = max(1, int(capacity))
        self._idle: OrderedDict[Path, OpenVideo] = OrderedDict()
        self._lock = threading.Lock()

    def checkout(self, path: Path) -> OpenVideo:
        with self._lock:
            handle = self._idle.pop(path, None)
        return handle if handle is not None else OpenVideo(path)

    def checkin(self, handle: OpenVideo) -> None:
        with self._lock:
            self._idle[handle.path] = handle
            evicted = []
            while len(self._idle) > self.capacity:
                evicted.append(self._idle.popitem(last=False)[1])
        for h in evicted:
            h.close()

    def close(self) -> None:
        with self._lock:
            handles, self._idle = list(self._idle.values()), OrderedDict()
        for h in handles:
            h.close()


# ---------------------------------------------------------------- the shared decode path


@dataclass
class Job:
    """One file's share of a batch: its wanted frames (sorted, unique) and the requests they serve."""

    path: Path
    index: VideoIndex
    frames: np.ndarray  # (m,) int64 sorted unique
    requests: list[tuple[int, FrameRequest]]  # (position in the batch, request)
    decoded: int = 0  # frames the backend decoded for this job (set by the backend)


class DecoderBase:
    """Everything but the decoding itself; subclasses implement :meth:`_decode_jobs`."""

    name = "base"
    device = "cpu"
    title = "this decoder"  # for messages, e.g. "DALI on CPU"
    supported_codecs: frozenset | None = None  # None: any codec FFmpeg knows

    def __init__(self, policy: FailurePolicy | None = None):
        self.policy = policy or FailurePolicy()
        self.stats = DecodeStats()
        self._indexes: dict[Path, VideoIndex] = {}
        self.reason = ""  # why this backend: set by make_decoder, for the caller to print

    # -------------------------------------------------------- public

    def index(self, path: Path) -> VideoIndex:
        """The file's index (probed once, then cached: real frame count, size, key frames)."""
        path = Path(path)
        if path not in self._indexes:
            self._indexes[path] = index_video(path)
        return self._indexes[path]

    def decode(self, requests: list[FrameRequest]) -> list[torch.Tensor | None]:
        """Decode a batch of requests; see :class:`Decoder`. Not thread-safe: call from one thread."""
        results: list[torch.Tensor | None] = [None] * len(requests)
        self.stats.batches += 1
        self.stats.requests += len(requests)
        by_path: dict[Path, list[tuple[int, FrameRequest]]] = {}
        for i, r in enumerate(requests):
            if not isinstance(r, FrameRequest):
                raise TypeError(f"decode() takes FrameRequest items, got {type(r).__name__}")
            self._check_codec(r.path, r.codec)  # before any decoding, and not subject to the failure policy
            by_path.setdefault(r.path, []).append((i, r))

        jobs = []
        for path, reqs in by_path.items():
            try:
                jobs.append(self._make_job(path, reqs))
            except UnsupportedCodec:
                raise
            except DataError as e:
                self._failed(reqs, e)
        outcomes = self._decode_jobs(jobs) if jobs else []
        for job, out in zip(jobs, outcomes):
            try:
                if isinstance(out, BaseException):
                    raise out
                self._deliver(job, out, results)
            except DataError as e:
                self._failed(job.requests, e)
        self._check_failure_share()
        return results

    def close(self) -> None:
        pass

    def state_dict(self) -> dict:
        """The counters only: the decoder keeps no state between batches (the sampler's step is the state)."""
        return {"stats": self.stats.as_dict()}

    def load_state_dict(self, state: dict) -> None:
        s = dict(state["stats"])
        s.pop("decoded_per_used", None)
        self.stats = DecodeStats(**s)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.title}>"

    # -------------------------------------------------------- for subclasses

    def _decode_jobs(self, jobs: list[Job]) -> list[np.ndarray | torch.Tensor | BaseException]:
        """Per job: uint8 (len(job.frames), H, W, 3), or the exception (DataError naming the file) it raised."""
        raise NotImplementedError

    def _unsupported(self, codec: str) -> str:
        return f"{codec} cannot be decoded by {self.title}; use --decoder pyav"

    # -------------------------------------------------------- internals

    def _check_codec(self, path: Path, codec: str) -> None:
        if self.supported_codecs is not None and codec not in self.supported_codecs:
            raise UnsupportedCodec(path, self._unsupported(codec))

    def _make_job(self, path: Path, reqs: list[tuple[int, FrameRequest]]) -> Job:
        index = self.index(path)
        self._check_codec(path, index.codec)  # the file may disagree with what the caller said
        for _, r in reqs:
            if r.size is not None and r.size != index.size:
                raise DataError(path, f"expected {r.size[0]}x{r.size[1]} frames, the video is "
                                      f"{index.width}x{index.height}")
            bad = r.frames[(r.frames < 0) | (r.frames >= index.num_frames)]
            if len(bad):
                raise DataError(path, f"frame {int(bad[0])} was requested but the video has only "
                                      f"{index.num_frames} frames (0..{index.num_frames - 1})")
        frames = np.unique(np.concatenate([r.frames for _, r in reqs]))
        undecodable = frames[index.last_key[frames] < 0]
        if len(undecodable):
            raise DataError(path, f"frame {int(undecodable[0])} comes before the first key frame and cannot be "
                                  "decoded")
        return Job(path, index, frames, reqs)

    def _deliver(self, job: Job, out, results: list) -> None:
        if not isinstance(out, torch.Tensor):
            out = torch.from_numpy(np.ascontiguousarray(out))
        want = (len(job.frames), job.index.height, job.index.width, 3)
        if tuple(out.shape) != want or out.dtype != torch.uint8:
            raise DataError(job.path, f"the decoder returned {tuple(out.shape)} {out.dtype} for frames "
                                      f"{job.frames[:5].tolist()}..., expected {want} uint8")
        self.stats.decoded_frames += job.decoded
        for i, r in job.requests:
            sel = np.searchsorted(job.frames, r.frames)
            if len(sel) and (np.diff(sel) == 1).all():
                results[i] = out[sel[0]:sel[-1] + 1]  # a view: requests may share memory with each other
            else:
                results[i] = out.index_select(0, torch.from_numpy(sel).to(out.device))
            self.stats.used_frames += len(r.frames)

    def _failed(self, reqs: list[tuple[int, FrameRequest]], error: DataError) -> None:
        if not self.policy.skip:
            raise error
        self.stats.failed_requests += len(reqs)
        key = str(error.path)
        if key not in self.stats.failures:
            log.warning("skipping %d request(s): %s", len(reqs), error)
            if len(self.stats.failures) < 100:
                self.stats.failures[key] = error.problem
        self._check_failure_share()

    def _check_failure_share(self) -> None:
        p, s = self.policy, self.stats
        if not s.failed_requests:
            return
        share = s.failed_requests / max(s.requests, p.grace_requests)
        if share > p.max_failure_share:
            # one line: each file with its first error (a DALI or FFmpeg message may span lines)
            files = "; ".join(f"{k}: {' '.join(v.split())}" for k, v in list(s.failures.items())[:5])
            more = f"; and {len(s.failures) - 5} more files" if len(s.failures) > 5 else ""
            n = len(s.failures)
            raise TooManyDecodeFailures(
                f"decoding failed for {n} file{'s' if n != 1 else ''} ({s.failed_requests} of {s.requests} "
                f"requests, more than the {p.max_failure_share:.1%} allowed by data.max_decode_failures): "
                f"{files}{more}")
