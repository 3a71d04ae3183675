"""Silhouette epipolar tangency: the rig's geometry as an appearance-free sync cue (Sinha & Pollefeys, "Synchronization
and calibration of camera networks from silhouettes", ICPR 2004; IJCV 2010).

The planes through both centres of a calibrated camera pair (epipolar planes) form a pencil around the baseline;
every image point lies on exactly one of them, named here by its angle psi around the baseline. A body seen by both
cameras at one instant fills the same wedge of that pencil in both views: the two planes tangent to the body are the
planes of the two epipolar lines tangent to either silhouette. So, per frame and camera pair, a silhouette reduces to
two numbers (psi_lo, psi_hi), the extremes of psi over its outline, and a candidate pairing (a at t, b at u) leaves
two tangency residuals ``r_lo = 2 |lo_a - lo_b| / (width_a + width_b)`` and ``r_hi`` alike (0 when a tangent line
transfers exactly; a share of the person's extent). At another instant the body
has moved or bent and the tangents part. Oriented plane normals (baseline x viewing ray) agree between the two
views for any point in front of both cameras, so psi needs no sign convention.

Nothing here reads labels or the appearance of the person: the silhouettes are foreground masks against prepare's
background model, decoded once per camera (:func:`silhouette_outlines`, cached beside the preparation), and the
calibration. The score of a pairing is the mean over its two tangents of ``weight * clip(log(tolerance / r), -floor,
ceiling)``: bounded per tangent, because a mask that misses a limb (a ghost in the background model) breaks one
tangent, rarely both, and one broken frame then moves a mean over many instants by little.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..geometry import Camera
from .epipolar import has_baseline, normalised, smooth_rows
from .motion import changed_pixels, gray, person_region

OUTLINE_VERSION = 3  # bump when the outlines computed from a video change (part of the cache key); 2: the
#                     largest region inside the person's box where it holds more of that than of the frame's largest;
#                     3: with the motion series (:mod:`.motion`), from the same decoding pass
MAX_WEDGE = 1.0  # radians: a wider wedge means an epipole inside the silhouette, where tangents say nothing


@dataclass(frozen=True)
class TangencyCue:
    """The cue's shape (see the module docstring)."""

    weight: float = 2.0  # log-odds per unit of log(tolerance / r)
    tolerance: float = 0.08  # tangency residual (share of the wedge) at which a pairing counts neither way
    floor: float = 2.0  # the most one pairing counts against, in units of weight (a broken mask)
    ceiling: float = 1.5  # the most one pairing counts for
    smooth_s: float = 0.0  # half-width (seconds) of a moving average over the offsets (0: none)

    def __post_init__(self):
        if not (self.weight > 0 and self.tolerance > 0 and self.floor >= 0 and self.ceiling >= 0
                and self.smooth_s >= 0):
            raise ValueError(f"tangency cue: weight and tolerance must be > 0, the rest >= 0; got {self}")


# ---------------------------------------------------------------- outlines from masks


def outline_points(mask: np.ndarray, scale: int = 1) -> np.ndarray:
    """(P, 2) pixel coordinates (full resolution, pixel centres at integers) of a silhouette's outline as seen from
    any direction: the left and right ends of every row and the top and bottom ends of every column of a (H, W)
    boolean mask computed at 1/``scale`` resolution. Extremes of any linear-fractional function (such as the
    epipolar-plane angle) over the silhouette lie among them."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return np.zeros((0, 2))
    rows, left, right = _ends(ys, xs, mask.shape[0])
    cols, top, bottom = _ends(xs, ys, mask.shape[1])
    yc, xc = (rows + 0.5) * scale - 0.5, (cols + 0.5) * scale - 0.5
    # the outer pixel edges (a pixel of the small mask covers scale x scale pixels)
    return np.concatenate([np.stack([left * scale - 0.5, yc], 1), np.stack([(right + 1) * scale - 0.5, yc], 1),
                           np.stack([xc, top * scale - 0.5], 1), np.stack([xc, (bottom + 1) * scale - 0.5], 1)]
                          ).astype(np.float32)


def _ends(keys: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every distinct key in [0, n): the key, and the smallest and largest value paired with it."""
    lo, hi = np.full(n, np.iinfo(np.int64).max), np.full(n, -1)
    np.minimum.at(lo, keys, values)
    np.maximum.at(hi, keys, values)
    present = np.unique(keys)
    return present, lo[present], hi[present]


def outline_scale(size: tuple[int, int]) -> int:
    """Masks for the outlines at ~240 px on the short side: a pixel or two of the person's outline, cheap."""
    return max(1, round(min(size) / 240))


@dataclass
class Outlines:
    """One camera recording's silhouette outlines: frame t's points are ``points[offsets[t]:offsets[t + 1]]``."""

    points: np.ndarray  # (P, 2) float32 pixels
    offsets: np.ndarray  # (T + 1,) int64
    motion: np.ndarray | None = None  # (T,) float32 pixels changed per frame inside the person's box (:mod:`.motion`)

    def frame(self, t: int) -> np.ndarray:
        return self.points[self.offsets[t]:self.offsets[t + 1]]

    @property
    def num_frames(self) -> int:
        return len(self.offsets) - 1


def _outlines_of_video(job: dict) -> dict:
    """Decode one camera's frames once; the person's mask against the background (the frame's largest region within
    the person's box grown by a fifth; where the box holds more of another region, that one: someone else is larger)
    -> outline points per frame; and the frames' motion series (:func:`.motion.changed_pixels`)."""
    import torch
    torch.set_num_threads(1)
    from ..data.decode.video import iter_frames
    from ..data.preparation.background import foreground_masks
    from ..data.preparation.boxes import largest_regions
    from ..data.preparation.prepare import downsample
    k, bg = job["scale"], downsample(job["background"], job["scale"])
    boxes = job["boxes"]
    pts, counts, batch, t = [], [], [], 0
    grays, moved = [], np.full(job["frames"], np.nan, np.float32)  # the last three frames: frame t's change t-1 -> t+1

    def flush():
        nonlocal t
        masks = foreground_masks(np.stack(batch), bg, job["threshold"])
        for m, largest in zip(masks, largest_regions(masks, grid=32)):
            box = boxes[t] if t < len(boxes) else np.full(4, np.nan)
            if not np.isfinite(box).all():
                p = np.zeros((0, 2), np.float32)
            else:
                inside = np.zeros_like(m)
                inside[person_region(box, k)] = True
                person, boxed = largest & inside, largest_regions((m & inside)[None], grid=32)[0]
                p = outline_points(boxed if boxed.sum() > person.sum() else person, k)
            pts.append(p)
            counts.append(len(p))
            t += 1
        batch.clear()

    for i, frame in enumerate(iter_frames(Path(job["video"]), job["frames"], job["start"])):
        batch.append(downsample(frame, k))
        grays = [*grays[-2:], gray(batch[-1])]
        if len(grays) == 3 and i - 1 < len(boxes):
            moved[i - 1] = changed_pixels(grays[0], grays[2], boxes[i - 1], k)
        if len(batch) == 8:
            flush()
    if batch:
        flush()
    return dict(key=job["key"], points=np.concatenate(pts) if pts else np.zeros((0, 2), np.float32),
                offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), motion=moved[:t])


def silhouette_outlines(manifest, indices: list[int], folder: Path, workers: int = 1, log=print) -> dict[int, Outlines]:
    """{manifest index: Outlines} of single-camera prepared recordings, cached in ``folder`` under a key of the
    video's identity (path, size, modification time), its first frame, the background model and its threshold."""
    from ..parallel import Workers
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out, jobs = {}, []
    for i in indices:
        p = manifest.sequences[i]
        cam = p.cameras[0]
        info = manifest.backgrounds[cam.background_id]
        st = os.stat(cam.video)
        ident = dict(video=str(Path(cam.video).resolve()), bytes=st.st_size, mtime_ns=st.st_mtime_ns, start=cam.start,
                     frames=p.num_frames, background=str(info.path), bg_mtime_ns=os.stat(info.path).st_mtime_ns,
                     threshold=info.threshold, version=OUTLINE_VERSION,
                     boxes=hashlib.sha1(np.ascontiguousarray(p.tight[:, 0]).tobytes()).hexdigest()
                     if p.tight is not None else None)
        key = hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
        path = folder / f"outlines-{key}.npz"
        if path.is_file():
            with np.load(path) as z:
                out[i] = Outlines(z["points"], z["offsets"], z["motion"])
            continue
        boxes = p.tight[:, 0] if p.tight is not None else np.full((p.num_frames, 4), np.nan)
        jobs.append(dict(key=i, path=str(path), video=str(cam.video), start=cam.start, frames=p.num_frames,
                         background=manifest.background(cam.background_id), threshold=info.threshold,
                         scale=outline_scale(cam.size), boxes=boxes))
    if jobs:
        log(f"silhouette outlines of {len(jobs)} camera recording(s) ({len(indices) - len(jobs)} cached)")
        with Workers(min(workers, len(jobs)), preload=(__name__,)) as pool:
            for r in pool.map(_outlines_of_video, jobs):
                job = next(j for j in jobs if j["key"] == r["key"])
                tmp = Path(job["path"]).with_suffix(".tmp.npz")
                np.savez(tmp, points=r["points"], offsets=r["offsets"], motion=r["motion"])
                os.replace(tmp, job["path"])  # atomic: a killed run leaves no half-written cache
                out[r["key"]] = Outlines(r["points"], r["offsets"], r["motion"])
    return out


# ---------------------------------------------------------------- the pencil of epipolar planes


class Pencil:
    """The epipolar planes of cameras a and b, by their angle around the baseline."""

    def __init__(self, cam_a: Camera, cam_b: Camera):
        if not has_baseline(cam_a, cam_b):
            raise ValueError(f"cameras {cam_a.name} and {cam_b.name} share a centre: no epipolar planes")
        base = cam_b.center - cam_a.center
        self.base = base / np.linalg.norm(base)
        ahead = cam_a.R[2] + cam_b.R[2]  # both optical axes: the scene lies ahead of them
        v1 = np.cross(self.base, ahead if np.linalg.norm(np.cross(self.base, ahead)) > 1e-6 else cam_a.R[1])
        self.v1 = v1 / np.linalg.norm(v1)
        self.v2 = np.cross(self.base, self.v1)
        self.cams = (cam_a, cam_b)

    def angles(self, which: int, pixels: np.ndarray) -> np.ndarray:
        """(...) psi of pixels (..., 2) of camera a (which=0) or b (1)."""
        cam = self.cams[which]
        xn = normalised(cam, pixels)
        rays = np.concatenate([xn, np.ones(xn.shape[:-1] + (1,))], -1) @ cam.R  # world directions (R^T x)
        n = np.cross(self.base, rays)
        return np.arctan2(n @ self.v2, n @ self.v1)

    def wedges(self, which: int, outlines: Outlines) -> np.ndarray:
        """(T, 2) [psi_lo, psi_hi] per frame; NaN where no silhouette, or where the wedge is too wide to mean a
        tangent (the other camera's centre seen inside the silhouette)."""
        T = outlines.num_frames
        out = np.full((T, 2), np.nan)
        if not len(outlines.points):
            return out
        psi = self.angles(which, outlines.points)
        has = np.diff(outlines.offsets) > 0
        starts = outlines.offsets[:-1][has]
        out[has, 0] = np.minimum.reduceat(psi, starts)
        out[has, 1] = np.maximum.reduceat(psi, starts)
        out[(out[:, 1] - out[:, 0]) > MAX_WEDGE] = np.nan
        return out


def tangency_residual(wedge_a: np.ndarray, wedge_b: np.ndarray) -> np.ndarray:
    """(..., 2) the residuals of the two tangents of wedges (..., 2) broadcast against each other (module
    docstring)."""
    wa, wb = np.asarray(wedge_a, np.float64), np.asarray(wedge_b, np.float64)
    width = (wa[..., 1] - wa[..., 0]) + (wb[..., 1] - wb[..., 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return 2 * np.abs(wa - wb) / width[..., None]


def cue_matrix(cue: TangencyCue, wedge_a: np.ndarray, wedge_b: np.ndarray, instants: np.ndarray, offsets: np.ndarray,
               fps: float) -> np.ndarray:
    """(n, K) the cue for (a at instants[i], b at instants[i] + offsets[k]) from per-frame wedges (T_a, 2) and
    (T_b, 2) of one :class:`Pencil`; NaN where b's frame does not exist or a wedge is missing."""
    t = np.asarray(instants, np.int64)[:, None]
    u = t + np.asarray(offsets, np.int64)[None, :]
    inside = (u >= 0) & (u < len(wedge_b))
    r = tangency_residual(wedge_a[np.broadcast_to(t, u.shape)], wedge_b[np.clip(u, 0, len(wedge_b) - 1)])
    with np.errstate(invalid="ignore", divide="ignore"):
        score = cue.weight * np.clip(np.log(cue.tolerance / np.maximum(r, 1e-9)), -cue.floor, cue.ceiling).mean(-1)
    score = np.where(inside & np.isfinite(r).all(-1), score, np.nan)
    half = int(round(cue.smooth_s * fps))
    if half > 0:
        score = smooth_rows(score, half)
    return score.astype(np.float32)
