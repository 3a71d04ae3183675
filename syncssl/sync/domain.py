"""Is the sync classifier inside its domain on this footage? (``syncssl-sync`` trusts it only when it is.)

A classifier trained on one world (the embedded synthetic people) reads another (a real studio) with confidence
and no sense: its log-odds on real pairs were measured 10-100 times outside their synthetic range, and its peaks
wrong. Two checks, each computed the same way on the footage and on the model's own data (the reference):

- **questions whose answer is known for free**, on a sample of frames of each camera: the same frame twice must
  read "synchronized", two instants of one camera far apart (well inside the model's unsynchronized window) must
  read "not synchronized", and a view against its own mirror image must read "flipped". Only the questions the
  model answers on its own data (>= 75% right) are asked; it fails one when its share right on the footage falls
  more than 0.25 below its own.
- **the score distribution**: sync log-odds of cross-camera pairs at random instants (almost all unsynchronized,
  on any rig) must look like the model's own: the median inside the reference's 5-95% range, and the 5-95% spread
  at most 3 times the reference's. Quantiles, not moments: one broken crop must not decide. (A model too weak to
  pass any known-answer question on its own data is judged by this check alone: a synthetic model of 3000 steps
  read the real footage's random cross-camera pairs at a median of +4.5..+5.2, "synchronized", against its own
  -1.9 and 95% quantile +1.5.)

Apart from the domain: a model pre-trained on these very recordings (the same files, by content) took their frames
as synchronized the way they were aligned then, and reads that alignment back whatever the truth (a model trained
300 steps on a real recording with one camera 7 frames late committed that camera at +0, 117 ms wrong, with 97%
support, its loops closing on its own answer). On a pair of cameras it learnt together (:func:`learnt_pairs`) the
classifier is left out.

The reference comes from the model's own data (its prepared training dataset, read where its config says), made
once and kept beside the checkpoint as ``domain.json``. Without it the classifier cannot be checked, and counts
as outside its domain (the reason says so).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.preparation.manifest import MANIFEST_NAME, Manifest
from ..errors import DataError
from ..train.data import Prepared, make_assembler, make_source, prepared_folder

REFERENCE_NAME = "domain.json"
DOMAIN_VERSION = 2  # 2: with the recordings the model learnt (``recordings``)
KNOWN_MIN = 0.75  # a known-answer question is asked only when the model answers it this well on its own data
KNOWN_DROP = 0.25  # ... and failed when the footage's share right is lower than its own by more than this
SPREAD_FACTOR = 3.0


@dataclass
class DomainCheck:
    inside: bool
    reasons: list[str] = field(default_factory=list)  # why not (empty when inside)
    footage: dict = field(default_factory=dict)
    reference: dict | None = None
    learnt: list[tuple[str, str]] = field(default_factory=list)  # camera pairs it was pre-trained on: left out

    def describe_learnt(self) -> str:
        pairs = ", ".join(f"{a}-{b}" for a, b in self.learnt)
        return (f"the classifier is left out on the camera pairs it was pre-trained on ({pairs}): it took them as "
                "synchronized as they were aligned then, and can only repeat that; pre-train on a synchronized "
                "recording of this rig (another take, or this one once its offsets are applied)")

    def describe(self) -> str:
        if self.inside:
            return "the classifier is inside its domain on this footage"
        return "the classifier is outside its domain on this footage: " + "; ".join(self.reasons)


def statistics(scorer, images: dict[str, torch.Tensor], rng: np.random.Generator) -> dict:
    """The checks' numbers from sampled crops: ``images`` {camera: (n, 3, S, S) crops in time order, consecutive
    ones ``far`` frames or more apart (:func:`sample_frames`)}. The mirror question needs a scorer with
    ``flip_log_odds`` (skipped otherwise)."""
    emb = {c: scorer.embed(x) for c, x in images.items() if len(x)}
    same = np.concatenate([scorer.log_odds(e, e).cpu().numpy() for e in emb.values()])
    apart = np.concatenate([scorer.log_odds(e[:-1], e[1:]).cpu().numpy() for e in emb.values() if len(e) > 1])
    out = dict(same_frame_sync=float((same > 0).mean()), far_apart_unsync=float((apart < 0).mean()) if len(apart)
               else float("nan"))
    if getattr(scorer, "flip_log_odds", None) is not None:
        mirror = np.concatenate([scorer.flip_log_odds(e, scorer.embed(images[c].flip(-1))).cpu().numpy()
                                 for c, e in emb.items()])
        out["mirror_flipped"] = float((mirror > 0).mean())
    cams = list(emb)
    cross = []
    for i, a in enumerate(cams):
        for b in cams[i + 1:]:
            ia = rng.integers(len(emb[a]), size=64)
            ib = rng.integers(len(emb[b]), size=64)
            cross.append(scorer.log_odds(emb[a][ia], emb[b][ib]).cpu().numpy())
    if cross:
        x = np.concatenate(cross)
        out["cross_q05"], out["cross_q50"], out["cross_q95"] = (float(v) for v in np.percentile(x, [5, 50, 95]))
    return out


def compare(footage: dict, reference: dict | None, digests: dict[str, str] | None = None) -> DomainCheck:
    """The footage's statistics against the model's own; ``digests`` {camera: the SHA-1 of its video}, checked
    against the recordings the model learnt (:func:`learnt_pairs`)."""
    if reference is None:
        return DomainCheck(False, ["no reference statistics of the model's own data (domain.json), so it cannot be "
                                   "checked"], footage, None)
    reasons = []
    names = {"same_frame_sync": "the same frame twice reads synchronized",
             "far_apart_unsync": "instants far apart read unsynchronized",
             "mirror_flipped": "a view against its mirror image reads flipped"}
    for key, what in names.items():
        own, here = reference.get(key, float("nan")), footage.get(key, float("nan"))
        if np.isfinite(own) and own >= KNOWN_MIN and np.isfinite(here) and here < own - KNOWN_DROP:
            reasons.append(f"{what} in {here:.0%} of the footage's frames against {own:.0%} of its own")
    if "cross_q50" in footage and "cross_q50" in reference:
        spread = reference["cross_q95"] - reference["cross_q05"]
        lo, hi = reference["cross_q05"], reference["cross_q95"]
        if not lo <= footage["cross_q50"] <= hi:
            reasons.append(f"its median log-odds on cross-camera pairs is {footage['cross_q50']:.1f}, outside its "
                           f"own 5-95% range {lo:.1f}..{hi:.1f}")
        here = footage["cross_q95"] - footage["cross_q05"]
        if here > SPREAD_FACTOR * max(spread, 1e-6):
            reasons.append(f"its log-odds spread {here:.1f} (5-95%), over {SPREAD_FACTOR:g}x its own {spread:.1f}")
    return DomainCheck(not reasons, reasons, footage, reference, learnt_pairs(digests or {}, reference))


def learnt_pairs(digests: dict[str, str], reference: dict) -> list[tuple[str, str]]:
    """The camera pairs (sorted names) whose two videos the model was pre-trained on together: their content
    digests (``digests`` {camera: SHA-1}) in one of the recordings of its data (``reference["recordings"]``)."""
    pairs = set()
    for recording in map(set, reference.get("recordings", [])):
        seen = sorted(c for c, digest in digests.items() if digest in recording)
        pairs.update((a, b) for i, a in enumerate(seen) for b in seen[i + 1:])
    return sorted(pairs)


def recordings(manifest: Manifest, split: str | None = None) -> list[list[str]]:
    """The SHA-1 of every video of each sequence of a prepared dataset (its fingerprint), one list per sequence: of
    the sequences of the training split ``split`` (resolved as training resolves it), or of all where it is None or
    unknown (an unknown split: every sequence counts as learnt, the safe side)."""
    try:
        keys = None if split is None else {manifest.sequences[i].key
                                           for i in manifest.split(manifest.resolve_split(split))}
    except DataError:
        keys = None
    return [sorted(v["sha1"] for v in s.get("videos", {}).values() if "sha1" in v)
            for key, s in manifest.fingerprint.get("sequences", {}).items() if keys is None or key in keys]


def sample_frames(usable: np.ndarray, far: int, n: int = 24) -> np.ndarray:
    """Up to n usable frames, consecutive ones at least ``far`` apart."""
    idx = np.flatnonzero(usable)
    if not len(idx):
        return idx
    picked = [idx[0]]
    for t in idx[1:]:
        if t - picked[-1] >= far:
            picked.append(t)
    return np.asarray(picked[:n])


def crops(assembler, views: list[tuple[int, int, int]], batch: int = 64) -> torch.Tensor:
    """Assembled crops (unflipped, no jitter) of views [(sequence index, camera index, frame)]; failed decodes
    dropped."""
    out = []
    for k in range(0, len(views), batch):
        chunk = views[k:k + batch]
        images, _ = assembler(chunk, np.zeros(len(chunk), bool), np.zeros((len(chunk), 3), np.float32), k)
        out.append(images)
    return torch.cat(out) if out else torch.zeros(0)


def reference_path(checkpoint: Path) -> Path:
    return Path(checkpoint) / REFERENCE_NAME


def load_reference(checkpoint: Path | None) -> dict | None:
    if checkpoint is None:
        return None
    path = reference_path(checkpoint)
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    return d if d.get("version") == DOMAIN_VERSION else None


def make_reference(model, device, log=print) -> dict | None:
    """The checks' numbers on the model's own prepared data (its config's dataset), written beside the checkpoint;
    None when that data is not on this machine."""
    import dataclasses

    cached = load_reference(model.checkpoint)
    if cached is not None:
        return cached
    data_cfg = dataclasses.replace(model.cfg.data, substitute=0.0, source="video")
    folder = prepared_folder(data_cfg)
    if not (folder / MANIFEST_NAME).is_file():
        log(f"domain check: the model's own prepared data ({folder}) is not here; the classifier cannot be checked")
        return None
    manifest = Manifest.load(folder / MANIFEST_NAME)
    split = manifest.split("test") if "test" in manifest.splits else list(range(len(manifest.sequences)))
    indices = split[:8] or list(range(min(8, len(manifest.sequences))))
    src = make_source(Prepared(manifest, None), indices, data_cfg, device, 1, log)
    try:
        assembler = make_assembler(manifest, indices, data_cfg, src, device, model.input_dtype, 0)
        far = far_frames(model.cfg, manifest.fps)
        images: dict[str, list] = {}
        for k, i in enumerate(indices):  # the assembler numbers its sequences by their place in ``indices``
            s = manifest.sequences[i]
            moving = ~np.asarray(s.static, bool)
            for c in range(len(s.cameras)):
                frames = sample_frames(moving, far, n=8)
                images.setdefault(f"cam{c}", []).append(crops(assembler, [(k, c, int(t)) for t in frames]))
    finally:
        if hasattr(src, "decoder"):
            src.decoder.close()
    stats = statistics(model.scorer, {c: torch.cat(v) for c, v in images.items()}, np.random.default_rng(0))
    stats.update(version=DOMAIN_VERSION, data=str(folder), sequences=len(indices),
                 recordings=recordings(manifest, data_cfg.train_split))
    if model.checkpoint is not None:
        path = reference_path(model.checkpoint)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats, indent=2) + "\n")
        os.replace(tmp, path)
    return stats


def far_frames(cfg, fps: float) -> int:
    """Frames apart at which two instants are clearly unsynchronized to the model: twice its window's start (the
    smallest offsets it was taught as unsynchronized are the hard ones), within the window."""
    lo, hi = cfg.sampling.window(fps)
    return int(min(2 * lo + 1, hi))
