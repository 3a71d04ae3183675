"""The offset search on score matrices: no pixels, no model (what :mod:`syncssl.sync.pipeline` feeds it).

For cameras a, b and a candidate offset d (frames), the score is the mean, over sampled instants t of a, of the
classifier's sync log-odds for the pair (a at t, b at t + d): ``S_ab(d)``. Convention everywhere: an offset d
of camera b against camera a means *b's frame t + d shows a's frame t* (positive: b started recording earlier).

Offsets near the ends of the recordings' overlap are scored on few instants, and a mean of a few noisy log-odds
wins the argmax by chance far more often than a mean of many (measured on the benchmark: offsets scored on 3-5
instants took the peak from the truth). Each mean is therefore shrunk towards the curve's overall mean in
proportion to how few instants it has (empirical Bayes: a prior worth k instants, k = the per-instant variance
over the variance of the true per-offset means, both estimated from the curve itself).

- :func:`analyse_curve`: the peak of one curve, its margin over the best peak outside it, and a bootstrap over
  instants (the share of resamples whose peak lies within ``tolerance`` frames of it, and a 95% interval). A
  flat, noisy or edge peak is "not determined" rather than guessed.
- :func:`joint_offsets`: every camera against the reference at once, maximising the sum of every pair's
  score at the offset differences the hypothesis implies (so cameras that see the reference badly are placed
  through the others); bootstrapped the same way.
- :func:`triplet_checks`: the pairwise estimates must add up around every camera triplet.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np

EXHAUSTIVE_LIMIT = 2_000_000  # joint hypotheses searched exhaustively; beyond, coordinate ascent


@dataclass
class Curve:
    """Score against offset for one camera pair, from the per-instant log-odds matrix."""

    a: str
    b: str
    offsets: np.ndarray  # (K,) int64 candidate offsets of b against a, frames, ascending and contiguous
    log_odds: np.ndarray  # (n, K) float32 per instant of a (rows) and offset; NaN where the pair does not exist

    def __post_init__(self):
        self.offsets = np.asarray(self.offsets, np.int64)
        self.log_odds = np.asarray(self.log_odds, np.float32).reshape(-1, len(self.offsets))
        if len(self.offsets) > 1 and not (np.diff(self.offsets) == 1).all():
            raise ValueError("offsets must be contiguous integers in ascending order")

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.log_odds)

    @property
    def count(self) -> np.ndarray:
        """(K,) instants scored at each offset."""
        return self.valid.sum(0)

    @property
    def raw_score(self) -> np.ndarray:
        """(K,) plain mean log-odds at each offset (NaN where no instant exists)."""
        return _means(self.log_odds, None)[0]

    @property
    def prior(self) -> tuple[float, float]:
        """(overall mean, strength k in instants) of the shrinkage prior (see the module docstring)."""
        if not hasattr(self, "_prior"):
            x, raw, n = self.log_odds, self.raw_score, self.count
            if not np.isfinite(x).any():
                self._prior = (float("nan"), 0.0)
            else:
                many = n > 1
                dev = np.where(np.isfinite(x), x - raw, 0.0)[:, many]
                within = float(((dev ** 2).sum(0) / (n[many] - 1)).mean()) if many.any() else 0.0
                between = float(np.nanvar(raw)) - float(np.mean(within / n[n > 0]))
                k = within / max(between, 1e-6)
                self._prior = (float(np.nanmean(x)), float(min(k, 1e4)))
        return self._prior

    @property
    def score(self) -> np.ndarray:
        """(K,) mean log-odds at each offset, shrunk by how few instants it has (NaN where none exists)."""
        return _means(self.log_odds, None, self.prior)[0]

    @property
    def se(self) -> np.ndarray:
        """(K,) standard error of the mean over instants."""
        x, n = self.log_odds, self.count
        with np.errstate(invalid="ignore", divide="ignore"):
            sd = np.sqrt(np.nansum((x - self.raw_score) ** 2, 0) / np.maximum(n - 1, 1))
            return np.where(n > 1, sd / np.sqrt(np.maximum(n, 1)), np.nan)

    @property
    def instants(self) -> int:
        """Instants of a that scored at least one offset."""
        return int(self.valid.any(1).sum())

    def at(self, d: int) -> float:
        k = int(d - self.offsets[0])
        return float(self.score[k]) if 0 <= k < len(self.offsets) else float("nan")

    def reversed(self) -> Curve:
        """The pair seen from b: b's frame t + d shows a's frame t  <=>  a's frame u - d shows b's frame u. The
        rows stay a's instants (a mean over them is the same mean), the offsets flip."""
        return Curve(self.b, self.a, -self.offsets[::-1], self.log_odds[:, ::-1])


@dataclass
class Estimate:
    """One offset estimate (a pair's, or a camera's against the reference) and how sure it is."""

    offset: int | None  # frames; None: not determined
    best: int | None  # the highest score's offset, determined or not (None: nothing scored)
    status: str  # "ok" | "not determined" | "reference"
    reason: str = ""  # why it is not determined
    score: float = float("nan")  # the peak's mean log-odds
    margin: float = float("nan")  # peak score - the best score outside the peak's lobe (log-odds)
    second: int | None = None  # where that runner-up lies
    support: float = float("nan")  # share of bootstrap resamples whose peak lies within tolerance of ``best``
    interval: tuple[int, int] | None = None  # 2.5 and 97.5 percentiles of the resampled peaks
    instants: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def determined(self) -> bool:
        return self.offset is not None


def _means(x: np.ndarray, weights: np.ndarray | None, prior: tuple[float, float] | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Column means of x ignoring NaN, optionally with row weights (B, n) -> (B, K), optionally shrunk towards
    prior = (mean, strength in rows); and the (weighted) counts."""
    valid = np.isfinite(x)
    x0 = np.where(valid, x, 0.0).astype(np.float64)
    if weights is None:
        n, total = valid.sum(0).astype(np.float64), x0.sum(0)
    else:
        n, total = weights @ valid.astype(np.float64), weights @ x0
    m0, k = prior if prior is not None and np.isfinite(prior[0]) else (0.0, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (total + k * m0) / np.maximum(n + k, 1e-12), np.nan), n


def bootstrap_weights(n: int, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """(replicates, n) multinomial counts: each row is one resample of n instants with replacement."""
    if n == 0:
        return np.zeros((replicates, 0))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)


def lobe(score: np.ndarray, k: int) -> tuple[int, int]:
    """[lo, hi] indices of the peak at k: downhill on both sides until the score rises again (or ends)."""
    lo = k
    while lo > 0 and np.isfinite(score[lo - 1]) and score[lo - 1] <= score[lo]:
        lo -= 1
    hi = k
    while hi < len(score) - 1 and np.isfinite(score[hi + 1]) and score[hi + 1] <= score[hi]:
        hi += 1
    return lo, hi


def _argmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise argmax ignoring NaN; -1 for an all-NaN row."""
    s = np.where(np.isfinite(scores), scores, -np.inf)
    k = s.argmax(-1)
    return np.where(np.isfinite(s.max(-1)), k, -1)


def analyse_curve(curve: Curve, *, rng: np.random.Generator, replicates: int = 200, min_support: float = 0.9,
                  tolerance: int = 1, min_instants: int = 8, edge: bool = True) -> Estimate:
    """The offset of ``curve.b`` against ``curve.a`` with its confidence.

    Not determined when: too few instants; the peak has no margin (a flat curve); fewer than ``min_support`` of
    the bootstrap resamples put the peak within ``tolerance`` frames of it; or (``edge``) it lies at the end of
    the search range, where the true offset may lie beyond it.
    """
    score, offsets = curve.score, curve.offsets
    instants = curve.instants
    if instants < min_instants or not np.isfinite(score).any():
        return Estimate(None, None, "not determined", f"only {instants} instants could be scored "
                                                       f"(need {min_instants})", instants=instants)
    k = int(_argmax(score[None])[0])
    best = int(offsets[k])
    lo, hi = lobe(score, k)
    outside = np.r_[score[:lo], score[hi + 1:]]
    outside_k = np.r_[np.arange(lo), np.arange(hi + 1, len(score))]
    finite = np.isfinite(outside)
    if finite.any():
        j = int(outside_k[finite][np.argmax(outside[finite])])
        second, margin = int(offsets[j]), float(score[k] - score[j])
    else:  # the whole range is one lobe: the margin is the rise above its lowest point
        second, margin = None, float(score[k] - np.nanmin(score))
    w = bootstrap_weights(curve.log_odds.shape[0], replicates, rng)
    peaks = offsets[np.maximum(_argmax(_means(curve.log_odds, w, curve.prior)[0]), 0)]
    support = float((np.abs(peaks - best) <= tolerance).mean())
    interval = (int(np.percentile(peaks, 2.5, method="lower")), int(np.percentile(peaks, 97.5, method="higher")))
    est = Estimate(best, best, "ok", score=float(score[k]), margin=margin, second=second, support=support,
                   interval=interval, instants=instants)
    return _judge(est, offsets, min_support, edge, tolerance)


def _judge(est: Estimate, offsets: np.ndarray, min_support: float, edge: bool, tolerance: int) -> Estimate:
    reason = ""
    if not est.margin > 1e-6:
        reason = "flat: no peak stands out (margin 0)"
        est.support, est.interval = float("nan"), None  # resampling a flat curve "agrees" on its first offset
    elif est.support < min_support:
        reason = (f"the peak is not stable: {est.support:.0%} of resamples put it within {tolerance} frame(s) "
                  f"(need {min_support:.0%})")
    elif edge and len(offsets) > 1 and (est.best - offsets[0] <= tolerance or offsets[-1] - est.best <= tolerance):
        reason = (f"the peak lies at the end of the search range ({est.best:+d} frames): the offset may be larger; "
                  "raise --max-offset")
    if reason:
        est.offset, est.status, est.reason = None, "not determined", reason
    return est


# ---------------------------------------------------------------- every camera at once


def _lookup(curve: Curve, diff: np.ndarray, score: np.ndarray | None = None) -> np.ndarray:
    """curve's score at integer offsets ``diff`` (any shape); outside its range or where nothing scored, its mean
    score: a pair that cannot be scored at a hypothesis says nothing for or against it."""
    score = curve.score if score is None else score
    neutral = float(np.nanmean(score)) if np.isfinite(score).any() else 0.0
    k = diff - curve.offsets[0]
    inside = (k >= 0) & (k < len(curve.offsets))
    vals = np.where(inside, score[np.clip(k, 0, len(score) - 1)], neutral)
    return np.where(np.isfinite(vals), vals, neutral)


def _joint_best(cameras: list[str], reference: str, curves: dict, scores: dict, span: int,
                start: dict[str, int] | None) -> dict[str, int]:
    """The hypothesis (camera -> offset against the reference, in [-span, span]) maximising the sum of every
    pair's score at the implied differences; exhaustive when small, else coordinate ascent from ``start``."""
    others = [c for c in cameras if c != reference]
    grid = np.arange(-span, span + 1)
    if len(grid) ** len(others) <= EXHAUSTIVE_LIMIT:
        axes = np.meshgrid(*([grid] * len(others)), indexing="ij", sparse=True)
        delta = {reference: np.zeros((1,) * len(others), np.int64), **dict(zip(others, axes))}
        total = 0.0
        for (a, b), c in curves.items():
            total = total + _lookup(c, delta[b] - delta[a], scores[(a, b)])
        total = np.broadcast_to(total, (len(grid),) * len(others))
        if not np.isfinite(total).any():
            return {}
        idx = np.unravel_index(int(np.argmax(total)), total.shape)
        return {reference: 0, **{c: int(grid[i]) for c, i in zip(others, idx)}}
    delta = {reference: 0, **{c: int(np.clip((start or {}).get(c, 0), -span, span)) for c in others}}
    for _ in range(50):
        changed = False
        for c in others:
            total = np.zeros(len(grid))
            for (a, b), cv in curves.items():
                if c not in (a, b):
                    continue
                diff = (grid - delta[a]) if b == c else (delta[b] - grid)
                total = total + _lookup(cv, diff, scores[(a, b)])
            if np.isfinite(total).any():
                best = int(grid[int(np.argmax(total))])
                changed |= best != delta[c]
                delta[c] = best
        if not changed:
            break
    return delta


def joint_offsets(cameras: list[str], reference: str, curves: dict[tuple[str, str], Curve], span: int, *,
                  rng: np.random.Generator, replicates: int = 100, min_support: float = 0.9, tolerance: int = 1,
                  start: dict[str, int] | None = None,
                  direct: dict[str, Estimate] | None = None) -> dict[str, Estimate]:
    """Every camera's offset against ``reference`` from all pair curves at once (a pair (a, b) scores b against
    a); confidence by resampling every pair's instants. ``direct`` (the reference pairs' own estimates) lends
    each camera its margin and reasons; a camera whose every pair is undetermined stays undetermined, and one the
    joint search leaves undetermined takes its reference pair's estimate when that one is determined (``extra``
    then says so and keeps the joint search's peak and support)."""
    scores = {k: c.score for k, c in curves.items()}
    best = _joint_best(cameras, reference, curves, scores, span, start)
    out = {reference: Estimate(0, 0, "reference")}
    if not best:
        for c in cameras:
            if c != reference:
                out[c] = Estimate(None, None, "not determined", "no pair could be scored")
        return out
    weights = {k: bootstrap_weights(c.log_odds.shape[0], replicates, rng) for k, c in curves.items()}
    means = {k: _means(c.log_odds, weights[k], c.prior)[0] for k, c in curves.items()}
    resampled = [_joint_best(cameras, reference, curves, {k: m[r] for k, m in means.items()}, span, best)
                 for r in range(replicates)]
    for c in cameras:
        if c == reference:
            continue
        peaks = np.array([h.get(c, 10 ** 9) for h in resampled])
        support = float((np.abs(peaks - best[c]) <= tolerance).mean())
        interval = (int(np.percentile(peaks, 2.5, method="lower")), int(np.percentile(peaks, 97.5, method="higher")))
        d = direct.get(c) if direct else None
        est = Estimate(best[c], best[c], "ok", support=support, interval=interval,
                       margin=d.margin if d else float("nan"), score=d.score if d else float("nan"),
                       instants=d.instants if d else 0, second=d.second if d else None)
        pairs = [k for k in curves if c in k]
        if all(not np.isfinite(curves[k].score).any() for k in pairs):
            est = Estimate(None, None, "not determined", "no pair with this camera could be scored")
        elif direct is not None and all(_flat(curves[k]) for k in pairs):
            est.offset, est.status, est.reason = None, "not determined", "flat: no peak stands out in any pair"
            est.support, est.interval = float("nan"), None
        elif support < min_support:
            est.offset, est.status = None, "not determined"
            est.reason = (f"the peak is not stable: {support:.0%} of resamples put it within {tolerance} frame(s) "
                          f"(need {min_support:.0%})")
        elif abs(best[c]) >= span - tolerance:  # at (or next to) the end: the true peak may lie beyond
            est.offset, est.status = None, "not determined"
            est.reason = (f"the peak lies at the end of the search range ({best[c]:+d} frames): the offset may be "
                          "larger; raise --max-offset")
        if not est.determined and d is not None and d.determined:
            # The camera's own pair with the reference is sure of itself where the joint search is not: a third
            # camera's aliased pair spreads the joint resamples without saying anything against this one.
            est = replace(d, extra={**d.extra, "from": "reference pair",
                                    "joint": {"best": best[c], "support": support, "reason": est.reason}})
        out[c] = est
    return out


def _flat(curve: Curve) -> bool:
    s = curve.score
    return not np.isfinite(s).any() or float(np.nanmax(s) - np.nanmin(s)) <= 1e-6


# ---------------------------------------------------------------- does a cue agree?


def tolerance_frames(tolerance_s: float, fps: float) -> int:
    """A time tolerance in whole frames (at least 1): 40 ms is 1 frame at 25 fps, 2 at 50 and 60 fps."""
    return max(1, int(np.floor(tolerance_s * fps + 1e-6)))


@dataclass
class Vote:
    """What one cue says about an offset: "confirms" (its best there, significantly above any other offset),
    "contradicts" (significantly below another offset), or "silent"."""

    verdict: str
    z: float = float("nan")  # paired z of (best within tolerance of the offset) - (best elsewhere), over instants
    elsewhere: int | None = None  # the best offset outside the tolerance


def paired_z(x: np.ndarray) -> float:
    """z of the mean of per-instant differences ``x`` (instants in time order). Neighbouring frames of a video are
    not independent samples: the differences follow each other (lag-1 correlation 0.4-0.75 on real footage), and
    the plain standard error then overstates z by sqrt((1 + rho) / (1 - rho)). The standard error here comes from
    an AR(1) fit: the instants count as n (1 - rho) / (1 + rho) independent ones."""
    xc = x - x.mean()
    rho = float(np.clip(np.sum(xc[1:] * xc[:-1]) / max(float(np.sum(xc * xc)), 1e-12), 0.0, 0.95))
    se = x.std(ddof=1) / np.sqrt(len(x)) * np.sqrt((1 + rho) / (1 - rho))
    return float(x.mean() / max(se, 1e-9))


def vote(curve: Curve, d: int, tolerance: int, z_min: float = 2.0, min_instants: int = 8,
         calibrated: bool = True) -> Vote:
    """Does ``curve`` agree with offset ``d``? A paired test over instants: every instant scored at both offsets
    compares the curve's best offset within ``tolerance`` of d with its best offset outside that peak (its lobe, and
    twice the tolerance around it). An alternative must be scored on at least half the instants the tested offset
    is: offsets near the ends of the recordings' overlap rest on a few frames at the clips' ends, and a mean of a
    few wins by chance (as in the search's shrinkage). ``calibrated``: the standard error of :func:`paired_z`, else
    the plain one (instants counted as independent)."""
    score, offsets, count = curve.score, curve.offsets, curve.count
    near = np.abs(offsets - d) <= tolerance
    if not np.isfinite(score[near]).any():
        return Vote("silent")
    k_in = int(np.flatnonzero(near)[np.nanargmax(score[near])])
    resolution = np.abs(offsets - offsets[k_in]) <= 2 * tolerance  # a cue's resolution: no alternative to the peak
    lo, hi = lobe(score, k_in)  # nor are the other offsets of the same peak
    near |= resolution
    near[lo:hi + 1] = True
    if not np.isfinite(score[~near]).any():  # one peak over the whole range: its own shoulders are the alternative
        near = resolution | (np.abs(offsets - d) <= tolerance)
    alternative = ~near & np.isfinite(score) & (count >= 0.5 * count[k_in])
    if not alternative.any():
        return Vote("silent")
    k_out = int(np.flatnonzero(alternative)[np.argmax(score[alternative])])
    x = curve.log_odds[:, k_in] - curve.log_odds[:, k_out]
    x = x[np.isfinite(x)]
    if len(x) < min_instants:
        return Vote("silent", elsewhere=int(offsets[k_out]))
    z = paired_z(x) if calibrated else float(x.mean() / max(x.std(ddof=1) / np.sqrt(len(x)), 1e-9))
    verdict = "confirms" if z >= z_min else "contradicts" if z <= -z_min else "silent"
    return Vote(verdict, z, int(offsets[k_out]))


# ---------------------------------------------------------------- consistency


def loop_estimates(curves: dict[tuple[str, str], Curve], pairs: dict[tuple[str, str], Estimate],
                   tolerance: int) -> dict[tuple[str, str], Estimate]:
    """The pair offsets a camera loop adds up: a pair's own estimate where it is determined, else its best peak
    where the pair's curve prefers it significantly over every other peak (:func:`vote` at its own peak). A peak
    that wanders by a frame under resampling (at 25 fps the tolerance is one frame) still places its pair within
    the loop's tolerance; what a loop must exclude is a pair whose peak could as well be another one."""
    out = {}
    for key, e in pairs.items():
        if not e.determined and e.best is not None and vote(curves[key], e.best, tolerance).verdict == "confirms":
            e = replace(e, offset=e.best, status="ok", reason="", extra={**e.extra, "loop": "significant peak"})
        out[key] = e
    return out


@dataclass
class Triplet:
    """A loop of cameras (three, or four where a pair of the three cannot be scored, such as two cameras facing
    each other across the person): the pairwise offsets around it must add up to 0."""

    cameras: tuple[str, ...]
    residual: int  # the pairwise offsets summed around the loop, frames: 0 when they add up
    consistent: bool


def triplet_checks(cameras: list[str], pairs: dict[tuple[str, str], Estimate], tolerance: int = 1,
                   sizes: tuple[int, ...] = (3,)) -> list[Triplet]:
    """For every loop of ``sizes`` cameras whose pair estimates are all determined: do they add up (within
    ``tolerance`` frames per pair but one: the estimates' rounding can add up)? ``pairs`` maps (a, b) in camera
    order to b's offset against a."""
    order = {c: i for i, c in enumerate(cameras)}

    def offset(a: str, b: str) -> int | None:
        e = pairs.get((a, b)) if order[a] < order[b] else pairs.get((b, a))
        if e is None or not e.determined:
            return None
        return e.offset if order[a] < order[b] else -e.offset

    out = []
    for k in sizes:
        for loop in itertools.permutations(cameras, k):
            if order[loop[0]] != min(order[c] for c in loop) or order[loop[1]] > order[loop[-1]]:
                continue  # each loop once: from its first camera, in one direction
            steps = [offset(loop[i], loop[(i + 1) % k]) for i in range(k)]
            if any(d is None for d in steps):
                continue
            r = int(sum(steps))
            out.append(Triplet(tuple(loop), r, abs(r) <= tolerance * (k - 1)))
    return out
