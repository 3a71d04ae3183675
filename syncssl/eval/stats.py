"""Intervals for a relative gain in MPJPE, 1 - pre-trained / random init, over seeds and over test people.

Three 95% intervals, numpy only:
- ``seeds``: Student's t over the per-seed gains (seed k of one side against seed k of the other, each over all
  test people), the spread of training runs;
- ``people``: a percentile bootstrap over test people (people resampled with replacement, each person's MPJPE
  averaged over seeds, weighted by their evaluated frames), the spread of who is tested;
- ``seeds_and_people``: a percentile bootstrap that resamples seeds and people together, both spreads at once.
A goal is met only when the point estimate reaches it and every interval's lower bound clears its floor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# two-sided 95% Student's t quantiles t(0.975, df), df = 1..30; beyond, the normal's 1.96 is within 2%
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
RESAMPLES = 10000


def t_interval(values) -> tuple[float, float]:
    """95% t interval of the mean of ``values``; (nan, nan) with fewer than two."""
    v = np.asarray(values, float)
    if len(v) < 2:
        return math.nan, math.nan
    t = T975[len(v) - 2] if len(v) - 1 <= len(T975) else 1.96
    half = t * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


@dataclass
class Gain:
    """Relative MPJPE gain of the pre-trained side (1 - pre / random), with its intervals (fractions)."""

    point: float
    seeds: tuple[float, float]
    people: tuple[float, float]
    seeds_and_people: tuple[float, float]
    n_seeds: int
    n_people: int

    @property
    def lower(self) -> float:
        """The lowest lower bound of the three intervals (nan when one is not defined)."""
        return min(self.seeds[0], self.people[0], self.seeds_and_people[0])

    def met(self, goal: float, floor: float) -> bool:
        return self.point >= goal and self.lower > floor  # a nan bound is never met

    def fields(self) -> dict:
        """Flat fields: ``gain``, ``seeds_lo``, ``seeds_hi``, ``people_lo``, ... (fractions), and the counts."""
        out = {"gain": self.point, "n_seeds": self.n_seeds, "n_people": self.n_people}
        for name in ("seeds", "people", "seeds_and_people"):
            out.update({f"{name}_lo": getattr(self, name)[0], f"{name}_hi": getattr(self, name)[1]})
        return out

    def text(self) -> str:
        pct = lambda x: "nan" if math.isnan(x) else f"{100 * x:.1f}%"  # noqa: E731
        return (f"{pct(self.point)} (95% intervals: over seeds and people [{pct(self.seeds_and_people[0])}, "
                f"{pct(self.seeds_and_people[1])}], over {self.n_seeds} seeds [{pct(self.seeds[0])}, "
                f"{pct(self.seeds[1])}], over {self.n_people} test people [{pct(self.people[0])}, "
                f"{pct(self.people[1])}])")


def gain(random: np.ndarray, pretrained: np.ndarray, frames: np.ndarray, seed: int = 0) -> Gain:
    """``random``, ``pretrained``: (seeds, people) test MPJPE of each side, seed k of one beside seed k of the
    other; ``frames``: (people,) evaluated views per person (the weights that make a row's people average the
    run's MPJPE)."""
    random, pretrained, w = (np.asarray(a, float) for a in (random, pretrained, frames))
    if random.shape != pretrained.shape or random.ndim != 2 or w.shape != random.shape[1:]:
        raise ValueError(f"need (seeds, people) arrays of one shape and (people,) weights; got {random.shape}, "
                         f"{pretrained.shape}, {w.shape}")
    n_seeds, n_people = random.shape
    point = 1 - (pretrained @ w).sum() / (random @ w).sum()
    per_seed = 1 - (pretrained @ w) / (random @ w)
    rng = np.random.default_rng(seed)
    people = rng.integers(0, n_people, (RESAMPLES, n_people))
    seeds = rng.integers(0, n_seeds, (RESAMPLES, n_seeds))
    by_person_r, by_person_p = random.mean(0), pretrained.mean(0)
    counts_p = _counts(people, n_people) * w  # (RESAMPLES, people): weight of each person in each resample
    boot_people = 1 - (counts_p @ by_person_p) / (counts_p @ by_person_r)
    counts_s = _counts(seeds, n_seeds)  # (RESAMPLES, seeds)
    # sum over resampled seeds and people of w_i * mpjpe[k, i]: counts_s @ mpjpe @ counts_p^T, diagonal
    both = 1 - np.einsum("rk,ki,ri->r", counts_s, pretrained, counts_p) / np.einsum("rk,ki,ri->r", counts_s, random,
                                                                                    counts_p)
    pct = lambda x: (float(np.percentile(x, 2.5)), float(np.percentile(x, 97.5)))  # noqa: E731
    return Gain(float(point), t_interval(per_seed), pct(boot_people) if n_people > 1 else (math.nan, math.nan),
                pct(both) if n_people > 1 and n_seeds > 1 else (math.nan, math.nan), n_seeds, n_people)


def _counts(draws: np.ndarray, n: int) -> np.ndarray:
    """(resamples, k) indices in 0..n-1 -> (resamples, n) how often each was drawn."""
    out = np.zeros((len(draws), n))
    np.add.at(out, (np.arange(len(draws))[:, None], draws), 1)
    return out
