"""What real footage needs from prepare: a person who never leaves the scene (no ghost in the background, and the
spots no frame shows empty said so), one person tracked per camera when two are in view, masks_preview.png without
ground truth, and a bare session (videos + calibration.toml) that trains without split settings.

Tests on the Pose2Sim recording skip where ``../shared/real/`` is absent.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from syncssl.data.preparation.background import (
    estimate_background,
    fill_from_surroundings,
    foreground_masks,
    model_from_images,
    sample_indices,
)
from syncssl.data.preparation.boxes import PersonTrack, boxes_from_masks

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "real" / "pose2sim_single"

H, W = 96, 128


def scene() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W] / 9.0
    return np.clip(np.stack([110 + 40 * np.sin(x), 120 + 35 * np.cos(0.8 * y), 140 + 30 * np.sin(x + y)], -1),
                   0, 255).astype(np.uint8)


TORSO = (slice(30, 80), slice(54, 74))  # rows, columns of a torso that sways around a core it never leaves


def stays_on_one_spot(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frames (n, H, W, 3) of a person whose torso stays on one spot (its core covered in every frame) while the
    arms, the head and the legs move around it, over a known background; and the person's masks. (A body part that
    never moves and that nothing moving surrounds looks exactly like background: no image cue can tell.)"""
    rng = np.random.default_rng(seed)
    frames, masks = [], []
    for t in range(n):
        m = np.zeros((H, W), bool)
        sway = int(round(4 * np.sin(2 * np.pi * t / 13)))  # the body sways a little on its spot
        m[TORSO[0], TORSO[1].start + sway:TORSO[1].stop + sway] = True
        a = np.sin(2 * np.pi * t / 9)  # arms up and down on both sides, the head sways
        for x0, x1 in ((30, 54), (74, 98)):
            y0 = int(40 + 18 * a)
            m[y0:y0 + 6, x0:x1] = True
        hx = int(58 + 10 * np.cos(2 * np.pi * t / 7))
        m[16:30, hx:hx + 12] = True
        lx = int(50 + 8 * np.sin(2 * np.pi * t / 11))  # and the legs step below it
        m[80:94, lx:lx + 8] = True
        m[80:94, 120 - lx - 8:120 - lx] = True
        f = scene().astype(np.int16) + rng.integers(-3, 4, (H, W, 3))
        f[m] = (200, 60, 70)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
        masks.append(m)
    return np.stack(frames), np.stack(masks)


def test_a_person_who_never_leaves_leaves_no_ghost_and_the_spot_is_said_unmodelled():
    frames, masks = stays_on_one_spot()
    truth = scene().astype(int)
    person = np.array([200, 60, 70])
    plain = estimate_background(frames)  # the temporal median: the torso is the person (a ghost)
    always = masks.all(0)
    assert np.abs(plain.image[always].astype(int) - person).sum(-1).mean() < 20
    model = model_from_images(frames)
    assert model.unmodelled[always].mean() > 0.9  # never uncovered: said so
    assert model.uncovered[always].max() < 3
    # no ghost: the model there is filled from the scene around it, far from the person's colour
    assert np.abs(model.image[always].astype(int) - person).sum(-1).min() > 100
    # where the person was now and then, the scene itself
    sometimes = masks.any(0) & ~masks.all(0) & ~model.unmodelled
    assert np.abs(model.image[sometimes].astype(int) - truth[sometimes]).mean() < 6
    # so the whole body is foreground again, the torso included
    fg = foreground_masks(frames, model.image, model.threshold)
    assert fg[:, always].mean() > 0.9
    assert foreground_masks(frames, plain.image, plain.threshold)[:, always].mean() < 0.2


def test_a_moving_person_leaves_the_median_as_it_was():
    """A person who walks through uncovers every pixel: nothing is unmodelled, and the refinement changes nothing."""
    frames = np.repeat(scene()[None], 30, 0).copy()
    for t in range(30):
        x = 4 + 4 * t
        frames[t, 30:80, x:x + 14] = (200, 60, 70)
    model = model_from_images(frames)
    assert not model.unmodelled.any()
    assert np.abs(model.image.astype(int) - scene()).max() <= 2


def test_fill_from_surroundings_takes_the_colours_around_a_hole():
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = (200, 10, 10)
    image[:, 30:] = (10, 10, 200)
    hole = np.zeros((40, 60), bool)
    hole[15:25, 5:15] = True  # inside the red half
    out = fill_from_surroundings(image.copy() * ~hole[..., None], hole)
    assert np.abs(out[hole].astype(int) - (200, 10, 10)).max() <= 2
    assert np.array_equal(out[~hole], image[~hole])


def two_people(n: int = 30) -> np.ndarray:
    """Masks of two people side by side whose sizes take turns at being the larger, both moving slowly."""
    masks = np.zeros((n, H, W), bool)
    for t in range(n):
        big, small = (22, 16) if t % 2 == 0 else (16, 22)
        masks[t, 20:20 + 3 * big, 10 + t // 3:10 + t // 3 + big] = True  # A, on the left
        masks[t, 20:20 + 3 * small, 90 - t // 3:90 - t // 3 + small] = True  # B, on the right
    return masks


def test_the_tracked_box_stays_on_one_person():
    masks = two_people()
    boxes = PersonTrack(grid=32, patience=5).push(masks)
    assert np.isfinite(boxes).all()
    assert (boxes[:, 2] < W / 2).all()  # always A, never B, never both
    largest = boxes_from_masks(masks, grid=32)  # the largest region of each frame alone jumps between them
    assert (largest[:, 0] > W / 2).any() and (largest[:, 2] < W / 2).any()


def test_a_track_starts_on_the_preferred_person_sized_region():
    """With ``prefer`` (a calibrated rig: the distance to where it looks), a track starts on the preferred one of
    the person-sized regions, not on the largest, and stays there; a speck is never preferred."""
    masks = np.zeros((6, H, W), bool)
    masks[:, 20:80, 10:30] = True  # A, smaller, on the left
    masks[:, 10:90, 80:108] = True  # B, larger
    masks[:, 5:9, 66:70] = True  # a speck
    left = PersonTrack(grid=32, patience=5, prefer=lambda box: box[0]).push(masks)
    assert (left[:, 2] <= 31).all()
    near = PersonTrack(grid=32, patience=5, prefer=lambda box: abs((box[0] + box[2]) / 2 - 70)).push(masks)
    assert (near[:, 0] >= 79).all()  # the speck lies nearest x = 70 but is not person-sized: B, the next nearest
    assert (PersonTrack(grid=32, patience=5).push(masks)[:, 0] >= 79).all()  # without a preference: the largest


def test_the_box_does_not_grow_over_a_second_person_who_joins():
    masks = np.zeros((6, H, W), bool)
    masks[:, 20:80, 20:40] = True
    masks[3:, 20:80, 40:90] = True  # someone wider steps right beside the person
    boxes = PersonTrack(grid=32, patience=5).push(masks)
    assert boxes[3:, 2].max() <= 40 + 0.25 * 20 + 1


def bare_session(root: Path) -> Path:
    """A bare session folder: videos/ and calibration.toml, no dataset.json (no splits), no ground truth."""
    from test_prepare import make_sequence, still

    from syncssl.data.sources.calibration import write_calibration
    seq = make_sequence(root, "x", "take_01", *still(T=20), labels=False)
    folder = seq.folder
    import shutil
    shutil.rmtree(folder / "masks")
    write_calibration(folder / "calibration.toml", [v.camera for v in seq.views])
    return folder


def test_a_bare_session_prepares_with_a_preview_and_trains_on_seen_pairs(tmp_path):
    from syncssl.data.preparation.manifest import Manifest
    from syncssl.data.preparation.prepare import prepare
    from syncssl.data.sources import open_dataset
    folder = bare_session(tmp_path)
    ds = open_dataset(folder)
    assert ds.splits == {"all": ["session"]} and not any(s.masks for s in ds.sequences)
    prepare(ds, tmp_path / "prepared", workers=1)
    assert (tmp_path / "prepared" / "masks_preview.png").stat().st_size > 10_000  # no ground truth needed
    report = json.loads((tmp_path / "prepared" / "report.json").read_text())
    assert report["stats"]["camera_frames_per_s"] > 0
    assert set(report["backgrounds"]) - {"what"} == {b for b in Manifest.load(tmp_path / "prepared").backgrounds}
    m = Manifest.load(tmp_path / "prepared")
    train = m.resolve_split("auto")
    assert train == "all"
    assert m.resolve_eval_split("test", train) == ("all", False)  # evaluated on seen people, and said so


def test_training_on_a_bare_session_says_it_is_taken_as_synchronized(tmp_path):
    """A bare session without sync.toml is read as synchronized; a model pre-trained on cameras that were not
    started together learns their offsets as the truth, so the preparation for training says so."""
    import dataclasses

    from syncssl.train.config import load_config
    from syncssl.train.data import _materialise
    folder = bare_session(tmp_path)
    said = []
    cfg = dataclasses.replace(load_config("tiny").data, dataset=str(folder), prepared=str(tmp_path / "prepared"))
    _materialise(cfg, None, said.append)
    assert any(m.startswith(f"note: {folder} has no sync.toml and is taken as synchronized") for m in said), said


def test_datasets_with_held_out_people_keep_their_splits():
    from syncssl.data.preparation.manifest import Manifest
    m = Manifest.__new__(Manifest)
    m.splits = {"train": ["S1"], "test": ["S9"], "pretrain": ["S1", "P1"]}
    assert m.resolve_split("auto") == "pretrain"
    assert m.resolve_eval_split("test", "pretrain") == ("test", True)
    assert m.resolve_eval_split("train", "pretrain") == ("train", False)


# ---------------------------------------------------------------- the Pose2Sim recording

needs_real = pytest.mark.skipif(not (REAL / "videos").is_dir(), reason="the real recording (../shared/real) is absent")


@needs_real
def test_real_clip_background_has_no_ghost_where_the_person_always_is():
    from syncssl.data.decode.video import read_frames_at
    video = REAL / "videos" / "cam04.mp4"
    frames = read_frames_at(video, sample_indices(100, 48), size=(135, 240))
    plain = estimate_background(frames)
    model = model_from_images(frames)
    assert model.unmodelled.mean() > 0.03  # the man never leaves the force plate: part of the frame is unmodelled
    # the person's pixels in a frame differ from the refined background more than from the median (which shows him)
    fg_plain = foreground_masks(frames, plain.image, plain.threshold).mean()
    fg_model = foreground_masks(frames, model.image, model.threshold).mean()
    assert fg_model > 1.3 * fg_plain


@needs_real
def test_real_two_person_composite_keeps_one_person():
    """Two copies of a real camera side by side, 30 frames apart: two people of one size; the box keeps one."""
    from syncssl.data.decode.video import read_frames
    frames = read_frames(REAL / "videos" / "cam02.mp4", size=(135, 240))
    both = np.concatenate([frames[:70], frames[30:100]], axis=2)  # (70, 240, 270, 3)
    model = model_from_images(both[sample_indices(len(both), 32)])
    masks = foreground_masks(both, model.image, model.threshold)
    boxes = PersonTrack(grid=32, patience=30).push(masks)
    ok = np.isfinite(boxes).all(1)
    assert ok.mean() > 0.9
    left = boxes[ok, 2] <= 135 + 10
    right = boxes[ok, 0] >= 135 - 10
    assert left.all() or right.all()  # one person throughout, never both
