"""Damaged frames: what gives them away, and the rule syncssl applies to them.

The witnesses, each where it is cheap enough:

- **the bitstream's own framing**, per packet, without decoding (every probe, so the default ``inspect`` too):
  a JPEG (MJPEG frame) runs SOI, well-formed marker segments, entropy-coded data in which 0xFF is only ever
  escaped or a restart marker, restart markers in order and exactly as many as its MCUs call for, then EOI;
  an H.264 / HEVC packet of an MP4 / MKV is tiled exactly by its NAL units' length prefixes, and every NAL
  header is valid;
- **FFmpeg's decoder**, per frame (``inspect --deep`` and prepare's decoding pass, which decode every frame):
  a decode error, a frame it flags corrupt, or an error it logs while decoding (concealment, a damaged slice
  or block: ``concealing 12 DC, 12 AC, 12 MV errors``, ``error count: 67``);
- for MJPEG, **a second, independent JPEG decoder** (libjpeg-turbo through Pillow): after damage the two
  resynchronise differently, so their luma disagrees by far more than rounding (clean frames: < 0.5 grey levels
  in every 8x8 block; damaged: tens);
- for VP9, **a second VP9 decoder** (libvpx, bundled with PyAV's FFmpeg): VP9 decoding is exact, so on an undamaged
  stream both decoders give the same samples to the bit, and damage, which FFmpeg's own VP9 decoder conceals
  without a word, shows as a difference or as a packet libvpx refuses;
- **timestamps and duration**, for containers without a frame count (WebM / MKV): a constant-rate stream whose
  timestamps skip, or that holds fewer frames than its duration promises, lost frames to damage;
- **the pixels**, for MJPEG and H.264 (every frame decoded, in order): damage that still decodes as a valid
  bitstream, the same in both decoders, garbles the picture from the damaged block on, in decoding order, to
  where the decoder falls back in step: the end of the restart interval (an MCU row, in FFmpeg's MJPEG) or of the
  slice (the picture, in x264's H.264). So at one frame a run of blocks changes at once, to the end of its row
  (MJPEG: its edges on the MCU grid, the pixel rows just above and below it still) or of the picture (H.264: the
  blocks just before it in decoding order still). Motion is not cut by the block grid and spans rows; a change of
  exposure or a cut leaves nothing still (measured: ``benchmarks/analysis/damage_detection.py``,
  docs/reliability-data.md).

Still invisible: H.264 damage the decoder falls back in step from inside the picture (a few macroblocks wrong),
and damage that changes the picture less than the suspect level. FFmpeg's ``err_detect`` levels (``careful``,
``aggressive``, ``explode``, ``crccheck+bitstream+buffer``) refuse no more of it (measured:
``benchmarks/analysis/damage_detection.py``); :data:`DECODER_OPTIONS` lets that script try decoder options.

The rule (:data:`RULE`): a video with any damaged frame is refused, naming the file, the frames and the witness.
Weaker evidence in the pixels (:data:`PIXEL_SUSPECT`, below :data:`PIXEL_THRESHOLD`) refuses nothing: ``inspect
--deep`` names the suspect frames in its notes (:data:`SUSPECT_RULE`), and ``prepare`` excludes them
from sampling (named in its notes).
"""
from __future__ import annotations

import functools
import io
import threading
from collections import deque
from contextlib import contextmanager

import numpy as np

from ...optional import av

RULE = "a video with damaged frames is refused: replace it or re-encode it from an undamaged copy"
LUMA_TOLERANCE = 6.0  # grey levels an 8x8 block's mean may differ between two JPEG decoders (clean: < 0.5)
_QUIET = frozenset({"swscaler", "swresample"})  # colour conversion chatter, not the decoder's
DECODER_OPTIONS: dict[str, str] = {}  # FFmpeg decoder options (AVOptions) set on every stream that is checked
# The pixel witness's scores (grey levels: row_run_score, picture_run_score), measured in docs/reliability-data.md:
# at PIXEL_THRESHOLD a video is refused; from PIXEL_SUSPECT on its frames are named as suspect, not refused.
# Clean video scored at most 7.9 (MJPEG) and 16 (H.264, at x264's lowest qualities: as some damage does).
PIXEL_THRESHOLD = {"mjpeg": 16.0, "h264": 22.6}
PIXEL_SUSPECT = {"mjpeg": 16.0, "h264": 16.0}
SUSPECT_RULE = "check them by eye: weaker signs of damage than a refusal needs (clean, blocky video can show them)"


def configure(stream) -> None:
    """Give the stream's decoder :data:`DECODER_OPTIONS`; call before its first decode (the decoder opens then)."""
    if DECODER_OPTIONS and not stream.codec_context.is_open:
        stream.codec_context.options = dict(DECODER_OPTIONS)


def describe(damaged: dict[int, str], total: int, limit: int = 3) -> str:
    """"frame 10 is damaged (why)" or "3 of 40 frames are damaged (frame 10: why; ...)", then the rule."""
    items = sorted(damaged.items())
    if len(items) == 1:
        (i, why), = items
        return f"corrupt: frame {i} is damaged ({why}); {RULE}"
    shown = "; ".join(f"frame {i}: {why}" for i, why in items[:limit]) + ("; ..." if len(items) > limit else "")
    return f"corrupt: {len(items)} of {total} frames are damaged ({shown}); {RULE}"


# ---------------------------------------------------------------- FFmpeg's error log


_log_lock = threading.Lock()
_log_users = 0
_log_saved = None


@contextmanager
def decoder_errors():
    """FFmpeg's error-level messages while inside, as a list of (level, name, text) that grows as they come;
    callers take ``len()`` before and after a decode call to see what that call logged."""
    global _log_users, _log_saved
    with _log_lock:
        if _log_users == 0:
            _log_saved = av.logging.get_level()
            if _log_saved is None or _log_saved < av.logging.ERROR:
                av.logging.set_level(av.logging.ERROR)
        _log_users += 1
    try:
        with av.logging.Capture(local=False) as logs:  # decoder threads log too
            yield logs
    finally:
        with _log_lock:
            _log_users -= 1
            if _log_users == 0:
                av.logging.set_level(_log_saved)


def logged_error(logs, since: int, decoder: str) -> str | None:
    """The first error logged from index ``since`` on by ``decoder`` (the stream's) or by no decoder (the demuxer),
    as one line. FFmpeg's log reaches Python late at times: a line another codec's decoder logged while an earlier
    file was read is not this file's."""
    for level, name, text in list(logs)[since:]:
        if level <= av.logging.ERROR and name not in _QUIET and (name == decoder or name not in _codec_names()):
            return f"the {name} decoder reports: {' '.join(text.split())}"
    return None


@functools.cache
def _codec_names() -> frozenset[str]:
    return frozenset(av.codecs_available)


# ---------------------------------------------------------------- framing


def jpeg_problem(data: bytes) -> str | None:
    """What is wrong with the marker structure of one MJPEG packet (one JPEG, or one per field), or None."""
    a = np.frombuffer(data, np.uint8)
    end = len(a)
    while end > 0 and a[end - 1] == 0:  # padding after EOI
        end -= 1
    pos = 0
    while pos < end:
        problem, pos = _one_jpeg(a, pos, end)
        if problem:
            return f"JPEG data: {problem}"
    return None


def _is_restart(m):
    return (m >= 0xD0) & (m <= 0xD7)


def _one_jpeg(a: np.ndarray, pos: int, end: int) -> tuple[str | None, int]:
    """(problem or None, where the next JPEG would start) for the JPEG at ``pos``."""
    if end - pos < 4 or a[pos] != 0xFF or a[pos + 1] != 0xD8:
        return f"no start-of-image marker at byte {pos}", end
    i, sof, interval = pos + 2, None, 0
    while True:
        while i + 1 < end and a[i] == 0xFF and a[i + 1] == 0xFF:
            i += 1  # fill bytes before a marker
        if i + 2 > end or a[i] != 0xFF:
            return f"a marker segment is broken at byte {i}", end
        m = int(a[i + 1])
        if m == 0xD9:
            return None, i + 2
        length = int(a[i + 2]) << 8 | int(a[i + 3]) if i + 4 <= end else 0
        if length < 2 or i + 2 + length > end or m in (0x00, 0x01, 0xD8) or _is_restart(m):
            return f"marker 0x{m:02x} at byte {i} does not start a valid segment", end
        seg = a[i + 4:i + 2 + length]
        if m in (0xC0, 0xC1, 0xC2) and len(seg) >= 6:
            sof = (m, seg)
        elif m == 0xDD and len(seg) >= 2:
            interval = int(seg[0]) << 8 | int(seg[1])
        i += 2 + length
        if m != 0xDA:
            continue
        # the entropy-coded data runs to the first 0xFF that is neither stuffing (0xFF00) nor a restart marker
        data = a[i:end]
        ff = np.flatnonzero(data[:-1] == 0xFF)
        after = data[ff + 1]
        stops = ff[(after != 0x00) & (after != 0xFF) & ~_is_restart(after)]
        if not len(stops):
            return "the entropy-coded data runs to the end without an end-of-image marker", end
        k = int(stops[0])
        ns = int(seg[0]) if len(seg) else 0
        problem = _restart_problem(after[(ff < k) & _is_restart(after)], interval, sof, ns)
        if problem:
            return problem, end
        i += k
        whole = sof is not None and sof[0] != 0xC2 and ns == int(sof[1][5])  # one scan holds every component
        if whole and int(data[k + 1]) not in (0xD9, 0xDC):  # then only EOI (or DNL) may follow it
            return f"marker 0x{int(data[k + 1]):02x} inside the entropy-coded data at byte {i}", end


def _restart_problem(rst: np.ndarray, interval: int, sof, ns: int) -> str | None:
    """Restart markers must count RST0..RST7 in turn and, in a sequential frame's one scan of every component,
    number exactly ceil(MCUs / interval) - 1."""
    if len(rst) and not interval:
        return f"{len(rst)} restart markers in a frame without a restart interval"
    wrong = np.flatnonzero(rst - 0xD0 != np.arange(len(rst)) % 8)
    if len(wrong):
        k = int(wrong[0])
        return f"restart marker {k} is out of sequence (RST{int(rst[k]) - 0xD0} where RST{k % 8} belongs)"
    if not interval or sof is None or sof[0] == 0xC2:
        return None
    seg = sof[1]
    h, w, nf = int(seg[1]) << 8 | int(seg[2]), int(seg[3]) << 8 | int(seg[4]), int(seg[5])
    if ns != nf or not h or not w or len(seg) < 6 + 3 * nf:
        return None  # one scan per component, or the height given later (DNL): no simple count
    factors = [(int(seg[7 + 3 * c]) >> 4 or 1, int(seg[7 + 3 * c]) & 15 or 1) for c in range(nf)]
    hmax, vmax = max(f[0] for f in factors), max(f[1] for f in factors)
    mcus = -(-w // (8 * hmax)) * -(-h // (8 * vmax)) if nf > 1 else -(-w // 8) * -(-h // 8)
    expected = -(-mcus // interval) - 1
    if len(rst) != expected:
        return f"{len(rst)} restart markers where the frame's {mcus} MCUs call for {expected}"
    return None


def nal_length_size(codec: str, extradata: bytes | None) -> int | None:
    """Bytes of each NAL unit's length prefix in MP4 / MKV framing (avcC / hvcC), None for Annex B or others."""
    if not extradata or extradata[0] != 1:
        return None
    if codec == "h264" and len(extradata) >= 7:
        return (extradata[4] & 3) + 1
    if codec == "hevc" and len(extradata) >= 23:
        return (extradata[21] & 3) + 1
    return None


def nal_problem(codec: str, data: bytes, size: int) -> str | None:
    """What is wrong with the NAL framing of one H.264 / HEVC packet, or None."""
    pos = 0
    while pos < len(data):
        if pos + size > len(data):
            return f"{codec} data: a NAL length prefix is cut off at byte {pos}"
        n = int.from_bytes(data[pos:pos + size], "big")
        pos += size
        if n == 0 or pos + n > len(data):
            return f"{codec} data: a NAL unit of {n} bytes at byte {pos} does not fit the packet of {len(data)} bytes"
        head = data[pos]
        bad = head & 0x80 or (codec == "h264" and (head & 0x1F == 0 or head & 0x1F >= 24)) or \
            (codec == "hevc" and (n < 2 or (head >> 1) & 0x3F >= 48 or data[pos + 1] & 7 == 0))
        if bad:
            return f"{codec} data: invalid NAL unit header 0x{head:02x} at byte {pos}"
        pos += n
    return None


class FramingCheck:
    """The per-packet framing check of one video stream (None-returning for codecs without one)."""

    def __init__(self, stream):
        ctx = stream.codec_context
        self.codec = ctx.name
        self.nal_size = nal_length_size(self.codec, ctx.extradata)

    @property
    def active(self) -> bool:
        return self.codec == "mjpeg" or self.nal_size is not None

    def __call__(self, data: bytes) -> str | None:
        if self.codec == "mjpeg":
            return jpeg_problem(data)
        if self.nal_size is not None:
            return nal_problem(self.codec, data, self.nal_size)
        return None


def timestamp_gap(pts: list) -> str | None:
    """Frames missing from a constant-rate stream: one step between timestamps far longer than all the others.

    What a damaged WebM / MKV cluster looks like (the demuxer skips to the next cluster, and the file's header
    holds no frame count to miss them against). Streams whose steps vary (variable frame rate) are not judged.
    """
    if len(pts) < 3 or any(p is None for p in pts):
        return None
    ts = np.sort(np.asarray(pts, np.int64))
    steps = np.diff(ts)
    step = float(np.median(steps))
    gaps = steps > 1.5 * step
    if step <= 0 or not gaps.any() or (np.abs(steps[~gaps] - step) > 0.1 * step).any():
        return None
    i = int(np.flatnonzero(gaps)[0])
    return (f"corrupt: about {round(steps[i] / step) - 1} frames are missing after frame {i} (its timestamps "
            f"skip {steps[i]} units where every other step is {step:g}); the damaged data was skipped")


# ---------------------------------------------------------------- per decoded frame


class FrameCheck:
    """The per-frame witnesses of one video: FFmpeg's corrupt flag, a second, independent decoder: libjpeg-turbo
    for MJPEG (per frame), libvpx for VP9 (fed every packet through :meth:`feed`, when ``every_packet``), and
    the pixels for MJPEG and H.264 (when ``every_packet``: each frame against the one before)."""

    def __init__(self, stream, every_packet: bool = True):
        name = stream.codec_context.name
        self.cross_check = name == "mjpeg"
        self._trusted = False  # the second decoder agreed on a frame: disagreeing later means damage
        self._vp9 = _SecondVP9Decoder() if name == "vp9" and every_packet and _has_libvpx() else None
        self._pixels = PixelCheck(name) if every_packet else None

    @property
    def suspects(self) -> str:
        """The frames with weaker signs of damage in their pixels, as one line ("" for none)."""
        found = self._pixels.suspects if self._pixels else {}
        if not found:
            return ""
        (i, why), *_ = sorted(found.items())
        return f"{len(found)} suspect frame{'s' * (len(found) > 1)} (frame {i}: {why}); {SUSPECT_RULE}"

    @property
    def suspect_frames(self) -> dict[int, str]:
        """Frame (counted from the file's first) -> why, for the frames with weaker signs of damage."""
        return dict(self._pixels.suspects) if self._pixels else {}

    @property
    def late(self) -> dict[int, str]:
        """Frame (counted from the file's first) -> why: damage confirmed after its frame was checked (MJPEG's
        pixels, by the frame after it)."""
        return self._pixels.late if self._pixels else {}

    def finish(self) -> None:
        """The last frame was checked: what waits for a frame after it is judged without one."""
        if self._pixels:
            self._pixels.finish()

    def feed(self, data: bytes | None) -> str | None:
        """Every packet in order (None at the end), before the frames it gives are checked."""
        return self._vp9.feed(data) if self._vp9 else None

    def __call__(self, frame, data: bytes | None) -> str | None:
        if getattr(frame, "is_corrupt", False):
            return "the decoder flags the frame corrupt"
        if self._vp9:
            return self._vp9.compare(frame)
        pixels = self._pixels(frame, data) if self._pixels else None  # sees every frame: it keeps the one before
        return self._second_jpeg_decoder(frame, data) or pixels

    def _second_jpeg_decoder(self, frame, data: bytes | None) -> str | None:
        if not self.cross_check or data is None:
            return None
        blocks = _luma_disagreement(frame, data)
        if blocks is None:  # the second decoder cannot read this kind of JPEG: it cannot witness
            if not self._trusted:
                self.cross_check = False
                return None
            return "a second JPEG decoder (libjpeg-turbo) cannot read it"
        n, worst = blocks
        if n and self._trusted:
            return f"a second JPEG decoder disagrees in {n} 8x8 blocks, by up to {worst:.0f} grey levels"
        if not n:
            self._trusted = True
        elif not self._trusted:
            self.cross_check = False  # the very first frame disagrees: a JPEG variant the two read differently
        return None


def _has_libvpx() -> bool:
    return "libvpx-vp9" in av.codecs_available


def _luma(frame) -> np.ndarray:
    plane = frame.planes[0]
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]


class _SecondVP9Decoder:
    """libvpx decodes the same packets as FFmpeg's own VP9 decoder. VP9 decoding is exact (the standard fixes every
    output sample), so on an undamaged stream the two agree to the last bit; damage they conceal differently
    (or that libvpx refuses) shows."""

    def __init__(self):
        self._ctx = av.CodecContext.create("libvpx-vp9", "r")
        self._frames: deque[np.ndarray] = deque()
        self._done = False  # it refused a packet: from then on it cannot witness frame by frame

    def feed(self, data: bytes | None) -> str | None:
        if self._done:
            return None
        try:
            frames = self._ctx.decode(av.Packet(data) if data is not None else None)
        except (av.error.FFmpegError, ValueError) as e:
            self._done = True
            return f"a second VP9 decoder (libvpx) cannot decode it ({' '.join(str(e).split())})"
        self._frames.extend(_luma(f).copy() for f in frames)
        return None

    def compare(self, frame) -> str | None:
        if self._done:
            return None
        if not self._frames:
            self._done = True
            return "a second VP9 decoder (libvpx) gives no frame for it"
        other, ours = self._frames.popleft(), _luma(frame)
        if other.shape != ours.shape:
            self._done = True
            return f"a second VP9 decoder (libvpx) gives a {other.shape[1]}x{other.shape[0]} frame"
        diff = np.abs(ours.astype(np.int16) - other)
        if diff.any():
            return (f"a second VP9 decoder (libvpx) disagrees in {int(np.count_nonzero(diff))} pixels, "
                    f"by up to {int(diff.max())} grey levels")
        return None


def _luma_disagreement(frame, data: bytes) -> tuple[int, float] | None:
    """(8x8 blocks whose mean luma differs by more than LUMA_TOLERANCE, the largest difference) between FFmpeg's
    frame and libjpeg-turbo's decode of the same JPEG; None when libjpeg-turbo cannot read it."""
    from PIL import Image
    name = frame.format.name
    if not (name.startswith(("yuv", "gray"))):
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("L", im.size)  # luma only: what FFmpeg's first plane holds, no colour conversion on either side
            other = np.asarray(im.convert("L"), np.float32)
    except (OSError, SyntaxError, ValueError):
        return None
    ours = _luma(frame)
    h, w = min(ours.shape[0], other.shape[0]) // 8 * 8, min(ours.shape[1], other.shape[1]) // 8 * 8
    if (h, w) == (0, 0) or abs(ours.shape[0] - other.shape[0]) > 16 or abs(ours.shape[1] - other.shape[1]) > 16:
        return None
    diff = np.abs(ours[:h, :w].astype(np.float32) - other[:h, :w]).reshape(h // 8, 8, w // 8, 8).mean((1, 3))
    bad = diff > LUMA_TOLERANCE
    return int(bad.sum()), float(diff.max())


# ---------------------------------------------------------------- in the pixels

LEVELS = 2.0 ** np.arange(1, 7.5, 0.5)  # the grey levels picture_run_score tries (2 .. 128)
SAMPLE = 2  # block means from every other pixel of every other row: 4x cheaper, as telling


def _suffix_mean(x: np.ndarray) -> np.ndarray:
    """``x[r, j:].mean()`` for every row r and column j."""
    return np.cumsum(x[:, ::-1], 1)[:, ::-1] / np.arange(x.shape[1], 0, -1)


def _block_means(a: np.ndarray, bh: int, bw: int) -> np.ndarray:
    rows, cols = a.shape[0] // bh, a.shape[1] // bw
    # the bh pixel rows of each block row added first (whole contiguous rows: ~2x faster than short runs first)
    sums = a[:rows * bh, :cols * bw].reshape(rows, bh, cols * bw).sum(1, dtype=np.int32)
    return sums.reshape(rows, cols, bw).sum(2) / (bh * bw)


def _change(luma: np.ndarray, previous: np.ndarray, step: int = 1) -> np.ndarray:
    """|luma - previous| on every ``step``-th row and column (a block's mean change needs no more)."""
    return np.abs(np.subtract(luma[::step, ::step], previous[::step, ::step], dtype=np.int16))


def row_run_score(luma: np.ndarray, previous: np.ndarray, bh: int, bw: int) -> tuple[float, int, int]:
    """MJPEG with one restart interval per MCU row: (score, row, column) of the strongest run of MCUs that changed
    from one column to the end of its row, its own first and last pixel rows as much, while the pixel rows just
    above and below it stayed still. The score is the grey levels it changed by; 0 when no run stands out so."""
    rows, cols = luma.shape[0] // bh, luma.shape[1] // bw
    luma, previous = luma[:rows * bh, :cols * bw], previous[:rows * bh, :cols * bw]
    block = _block_means(_change(luma, previous, SAMPLE), bh // SAMPLE, bw // SAMPLE)
    top = _change(luma[0::bh], previous[0::bh]).reshape(rows, cols, bw).mean(2)  # each MCU's first pixel row
    bottom = _change(luma[bh - 1::bh], previous[bh - 1::bh]).reshape(rows, cols, bw).mean(2)
    none = np.zeros((1, cols))
    above, below = np.vstack([none, bottom[:-1]]), np.vstack([top[1:], none])  # pixel rows just outside each MCU
    # a damaged run holds to the end of its interval (the DC error stays till the restart marker) and is cut
    # by the MCU grid; moving things are not, so their edge rows or the rows around them give them away
    inside = np.minimum(np.minimum(_suffix_mean(block), 2 * block[:, -1:]),
                        2 * np.minimum(_suffix_mean(top), _suffix_mean(bottom)))
    score = np.where(inside > 4 * np.maximum(_suffix_mean(above), _suffix_mean(below)), inside, 0)
    r, c = np.unravel_index(int(score.argmax()), score.shape)
    return float(score[r, c]), int(r), int(c)


def picture_run_score(luma: np.ndarray, previous: np.ndarray, size: int = 16) -> tuple[float, int, int]:
    """H.264 with one slice per picture: (score, row, column) of the first macroblock of a run that changed from
    there to the end of the picture (3 in 4 of its macroblocks by more than the score, in grey levels), while the
    row's worth of macroblocks before it in decoding order stayed within half of that (3 in 4). Damage that does
    not reach the end of the slice (the decoder fell back in step) is not judged: a run that ends inside the
    picture, one macroblock long, is what a moving hand looks like too."""
    rows, cols = luma.shape[0] // size, luma.shape[1] // size
    flat = _block_means(_change(luma[:rows * size, :cols * size], previous[:rows * size, :cols * size], SAMPLE),
                        size // SAMPLE, size // SAMPLE).ravel()
    n, k = len(flat), np.arange(len(flat))
    before = np.minimum(k, cols)  # a run from the first row has fewer; one from the very first block is no run
    level = LEVELS[LEVELS < flat.max(initial=0)][:, None]  # none above the largest change can stand out
    loud = np.cumsum(flat > level, 1)  # loud[:, i]: blocks 0..i above the level
    after = loud[:, -1:] - loud + (flat > level)  # blocks i..n-1 above the level
    still = np.concatenate([np.zeros((len(level), cols + 1), int), np.cumsum(flat < level / 2, 1)], 1)
    still_before = still[:, cols:cols + n] - still[:, :n]  # of the `cols` blocks before each (none before 0)
    ok = (before >= cols // 2) & (after >= 0.75 * (n - k)) & (still_before >= 0.75 * before)
    levels = np.flatnonzero(ok.any(1))
    if not len(levels):
        return 0.0, 0, 0
    i = int(ok[levels[-1]].argmax())
    return float(level[levels[-1], 0]), i // cols, i % cols


def restart_interval(data: bytes) -> int:
    """The restart interval (MCUs) a JPEG's header sets, 0 for none."""
    i = 2
    while i + 6 <= len(data) and data[i] == 0xFF:
        m, n = data[i + 1], data[i + 2] << 8 | data[i + 3]
        if m == 0xDD:
            return data[i + 4] << 8 | data[i + 5]
        if m == 0xDA:
            break
        i += 2 + n
    return 0


class PixelCheck:
    """Each frame of an MJPEG or H.264 video against the one before (:func:`row_run_score`,
    :func:`picture_run_score`); the first frame and MJPEG with another restart interval are not judged.

    MJPEG frames are each coded alone, so damage garbles one frame and the next is right again: a run found in frame
    t counts only when frame t + 1 goes back to frame t - 1 there (:func:`reverts`); a thing that moved into the run
    (an arm reaching the frame's edge inside one MCU row) does not. Its verdict comes one frame late, in
    :attr:`late` (frame -> why); :meth:`finish` judges the last frame by its score alone."""

    def __init__(self, codec: str):
        self.codec = codec
        self.active = codec in PIXEL_THRESHOLD
        self.suspects: dict[int, str] = {}  # frame -> why, for scores from PIXEL_SUSPECT to PIXEL_THRESHOLD
        self.late: dict[int, str] = {}  # MJPEG: frame -> why, damage confirmed by the frame after it
        self._frame = -1
        self._previous = None
        self._before = None  # MJPEG: the frame before the previous one
        self._held = None  # MJPEG: (frame, score, why, (row slice, column slice)) waiting for the next frame
        self._open = False  # damage found, not yet ended by a key frame (whose change undoes it: not damage)

    def score(self, frame, data: bytes | None) -> tuple[float, str]:
        """(score, where) of the frame against the one before; (0, "") when it is not judged."""
        s, where, _ = self._score(frame, data)
        return s, where

    def _score(self, frame, data: bytes | None) -> tuple[float, str, tuple | None]:
        luma = _luma(frame)
        self._before = self._previous
        previous, self._previous = self._previous, luma.copy()
        if previous is None or previous.shape != luma.shape:
            return 0.0, "", None
        if self.codec == "h264":
            s, r, c = picture_run_score(luma, previous)
            return s, f"from macroblock row {r}, column {c} to the end of the picture", None
        mcu = (16 if "420" in frame.format.name else 8, 16 if "42" in frame.format.name else 8)
        if data is not None and restart_interval(data) != -(-frame.width // mcu[1]):
            self.active = False  # the damage would run to another end than the row's: not measured
            return 0.0, "", None
        s, r, c = row_run_score(luma, previous, *mcu)
        run = (slice(r * mcu[0], (r + 1) * mcu[0]), slice(c * mcu[1], luma.shape[1] // mcu[1] * mcu[1]))
        return s, f"in MCU row {r} from column {c} to the row's end", run

    def __call__(self, frame, data: bytes | None) -> str | None:
        if not self.active:
            return None
        self._frame += 1
        score, where, run = self._score(frame, data)
        if self.codec == "mjpeg":
            self._confirm(self._previous)
            if score >= PIXEL_SUSPECT[self.codec]:
                self._held = (self._frame, score, _why(where, score), run, self._before)
            return None
        if self._open and frame.key_frame:
            self._open = False
            return None
        if score < PIXEL_SUSPECT.get(self.codec, np.inf):
            return None
        why = _why(where, score)
        self._open = True
        if score < PIXEL_THRESHOLD[self.codec]:
            self.suspects[self._frame] = why
            return None
        return why

    def finish(self) -> None:
        """The stream ended: a run held for the frame after it is judged by its score alone."""
        if self._held is not None:
            t, score, why, _, _ = self._held
            self._held = None
            self._record(t, score, why)

    def _confirm(self, after: np.ndarray) -> None:
        if self._held is None:
            return
        t, score, why, run, before = self._held
        self._held = None
        if before is not None and after is not None and self.active and reverts(before, after, run, score):
            self._record(t, score, why)

    def _record(self, t: int, score: float, why: str) -> None:
        if score < PIXEL_THRESHOLD[self.codec]:
            self.suspects[t] = why
        else:
            self.late[t] = why


def reverts(before: np.ndarray, after: np.ndarray, run: tuple[slice, slice], score: float) -> bool:
    """Whether the frame after goes back to the frame before inside ``run``, as after one damaged frame: their
    difference there is at most half of the run's score (a thing that moved into it stays or moves on)."""
    return float(_change(after[run], before[run], SAMPLE).mean()) <= score / 2


def _why(where: str, score: float) -> str:
    return (f"{where} the picture changes at once, by {score:.0f} grey levels, where the blocks around it stay still: "
            "damaged data that still decodes")
