"""What a trained model does, as numbers and pictures.

- synchronization: sync / flip accuracy on seen and unseen subjects, and the sync probability as a function
  of the time offset between the two views (the paper's evaluation of the pretext task);
- 3D pose: MPJPE / N-MPJPE / P-MPJPE per action, images with the predicted and true skeletons drawn over
  them, and 3D skeleton plots.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ..figures import pyplot, save_figure
from ..geometry import H36M17
from ..storage import write_csv_atomic
from ..train.trainer import PoseTrainer, PretextTrainer

SIDE_COLOURS = {"left": "tab:blue", "right": "tab:red", "centre": "tab:green"}


# ---------------------------------------------------------------- synchronization


def default_offsets(fps: float, max_seconds: float = 2.56) -> list[int]:
    """Frame offsets from 0 to ``max_seconds``, dense near 0 where the task is hardest."""
    seconds = [0, 0.04, 0.08, 0.12, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.4, 1.8, 2.2, max_seconds]
    return sorted({int(round(s * fps)) for s in seconds if s <= max_seconds})


def sync_vs_offset(trainer: PretextTrainer, split: str, offsets: list[int], pairs: int = 256,
                   seed: int = 777) -> list[dict]:
    """Mean sync probability and accuracy for pairs at exactly each frame offset (0 = synchronized).

    Pairs are unflipped, from two different cameras (or one, in single-view mode), anchors drawn as in training.
    """
    rows = []
    for d in offsets:
        sampling = dataclasses.replace(
            trainer.cfg.sampling, offset_unit="frames", min_offset=max(d, 1), max_offset=max(d, 1),
            sync_fraction=1.0 if d == 0 else 0.0, flip_fraction=0.0, min_silhouette_change=0.0,
            label_min_pose_change_mm=0.0)
        try:
            p = trainer.predict(split, pairs, seed=seed + d, sampling=sampling)
        except ValueError as e:  # no sequence is long enough for this offset
            trainer.log(f"sync vs offset: skipping offset {d} ({e})")
            continue
        correct = (p["p_sync"] > 0.5) == (p["sync"] == 1)
        rows.append({"split": split, "offset_frames": d, "offset_s": d / _fps(trainer, split),
                     "p_sync": float(p["p_sync"].mean()), "accuracy": float(correct.mean()), "pairs": len(correct)})
    return rows


def _fps(trainer, split: str) -> float:
    return float(np.median([trainer.manifest.sequences[i].fps for i in trainer.manifest.split(split)]))


def plot_sync_vs_offset(rows: list[dict], out: Path, title: str = "") -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for split in dict.fromkeys(r["split"] for r in rows):
        rs = [r for r in rows if r["split"] == split]
        x = [r["offset_s"] for r in rs]
        axes[0].plot(x, [r["p_sync"] for r in rs], marker="o", label=split)
        axes[1].plot(x, [r["accuracy"] for r in rs], marker="o", label=split)
    axes[0].set(title="P(synchronized) against the time offset", xlabel="offset between the views (s)",
                ylabel="mean sync probability", ylim=(0, 1))
    axes[1].set(title="accuracy against the time offset", xlabel="offset between the views (s)",
                ylabel="accuracy", ylim=(0, 1))
    for ax in axes:
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, out)


def write_rows(rows: list[dict], out: Path) -> Path:
    return write_csv_atomic(out, rows, list(rows[0]), "the evaluation's table")


def evaluate_pretext(trainer: PretextTrainer, out: Path, splits: tuple[str, str], pairs: int,
                     offsets: list[int] | None = None) -> dict:
    """Sync/flip accuracy on the seen and unseen subjects, and sync probability against the offset."""
    out = Path(out)
    seen, unseen = splits
    metrics = {f"{name}_{k}": v for name, split in (("seen", seen), ("unseen", unseen))
               for k, v in trainer.evaluate(split, pairs).items()}
    offsets = offsets or default_offsets(_fps(trainer, unseen))
    rows = sync_vs_offset(trainer, seen, offsets, pairs // 2) + sync_vs_offset(trainer, unseen, offsets, pairs // 2)
    if trainer.dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if rows:
            write_rows(rows, out / "sync_vs_offset.csv")
            plot_sync_vs_offset(rows, out / "sync_vs_offset.png",
                                f"seen subjects: {seen} split, unseen subjects: {unseen} split")
        (out / "metrics.json").write_text(json.dumps({**metrics, "sync_vs_offset": rows}, indent=2) + "\n")
    return {**metrics, "sync_vs_offset": rows}


# ---------------------------------------------------------------- 3D pose


def evaluate_pose(trainer: PoseTrainer, out: Path, split: str, pictures: int = 6) -> dict:
    """MPJPE / N-MPJPE / P-MPJPE (mm) per action and averaged, and pictures of a few test frames."""
    from ..eval.metrics import PoseErrors
    out = Path(out)
    metric = PoseErrors(trainer.actions).to(trainer.device)
    kept = []
    for batch, pred in trainer.predict(split):
        metric.update(pred, batch.target, batch.action)
        kept.append((batch.index, pred.cpu().numpy(), batch.target.cpu().numpy()))
    result = metric.compute()
    index, pred, target = (np.concatenate([k[i] for k in kept]) for i in range(3))  # a split is never empty
    result = {"split": split, **result, "by_subject": errors_by_subject(trainer.manifest, index, pred, target)}
    if trainer.dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        if pictures and kept:
            chosen = np.linspace(0, len(index) - 1, min(pictures, len(index))).round().astype(int)
            draw_pose_overlays(trainer.manifest, index[chosen], pred[chosen], target[chosen], out / "pose_overlays.png")
            draw_skeletons_3d(pred[chosen], target[chosen], out / "pose_3d.png",
                              [f"{trainer.manifest.sequences[s].key} cam {c} t={t}" for s, c, t in index[chosen]])
    return result


def errors_by_subject(manifest, index: np.ndarray, pred: np.ndarray, target: np.ndarray) -> dict:
    """Per person: MPJPE (mm) over their evaluated views, and how many (this rank's share under DDP)."""
    error = np.linalg.norm(pred.astype(np.float64) - target, axis=-1).mean(-1)
    subject = np.array([manifest.sequences[int(s)].subject for s in index[:, 0]])
    return {name: {"mpjpe": float(error[subject == name].mean()), "frames": int((subject == name).sum())}
            for name in sorted(set(subject.tolist()))}


def _draw_skeleton(ax, joints2d: np.ndarray, style: str = "-", alpha: float = 1.0, lw: float = 2.0):
    for parent, child in H36M17.bones:
        side = H36M17.side(child)
        ax.plot(joints2d[[parent, child], 0], joints2d[[parent, child], 1], style, color=SIDE_COLOURS[side],
                lw=lw, alpha=alpha)


def draw_pose_overlays(manifest, index: np.ndarray, pred: np.ndarray, target: np.ndarray, out: Path) -> Path:
    """Each chosen frame, cropped around the person, with the true (dashed, thin) and predicted (solid)
    skeletons: the prediction is placed at the true root and projected with the camera."""
    from ..data.decode.video import read_frames
    plt = pyplot()
    n = len(index)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.0), squeeze=False)
    for ax, (s, c, t), p, g in zip(axes[0], index, pred, target):
        seq = manifest.sequences[int(s)]
        cam = seq.cameras[int(c)]
        frame = read_frames(cam.source_video, [int(t) + cam.source_start])[0]
        root = cam.camera.world_to_camera(seq.poses3d[int(t)])[0]
        ax.imshow(frame)
        _draw_skeleton(ax, cam.camera.project_camera(g + root), "--", alpha=0.7, lw=1.2)
        _draw_skeleton(ax, cam.camera.project_camera(p + root), "-")
        x0, y0, x1, y1 = seq.boxes[int(t), int(c)] - 0.5  # pixel edges -> imshow's pixel-centre coordinates
        ax.set_xlim(x0, x1)
        ax.set_ylim(y1, y0)
        err = float(np.linalg.norm(p - g, axis=-1).mean())
        ax.set_title(f"{seq.key}\n{cam.name} t={int(t)}: {err:.0f} mm", fontsize=7)
        ax.axis("off")
    fig.suptitle("predicted (solid) and true (dashed) skeletons; blue = left, red = right", fontsize=8)
    return save_figure(fig, out)


def draw_skeletons_3d(pred: np.ndarray, target: np.ndarray, out: Path, titles: list[str]) -> Path:
    """Root-relative 3D skeletons in the camera frame (x right, y down, z forward), true and predicted."""
    plt = pyplot()
    n = len(pred)
    fig = plt.figure(figsize=(2.8 * n, 3.0))
    for i, (p, g) in enumerate(zip(pred, target)):
        ax = fig.add_subplot(1, n, i + 1, projection="3d")
        for joints, style, alpha in ((g, "--", 0.6), (p, "-", 1.0)):
            for parent, child in H36M17.bones:
                seg = joints[[parent, child]]
                # plot with z (depth) into the page and -y up, so the person stands upright
                ax.plot(seg[:, 0], seg[:, 2], -seg[:, 1], style, color=SIDE_COLOURS[H36M17.side(child)], alpha=alpha)
        ax.set_title(titles[i], fontsize=6)
        lim = 1000
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), zlim=(-lim, lim))
        ax.set_xticklabels([])
        ax.set_yticklabels([])
        ax.set_zticklabels([])
        ax.view_init(elev=10, azim=-70)
    fig.suptitle("3D skeletons, root-relative, camera frame: predicted (solid), true (dashed)", fontsize=8)
    return save_figure(fig, out)
