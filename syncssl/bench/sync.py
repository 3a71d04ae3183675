"""``syncssl-bench sync``: does ``syncssl-sync`` recover injected camera offsets?

1. The held-out subjects of an embedded preset (``small``: S9 and S11, 8 actions each, 4 cameras) are rendered
   ``2 x margin`` longer than the preset (cached under ``--data-root``), so that every camera can keep the
   preset's length after its shift (or ``--frames N``: a recording length of one's own, rendered as long).
2. Each sequence gets a seeded random offset per camera, uniform over whole frames in [-max, max] seconds (the
   reference, the first camera, 0); camera c's video then starts ``offset[c]`` frames before the reference's
   (:func:`syncssl.sync.inject.shift_dataset`). An unshifted copy (every offset 0, the same windows and re-encoding)
   is made beside it.
3. ``syncssl-sync`` runs on the shifted copy with the given model, searching a little wider than the injected
   range (``--search-margin``: a peak at the end of the search range is never trusted, and the truth may lie
   there); the result is the share of cameras recovered within 1 frame (an undetermined camera counts as a miss),
   for the joint estimate and for the reference pair alone, overall, by action and by the size of the offset.
   ``--eval`` then measures ``syncssl-eval``'s held-out sync accuracy on the unshifted copy, the shifted one, the
   shifted one with the recovered offsets applied (``--apply``: cameras not determined are left out of the
   aligned sequences), and with every camera's best peak applied (``--apply --force``).

Writes ``sync_bench.json`` and ``sync_bench.png`` (errors, and estimate against truth) into ``--out``.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
import time
import tomllib
from pathlib import Path

import numpy as np

from ..provenance import device_name, env_block


def long_preset(preset: str, margin_frames: int, frames: int | None = None, bystanders: int = 0):
    """The preset's held-out subjects only, ``2 * margin_frames`` longer than ``frames`` (default: the preset's),
    with ``bystanders`` other people in every scene."""
    from ..data.synthetic import PRESETS
    base = PRESETS[preset]
    frames = frames or base.num_frames
    length = "" if frames == base.num_frames else f"-{frames}f"
    others = f"-bystanders{bystanders}" if bystanders else ""
    return dataclasses.replace(base, name=f"{preset}-heldout{length}-long{margin_frames}{others}", train_subjects=(),
                               num_frames=frames + 2 * margin_frames, pool_subjects=0, bystanders=bystanders)


def ensure_long_render(data_root: Path, preset: str, margin_frames: int, seed: int, workers: int | None, log,
                       frames: int | None = None, bystanders: int = 0) -> Path:
    from ..data.synthetic import GENERATOR_VERSION, existing_config, generate
    p = long_preset(preset, margin_frames, frames, bystanders)
    root = Path(data_root) / f"synthetic-{p.name}-seed{seed}"
    if existing_config(root) == dict(preset=p.name, seed=seed, codec="mjpeg", version=GENERATOR_VERSION):
        log(f"reusing {root}")
        return root
    log(f"rendering the held-out subjects of {preset}, {p.num_frames} frames each"
        + (f", {bystanders} bystander(s) in every scene" if bystanders else "") + f", into {root}")
    generate(root, preset=p, seed=seed, progress=True, workers=workers, force=True)
    return root


def run_sync_benchmark(model: str, *, out: Path, data_root: Path, preset: str = "small", data_seed: int = 0,
                       offset_seed: int = 0, max_offset_s: float = 2.0, search_margin_s: float = 0.2,
                       instants: int = 512, mirrored: bool = False, adapt_steps: int = 300, adapt_lr: float = 1e-4,
                       frames: int | None = None, cue: str = "fused", device: str = "auto",
                       workers: int | None = None, evaluate: bool = False, eval_pairs: int = 1024,
                       bystanders: int = 0, log=print) -> dict:
    import torch

    from ..data.sources import open_dataset
    from ..data.synthetic import PRESETS
    from ..sync import SyncOptions, apply_offsets, load_model, render_table, synchronize
    from ..sync.inject import random_offsets, shift_dataset
    t0 = time.perf_counter()
    base = PRESETS[preset]
    span = int(round(max_offset_s * base.fps))
    frames = frames or base.num_frames  # each camera's recording length
    if frames <= 2 * span:  # refused before anything is written
        from ..errors import ConfigError
        raise ConfigError(f"--frames: recordings of {frames} frames cannot hold offsets of +-{span} frames with "
                          "any overlap")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    long_root = ensure_long_render(Path(data_root), preset, span, data_seed, workers, log, frames, bystanders)
    ds = open_dataset(long_root, verify="none")
    rng = np.random.default_rng(offset_seed)
    truth = {s.key: random_offsets(s.camera_names, s.camera_names[0], span, rng) for s in ds.sequences}
    splits = copy_splits(base)
    shifted, unshifted = out / "shifted", out / "unshifted"
    for root, offsets in ((shifted, truth), (unshifted, {k: {c: 0 for c in v} for k, v in truth.items()})):
        if root.exists():
            shutil.rmtree(root)
        log(f"writing {root}")
        shift_dataset(long_root, root, offsets, first=span, length=frames, splits=splits)
    dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    options = SyncOptions(max_offset_s=max_offset_s + search_margin_s, instants=instants, seed=offset_seed,
                          mirrored=mirrored, adapt_steps=adapt_steps if model is not None else 0, adapt_lr=adapt_lr,
                          cue=cue)
    if model is None and options.needs_model:
        from ..errors import ConfigError
        raise ConfigError(f"--cue {cue} needs --model (geometry and motion work without one)")
    loaded = load_model(model, dev) if model is not None else None
    prepared = shifted / "sync-prepared"  # syncssl-sync's default place, named here for person_followed to read
    result = synchronize(shifted, loaded, options, out=out / "sync", prepared=prepared, device=dev, workers=workers,
                         log=log, truth=truth)
    render_table(result)
    rows = []
    for s in result.sequences:
        for c in s.cameras[1:]:
            rows.append(dict(sequence=s.key, action=s.key.split("/")[1].rsplit("_", 1)[0], camera=c.camera,
                             truth=truth[s.key][c.camera], joint=c.estimate.offset,
                             joint_best=c.estimate.best, direct=c.direct.offset, direct_best=c.direct.best,
                             support=c.estimate.support,
                             **({"first": c.first.offset, "first_best": c.first.best} if c.first else {})))
    summary = _summarise(rows)
    summary["person_followed"] = person_followed(shifted, prepared)
    if bystanders:
        summary["same_person"] = same_person(prepared, truth, span, long_preset(preset, span, frames, bystanders),
                                             data_seed)
    if result.adapted is not None:  # the first search, before adapting: the same measure
        first = [dict(r, joint=r["first"], joint_best=r["first_best"]) for r in rows]
        summary["first_search"] = _summarise(first)["joint"]
    report = dict(
        what="share of cameras whose offset syncssl-sync recovers within 1 frame (undetermined = miss), offsets "
             f"injected uniformly in [-{max_offset_s:g}, {max_offset_s:g}] s on the held-out subjects",
        model=str(loaded.checkpoint) if loaded else None, model_step=loaded.step if loaded else None,
        device=_device(dev),
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), preset=preset,
        data=str(long_root), data_seed=data_seed, offset_seed=offset_seed, max_offset_s=max_offset_s,
        max_offset_frames=span, bystanders=bystanders, search_max_offset_s=options.max_offset_s,
        min_support=options.min_support,
        cue=cue, cues=list(options.cues(loaded is not None)), tangency=dataclasses.asdict(options.tangency),
        motion=dataclasses.asdict(options.motion), tolerance_s=options.tolerance_s,
        instants_per_camera=instants, mirrored=mirrored, sequences=len(result.sequences),
        adapted=dataclasses.asdict(result.adapted) if result.adapted is not None else None,
        cameras=len(rows), frames_per_camera=frames, sync_seconds=result.seconds,
        views_embedded=result.views_embedded, **summary, per_camera=rows)
    if evaluate:
        report["eval"] = _evaluate(model, loaded, shifted, unshifted, result, out, eval_pairs, dev, apply_offsets, log)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["env"] = env_block()
    (out / "sync_bench.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    plot_benchmark(report, out / "sync_bench.png")
    return report


ON_PERSON = 1 / 3  # a prepared box is on a person when its centre lies within this share of their height of theirs


def _prepared_views(prepared: Path) -> list[tuple[str, str, str, np.ndarray]] | None:
    """(subject, sequence name, camera, its prepared boxes (T, 4)) for every camera of syncssl-sync's preparation
    (one sequence per camera: "Action_NN@cam_01"); None where there is none."""
    from ..data.preparation.manifest import MANIFEST_NAME, Manifest
    if not (prepared / MANIFEST_NAME).is_file():
        return None
    return [(s.subject, *s.name.split("@"), s.boxes[:, 0]) for s in Manifest.load(prepared / MANIFEST_NAME).sequences]


def _apart(box: np.ndarray, person: np.ndarray) -> np.ndarray:
    """Distances between the centres of boxes ``box`` and ``person`` (..., 4), in units of the person's height."""
    centre = lambda b: (b[..., :2] + b[..., 2:]) / 2  # noqa: E731
    return np.linalg.norm(centre(box) - centre(person), axis=-1) / (person[..., 3] - person[..., 1])


def person_followed(dataset: Path, prepared: Path) -> float | None:
    """The share of camera-frames in which the preparation follows the labelled person: its box's centre within a
    third of that person's height of the labelled box's centre (the labels of the rendered data, never read by the
    search). With bystanders, a camera that follows someone else compares another person with its partners."""
    views = _prepared_views(prepared)
    if views is None:
        return None
    hits = []
    for subject, name, camera, boxes in views:
        labels = Path(dataset) / subject / name / "boxes.npy"
        names = sorted(tomllib.loads((labels.parent / "calibration.toml").read_text()))
        truth = np.load(labels)[:, names.index(camera)]
        box = boxes[:len(truth)]
        seen = np.isfinite(box).all(1) & np.isfinite(truth[:len(box)]).all(1)
        hits.append(_apart(box[seen], truth[:len(box)][seen]) < ON_PERSON)
    return float(np.concatenate(hits).mean()) if hits else None


def same_person(prepared: Path, truth: dict, span: int, preset, data_seed: int) -> float | None:
    """With bystanders: the share of a camera pair's instants, at the true alignment, in which both cameras'
    preparations follow the same person (either one), among those where both follow someone or lose them: what the
    search compares. Each prepared box is the person's whose joint box (the scene's motions, never read by the
    search) has its centre within a third of their height; a box on nobody counts as a mismatch."""
    from itertools import combinations

    from ..data.preparation.boxes import boxes_from_joints
    from ..data.synthetic.generator import bystander, plan_sequences, render_sequence
    views = _prepared_views(prepared)
    if views is None:
        return None
    boxes: dict[str, dict[str, np.ndarray]] = {}
    for subject, name, camera, b in views:
        boxes.setdefault(f"{subject}/{name}", {})[camera] = b
    specs = {f"{s.subject}/{s.name}": s for s in plan_sequences(preset)}
    same = []
    for key, cams in boxes.items():
        motion, cameras, _ = render_sequence(specs[key], preset, data_seed)  # no frame is rendered
        T = len(motion.joints)
        people = [motion] + [bystander(specs[key], preset, data_seed, k, motion, T)[1]
                             for k in range(preset.bystanders)]
        who = {}
        for cam in (c for c in cameras if c.name in cams):
            known = np.stack([boxes_from_joints(m.joints[:, :17], cam) for m in people])  # (people, T, 4)
            box = cams[cam.name]
            who[cam.name] = np.full(T, -1)  # per original frame: person index, len(people) for nobody
            for t in np.flatnonzero(np.isfinite(box).all(1)):
                o = t + span - truth[key][cam.name]  # the original frame of this camera's frame t
                apart = _apart(box[t], known[:, o])
                apart = np.where(np.isfinite(apart), apart, np.inf)
                who[cam.name][o] = int(np.argmin(apart)) if apart.min() < ON_PERSON else len(people)
        for a, b in combinations(sorted(who), 2):
            both = (who[a] >= 0) & (who[b] >= 0)
            same.append((who[a] == who[b])[both] & (who[a][both] < len(people)))
    return float(np.concatenate(same).mean()) if same else None


def _summarise(rows: list[dict]) -> dict:
    def share(key: str) -> dict:
        err = np.array([np.nan if r[key] is None else r[key] - r["truth"] for r in rows], float)
        det = np.isfinite(err)
        return dict(within_1_frame=float(np.mean(det & (np.abs(np.nan_to_num(err, nan=1e9)) <= 1))),
                    exact=float(np.mean(det & (np.nan_to_num(err, nan=1e9) == 0))), determined=float(det.mean()),
                    within_1_frame_of_determined=float(np.mean(np.abs(err[det]) <= 1)) if det.any() else None,
                    median_abs_error_determined=float(np.median(np.abs(err[det]))) if det.any() else None,
                    wrong_committed=int(np.sum(det & (np.abs(np.nan_to_num(err, nan=0)) > 1))))
    def hit_share(selected: list[dict]) -> float | None:  # joint estimates within 1 frame; None for no camera
        hits = [r["joint"] is not None and abs(r["joint"] - r["truth"]) <= 1 for r in selected]
        return float(np.mean(hits)) if hits else None

    best = np.array([r["joint_best"] - r["truth"] if r["joint_best"] is not None else 1e9 for r in rows])
    actions = sorted({r["action"] for r in rows})
    half = max(max(abs(r["truth"]) for r in rows) // 2, 1)
    return dict(joint=share("joint"), direct=share("direct"),
                best_peak_within_1_frame=float(np.mean(np.abs(best) <= 1)),
                joint_within_1_frame_by_action={a: hit_share([r for r in rows if r["action"] == a]) for a in actions},
                joint_within_1_frame_by_offset={
                    f"|offset| <= {half} frames": hit_share([r for r in rows if abs(r["truth"]) <= half]),
                    f"|offset| > {half} frames": hit_share([r for r in rows if abs(r["truth"]) > half])})


def _evaluate(model, loaded, shifted, unshifted, result, out, pairs, device, apply_offsets, log) -> dict:
    """Held-out sync accuracy (syncssl-eval) on the unshifted copy, the shifted one, and the shifted one once the
    recovered offsets are applied."""
    from ..experiments.evaluate import run_evaluation
    rows, n = {}, {}
    for name, root in (("unshifted", unshifted), ("shifted", shifted)):
        log(f"syncssl-eval on {name}")
        r = run_evaluation(model, out / f"eval-{name}", pairs=pairs, device=device, dataset=str(root))
        rows[name], n[name] = r["unseen_sync_acc"], r["unseen_sync_pairs"]
    written = apply_offsets(result, log=log)
    left_out = sum(not c.estimate.determined for s in result.sequences for c in s.cameras)
    log(f"applied offsets to {len(written)} of {len(result.sequences)} sequences ({left_out} cameras not determined, "
        f"left out); syncssl-eval on shifted + applied")
    r = run_evaluation(model, out / "eval-applied", pairs=pairs, device=device, dataset=str(shifted))
    rows["applied"], n["applied"] = r["unseen_sync_acc"], r["unseen_sync_pairs"]
    forced = apply_offsets(result, log=log, force=True)
    log(f"applied the best peaks to every sequence ({len(forced)}, --force); syncssl-eval again")
    r = run_evaluation(model, out / "eval-applied-force", pairs=pairs, device=device, dataset=str(shifted))
    rows["applied_force"], n["applied_force"] = r["unseen_sync_acc"], r["unseen_sync_pairs"]
    # the binomial 95% half-width of each accuracy over the pairs the sync head is measured on (unflipped ones)
    half = {k: round(float(1.96 * np.sqrt(rows[k] * (1 - rows[k]) / max(n[k], 1))), 4) for k in rows}
    return dict(heldout_sync_acc=rows, sync_pairs=n, interval_95_half_width=half, sequences_applied=len(written),
                cameras_left_out=left_out,
                within_interval=bool(abs(rows["applied"] - rows["unshifted"]) <= half["unshifted"]),
                within_interval_force=bool(abs(rows["applied_force"] - rows["unshifted"]) <= half["unshifted"]),
                what="syncssl-eval's held-out sync accuracy (balanced pairs) on each copy")


def copy_splits(base) -> dict[str, list[str]]:
    """The shifted and unshifted copies hold the held-out subjects alone, as one split: syncssl-eval takes a
    dataset's single split as both its seen and its evaluated people (a held-out split may share no subject with
    another split, so "train" cannot repeat them)."""
    return {"test": list(base.test_subjects)}


def _device(dev: str) -> str:
    return device_name() if dev == "cpu" else dev


def plot_benchmark(report: dict, path: Path) -> Path:
    from ..figures import pyplot, save_figure
    plt = pyplot()
    rows = report["per_camera"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    span = report["max_offset_frames"]
    for key, colour, label in (("joint", "tab:blue", "joint (all pairs)"), ("direct", "tab:orange", "reference pair")):
        err = [r[key] - r["truth"] for r in rows if r[key] is not None]
        axes[0].hist(np.clip(err, -11, 11), bins=np.arange(-11.5, 12.5), color=colour, alpha=0.6,
                     label=f"{label}: {report[key]['within_1_frame']:.0%} within 1 frame, "
                           f"{report[key]['determined']:.0%} determined")
    axes[0].axvspan(-1.5, 1.5, color="tab:green", alpha=0.1)
    axes[0].set(xlabel="estimate - truth (frames; clipped at +-11)", ylabel="determined cameras",
                title="error of the recovered offsets")
    axes[0].legend(fontsize=7)
    t = np.array([r["truth"] for r in rows])
    for key, colour, marker in (("joint", "tab:blue", "o"), ("direct", "tab:orange", "x")):
        det = np.array([r[key] is not None for r in rows])
        best = np.array([r[f"{key}_best"] if r[f"{key}_best"] is not None else np.nan for r in rows], float)
        axes[1].scatter(t[det], best[det], s=14, color=colour, marker=marker, label=f"{key}, determined")
        axes[1].scatter(t[~det], best[~det], s=14, facecolors="none", edgecolors="grey", marker="o" if key == "joint"
                        else "s", label=f"{key}, not determined (best peak)")
    axes[1].plot([-span, span], [-span, span], color="grey", lw=0.8, ls="--")
    axes[1].set(xlabel="injected offset (frames)", ylabel="estimated offset (frames)", title="estimate against truth")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"syncssl-sync on {report['sequences']} held-out sequences ({report['cameras']} cameras), offsets "
                 f"seed {report['offset_seed']}, {report['instants_per_camera']} instants per camera, model step "
                 f"{report['model_step']}", fontsize=9)
    return save_figure(fig, path)


def print_sync_table(report: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table
    console = console or Console()
    t = Table(title=f"syncssl-bench sync: {report['cameras']} cameras of {report['sequences']} held-out sequences, "
                    f"offsets within +-{report['max_offset_s']:g} s (seed {report['offset_seed']})")
    for c in ("estimate", "within 1 frame", "exact", "determined", "within 1 frame of determined", "committed wrong"):
        t.add_column(c, justify="right" if c != "estimate" else "left")
    for key, label in (("joint", "joint (every pair)"), ("direct", "reference pair only")):
        r = report[key]
        t.add_row(label, f"{r['within_1_frame']:.1%}", f"{r['exact']:.1%}", f"{r['determined']:.1%}",
                  "-" if r["within_1_frame_of_determined"] is None else f"{r['within_1_frame_of_determined']:.1%}",
                  str(r["wrong_committed"]))
    console.print(t)
    if report.get("person_followed") is not None:
        console.print(f"the preparation follows the labelled person in {report['person_followed']:.1%} of "
                      f"camera-frames" + (f" ({report['bystanders']} bystander(s) in every scene)"
                                          if report.get("bystanders") else ""))
    if report.get("same_person") is not None:
        console.print(f"camera pairs follow the same person at the same instant in {report['same_person']:.1%} of "
                      "their instants")
    if report.get("first_search"):
        first = report["first_search"]
        console.print(f"before --adapt (the first search): {first['within_1_frame']:.1%} within 1 frame, "
                      f"{first['determined']:.1%} determined; {report['adapted']['steps']} adaptation steps")
    if "eval" in report:
        e = report["eval"]["heldout_sync_acc"]
        half_width = report["eval"]["interval_95_half_width"]["unshifted"]
        console.print(f"syncssl-eval held-out sync accuracy: unshifted {e['unshifted']:.3f}, "
                      f"shifted {e['shifted']:.3f}, shifted + applied {e['applied']:.3f} (cameras not determined "
                      f"left out: {report['eval'].get('cameras_left_out', '?')}), their best peaks applied instead "
                      f"(--force) {e['applied_force']:.3f}; 95% half-width {half_width:.3f}")
