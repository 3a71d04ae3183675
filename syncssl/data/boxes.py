"""Person boxes and motion scores: pure functions on NumPy arrays.

Boxes are float32 ``x0 y0 x1 y1`` in pixels (pixel centres at integer coordinates); NaN rows mean
"unknown in this frame". The crop boxes that training uses are square, centred on the person, smoothed
over time and may extend past the frame (the assemble op fills out-of-frame pixels).
"""
from __future__ import annotations

import numpy as np

from ..geometry import H36M17, Camera, Skeleton

# ---------------------------------------------------------------- tight person boxes


def project_joints(poses3d: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """World joints (T, J, 3) mm -> pixels (T, J, 2) and depths (T, J) mm in ``camera``."""
    poses3d = np.asarray(poses3d, np.float64)
    if poses3d.ndim != 3 or poses3d.shape[-1] != 3:
        raise ValueError(f"poses3d: expected (T, J, 3), got {poses3d.shape}")
    cam = camera.world_to_camera(poses3d)
    return camera.project_camera(cam), cam[..., 2]


def boxes_from_joints(poses3d: np.ndarray, camera: Camera, pad_mm: float = 150.0) -> np.ndarray:
    """Tight person boxes (T, 4) around the projected joints, grown by ``pad_mm`` at the person's depth.

    Joints sit inside the body (at the bones' ends), so the body reaches past them by the limbs' thickness,
    the top of the head and the hands/feet: ``pad_mm`` projected at the median joint depth covers that.
    Frames where a joint is behind the camera or a label is not finite are NaN.
    """
    uv, depth = project_joints(poses3d, camera)
    ok = np.isfinite(uv).all((1, 2)) & (depth > 1.0).all(1)
    pad = np.zeros(len(uv))
    z = np.median(np.where(depth > 1.0, depth, np.nan), axis=1)
    pad[ok] = pad_mm * max(camera.K[0, 0], camera.K[1, 1]) / z[ok]
    boxes = np.full((len(uv), 4), np.nan)
    boxes[ok, :2] = uv[ok].min(1) - pad[ok, None]
    boxes[ok, 2:] = uv[ok].max(1) + pad[ok, None]
    return boxes.astype(np.float32)


def boxes_from_masks(masks: np.ndarray, grid: int = 64) -> np.ndarray:
    """Tight boxes (N, 4) of the largest foreground region of each boolean mask (N, H, W); NaN if empty.

    Regions are found on a coarse grid (``grid`` cells along the longer side: nearby pieces of one person
    merge, specks stay apart), then the box is fitted to the full-resolution pixels of the winning region.
    """
    masks = np.asarray(masks, bool)
    N, H, W = masks.shape
    cell = max(1, int(np.ceil(max(H, W) / grid)))
    gh, gw = -(-H // cell), -(-W // cell)
    padded = np.zeros((N, gh * cell, gw * cell), bool)
    padded[:, :H, :W] = masks
    counts = padded.reshape(N, gh, cell, gw, cell).sum((2, 4))
    coarse = counts > 0.1 * cell * cell  # a cell counts when a tenth of it is foreground
    labels = _component_labels(coarse)
    out = np.full((N, 4), np.nan, np.float32)
    for i in range(N):
        if not coarse[i].any():
            continue
        ids, sizes = np.unique(labels[i][coarse[i]], return_counts=True)
        # the largest region by foreground pixels, not by cells
        weight = np.bincount(labels[i].ravel(), weights=counts[i].ravel(), minlength=labels[i].max() + 1)[ids]
        region = labels[i] == ids[np.argmax(weight)]
        region = np.repeat(np.repeat(_grow(region), cell, 0), cell, 1)[:H, :W] & masks[i]
        ys, xs = np.nonzero(region)
        out[i] = xs.min(), ys.min(), xs.max(), ys.max()
    return out


def _grow(m: np.ndarray) -> np.ndarray:
    out = m.copy()
    out[1:] |= m[:-1]
    out[:-1] |= m[1:]
    row = out.copy()
    out[:, 1:] |= row[:, :-1]
    out[:, :-1] |= row[:, 1:]
    return out


def _component_labels(cells: np.ndarray) -> np.ndarray:
    """8-connected component labels (N, h, w) of boolean cells (0 = background), by max-label propagation."""
    N, h, w = cells.shape
    labels = np.where(cells, np.arange(1, h * w + 1).reshape(1, h, w), 0)
    while True:
        p = np.pad(labels, ((0, 0), (1, 1), (1, 1)))
        neighbours = np.max([p[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                             for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
        new = np.where(cells, neighbours, 0)
        if np.array_equal(new, labels):
            return labels
        labels = new


def ellipse_masks(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Filled ellipses inscribed in boxes (N, 4) on frames of ``size`` (w, h): (N, h, w) bool; NaN -> empty."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    out = np.zeros((len(boxes), h, w), bool)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64)):
        if np.isfinite([x0, y0, x1, y1]).all() and x1 > x0 and y1 > y0:
            out[i] = (((x - (x0 + x1) / 2) / ((x1 - x0) / 2)) ** 2 + ((y - (y0 + y1) / 2) / ((y1 - y0) / 2)) ** 2) <= 1
    return out


def skeleton_masks(joints2d: np.ndarray, radius: np.ndarray, size: tuple[int, int],
                   skeleton: Skeleton = H36M17, cell: int | None = None) -> np.ndarray:
    """A rough body silhouette: capsules of ``radius`` px (per sample) around the bones, (N, h, w) bool.

    Drawn on a coarse grid of ``cell`` px (default: ~96 cells on the longer side) and upsampled; it only
    needs to say roughly where the body is.
    """
    w, h = size
    joints2d = np.asarray(joints2d, np.float64)
    cell = cell or max(1, int(np.ceil(max(w, h) / 96)))
    gy, gx = np.mgrid[0:-(-h // cell), 0:-(-w // cell)]
    px, py = (gx + 0.5) * cell - 0.5, (gy + 0.5) * cell - 0.5
    out = np.zeros((len(joints2d),) + gx.shape, bool)
    for i, (j, r) in enumerate(zip(joints2d, np.broadcast_to(radius, len(joints2d)))):
        if not np.isfinite(j).all():
            continue
        for a, b in skeleton.bones:
            d = j[b] - j[a]
            t = np.clip(((px - j[a, 0]) * d[0] + (py - j[a, 1]) * d[1]) / max(d @ d, 1e-9), 0, 1)
            out[i] |= (px - j[a, 0] - t * d[0]) ** 2 + (py - j[a, 1] - t * d[1]) ** 2 <= (r + cell / 2) ** 2
    return np.repeat(np.repeat(out, cell, 1), cell, 2)[:, :h, :w]


# ---------------------------------------------------------------- square crop boxes over time


def fill_gaps(boxes: np.ndarray) -> np.ndarray:
    """NaN rows of (T, K) filled by linear interpolation in time (held constant past the ends).

    All rows NaN: returned unchanged (the caller decides what a sequence without a person means).
    """
    boxes = np.array(boxes, np.float64)
    ok = np.isfinite(boxes).all(1)
    if ok.all() or not ok.any():
        return boxes
    t = np.arange(len(boxes))
    for k in range(boxes.shape[1]):
        boxes[~ok, k] = np.interp(t[~ok], t[ok], boxes[ok, k])
    return boxes


def square_boxes(tight: np.ndarray, margin: float = 0.2) -> np.ndarray:
    """Square boxes (T, 4) centred on tight boxes (T, 4), side = max(w, h) * (1 + margin)."""
    tight = np.asarray(tight, np.float64)
    c = (tight[:, :2] + tight[:, 2:]) / 2
    half = (tight[:, 2:] - tight[:, :2]).max(1, keepdims=True) * (1 + margin) / 2
    return np.concatenate([c - half, c + half], 1)


def moving_median(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving median along axis 0 (window forced odd; edges use the frames that exist)."""
    return _moving(x, window, np.nanmedian)


def moving_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving mean along axis 0 (edges average the frames that exist)."""
    return _moving(x, window, np.nanmean)


def _moving(x: np.ndarray, window: int, reduce) -> np.ndarray:
    """``reduce`` (a NaN-ignoring numpy reduction) over a centred window along axis 0: the ends are padded with
    NaN, so edge windows reduce only the frames that exist."""
    x = np.asarray(x, np.float64)
    h = max(0, window // 2)
    if h == 0 or len(x) < 2:
        return x.copy()
    p = np.pad(x, [(h, h)] + [(0, 0)] * (x.ndim - 1), mode="constant", constant_values=np.nan)
    return reduce(np.lib.stride_tricks.sliding_window_view(p, 2 * h + 1, axis=0), axis=-1)


def smooth_boxes(square: np.ndarray, window: int = 9, cover: np.ndarray | None = None) -> np.ndarray:
    """Temporally smoothed square boxes (T, 4): moving median (outliers) then moving mean (jitter) of centre and side.

    cover: tight boxes (T, 4) that each smoothed box must still contain; where smoothing lags a fast move
    the side grows just enough (the centre stays smooth).
    """
    square = np.asarray(square, np.float64)
    c = (square[:, :2] + square[:, 2:]) / 2
    side = (square[:, 2] - square[:, 0])[:, None]
    state = np.concatenate([c, side], 1)
    state = moving_mean(moving_median(state, window), max(1, window // 2) | 1)
    c, half = state[:, :2], state[:, 2:] / 2
    if cover is not None:
        cover = np.asarray(cover, np.float64)
        need = np.maximum(np.abs(cover[:, :2] - c), np.abs(cover[:, 2:] - c)).max(1, keepdims=True)
        half = np.where(np.isfinite(need), np.maximum(half, need), half)
    return np.concatenate([c - half, c + half], 1).astype(np.float32)


def crop_boxes(tight: np.ndarray, margin: float = 0.2, window: int = 9) -> np.ndarray:
    """Tight person boxes (T, 4) with NaN gaps -> smoothed square crop boxes (T, 4) that contain them."""
    filled = fill_gaps(tight)
    return smooth_boxes(square_boxes(filled, margin), window, cover=filled)


# ---------------------------------------------------------------- motion


def motion_from_poses(poses3d: np.ndarray, window: int = 5) -> np.ndarray:
    """Mean joint speed (T,) in mm per frame, over a centred window of ``window`` frames.

    motion[t] = mean over joints of |p[t+h] - p[t-h]| / (2h), h = window // 2, clipped at the ends:
    a displacement over several frames, so label jitter does not count as movement.
    """
    p = np.asarray(poses3d, np.float64)
    T = len(p)
    if T < 2:
        return np.zeros(T, np.float32)
    h = max(1, window // 2)
    t = np.arange(T)
    a, b = np.clip(t - h, 0, T - 1), np.clip(t + h, 0, T - 1)
    speed = np.linalg.norm(p[b] - p[a], axis=-1).mean(-1) / np.maximum(b - a, 1)
    return np.nan_to_num(speed, nan=0.0).astype(np.float32)


def mask_change(a: np.ndarray, b: np.ndarray, tolerance: int = 1) -> float:
    """The share of the person's pixels (union of two masks) that changed between them, 0 if both are empty.

    Pixels within ``tolerance`` px of the other mask do not count: the edge of a still person's mask
    flickers with noise by a pixel or two, which would otherwise look like movement.
    """
    union = np.count_nonzero(a | b)
    if union == 0:
        return 0.0
    if tolerance > 0:
        from .background import dilate
        moved = (a & ~dilate(b, tolerance)) | (b & ~dilate(a, tolerance))
    else:
        moved = a ^ b
    return np.count_nonzero(moved) / union


def motion_from_changes(changes: np.ndarray, window: int = 5) -> np.ndarray:
    """Per-frame foreground change (T,) (NaN where unknown) -> a smoothed motion score (T,) (moving median)."""
    changes = np.asarray(changes, np.float64)
    if not np.isfinite(changes).any():
        return np.zeros(len(changes), np.float32)
    return np.nan_to_num(moving_median(fill_gaps(changes[:, None])[:, 0], window), nan=0.0).astype(np.float32)
