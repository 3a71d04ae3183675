"""DALI's video decoder, ``fn.decoders.video``: libavcodec on CPU (MJPEG, VP8, VP9), NVDEC on GPU.

``fn.decoders.video`` decodes in-memory encoded streams, one sample per stream, with a per-sample ``frames``
list. Fed a whole file, it walks from the first frame to every wanted one (on an in-memory stream it builds no
key-frame index to seek with), so the cost of a frame grows with its index: about 20x slower than PyAV on a
150-frame MJPEG clip, hopeless on Human3.6M's minutes-long videos. So each sample here is a *mini stream*: the
wanted frames' packets, copied without decoding into a small Matroska stream (for codecs with key frames:
from the key frame at or before each wanted frame up to it). DALI then decodes only what is needed, and the
file is read only where the plan points (nothing is cached but the index and the open container).

One sample per file of a batch (its requests merged); the pipeline's batch size grows to the largest batch
seen. A batch that fails is rerun file by file to name the culprit; the pipeline is rebuilt after any error
(DALI invalidates it).
"""
from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import torch

from ...errors import DataError
from ...optional import av
from ...parallel import usable_cpus
from .base import DALI_CPU_CODECS, NVDEC_CODECS, ContainerCache, DecoderBase, FailurePolicy, Job, OpenVideo, VideoIndex

_TIME_BASE = Fraction(1, 1000)  # of the mini streams (Matroska counts milliseconds)
_TICK = 40  # ms per frame in a mini stream: any constant rate will do, DALI only needs the order


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


class DALIDecoder(DecoderBase):
    """DALI ``fn.decoders.video`` on CPU (``device="cpu"``) or GPU (``device="cuda"``, NVDEC).

    Returns CPU tensors on CPU and CUDA tensors on the current CUDA device on GPU.
    num_threads: DALI worker threads (default: the CPU count); max_batch_size: the pipeline's first batch size
    (it grows when a batch holds more files); max_open: open containers kept for reading packets (LRU).
    """

    name = "dali"

    def __init__(self, device: str = "cpu", policy: FailurePolicy | None = None, num_threads: int | None = None,
                 max_batch_size: int = 64, max_open: int = 256):
        super().__init__(policy)
        if not dali_available():
            raise RuntimeError("the DALI decoder needs NVIDIA DALI (pip install nvidia-dali-cuda130); "
                               "or use --decoder pyav")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("DALI on GPU needs CUDA, and torch sees no GPU; use --decoder pyav or DALI on CPU")
        self.device = device
        self.title = "DALI on CPU" if device == "cpu" else "DALI on GPU (NVDEC)"
        self.supported_codecs = DALI_CPU_CODECS if device == "cpu" else NVDEC_CODECS
        self.num_threads = max(1, int(num_threads or usable_cpus()))
        self._batch_size = max(1, int(max_batch_size))
        self._containers = ContainerCache(max_open)
        self._pipe = None

    def _unsupported(self, codec: str) -> str:
        if self.device == "cpu" and codec in NVDEC_CODECS:
            return (f"{codec} cannot be decoded by DALI on CPU (it decodes {', '.join(sorted(DALI_CPU_CODECS))}); "
                    "use --decoder pyav, or a GPU (DALI NVDEC)")
        return (f"{codec} cannot be decoded by {self.title} (it decodes {', '.join(sorted(self.supported_codecs))}); "
                "use --decoder pyav")

    # -------------------------------------------------------- decoding

    def _decode_jobs(self, jobs: list[Job]):
        outcomes: list = [None] * len(jobs)
        samples, where = [], []
        for k, job in enumerate(jobs):
            try:
                handle = self._containers.checkout(job.path)
            except DataError as e:
                outcomes[k] = e
                continue
            try:
                data, positions, job.decoded = mini_stream(handle, job.index, job.frames)
            except DataError as e:
                handle.close()
                outcomes[k] = e
                continue
            except (av.error.FFmpegError, ValueError) as e:
                handle.close()
                outcomes[k] = DataError(job.path, f"reading its packets failed ({e})")
                continue
            self._containers.checkin(handle)
            samples.append((data, positions))
            where.append(k)
        for k, out in zip(where, self._run_isolating(samples, [jobs[k].path for k in where])):
            outcomes[k] = out
        return outcomes

    def _run_isolating(self, samples, paths) -> list:
        """Run the batch; if DALI fails, rerun file by file so the error names the file that caused it."""
        if not samples:
            return []
        try:
            return self._run(samples)
        except RuntimeError as e:
            self._pipe = None  # DALI invalidates a pipeline after an error
            if len(samples) == 1:
                return [DataError(paths[0], f"DALI could not decode it: {dali_error_line(e)}")]
        outcomes = []
        for sample, path in zip(samples, paths):
            try:
                outcomes += self._run([sample])
            except RuntimeError as e:
                self._pipe = None
                outcomes.append(DataError(path, f"DALI could not decode it: {dali_error_line(e)}"))
        return outcomes

    def _run(self, samples) -> list[torch.Tensor]:
        if self._pipe is None or len(samples) > self._batch_size:
            self._batch_size = max(self._batch_size, len(samples))
            self._pipe = self._build(self._batch_size)
        self._pipe.feed_input("encoded", [s[0] for s in samples])
        self._pipe.feed_input("frames", [s[1] for s in samples])
        (out,) = self._pipe.run()
        if self.device == "cpu":
            # one copy out of DALI's buffers (reused by the next run), then zero-copy into torch
            return [torch.from_numpy(np.array(out[k])) for k in range(len(samples))]
        from nvidia.dali.plugin.pytorch import feed_ndarray
        stream = torch.cuda.current_stream()
        tensors = []
        for k in range(len(samples)):
            t = torch.empty(tuple(out[k].shape()), dtype=torch.uint8, device="cuda")
            feed_ndarray(out[k], t, cuda_stream=stream)
            tensors.append(t)
        return tensors

    def _build(self, batch_size: int):
        from nvidia.dali import fn, types
        from nvidia.dali.pipeline import Pipeline

        gpu = self.device == "cuda"
        pipe = Pipeline(batch_size=batch_size, num_threads=self.num_threads,
                        device_id=torch.cuda.current_device() if gpu else None,
                        exec_async=False, exec_pipelined=False, prefetch_queue_depth=1)
        with pipe:
            # no_copy: DALI reads our buffers in place; run() is synchronous, so they outlive their use
            encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1, no_copy=True)
            frames = fn.external_source(name="frames", dtype=types.INT32, ndim=1)
            # affine=False: the GPU decoder's threads must not be pinned to the same cores in every DDP rank
            options = {"device": "mixed", "affine": False} if gpu else {"device": "cpu"}
            pipe.set_outputs(fn.decoders.video(encoded, frames=frames, **options))
        pipe.build()
        return pipe

    def close(self) -> None:
        self._pipe = None
        self._containers.close()


def mini_stream(handle: OpenVideo, index: VideoIndex, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The packets needed to decode frames ``wanted`` (sorted, unique) of one file, as a small Matroska stream.

    For each wanted frame: the packets from its key frame up to it, in decode order (overlapping runs merged).
    Timestamps are renumbered to a constant rate. Returns the stream's bytes (uint8), the positions of the
    wanted frames in it (presentation order, int32, what ``fn.decoders.video``'s ``frames`` takes), and the
    number of packets (each one is decoded).
    """
    n = index.num_frames
    runs = sorted(zip(index.decode_pos[index.last_key[wanted]].tolist(), index.decode_pos[wanted].tolist()))
    merged: list[list[int]] = []
    for start, stop in runs:
        if merged and start <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    frame_at = np.empty(n, np.int64)  # decode position -> presentation index
    frame_at[index.decode_pos] = np.arange(n)
    picked = np.concatenate([np.arange(a, b + 1) for a, b in merged])  # decode positions, ascending
    shown = frame_at[picked]  # their presentation indices
    rank = np.empty(len(picked), np.int64)
    rank[np.argsort(shown)] = np.arange(len(picked))
    delay = max(0, int((np.arange(len(picked)) - rank).max()))  # reordering depth: keeps dts <= pts

    packets = []
    container, stream = handle.container, handle.stream
    for start, stop in merged:
        container.seek(int(index.pts[frame_at[start]]), stream=stream, backward=True, any_frame=False)
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            i = index.frame_of(packet.pts if packet.pts is not None else packet.dts)
            if i < 0:
                raise DataError(index.path, f"a packet has a timestamp the index does not know ({packet.pts})")
            pos = int(index.decode_pos[i])
            if pos < start:
                continue  # the seek landed on an earlier key frame
            packets.append(packet)
            if pos >= stop:
                break
        if len(packets) != np.searchsorted(picked, stop, side="right"):
            raise DataError(index.path, f"frames {frame_at[start]}..{frame_at[stop]} could not be read "
                                        "(truncated or damaged)")

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as out:
        out_stream = out.add_stream_from_template(stream)
        for k, packet in enumerate(packets):
            packet.stream = out_stream
            packet.time_base = _TIME_BASE
            packet.pts, packet.dts = int(rank[k] + delay) * _TICK, k * _TICK
            out.mux(packet)
    data = np.frombuffer(buffer.getbuffer(), np.uint8)
    positions = rank[np.searchsorted(picked, index.decode_pos[wanted])].astype(np.int32)
    return data, positions, len(packets)


def dali_error_line(error: BaseException) -> str:
    """The first useful line of DALI's long error text (its pipeline traceback and C++ context dropped)."""
    text = str(error)
    if "encountered:" in text:  # DALI: "...the following traceback: <python lines> encountered: <the error>"
        text = text.split("encountered:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    noise = ("Critical error", "C++ context", "Current pipeline object")
    useful = [line for line in lines if not line.startswith(noise)]
    line = useful[0] if useful else type(error).__name__
    if line.startswith("Assert on") and "failed:" in line:
        line = line.split("failed:", 1)[1].strip()
    return line
