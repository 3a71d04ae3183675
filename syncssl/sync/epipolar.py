"""The rig's geometry as a second sync cue (on by default in ``syncssl-sync``): pure, shape-checked functions.

A calibrated pair of cameras constrains where one view can see what the other sees: a point seen at x_a in camera
a lies, in camera b, on the epipolar line E x_a. The top and the bottom of the person's box (head and feet, the
same body points in every view of a standing or moving person) therefore land near each other's epipolar lines
only when the two frames show the same instant; a person who moved between the two frames (walking, squatting,
bending) leaves them off the lines. That is exactly where the pixel classifier is weakest: the crop is centred on
the person, so a gait cycle later a walker's crop looks the same, while the feet stand a metre further on.

The cue needs the calibration and the person boxes prepare found in every frame (no labels). Its per-pair score is
a log-likelihood ratio added to the classifier's log-odds: ``weight * log(tolerance / r)`` clipped to
``[-floor, ceiling]``, where r is the mean symmetric distance of the two points to their epipolar lines as a share
of the person's height in the image. That shape is what the measured ratio looks like (development offsets of the
sync benchmark, seed 1): log p(r | synchronized) / p(r | not) falls about linearly in log r, from +1.3 at
r < 0.01 through 0 at r = 0.06 to -3.4 at r = 0.3-0.5.

Each instant's cue is then averaged over the offsets within ``smooth_s`` of each offset. Box points are noisy by a
few pixels and a walker moves a few centimetres per frame, so the raw cue peaks a frame or three off the truth and,
added as it is, pulled the classifier's sharp peaks apart (fewer cameras placed: 33 of 48 against 39, 2026-12-02).
Smoothed, it can only say *which* of the classifier's peaks is the instant (a gait cycle apart they differ by a
metre), while the classifier alone places that peak to the frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import Camera
from ..geometry.camera import undistort


@dataclass(frozen=True)
class EpipolarCue:
    """The cue's shape (see the module docstring); its numbers were chosen on the development offsets (seed 1)."""

    weight: float = 2.5  # log-odds per unit of log(tolerance / r); the measured slope is ~1.25, and twice it placed
    #                      the most cameras on the development offsets (smoothed: 39, 43, 42 of 48 at 1.25, 2.5, 5)
    tolerance: float = 0.06  # epipolar distance, as a share of the person's height, at which the cue is 0
    floor: float = 2.4  # the most it counts against a pair, in units of weight (box errors, occlusions)
    ceiling: float = 1.2  # the most it counts for one (boxes agree to a pixel or two on any still person)
    smooth_s: float = 0.16  # half-width (seconds) of the moving average of each instant's cue over the offsets
    #                         (4 frames at 25 fps; 8 frames placed 38 of 48, 4 frames 39, at weight 1.25)

    def __post_init__(self):
        if not (self.weight > 0 and self.tolerance > 0 and self.floor >= 0 and self.ceiling >= 0
                and self.smooth_s >= 0):
            raise ValueError(f"epipolar cue: weight and tolerance must be > 0, floor, ceiling and smooth_s >= 0; "
                             f"got {self}")


MIN_BASELINE_MM = 1.0  # two camera centres closer than this have no epipolar geometry (one viewpoint)


def has_baseline(a: Camera, b: Camera) -> bool:
    """Whether the two cameras see from different places, so that epipolar lines exist."""
    return float(np.linalg.norm(a.center - b.center)) >= MIN_BASELINE_MM


def essential(a: Camera, b: Camera) -> np.ndarray:
    """(3, 3) E with x_b^T E x_a = 0 for normalised (undistorted) image coordinates of one world point."""
    R = b.R @ a.R.T
    t = b.t - R @ a.t
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]], np.float64)
    return tx @ R


def normalised(cam: Camera, uv: np.ndarray) -> np.ndarray:
    """Pixels (..., 2) -> undistorted normalised coordinates (..., 2)."""
    uv = np.asarray(uv, np.float64)
    if uv.shape[-1] != 2:
        raise ValueError(f"pixels must be (..., 2), got {uv.shape}")
    K = cam.K
    y = (uv[..., 1] - K[1, 2]) / K[1, 1]
    x = (uv[..., 0] - K[0, 2] - K[0, 1] * y) / K[0, 0]
    return undistort(np.stack([x, y], -1), cam.dist, cam.model)


def box_points(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) x0 y0 x1 y1 -> (..., 2, 2): the top-centre and the bottom-centre (head and feet)."""
    boxes = np.asarray(boxes, np.float64)
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (..., 4), got {boxes.shape}")
    xc = (boxes[..., 0] + boxes[..., 2]) / 2
    return np.stack([np.stack([xc, boxes[..., 1]], -1), np.stack([xc, boxes[..., 3]], -1)], -2)


def _line_distance(x_to: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """Distances (...) of normalised points (..., 2) to lines (..., 3) in the same image."""
    num = np.abs(lines[..., 0] * x_to[..., 0] + lines[..., 1] * x_to[..., 1] + lines[..., 2])
    return num / np.maximum(np.hypot(lines[..., 0], lines[..., 1]), 1e-12)


def epipolar_error(cam_a: Camera, cam_b: Camera, boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(...) mean symmetric epipolar distance of the boxes' head and feet points, as a share of the person's
    height in the image (the mean of the two boxes' heights); boxes (..., 4) in each camera's own pixels, broadcast
    against each other. NaN where a box is missing."""
    boxes_a, boxes_b = np.asarray(boxes_a, np.float64), np.asarray(boxes_b, np.float64)
    E = essential(cam_a, cam_b)
    xa, xb = normalised(cam_a, box_points(boxes_a)), normalised(cam_b, box_points(boxes_b))  # (..., 2, 2)
    ha = np.concatenate([xa, np.ones(xa.shape[:-1] + (1,))], -1)
    hb = np.concatenate([xb, np.ones(xb.shape[:-1] + (1,))], -1)
    in_b = _line_distance(xb, ha @ E.T) * cam_b.K[1, 1]  # pixels of b
    in_a = _line_distance(xa, hb @ E) * cam_a.K[1, 1]  # pixels of a
    height_a = boxes_a[..., 3] - boxes_a[..., 1]
    height_b = boxes_b[..., 3] - boxes_b[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((in_a / height_a[..., None] + in_b / height_b[..., None]) / 2).mean(-1)


def cue_matrix(cue: EpipolarCue, cam_a: Camera, cam_b: Camera, boxes_a: np.ndarray, boxes_b: np.ndarray,
               instants: np.ndarray, offsets: np.ndarray, fps: float) -> np.ndarray:
    """(n, K) the cue for (a at instants[i], b at instants[i] + offsets[k]); boxes (T, 4) per camera; NaN where b's
    frame does not exist or a box is missing. ``offsets`` contiguous (smoothing averages neighbouring columns)."""
    t = np.asarray(instants, np.int64)[:, None]
    u = t + np.asarray(offsets, np.int64)[None, :]
    inside = (u >= 0) & (u < len(boxes_b))
    r = epipolar_error(cam_a, cam_b, np.asarray(boxes_a)[np.broadcast_to(t, u.shape)],
                       np.asarray(boxes_b)[np.clip(u, 0, len(boxes_b) - 1)])
    with np.errstate(invalid="ignore", divide="ignore"):
        score = cue.weight * np.clip(np.log(cue.tolerance / r), -cue.floor, cue.ceiling)
    score = np.where(inside & np.isfinite(r), score, np.nan)
    half = int(round(cue.smooth_s * fps))
    if half > 0:
        score = smooth_rows(score, half)
    return score.astype(np.float32)


def smooth_rows(x: np.ndarray, half: int) -> np.ndarray:
    """(n, K) -> each row's moving average over +-half columns, ignoring NaN; NaN stays NaN."""
    valid = np.isfinite(x)
    x0 = np.where(valid, x, 0.0)
    c = np.pad(np.cumsum(x0, 1), ((0, 0), (1, 0)))
    n = np.pad(np.cumsum(valid, 1), ((0, 0), (1, 0)))
    K = x.shape[1]
    lo, hi = np.clip(np.arange(K) - half, 0, K), np.clip(np.arange(K) + half + 1, 0, K)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (c[:, hi] - c[:, lo]) / (n[:, hi] - n[:, lo])
    return np.where(valid, out, np.nan)
