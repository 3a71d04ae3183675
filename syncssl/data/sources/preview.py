"""``syncssl-data preview``: a PNG grid, rows = cameras, columns = instants, of decoded frames with the 3D joints
projected through each camera's calibration (bones coloured by side), or the person boxes when there are no
poses. If the calibration, the frame order or the labels are off, it shows here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ...geometry import H36M17, SKELETONS, Skeleton
from ..decode.video import read_frames
from .dataset import Dataset, Sequence

SIDE_COLOURS = {"left": "#1f77b4", "right": "#d62728", "centre": "#2ca02c"}  # blue, red, green
BOX_COLOUR = "#ffd700"


def preview_instants(num_frames: int, k: int) -> list[int]:
    """``k`` frame indices spread over a sequence: the centres of ``k`` equal parts (distinct when possible)."""
    if num_frames <= 0 or k <= 0:
        raise ValueError(f"need frames and instants, got num_frames={num_frames}, k={k}")
    k = min(k, num_frames)
    return sorted({int((i + 0.5) * num_frames / k) for i in range(k)})


def project_for_preview(sequence: Sequence, instants: list[int]) -> np.ndarray | None:
    """(cameras, instants, J, 2) pixels of the 3D poses at ``instants``; NaN where a joint is behind the camera.

    None when the sequence has no poses.
    """
    if sequence.poses3d is None:
        return None
    X = sequence.poses3d[np.asarray(instants)].astype(np.float64)  # (K, J, 3)
    out = []
    for cam in sequence.cameras:
        uv = cam.project(X)
        uv[cam.world_to_camera(X)[..., 2] <= 0] = np.nan
        out.append(uv)
    return np.stack(out)


def draw_pose(ax, joints2d: np.ndarray, skeleton: Skeleton = H36M17, scale: float = 1.0) -> None:
    """Bones coloured by the side of their child joint, joints as dots on top."""
    lw, ms = 2.0 * scale, 4.0 * scale
    for parent, child in skeleton.bones:
        seg = joints2d[[parent, child]]
        ax.plot(seg[:, 0], seg[:, 1], color=SIDE_COLOURS[skeleton.side(child)], lw=lw, solid_capstyle="round",
                zorder=2)
    for j, (u, v) in enumerate(joints2d):
        ax.plot([u], [v], "o", color=SIDE_COLOURS[skeleton.side(j)], ms=ms, mec="white", mew=0.5 * scale, zorder=3)


def draw_box(ax, box: np.ndarray) -> None:
    if not np.isfinite(box).all():
        return
    x0, y0, x1, y1 = box
    ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], color=BOX_COLOUR, lw=1.5, zorder=2)


def render_preview(sequence: Sequence, instants: list[int], frames: list[np.ndarray], *, title: str = "",
                   skeleton: Skeleton = H36M17, cell_inches: float = 3.0):
    """A matplotlib Figure and its (cameras, instants) array of axes; ``frames[c]`` is (K, H, W, 3) of camera c.

    Each axis shows image pixels with centres at integer coordinates (the projection's convention).
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    from matplotlib.lines import Line2D

    C, K = len(sequence.views), len(instants)
    aspects = [v.camera.size[1] / v.camera.size[0] for v in sequence.views]  # rows as tall as their frames
    # room per row for the image and its title line, plus the figure title and legend
    height = sum(cell_inches * a + 0.3 for a in aspects) + 0.5
    fig = Figure(figsize=(K * cell_inches, height), dpi=100, layout="constrained")
    axes = np.asarray(fig.subplots(C, K, squeeze=False, gridspec_kw=dict(height_ratios=aspects)))
    joints = project_for_preview(sequence, instants)
    for c, view in enumerate(sequence.views):
        w, h = view.camera.size
        for k, t in enumerate(instants):
            ax = axes[c, k]
            ax.imshow(frames[c][k], interpolation="bilinear")
            if joints is not None:
                draw_pose(ax, joints[c, k], skeleton)
            elif sequence.boxes is not None:
                draw_box(ax, sequence.boxes[t, c])
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{view.name} · frame {t}" + (f" (file {t + view.start})" if view.start else ""), fontsize=9)
    if joints is not None:
        handles = [Line2D([], [], color=col, lw=2, marker="o", label=side) for side, col in SIDE_COLOURS.items()]
        fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title, x=0.01, ha="left", fontsize=10)
    return fig, axes


def write_preview(dataset: Dataset, out: str | Path | None = None, *, sequence: str | None = None,
                  instants: int = 4) -> Path:
    """Renders one sequence (default: the first with 3D poses, else the first) to a PNG; returns its path."""
    seq = _pick(dataset, sequence)
    ts = preview_instants(seq.num_frames, instants)
    frames = [read_frames(v.video, np.asarray(ts) + v.start) for v in seq.views]  # sync.toml: file frame t + start
    drawn = ("3D poses projected through each camera's calibration" if seq.poses3d is not None
             else "person boxes" if seq.boxes is not None else "no labels")
    title = f"{dataset.name}: {seq.key} ({seq.action}), {seq.num_frames} frames at {seq.fps:g} fps; {drawn}"
    skeleton = SKELETONS.get(dataset.skeleton, H36M17)
    fig, _ = render_preview(seq, ts, frames, title=title, skeleton=skeleton)
    out = Path(out) if out is not None else Path(dataset.root) / "preview.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def _pick(dataset: Dataset, key: str | None) -> Sequence:
    if not dataset.sequences:
        raise DataError(dataset.root, "holds no sequences to preview")
    if key is None:
        return next((s for s in dataset.sequences if s.poses3d is not None), dataset.sequences[0])
    for s in dataset.sequences:
        if s.key == key or (s.name == key and sum(x.name == key for x in dataset.sequences) == 1):
            return s
    keys = [s.key for s in dataset.sequences]
    shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
    raise DataError(dataset.root, f"no sequence {key!r}; sequences are {shown}")
