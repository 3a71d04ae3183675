"""Pretext accuracy as the paper measures it: one pass per pair, unsynchronized pairs at the paper's offsets.

The paper draws unsynchronized pairs with 4 < |t2 - t1| < 128 frames at 50 fps, i.e. 0.1 s to 2.54 s (more than
0.08 s apart). :data:`PAPER_OFFSETS_S` keeps that window in seconds, so that it maps onto any frame rate: at the
embedded data's 25 fps it is 3 <= |d| <= 63 frames (0.12 s to 2.52 s); at 50 fps 5 <= |d| <= 127, the paper's.
No pair filter that training may use (silhouette change, label-based pose change) applies: every pair in the
window is scored. Mirror averaging (each pair also scored with both views mirrored, probabilities averaged) is
a test-time augmentation the paper does not use; it is reported beside, under its own name.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

PAPER_OFFSETS_S = (0.1, 2.54)  # 4 < |d| < 128 frames at 50 fps, inclusive bounds 5 and 127 frames
SPLITS = ("val", "test")  # where the accuracy is reported when the dataset has them
SEED = 4242  # the scored pairs: a fixed draw, the same for every model


def head_rows(sampling, sync: torch.Tensor, flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which pairs each pretext head is trained and measured on: the sync head on unflipped pairs (sync vs unsync),
    the flip head on synchronized pairs (flipped vs not), so that neither reads its label off the other's (a
    flipped pair is always synchronized). With ``sampling.flip_unsync`` (independent labels) every pair."""
    if sampling.flip_unsync:
        every = torch.ones_like(sync, dtype=torch.bool)
        return every, every
    return flip == 0, sync == 1


def paper_sampling(sampling):
    """``sampling`` with the paper's offset window and no pair filter (the scoring set of :func:`paper_accuracy`)."""
    return dataclasses.replace(sampling, offset_unit="seconds", min_offset=PAPER_OFFSETS_S[0],
                               max_offset=PAPER_OFFSETS_S[1], min_silhouette_change=0.0, label_min_pose_change_mm=0.0)


def paper_accuracy(trainer, split: str, pairs: int) -> dict:
    """Single-pass sync and flip accuracy of ``trainer``'s model on ``pairs`` pairs of ``split`` at the paper's
    offsets, each head on the pairs its loss sees, with the counts scored; mirror-averaged beside, when the run's
    evaluation mirrors (``pretext.mirror_average``)."""
    sampling = paper_sampling(trainer.cfg.sampling)
    p = trainer.predict(split, pairs, seed=SEED, sampling=sampling)
    sync_rows, flip_rows = (m.numpy() for m in head_rows(sampling, torch.from_numpy(p["sync"]),
                                                          torch.from_numpy(p["flip"])))
    mirrored = "p_sync_single" in p  # then p_sync / p_flip are the averages, p_*_single the single pass

    def accuracy(key: str, label: str, rows: np.ndarray) -> float | None:
        return float(((p[key] > 0.5) == (p[label] == 1))[rows].mean()) if rows.any() else None

    single = "_single" if mirrored else ""
    out = {"sync_acc": accuracy(f"p_sync{single}", "sync", sync_rows),
           "flip_acc": accuracy(f"p_flip{single}", "flip", flip_rows),
           "sync_pairs": int(sync_rows.sum()), "flip_pairs": int(flip_rows.sum()), "pairs": int(len(p["sync"]))}
    if mirrored:
        out.update(sync_acc_mirror_averaged=accuracy("p_sync", "sync", sync_rows),
                   flip_acc_mirror_averaged=accuracy("p_flip", "flip", flip_rows))
    return out


def paper_summary(trainer) -> dict:
    """summary.json's ``paper_offsets``: the window at this data's frame rate, and :func:`paper_accuracy` on the
    validation and the test people (the run's evaluation split when the dataset has neither)."""
    splits = [s for s in SPLITS if s in trainer.manifest.splits] or [trainer.cfg.data.eval_split]
    fps = float(np.median([trainer.manifest.sequences[i].fps for i in trainer.manifest.split(splits[0])]))
    lo, hi = paper_sampling(trainer.cfg.sampling).window(fps)
    return {"paper_offsets": {
        "window": {"frames": [lo, hi], "seconds": [round(lo / fps, 4), round(hi / fps, 4)], "fps": fps,
                   "paper": "4 < |t2 - t1| < 128 frames at 50 fps"},
        **{split: paper_accuracy(trainer, split, trainer.cfg.train.eval_pairs) for split in splits}}}


def summary_rows(paper_offsets: dict) -> list[tuple[str, str]]:
    """summary.json's ``paper_offsets`` as (label, text) rows for the end-of-run table."""
    f = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    w = paper_offsets["window"]
    rows = []
    for split, m in paper_offsets.items():
        if split == "window":
            continue
        text = f"{f(m['sync_acc'])} / {f(m['flip_acc'])} ({m['sync_pairs']} / {m['flip_pairs']} pairs scored)"
        if "sync_acc_mirror_averaged" in m:
            text += f"; mirror-averaged {f(m['sync_acc_mirror_averaged'])} / {f(m['flip_acc_mirror_averaged'])}"
        rows.append((f"{split} sync / flip, single pass, |d| {w['frames'][0]}-{w['frames'][1]} frames", text))
    return rows
