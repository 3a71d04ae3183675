"""Person boxes and motion scores: pure functions on NumPy arrays.

Boxes are float32 ``x0 y0 x1 y1`` in continuous pixel coordinates in which pixel k covers [k, k + 1] (the pixel
*edges* convention of the assemble op, ``F.interpolate`` and ``roi_align(aligned=True)``): the whole W x H frame is
the box (0, 0, W, H), and a mask whose leftmost pixel is column 3 and rightmost column 7 has x0 = 3, x1 = 8. One
convention everywhere, so that mirroring a frame mirrors its box exactly (x -> W - x). NaN rows mean "unknown in
this frame". The crop boxes that training uses are square, centred on the person, smoothed over time and may extend
past the frame (the assemble op fills out-of-frame pixels).
"""
from __future__ import annotations

import numpy as np

from ...geometry import H36M17, Camera, Skeleton

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
    Frames where a joint is behind the camera or a label is not finite are NaN. ``Camera.project`` puts pixel
    centres at integers (OpenCV); + 0.5 turns that into the edges convention of this module.
    """
    uv, depth = project_joints(poses3d, camera)
    uv = uv + 0.5
    ok = np.isfinite(uv).all((1, 2)) & (depth > 1.0).all(1)
    pad = np.zeros(len(uv))
    z = np.median(np.where(depth > 1.0, depth, np.nan), axis=1)
    pad[ok] = pad_mm * max(camera.K[0, 0], camera.K[1, 1]) / z[ok]
    boxes = np.full((len(uv), 4), np.nan)
    boxes[ok, :2] = uv[ok].min(1) - pad[ok, None]
    boxes[ok, 2:] = uv[ok].max(1) + pad[ok, None]
    return boxes.astype(np.float32)


def boxes_from_masks(masks: np.ndarray, grid: int = 64) -> np.ndarray:
    """Tight boxes (N, 4) of the largest foreground region of each boolean mask (N, H, W), pixel edges; NaN if empty.

    Regions are found on a coarse grid (``grid`` cells along the longer side: nearby pieces of one person
    merge, specks stay apart), then the box is fitted to the full-resolution pixels of the winning region.
    """
    regions = largest_regions(masks, grid)
    out = np.full((len(regions), 4), np.nan, np.float32)
    for i, region in enumerate(regions):
        ys, xs = np.nonzero(region)
        if len(xs):
            out[i] = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1  # pixel edges: the last pixel ends one further
    return out


def largest_regions(masks: np.ndarray, grid: int = 64) -> np.ndarray:
    """The pixels (N, H, W) bool of each mask's largest foreground region (the person; see boxes_from_masks)."""
    return _regions(masks, grid, lambda ids, weight: ids[[np.argmax(weight)]])


def several_regions(masks: np.ndarray, grid: int = 32, share: float = 0.3) -> np.ndarray:
    """The pixels (N, H, W) bool of the foreground regions of masks that hold two or more regions of at least
    ``share`` x the largest one's pixels (empty for a mask with one such region): a person and something the
    size of a person beside it, such as the empty spot a person left in a background model that shows them."""
    def keep(ids, weight):
        big = ids[weight >= share * weight.max()]
        return big[:len(big) * (len(big) > 1)]

    return _regions(masks, grid, keep)


def _regions(masks: np.ndarray, grid: int, pick) -> np.ndarray:
    """Regions of each mask found on a coarse grid (``grid`` cells along the longer side: nearby pieces of one
    person merge, specks stay apart), weighed by their foreground pixels; ``pick(ids, weights)`` chooses the ones
    returned, at full resolution."""
    masks = np.asarray(masks, bool)
    N, H, W = masks.shape
    cell, counts, coarse, labels = coarse_regions(masks, grid)
    out = np.zeros((N, H, W), bool)
    for i in range(N):
        if not coarse[i].any():
            continue
        ids = np.unique(labels[i][coarse[i]])
        weight = np.bincount(labels[i].ravel(), weights=counts[i].ravel(), minlength=labels[i].max() + 1)[ids]
        chosen = pick(ids, weight)
        if len(chosen):
            region = np.isin(labels[i], chosen)
            out[i] = np.repeat(np.repeat(_grow(region), cell, 0), cell, 1)[:H, :W] & masks[i]
    return out


class PersonTrack:
    """One person's tight boxes in a camera's successive foreground masks, even with others in view.

    Each mask's regions are found as in :func:`boxes_from_masks` (coarse grid, ``grid`` cells along the longer
    side). The first person is the largest region; from then on the largest region is taken while it overlaps the
    last box, else the region (at least ``share`` x the largest) that does; when none does, the frame has no box
    (gaps are bridged later) until ``patience`` frames have passed, and the largest region starts a new track. A
    region far larger than the person's box (``merge`` x its area: the person met someone, or a shadow joined) keeps
    only its pixels near the person's last box alone, so the box never jumps to another person nor grows over two,
    for up to ``settle`` frames: a region that stays that large is the person's own (a mask that had only a piece
    of the person).

    ``prefer`` (box in mask pixels -> cost) chooses where a track starts among the person-sized regions (at least
    :data:`PERSON_SIZED` of the largest, the pieces of one person taken together): the one of least cost, e.g. the
    one nearest where a calibrated rig looks, so that every camera of a scene with several people starts on the same
    person; without it, the largest."""

    def __init__(self, grid: int = 32, patience: int = 30, share: float = 0.1, merge: float = 2.0, settle: int = 12,
                 prefer=None):
        self.grid, self.patience, self.share, self.merge, self.settle = grid, patience, share, merge, settle
        self.prefer = prefer
        self.last: np.ndarray | None = None  # the last box
        self.alone: np.ndarray | None = None  # the last box of the person alone (not merged with another region)
        self.lost = 0
        self.merged = 0  # frames in a row whose region was cut back to the person's last box alone
        self.look: np.ndarray | None = None  # the person's colours (upper, lower half), while seen alone

    def push(self, masks: np.ndarray, images: np.ndarray | None = None) -> np.ndarray:
        """Tight boxes (N, 4) of the tracked person in masks (N, H, W) bool, pixel edges; NaN rows: not seen.
        ``images`` (N, H, W, 3), the frames at the masks' size: where several people's regions touch the person's
        last box (two who met part again), the one whose colours are the person's is followed, not the largest."""
        masks = np.asarray(masks, bool)
        cell, counts, coarse, labels = coarse_regions(masks, self.grid)
        out = np.full((len(masks), 4), np.nan, np.float32)
        for i in range(len(masks)):
            image = None if images is None else images[i]
            box = self._pick(masks[i], labels[i], counts[i], coarse[i], cell, image) if coarse[i].any() else None
            if box is None:
                self.lost += 1
                if self.lost > self.patience:
                    self.last = self.alone = None
                continue
            out[i], self.last, self.lost = box, box, 0
        return out

    def _preferred(self, order, sized, labels, ids, cell) -> list:
        """``order`` led by the largest region of the preferred person. The person-sized regions (``sized``, largest
        first) are grouped into people by their columns: the pieces of one standing person (a mask split at the
        waist) share columns, two people side by side do not; each person costs ``prefer`` of their whole box."""
        boxes = {k: cells_box(labels == ids[k], cell) for k in sized}
        people: list[list] = []
        for k in sized:
            joined = [p for p in people if any(min(boxes[k][2], boxes[j][2]) > max(boxes[k][0], boxes[j][0])
                                               for j in p)]
            people = [p for p in people if p not in joined] + [sum(joined, []) + [k]]

        def whole(person: list) -> np.ndarray:
            corners = np.array([boxes[k] for k in person])
            return np.concatenate([corners[:, :2].min(0), corners[:, 2:].max(0)])
        lead = min(min(people, key=lambda p: self.prefer(whole(p))), key=sized.index)  # its largest piece
        return [lead] + [k for k in order if k != lead]

    def _pick(self, mask, labels, counts, coarse, cell, image=None) -> np.ndarray | None:
        H, W = mask.shape
        ids = np.unique(labels[coarse])
        weight = np.bincount(labels.ravel(), weights=counts.ravel(), minlength=labels.max() + 1)[ids]
        order = np.argsort(-weight, kind="stable")
        largest = weight[order[0]]
        if self.last is None and self.prefer is not None:  # a track starts: on the preferred person
            order = self._preferred(order, [k for k in order if weight[k] >= PERSON_SIZED * largest], labels, ids,
                                    cell)
        pixels = lambda k: np.repeat(np.repeat(_grow(labels == ids[k]), cell, 0), cell, 1)[:H, :W] & mask  # noqa: E731
        touching = [k for k in order if weight[k] >= self.share * largest
                    and (self.last is None or _overlaps(cells_box(labels == ids[k], cell), self.last))]
        if not touching:
            return None
        chosen = touching[0]
        people = [k for k in touching if weight[k] >= PERSON_SIZED * largest and self.alone is not None
                  and _area(cells_box(labels == ids[k], cell)) >= 0.4 * _area(self.alone)]  # people, not pieces
        if self.last is not None and self.look is not None and image is not None and len(people) > 1:
            chosen = min(people, key=lambda k: np.abs(_look(image, pixels(k)) - self.look).sum())
        region = pixels(chosen)
        box = _pixel_box(region)
        if self.alone is None or _area(box) <= self.merge * _area(self.alone) or self.merged >= self.settle:
            self.alone, self.merged = box, 0  # (a larger region that stays is the person's: a piece grew whole)
            if image is not None and (self.look is None or len(touching) == 1):  # seen alone: learn its colours
                now = _look(image, region)
                self.look = now if self.look is None else 0.8 * self.look + 0.2 * now
            return box
        self.merged += 1
        x0, y0, x1, y1 = self.alone  # merged: the pixels near where the person was last seen alone
        dx, dy = 0.25 * (x1 - x0), 0.25 * (y1 - y0)
        near = np.zeros_like(region)
        near[max(0, int(y0 - dy)):int(np.ceil(y1 + dy)), max(0, int(x0 - dx)):int(np.ceil(x1 + dx))] = True
        return _pixel_box(region & near) if (region & near).any() else box


PERSON_SIZED = 0.2  # a region at least this share of the frame's largest may be a person (the nearer of two people
#                    can look 4x larger: twice as near); smaller ones are pieces of one, or specks


def _look(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """A person's colours: the mean RGB (0..255) of the upper and of the lower half of their region, (6,)."""
    ys = np.nonzero(region.any(1))[0]
    middle = (ys[0] + ys[-1] + 1) // 2
    upper, lower = region.copy(), region.copy()
    upper[middle:], lower[:middle] = False, False
    return np.concatenate([image[half].mean(0) if half.any() else image[region].mean(0)
                           for half in (upper, lower)]).astype(np.float64)


def cells_box(cells: np.ndarray, cell: int = 1) -> np.ndarray:
    """x0 y0 x1 y1 of a boolean grid's true cells, in pixels of ``cell`` px cells."""
    ys, xs = np.nonzero(cells)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64) * cell


def _pixel_box(region: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(region)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def _overlaps(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _area(b) -> float:
    return float((b[2] - b[0]) * (b[3] - b[1]))


def coarse_regions(masks: np.ndarray, grid: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Masks (N, H, W) bool on a coarse grid of ``grid`` cells along the longer side: (the cell's side in pixels,
    foreground pixels per cell, the cells that count (a tenth of them foreground), their 8-connected labels)."""
    N, H, W = masks.shape
    cell = max(1, int(np.ceil(max(H, W) / grid)))
    gh, gw = -(-H // cell), -(-W // cell)
    padded = np.zeros((N, gh * cell, gw * cell), bool)
    padded[:, :H, :W] = masks
    counts = padded.reshape(N, gh, cell, gw, cell).sum((2, 4))
    coarse = counts > 0.1 * cell * cell
    return cell, counts, coarse, _component_labels(coarse)


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


class CropBoxStream:
    """Smoothed square crop boxes from tight person boxes, one frame at a time, each final a few frames later.

    The crop box of frame t is a function of the tight boxes of frames t - L .. t + L only (L = ``lookahead``),
    so the decoding pass of prepare can cut frame t's tile L frames after decoding it and keep only those frames in
    memory; :func:`crop_boxes` runs the same stream over a whole sequence, so both give identical boxes.

    Per frame: the tight box (NaN: no person seen) is filled where it is missing (a gap of at most ``max_gap``
    frames: linear interpolation between the boxes around it, held at the sequence's start; a longer gap holds
    the last box before it, NaN when there is none), squared (side = max(w, h) * (1 + margin), same centre), and
    its centre and side smoothed by a centred moving median of ``window`` frames (outliers) then a centred moving
    mean of ``window // 2 | 1`` frames (jitter), both over the frames that exist near the ends. Where smoothing
    lags a fast move, the side grows just enough to still contain the (filled) tight box; the centre stays smooth.
    """

    def __init__(self, margin: float = 0.2, window: int = 9, max_gap: int = 25):
        self.margin, self.max_gap = margin, max(0, int(max_gap))
        self.h_median = max(0, window // 2)
        self.h_mean = (max(1, window // 2) | 1) // 2
        self.lookahead = self.h_median + self.h_mean
        self.filled: list[np.ndarray | None] = []  # None while a gap is unresolved
        self._state: list[np.ndarray] = []  # (cx, cy, side) of the filled, squared box; NaN without a box
        self._medians: dict[int, np.ndarray] = {}
        self._last: int | None = None  # the last frame with a tight box
        self._gap: list[int] = []  # unresolved frames since then
        self._holding = False  # inside a gap longer than max_gap
        self._emitted = 0
        self._done = False

    def push(self, tight) -> list[tuple[int, np.ndarray]]:
        """Add the next frame's tight box (4,); returns the (frame, crop box) pairs that became final."""
        if self._done:
            raise RuntimeError("CropBoxStream: push after finish")
        box = np.asarray(tight, np.float64).reshape(4)
        t = len(self.filled)
        self.filled.append(None)
        self._state.append(None)
        if np.isfinite(box).all():
            for i in self._gap:  # a gap that closed within max_gap: interpolate (or hold the first box at the start)
                f = 1.0 if self._last is None else (i - self._last) / (t - self._last)
                self._resolve(i, box if self._last is None else (1 - f) * self.filled[self._last] + f * box)
            self._gap, self._holding, self._last = [], False, t
            self._resolve(t, box)
        elif self._holding:
            self._resolve(t, self._hold_value())
        else:
            self._gap.append(t)
            if len(self._gap) > self.max_gap:
                self._hold_gap()
        return self._emit()

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """The end of the sequence: a trailing gap holds the last box; returns the remaining pairs."""
        self._hold_gap()
        self._done = True
        return self._emit()

    def _hold_value(self) -> np.ndarray:
        return self.filled[self._last] if self._last is not None else np.full(4, np.nan)

    def _hold_gap(self):
        for i in self._gap:
            self._resolve(i, self._hold_value())
        self._gap, self._holding = [], bool(self._gap) or self._holding

    def _resolve(self, i: int, box: np.ndarray):
        self.filled[i] = box
        c = (box[:2] + box[2:]) / 2
        side = (box[2:] - box[:2]).max() * (1 + self.margin)
        self._state[i] = np.array([c[0], c[1], side])

    def _median(self, k: int, n: int) -> np.ndarray:
        if k not in self._medians:
            window = np.stack(self._state[max(0, k - self.h_median):min(n, k + self.h_median + 1)])
            self._medians[k] = _nan_reduce(np.median, window)
        return self._medians[k]

    def _emit(self) -> list[tuple[int, np.ndarray]]:
        n = len(self.filled)
        resolved = next((i for i, f in enumerate(self.filled[self._emitted:], self._emitted) if f is None), n)
        out = []
        while self._emitted < n and (self._done or self._emitted + self.lookahead < resolved):
            t = self._emitted
            window = range(max(0, t - self.h_mean), min(n, t + self.h_mean + 1))
            medians = np.stack([self._median(k, n) for k in window])
            state = _nan_reduce(np.mean, medians)
            c, half = state[:2], state[2] / 2
            f = self.filled[t]
            if np.isfinite(f).all():
                half = max(half, float(np.maximum(np.abs(f[:2] - c), np.abs(f[2:] - c)).max()))
            out.append((t, np.concatenate([c - half, c + half]).astype(np.float32)))
            self._medians.pop(t - self.h_mean - 1, None)  # no later frame needs it
            self._emitted += 1
        return out


def _nan_reduce(reduce, rows: np.ndarray) -> np.ndarray:
    """``reduce`` over axis 0 of the rows without NaN; NaN where every row has one (rows are whole boxes: a box
    is known or not, so dropping rows is the NaN-ignoring reduction, without nanmedian's cost on tiny arrays)."""
    ok = np.isfinite(rows).all(1)
    return reduce(rows[ok], axis=0) if ok.any() else np.full(rows.shape[1], np.nan)


def crop_boxes(tight: np.ndarray, margin: float = 0.2, window: int = 9, max_gap: int = 25) -> np.ndarray:
    """Tight person boxes (T, 4) with NaN gaps -> smoothed square crop boxes (T, 4) that contain them
    (:class:`CropBoxStream` over the whole sequence)."""
    stream = CropBoxStream(margin, window, max_gap)
    out = np.full((len(tight), 4), np.nan, np.float32)
    for box in tight:
        for t, b in stream.push(box):
            out[t] = b
    for t, b in stream.finish():
        out[t] = b
    return out


def tile_rect(crop: np.ndarray, factor: float, size: tuple[int, int]) -> np.ndarray:
    """The region (4,) of the frame a tile holds: the square of side ``factor`` x the crop box's side about its
    centre (room for the largest jitter the sampler applies), intersected with the frame (w, h) between its
    outermost pixel centres, [0.5, w - 0.5] x [0.5, h - 0.5], so that bilinear sampling of the region never needs
    a pixel outside the frame. The whole frame when the box is unknown (NaN) or lies outside it. The tile resamples
    this region to a fixed size, so near the frame's edge it is stretched along one axis rather than padded: every
    stored pixel is a real one."""
    w, h = size
    whole = np.array([0.5, 0.5, w - 0.5, h - 0.5], np.float32)
    crop = np.asarray(crop, np.float64)
    if not np.isfinite(crop).all():
        return whole
    c, half = (crop[:2] + crop[2:]) / 2, (crop[2:] - crop[:2]).max() * factor / 2
    rect = np.array([max(c[0] - half, 0.5), max(c[1] - half, 0.5),
                     min(c[0] + half, w - 0.5), min(c[1] + half, h - 0.5)])
    if rect[2] - rect[0] < 1 or rect[3] - rect[1] < 1:
        return whole
    return rect.astype(np.float32)


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


def motion_from_changes(changes: np.ndarray, window: int = 5) -> np.ndarray:
    """Per-frame foreground change (T,) (NaN where unknown) -> a smoothed motion score (T,) (moving median)."""
    changes = np.asarray(changes, np.float64)
    if not np.isfinite(changes).any():
        return np.zeros(len(changes), np.float32)
    return np.nan_to_num(moving_median(fill_gaps(changes[:, None])[:, 0], window), nan=0.0).astype(np.float32)
