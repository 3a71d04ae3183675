"""Motion timing: an appearance-free, calibration-free sync cue.

When the person starts, speeds up, slows down or stops, every camera sees it at the same instant, whatever it sees
of the person and however the background model fares (a ghost of a person who never leaves does not touch a frame
difference). Per camera, the cue is a series: frame t's count of pixels, inside the person's box, that changed by
more than a threshold between frames t - 1 and t + 1. Two cameras' series are compared window by window: the
pairing (a at t, b at t + d) scores the correlation of a's series around t with b's around t + d, so that a
camera which sees the motion larger (a limb moving across its view rather than towards it) or sees more noise
counts the same. The windows are short (0.15 s): long enough to hold a change of pace, short enough that a slow
drift (the person turning towards a camera) does not decide.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THRESHOLD = 20  # gray levels (of 255): a change that sensor noise and compression rarely reach at ~240 px
GROW = 0.2  # the person's box grown by this share of its larger side (for the silhouettes too)


@dataclass(frozen=True)
class MotionCue:
    """The cue's shape (see the module docstring)."""

    weight: float = 3.0  # log-odds of a perfect correlation (the tangency cue's best pairing counts 3 too)
    window_s: float = 0.15  # half-width of the compared windows, seconds
    min_half: int = 3  # ... at least this many frames (0.15 s is 3.75 frames at 25 fps)

    def __post_init__(self):
        if not (self.weight > 0 and self.window_s > 0 and self.min_half >= 1):
            raise ValueError(f"motion cue: weight and window_s must be > 0, min_half >= 1; got {self}")

    def half(self, fps: float) -> int:
        return max(self.min_half, int(round(self.window_s * fps)))


def person_region(box: np.ndarray, scale: int) -> tuple[slice, slice]:
    """(rows, columns) of a frame at 1/``scale`` resolution around the person's ``box`` (x0, y0, x1, y1 at full
    resolution, finite) grown by :data:`GROW` of its larger side: where the person's silhouette and motion are
    looked for."""
    grow = GROW * max(box[2] - box[0], box[3] - box[1])
    x0, y0 = int(max(0, (box[0] - grow) // scale)), int(max(0, (box[1] - grow) // scale))
    x1, y1 = int(-(-(box[2] + grow) // scale)), int(-(-(box[3] + grow) // scale))
    return slice(y0, y1), slice(x0, x1)


def changed_pixels(before: np.ndarray, after: np.ndarray, box: np.ndarray, scale: int) -> float:
    """Pixels of gray (H, W) frames that changed by more than :data:`THRESHOLD` in the :func:`person_region` of
    ``box`` (the frames are 1/``scale`` of full resolution); NaN without a box."""
    if not np.isfinite(box).all():
        return float("nan")
    region = person_region(box, scale)
    a, b = before[region], after[region]
    return float(np.count_nonzero(np.abs(a.astype(np.int16) - b.astype(np.int16)) > THRESHOLD))


def gray(frame: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (H, W), the mean of the channels."""
    return (frame.astype(np.uint16).sum(-1) // 3).astype(np.uint8)


def windows(series: np.ndarray, half: int) -> np.ndarray:
    """(T, 2 half + 1) the series around every frame, centred and scaled to unit norm; NaN rows where the window
    leaves the series, holds a NaN, or is flat (nothing changes pace: it says nothing about time)."""
    x = np.asarray(series, np.float64)
    T, n = len(x), 2 * half + 1
    out = np.full((T, n), np.nan)
    if T < n:
        return out
    w = np.lib.stride_tricks.sliding_window_view(x, n)  # (T - 2 half, n), row i centred on frame i + half
    w = w - w.mean(1, keepdims=True)
    norm = np.sqrt((w * w).sum(1, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        w = w / norm
    w[~(norm[:, 0] > 1e-9)] = np.nan  # NaN-holding or flat
    out[half:T - half] = w
    return out


def cue_matrix(cue: MotionCue, series_a: np.ndarray, series_b: np.ndarray, instants: np.ndarray, offsets: np.ndarray,
               fps: float) -> np.ndarray:
    """(n, K) the cue for (a at instants[i], b at instants[i] + offsets[k]): ``weight`` times the correlation of the
    two cameras' motion series in windows around those frames; NaN where a window does not exist."""
    half = cue.half(fps)
    wa, wb = windows(series_a, half), windows(series_b, half)
    t = np.asarray(instants, np.int64)[:, None]
    u = t + np.asarray(offsets, np.int64)[None, :]
    inside = (u >= 0) & (u < len(wb))
    r = np.einsum("nw,nkw->nk", wa[t[:, 0]], wb[np.clip(u, 0, max(len(wb) - 1, 0))])
    return np.where(inside, cue.weight * r, np.nan).astype(np.float32)
