"""The universal CPU fallback: PyAV (FFmpeg's libavcodec), any codec FFmpeg knows.

Per file of a batch, the wanted frames (sorted, unique) are decoded in one forward walk: seek to the key frame
at or before a wanted frame, decode forward, keep the wanted ones, and seek again only when that is cheaper
than decoding on (for intra-only codecs like MJPEG every frame is a key frame, so each seek lands exactly on
the wanted frame and nothing is decoded in vain). Files are decoded in parallel on a small thread pool:
libavcodec and the colour conversion release the GIL.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...errors import DataError
from ...optional import av
from ...parallel import usable_cpus
from .base import ContainerCache, DecoderBase, FailurePolicy, Job, OpenVideo, VideoIndex
from .video import av_error_text


class PyAVDecoder(DecoderBase):
    """PyAV on CPU; returns CPU tensors.

    num_threads: files decoded in parallel (default: the CPU count); max_open: open containers kept (LRU).
    """

    name, device, title = "pyav", "cpu", "PyAV on CPU"

    def __init__(self, policy: FailurePolicy | None = None, num_threads: int | None = None, max_open: int = 256):
        super().__init__(policy)
        self.num_threads = max(1, int(num_threads or usable_cpus()))
        self._containers = ContainerCache(max_open)
        self._pool = ThreadPoolExecutor(self.num_threads, "pyav-decode") if self.num_threads > 1 else None

    def _decode_jobs(self, jobs: list[Job]):
        if self._pool is None or len(jobs) == 1:
            return [self._run(job) for job in jobs]
        return list(self._pool.map(self._run, jobs))

    def _run(self, job: Job):
        """One job, its error returned rather than raised (the base class applies the failure policy)."""
        try:
            handle = self._containers.checkout(job.path)
        except DataError as e:
            return e
        try:
            frames, job.decoded = decode_sorted(handle, job.index, job.frames)
        except DataError as e:
            handle.close()  # the decoder may be in a bad state: reopen next time
            return e
        except (av.error.FFmpegError, ValueError) as e:
            handle.close()
            return DataError(job.path, f"decoding failed ({e})")
        self._containers.checkin(handle)
        return frames

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self._containers.close()


def decode_sorted(handle: OpenVideo, index: VideoIndex, wanted: np.ndarray) -> tuple[np.ndarray, int]:
    """Frames ``wanted`` (sorted, unique, in range) of one file as uint8 (m, H, W, 3), and the frames decoded."""
    container, stream = handle.container, handle.stream
    if "rgb" not in handle.extra:  # reused: keeps its colour-conversion context
        from av.video.reformatter import VideoReformatter
        handle.extra["rgb"] = VideoReformatter()
    convert = handle.extra["rgb"]
    out = np.empty((len(wanted), index.height, index.width, 3), np.uint8)
    slot = {int(w): j for j, w in enumerate(wanted)}
    filled = np.zeros(len(wanted), bool)
    frames = None  # the running decode, None until the first seek
    pos = -1  # presentation index of the last frame it delivered
    floor = 0  # frames before the last seek target are not trusted (open-GOP leading frames)
    decoded = 0
    for w in wanted.tolist():
        key = int(index.last_key[w])
        # decode on from where we are when that is no more work than from the key frame
        if frames is None or not key - 1 <= pos < w:
            container.seek(int(index.pts[key]), stream=stream, backward=True, any_frame=False)
            frames, pos, floor = container.decode(stream), key - 1, key
        while pos < w:
            try:
                frame = next(frames, None)
            except (av.error.FFmpegError, ValueError) as e:
                raise DataError(index.path, f"corrupt: frame {pos + 1} does not decode ({av_error_text(e)})") from None
            if frame is None:
                raise DataError(index.path, f"frame {w} could not be decoded: the stream ended after frame {pos}")
            decoded += 1
            i = index.frame_of(frame.pts)
            if i < floor:
                if i < 0:
                    raise DataError(index.path, f"the decoder delivered a frame with unknown timestamp {frame.pts}")
                continue
            pos = i
            j = slot.get(i)
            if j is not None:
                rgb = convert.reformat(frame, format="rgb24").to_ndarray()
                if rgb.shape != out.shape[1:]:
                    raise DataError(index.path, f"frame {i} is {rgb.shape[1]}x{rgb.shape[0]}, the video header "
                                                f"says {index.width}x{index.height}")
                out[j], filled[j] = rgb, True
        if not filled[slot[w]]:  # pos jumped past w: the decoder dropped it (damaged data)
            raise DataError(index.path, f"frame {w} could not be decoded (the decoder went on to frame {pos})")
    return out, decoded
