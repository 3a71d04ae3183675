"""Epipolar geometry of a calibrated camera pair: pure, shape-checked functions (:mod:`.tangency` builds the
rig's sync cue on them).
"""
from __future__ import annotations

import numpy as np

from ..geometry import Camera
from ..geometry.camera import undistort

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
