"""Per-camera background models and foreground masks: pure functions on NumPy arrays (no video I/O here).

The background of a static camera is the per-pixel temporal median of frames sampled over all sequences
that share the camera's calibration (one subject, one rig). Nothing here reads labels: the person is found in
the images themselves. Three things keep a person who stands still from leaking into the model:

- pooling: frames come from every sequence of the group in equal shares, so a spot where the person
  stands in one sequence is shown empty by the others and outvoted;
- exclusion (:func:`model_from_images`): a first median finds each sample's foreground; those pixels, grown
  by a margin, do not vote in the second median, so the median at a pixel is taken over the samples that
  show it without the person;
- borrowing: where the person still covered a spot in nearly every sample, or left a ghost (below), other
  subjects filmed by the same camera with the same calibration in the same scene (checked) fill it in
  (:func:`borrow_background`).

Where the person stood on one spot in most samples of every sequence, the median shows the person (a
"ghost") and no statistic over these samples can recover the spot; in the samples where the person is
elsewhere, that spot then differs from the model in the same place again and again, beside the person.
:func:`model_from_images` finds such spots (a foreground region that hardly moves), marks them unreliable
(for borrowing) and prepare warns; a rig that can record the empty scene should give prepare those images
instead.

A person who never leaves the spot (on a force plate, a treadmill) moves limbs around a body that stays: against
a median that shows the body, only the limbs differ, and the person's outline (:func:`person_hulls`, the region
spanned by the limbs) covers the body too. :func:`model_from_images` then models each pixel from the samples in
which it lies outside that outline (:func:`refine_uncovered`), and again against the better model, until the
outline stops growing. Pixels no sample shows uncovered are *unmodelled*: said so (``BackgroundModel.unmodelled``),
and filled from the background around them (:func:`fill_from_surroundings`), so that the person who covers them
stays foreground instead of being cut out by a ghost of themselves.

A pixel is foreground when its RGB distance (Euclidean, 0..255 units) to the background exceeds a
threshold estimated from the noise of the samples against the model (median + k * 1.4826 * MAD of the
distances of pixels that are not the person); the mask is then cleaned with a small morphological opening
(removes specks; see :func:`clean_mask` for why there is no closing by default). Pixels that look like
the background in shadow (darker, same colour) are not foreground: a person's shadow on the floor is not
the person.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .boxes import cells_box, coarse_regions, several_regions

THRESHOLD_FLOOR = 18.0  # RGB distance below which no difference counts as foreground (compression noise)
THRESHOLD_SIGMAS = 5.0  # noise sigmas above the median distance
SHADOW_MIN_BRIGHTNESS = 0.4  # a shadow keeps at least this share of the background's brightness
SHADOW_CHROMA = 0.04  # and changes its colour by less than this share of the colour's length
MIN_UNCOVERED = 3  # samples (and 15% of them) that must show a pixel outside the person's outline to model it
HULL_GRID = 64  # cells along the longer side of the person's outline
NEIGHBOURS = 2  # samples on each side whose outline also counts as covering a sample (in the order given)
REFINE_ROUNDS = 3  # outline -> model -> outline rounds of refine_uncovered (it settles in two on real clips)
GHOST_PERSISTENCE = 0.15  # a second person-sized region in one place in this share of the samples: a ghost (measured:
#                          0.20-0.23 for a person who stood still 57% of a sequence, 0 on the synthetic data)


@dataclass
class BackgroundModel:
    """A background image and what it takes to separate foreground from it."""

    image: np.ndarray  # (H, W, 3) uint8
    threshold: float  # RGB distance above which a pixel is foreground
    noise: float  # robust sigma of background pixels' distance to the model (MAD * 1.4826)
    samples: int  # frames the model was estimated from
    unreliable: np.ndarray | None  # (H, W) bool: too few samples showed it without the person (None: unknown)
    persistence: np.ndarray | None = None  # (H, W) float32: share of samples in which the pixel was in one of two
    #                                         person-sized foreground regions against the first median: a ghost's
    #                                         spot, where the person stood, shows again and again beside the person
    uncovered: np.ndarray | None = None  # (H, W) int16: samples that show the pixel outside the person's outline
    unmodelled: np.ndarray | None = None  # (H, W) bool: no sample shows it uncovered (filled from the surroundings)


def sample_indices(num_frames: int, n: int) -> np.ndarray:
    """``n`` frame indices spread evenly over ``num_frames`` (centred in equal segments), unique, sorted."""
    if num_frames <= 0 or n <= 0:
        return np.zeros(0, np.int64)
    n = min(n, num_frames)
    return np.unique(((np.arange(n) + 0.5) * num_frames / n).astype(np.int64))


def colour_distance(frames: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Euclidean RGB distance (..., H, W) float32 between uint8 frames (..., H, W, 3) and a background (H, W, 3)."""
    if frames.shape[-3:] != background.shape:
        raise ValueError(f"frames {frames.shape} and background {background.shape} differ in size")
    d = frames.astype(np.int16) - background.astype(np.int16)
    return np.sqrt(np.einsum("...c,...c->...", d, d, dtype=np.int32).astype(np.float32))


def farther_than(frames: np.ndarray, background: np.ndarray, threshold: float) -> np.ndarray:
    """``colour_distance(frames, background) > threshold``, bit for bit, ~4x faster: the squared distance (exact
    in float32, every term an integer below 2^24) against the smallest squared distance whose float32 root
    exceeds the threshold (the root is correctly rounded, so monotone)."""
    if frames.shape[-3:] != background.shape:
        raise ValueError(f"frames {frames.shape} and background {background.shape} differ in size")
    t = np.float32(threshold)
    first = max(0, int(np.floor(float(t) ** 2)) - 2)
    candidates = np.arange(first, first + 6, dtype=np.float32)
    over = candidates[np.sqrt(candidates) > t]
    limit = over[0] if len(over) else candidates[-1] + 1
    d = frames.astype(np.float32)
    d -= background
    d *= d
    total = d[..., 0] + d[..., 1]
    total += d[..., 2]
    return total >= limit


def estimate_background(samples: np.ndarray, exclude: np.ndarray | None = None, min_votes: int | None = None,
                        rows_per_chunk: int = 64, ranks: tuple[np.ndarray, np.ndarray] | None = None
                        ) -> BackgroundModel:
    """Background model from sampled frames.

    samples: (N, H, W, 3) uint8 frames of one camera (pooled over the sequences of its group);
    exclude: (N, H, W) bool, pixels covered by the person in each sample (they do not vote); None: none known;
    min_votes: fewest voting samples for the masked median; fewer -> the plain median over all samples;
    ranks: :func:`middle_ranks` of ``samples`` when the caller has them already.
    """
    samples = np.asarray(samples)
    if samples.ndim != 4 or samples.shape[-1] != 3 or samples.dtype != np.uint8 or len(samples) == 0:
        raise ValueError(f"samples: expected uint8 (N>0, H, W, 3), got {samples.dtype} {samples.shape}")
    N, H, W, _ = samples.shape
    if exclude is not None and exclude.shape != (N, H, W):
        raise ValueError(f"exclude: expected ({N}, {H}, {W}), got {exclude.shape}")
    if min_votes is None:
        min_votes = max(3, int(np.ceil(0.15 * N)))
    lo, hi = ranks if ranks is not None else middle_ranks(samples, rows_per_chunk)
    plain = _round_half_even(lo, hi)  # the plain median, as np.round(np.median(samples, 0)) gives it
    if exclude is None:
        return _with_noise(samples, plain, None, N, np.full((H, W), N, np.int32), min_votes)
    image = ((lo.astype(np.uint16) + hi + 1) // 2).astype(np.uint8)  # the masked median where nothing is excluded
    votes = np.full((H, W), N, np.int32)
    for r0 in range(0, H, rows_per_chunk):
        r1 = min(H, r0 + rows_per_chunk)
        ex = exclude[:, r0:r1]
        n = N - ex.sum(0)
        votes[r0:r1] = n
        some = n < N  # only where a sample is left out does the median change: sort just those pixels
        if some.any():
            image[r0:r1][some] = _masked_median(samples[:, r0:r1][:, some][:, None], ex[:, some][:, None],
                                                np.maximum(n[some], 1)[None])[0]
        few = n < min_votes  # the person covered these in nearly every sample: the plain median is all there is
        image[r0:r1][few] = plain[r0:r1][few]
    return _with_noise(samples, image, exclude, N, votes, min_votes)


def middle_ranks(samples: np.ndarray, rows_per_chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The values at ranks (N-1)//2 and N//2 of uint8 samples (N, H, W, 3) along N: the two a median averages
    (a partial sort of row chunks: no full sort, little memory)."""
    N = len(samples)
    lo, hi = np.empty(samples.shape[1:], np.uint8), np.empty(samples.shape[1:], np.uint8)
    for r0 in range(0, samples.shape[1], rows_per_chunk):
        part = np.partition(samples[:, r0:r0 + rows_per_chunk], [(N - 1) // 2, N // 2], axis=0)
        lo[r0:r0 + rows_per_chunk], hi[r0:r0 + rows_per_chunk] = part[(N - 1) // 2], part[N // 2]
    return lo, hi


def _round_half_even(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.round((lo.astype(np.float32) + hi) / 2).astype(np.uint8)


def _with_noise(samples: np.ndarray, image: np.ndarray, exclude: np.ndarray | None, N: int, votes: np.ndarray,
                min_votes: int) -> BackgroundModel:
    """The model of ``image``, its threshold from the samples' distances to it."""
    H, W = image.shape[:2]
    # noise: distances of pixels that are not the person (all pixels when unknown), subsampled for speed
    step = max(1, int(np.sqrt(H * W / 20000)))
    d = colour_distance(samples[:, ::step, ::step], image[::step, ::step])
    keep = ~exclude[:, ::step, ::step] if exclude is not None else np.ones(d.shape, bool)
    d = d[keep] if keep.any() else d.reshape(-1)
    med = float(np.median(d))
    noise = 1.4826 * float(np.median(np.abs(d - med)))
    threshold = max(THRESHOLD_FLOOR, med + THRESHOLD_SIGMAS * noise)
    return BackgroundModel(image, threshold, noise, N, None if exclude is None else votes < min_votes)


def model_from_images(samples: np.ndarray, grow: int | None = None) -> BackgroundModel:
    """The label-free background model of one camera: the plain median of the samples, then the median again
    with each sample's foreground against the first one (grown by ``grow`` px, default a few pixels at this
    frame size) left out of the vote.

    A ghost (a person who stood on one spot in most samples is the first median there) shows in the other
    samples as foreground *beside* the person: a second person-sized region, always in the same place. Pixels
    where that happens in at least ``GHOST_PERSISTENCE`` of the samples keep the plain median (the samples that
    differ from it there are the empty floor: leaving them out would only make the ghost sure) and are reported."""
    samples = np.asarray(samples)
    ranks = middle_ranks(samples)  # both medians start from the same partial sort
    first = estimate_background(samples, ranks=ranks)
    H, W = samples.shape[1:3]
    fg = foreground_masks(samples, first.image, first.threshold)
    persistence = several_regions(fg).mean(0, dtype=np.float32)
    changed = foreground_masks(samples, first.image, first.threshold, shadows=False)  # the person's shadow too:
    # a shadow where the person stood would otherwise stay in the model (and be "foreground" once it moved on)
    radius = grow if grow is not None else 3 * morphology_radius((W, H))
    exclude = dilate(changed, radius) & (persistence < GHOST_PERSISTENCE)
    model = estimate_background(samples, exclude, ranks=ranks)
    model.persistence = persistence
    model = refine_uncovered(samples, model, exclude, grow if grow is not None else 3 * morphology_radius((W, H)))
    model.unreliable |= ghost_region(persistence)  # other subjects on the same rig may show the spot empty
    return model


def person_hulls(masks: np.ndarray, grid: int = HULL_GRID, reach: float = 0.25) -> np.ndarray:
    """The outline (N, H, W) bool of the person in each foreground mask, on a grid of ``grid`` cells along the
    longer side: the largest region with the regions whose extent comes within ``reach`` x its size of it (limbs
    that the mask cut off), and every cell that lies both between the leftmost and rightmost of their cells in its
    row and between the topmost and bottommost in its column. A body that stays while the limbs move differs from a
    median that shows it only at the limbs; their outline covers the body."""
    masks = np.asarray(masks, bool)
    N, H, W = masks.shape
    cell, counts, coarse, labels = coarse_regions(masks, grid)
    gh, gw = coarse.shape[1:]
    person = np.zeros_like(coarse)
    for i in range(N):
        if not coarse[i].any():
            continue
        ids = np.unique(labels[i][coarse[i]])
        weight = np.bincount(labels[i].ravel(), weights=counts[i].ravel())[ids]
        boxes = np.array([cells_box(labels[i] == k) for k in ids])
        x0, y0, x1, y1 = boxes[np.argmax(weight)]
        dx, dy = reach * (x1 - x0), reach * (y1 - y0)
        near = (boxes[:, 0] < x1 + dx) & (boxes[:, 2] > x0 - dx) & (boxes[:, 1] < y1 + dy) & (boxes[:, 3] > y0 - dy)
        person[i] = np.isin(labels[i], ids[near])
    x, y = np.arange(gw), np.arange(gh)[:, None]
    rows, cols = person.any(2, keepdims=True), person.any(1, keepdims=True)
    left, right = np.argmax(person, 2)[..., None], gw - 1 - np.argmax(person[..., ::-1], 2)[..., None]
    top, bottom = np.argmax(person, 1)[:, None], gh - 1 - np.argmax(person[:, ::-1], 1)[:, None]
    hull = rows & (x >= left) & (x <= right) & cols & (y >= top) & (y <= bottom)
    return np.repeat(np.repeat(hull, cell, 1), cell, 2)[:, :H, :W]


def _smooth(image: np.ndarray) -> np.ndarray:
    """A [1 2 1] x [1 2 1] / 16 blur of (H, W, C) float images (edges repeated): a doubled pyramid level becomes
    a bilinear-like one."""
    p = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    rows = p[:-2] + 2 * p[1:-1] + p[2:]
    return (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 16


def refine_uncovered(samples: np.ndarray, model: BackgroundModel, exclude: np.ndarray, grow: int,
                     rounds: int = REFINE_ROUNDS) -> BackgroundModel:
    """Model each pixel from the samples that show it outside the person's outline (:func:`person_hulls`, grown by
    ``grow`` px, against the current model), where the outline covered at least half of the samples that voted for
    it (elsewhere the median was right already, and stays bit for bit); repeat against the better model. Pixels
    fewer than ``MIN_UNCOVERED`` samples (and 15% of them: outlines miss parts of a body now and then) show uncovered
    are unmodelled and filled from their surroundings."""
    N, H, W = samples.shape[:3]
    exclude = exclude.copy()
    image = model.image.copy()
    unmodelled = np.zeros((H, W), bool)
    uncovered = np.full((H, W), N, np.int16)
    step = max(1, int(np.ceil(max(H, W) / HULL_GRID)) // 4)  # outlines from every step-th pixel: 4 per cell
    for _ in range(rounds):
        hulls = person_hulls(foreground_masks(samples[:, ::step, ::step], image[::step, ::step], model.threshold))
        covered = hulls.copy()  # neighbouring samples too: a person moves little between them, and a mask that
        for d in range(1, NEIGHBOURS + 1):  # missed most of the body in one sample rarely misses it in three
            covered[d:] |= hulls[:-d]
            covered[:-d] |= hulls[d:]
        covered = dilate(covered, max(1, round(grow / step)))
        covered = np.repeat(np.repeat(covered, step, 1), step, 2)[:, :H, :W]
        voting = ~exclude
        redo = 2 * (covered & voting).sum(0) >= np.maximum(voting.sum(0), 1)
        uncovered = np.minimum(uncovered, N - covered.sum(0, dtype=np.int16))
        if not redo.any():
            break
        exclude[:, redo] |= covered[:, redo]
        votes = N - exclude[:, redo].sum(0)
        image[redo] = _masked_median(samples[:, redo][:, None], exclude[:, redo][:, None],
                                     np.maximum(votes, 1)[None])[0]
        unmodelled[redo] = votes < max(MIN_UNCOVERED, int(np.ceil(0.15 * N)))
        # a few-pixel hole inside the unmodelled region is a spot the outlines happened to miss: the person's too
        unmodelled = clean_mask(unmodelled, 0, close_radius=int(np.ceil(max(H, W) / HULL_GRID)))
        if unmodelled.any():
            image = fill_from_surroundings(image, unmodelled)
    model.image, model.uncovered, model.unmodelled = image, uncovered, unmodelled
    model.unreliable = unmodelled if model.unreliable is None else model.unreliable | unmodelled
    return model


def fill_from_surroundings(image: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with the ``missing`` (H, W) pixels filled from the pixels around them: averages
    of the known pixels on a pyramid of halved images, each missing pixel taking the finest level that knows its
    neighbourhood (push-pull). Smooth, and never the colour of whatever covered the spot."""
    levels = [(image.astype(np.float32), (~missing).astype(np.float32))]
    while levels[-1][1].min() == 0 and min(levels[-1][1].shape) > 1:
        img, w = levels[-1]
        h2, w2 = -(-img.shape[0] // 2), -(-img.shape[1] // 2)
        pad = ((0, 2 * h2 - img.shape[0]), (0, 2 * w2 - img.shape[1]))
        wi = np.pad(img * w[..., None], pad + ((0, 0),))
        wp = np.pad(w, pad)
        total = wp[0::2, 0::2] + wp[1::2, 0::2] + wp[0::2, 1::2] + wp[1::2, 1::2]
        summed = wi[0::2, 0::2] + wi[1::2, 0::2] + wi[0::2, 1::2] + wi[1::2, 1::2]
        levels.append((summed / np.maximum(total, 1e-6)[..., None], np.minimum(total, 1.0)))
    if levels[-1][1].max() == 0:
        return image  # nothing known to fill from
    filled = levels[-1][0]
    for img, w in reversed(levels[:-1]):
        up = _smooth(np.repeat(np.repeat(filled, 2, 0), 2, 1)[:img.shape[0], :img.shape[1]])
        filled = np.where(w[..., None] > 0, img, up)
    out = image.copy()
    out[missing] = np.clip(np.round(filled[missing]), 0, 255).astype(np.uint8)
    return out


def model_from_empty_scene(image: np.ndarray, samples: np.ndarray) -> BackgroundModel:
    """The background model of a camera whose empty scene the rig recorded: that image, with the threshold
    found as usual from the samples' noise against it, the person's pixels left out."""
    image = np.asarray(image, np.uint8)
    first = foreground_masks(samples, image, THRESHOLD_FLOOR)
    exclude = dilate(first, 3 * morphology_radius(image.shape[1::-1]))
    step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / 20000)))
    d = colour_distance(samples[:, ::step, ::step], image[::step, ::step])[~exclude[:, ::step, ::step]]
    med = float(np.median(d)) if d.size else 0.0
    noise = 1.4826 * float(np.median(np.abs(d - med))) if d.size else 0.0
    empty = np.zeros(image.shape[:2], bool)  # the scene itself: no pixel needs the person to leave, none persists
    return BackgroundModel(image, max(THRESHOLD_FLOOR, med + THRESHOLD_SIGMAS * noise), noise, len(samples),
                           empty, persistence=empty.astype(np.float32))


def _masked_median(x: np.ndarray, excluded: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Per-pixel median over the samples that are not excluded: x (N, h, w, 3) uint8, excluded (N, h, w),
    n (h, w) the count of samples left (>= 1). Excluded values sort last (256), so the median of the n
    valid ones sits at ranks (n-1)//2 and n//2: one sort instead of a NaN-aware median (~6x faster)."""
    v = x.astype(np.uint16)
    v[excluded] = 256
    v.sort(axis=0)
    lo = np.take_along_axis(v, ((n - 1) // 2)[None, ..., None].repeat(3, -1), 0)[0]
    hi = np.take_along_axis(v, (n // 2)[None, ..., None].repeat(3, -1), 0)[0]
    return ((lo.astype(np.int32) + hi + 1) // 2).astype(np.uint8)


def ghost_region(persistence: np.ndarray, share: float | None = None) -> np.ndarray:
    """Where the model probably shows a person who hardly moved (H, W) bool: pixels foreground in at least
    ``share`` (default ``GHOST_PERSISTENCE``) of the samples, specks removed."""
    region = persistence >= (GHOST_PERSISTENCE if share is None else share)
    return clean_mask(region, morphology_radius(region.shape[::-1]))


def borrow_background(image: np.ndarray, unreliable: np.ndarray, donors: list[tuple[np.ndarray, np.ndarray]],
                      tolerance: float = 6.0) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Fill a model's unreliable pixels from other models of the same camera and scene.

    The same static camera filmed other subjects (other sessions) too; where a person covered a spot in
    nearly every sample of this subject, those recordings usually show it empty. A donor (image, unreliable)
    is used only if it shows the same scene: a median absolute difference of at most ``tolerance`` (0..255)
    over the pixels both trust (a changed room or lighting disqualifies it). Each pixel takes the median of
    the donors that trust it.

    Returns the new image, the pixels filled, and the indices of the donors used.
    """
    trusted = ~unreliable
    used, values, valid = [], [], []
    for k, (d_image, d_unreliable) in enumerate(donors):
        if d_image.shape != image.shape:
            continue
        both = trusted & ~d_unreliable
        if both.mean() < 0.5:
            continue
        diff = np.abs(d_image.astype(np.int16) - image.astype(np.int16)).mean(-1)[both]
        if np.median(diff) <= tolerance:
            used.append(k)
            values.append(d_image.astype(np.float32))
            valid.append(~d_unreliable)
    if not used:
        return image, np.zeros(unreliable.shape, bool), []
    valid_all = np.stack(valid)
    fill = unreliable & valid_all.any(0)
    v = np.stack(values)[:, fill]  # (D, n, 3)
    v[~valid_all[:, fill]] = np.nan
    out = image.copy()
    out[fill] = np.round(np.nanmedian(v, axis=0)).astype(np.uint8)
    return out, fill, used


# ---------------------------------------------------------------- foreground masks


def morphology_radius(size: tuple[int, int]) -> int:
    """Opening radius that scales with the frame: 1 px up to ~480 px, 4 px at 1000 px."""
    return max(1, round(min(size) / 240))


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Square (2r+1)^2 dilation of boolean (..., H, W) masks; nothing comes in from outside the frame."""
    out = mask.copy()
    for s in range(1, r + 1):
        out[..., s:, :] |= mask[..., :-s, :]
        out[..., :-s, :] |= mask[..., s:, :]
    rows = out.copy()
    for s in range(1, r + 1):
        out[..., :, s:] |= rows[..., :, :-s]
        out[..., :, :-s] |= rows[..., :, s:]
    return out


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Square erosion; outside the frame counts as foreground, so a person cut by the border keeps its edge."""
    return ~dilate(~mask, r)


def clean_mask(mask: np.ndarray, radius: int, close_radius: int = 0) -> np.ndarray:
    """Opening with a (2 radius + 1)^2 square (removes specks), then an optional closing (fills pinholes).

    The closing is off by default: even a 3x3 one fills the real gaps between the legs or between an arm
    and the torso of a small person, which cost more IoU in tests than the pinholes it fills.
    """
    if radius > 0:
        mask = dilate(erode(mask, radius), radius)
    if close_radius > 0:
        mask = erode(dilate(mask, close_radius), close_radius)
    return mask


def shadow_pixels(frames: np.ndarray, background: np.ndarray, min_brightness: float = SHADOW_MIN_BRIGHTNESS,
                  chroma: float = SHADOW_CHROMA) -> np.ndarray:
    """Which colours ``frames`` (..., 3) look like ``background`` (..., 3, broadcastable) in shadow: darker,
    same colour; (...) bool.

    With brightness a = <f, b> / <b, b> (the frame colour f projected on the background colour b) and
    colour distortion |f - a b|: a shadow has ``min_brightness <= a < 1`` and a distortion below
    ``chroma * a * |b|`` (a few percent of the shadowed colour's length), as in Horprasert et al. (1999).
    A person dressed in a darker shade of exactly the wall's colour is lost to it; that is rare.
    """
    f = frames.astype(np.float32)
    b = background.astype(np.float32)
    bb = np.maximum(np.einsum("...c,...c->...", b, b), 1.0)
    a = np.einsum("...c,...c->...", f, b) / bb
    distortion = np.linalg.norm(f - a[..., None] * b, axis=-1)
    return (a >= min_brightness) & (a < 1.0) & (distortion < chroma * a * np.sqrt(bb))


def foreground_masks(frames: np.ndarray, background: np.ndarray, threshold: float, radius: int | None = None,
                     shadows: bool = True, chunk: int = 8) -> np.ndarray:
    """Foreground (N, H, W) bool of uint8 frames (N, H, W, 3) against a background (H, W, 3).

    A pixel is foreground when its RGB distance to the background exceeds ``threshold`` and (``shadows``)
    it is not a shadow on the background (:func:`shadow_pixels`: a person's shadow on the floor would
    otherwise be half of the mask). radius: morphological cleaning (None: :func:`morphology_radius`;
    0: none, the per-pixel decision alone, as a per-pixel background-removal op computes it).
    """
    frames = np.asarray(frames)
    if frames.ndim == 3:
        return foreground_masks(frames[None], background, threshold, radius, shadows, chunk)[0]
    H, W = background.shape[:2]
    if radius is None:
        radius = morphology_radius((W, H))
    out = np.empty(frames.shape[:3], bool)
    for i in range(0, len(frames), chunk):
        raw = farther_than(frames[i:i + chunk], background, threshold)
        if shadows:  # tested only where the distance test fired: a small share of the pixels
            n, y, x = np.nonzero(raw)
            shade = shadow_pixels(frames[i:i + chunk][n, y, x], background[y, x])
            raw[n[shade], y[shade], x[shade]] = False
        out[i:i + chunk] = clean_mask(raw, radius)
    return out


def mask_iou(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """(intersection, union) pixel counts of two boolean masks of one shape (sum them to pool frames)."""
    if pred.shape != truth.shape:
        raise ValueError(f"masks differ in shape: {pred.shape} vs {truth.shape}")
    return int(np.count_nonzero(pred & truth)), int(np.count_nonzero(pred | truth))


def remove_background(frame: np.ndarray, mask: np.ndarray, fill=(0, 0, 0)) -> np.ndarray:
    """The frame with pixels outside ``mask`` set to ``fill``."""
    return np.where(mask[..., None], frame, np.asarray(fill, np.uint8)).astype(np.uint8)


def mask_change(a: np.ndarray, b: np.ndarray, tolerance: int = 1) -> float:
    """The share of the person's pixels (union of two masks) that changed between them, 0 if both are empty.

    Pixels within ``tolerance`` px of the other mask do not count: the edge of a still person's mask
    flickers with noise by a pixel or two, which would otherwise look like movement.
    """
    union = np.count_nonzero(a | b)
    if union == 0:
        return 0.0
    if tolerance > 0:
        moved = (a & ~dilate(b, tolerance)) | (b & ~dilate(a, tolerance))
    else:
        moved = a ^ b
    return np.count_nonzero(moved) / union

