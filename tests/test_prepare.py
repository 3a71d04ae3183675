"""syncssl-data prepare: backgrounds, boxes, motion, manifest, rebuild detection, transcode, mask quality.

Fixtures are rendered here: a smooth textured background per camera and a person-like shape (capsules
around the bones of a 17-joint pose), so the true background, the true mask and the labels are all known.
"""
from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from syncssl.data.decode.video import probe, read_frames, write_video
from syncssl.data.preparation.background import (
    colour_distance,
    estimate_background,
    farther_than,
    foreground_masks,
    sample_indices,
)
from syncssl.data.preparation.boxes import crop_boxes, motion_from_poses, square_boxes
from syncssl.data.preparation.manifest import Manifest
from syncssl.data.preparation.prepare import PrepareOptions, prepare, read_frames_at
from syncssl.data.sources.calibration import write_calibration
from syncssl.data.sources.dataset import Dataset, Sequence, View, save_masks, write_dataset_json
from syncssl.errors import DataError
from syncssl.geometry import H36M17, Camera, look_at

W, H, F = 128, 96, 150.0  # frame size and focal length (px): the person is ~70 px tall at 3.5 m
TEMPLATE = np.array([  # a standing person, H36M17 joint order, world mm (z up)
    (0, 0, 900), (0, -110, 900), (0, -110, 500), (0, -110, 80), (0, 110, 900), (0, 110, 500), (0, 110, 80),
    (0, 0, 1150), (0, 0, 1400), (0, 0, 1500), (0, 0, 1650), (0, 170, 1400), (0, 210, 1150), (0, 230, 900),
    (0, -170, 1400), (0, -210, 1150), (0, -230, 900)], float)
BONE_RADIUS = {(0, 7): 150, (7, 8): 150, (8, 9): 90, (9, 10): 110}  # mm; limbs 75


def rig() -> list[Camera]:
    cams = []
    for k, eye in enumerate([(3500, 0, 1100), (2500, 2500, 1100)]):
        R, t = look_at(eye, (0, 0, 900))
        K = np.array([[F, 0, (W - 1) / 2], [0, F, (H - 1) / 2], [0, 0, 1]])
        cams.append(Camera(f"cam_{k:02d}", (W, H), K, R=R, t=t))
    return cams


def true_background(cam: Camera, scene: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W] / 16.0 + scene  # another scene: the pattern shifts
    ph = np.random.default_rng(int(cam.name[-2:])).uniform(0, 6, 5)
    r = 90 + 25 * np.sin(0.5 * x + 0.9 * y + ph[4])
    g = 120 + 40 * np.sin(x + ph[0]) * np.cos(0.7 * y + ph[1])
    b = 140 + 35 * np.cos(0.8 * x + ph[2]) + 20 * np.sin(1.3 * y + ph[3])
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def poses(positions: np.ndarray, swing: np.ndarray | None = None) -> np.ndarray:
    """(T, 17, 3) world mm: the template moved by positions (T, 3), arms swung by swing (T,) mm."""
    p = TEMPLATE[None] + np.asarray(positions, float)[:, None]
    if swing is not None:
        p[:, [12, 13], 0] += np.asarray(swing)[:, None] * [0.5, 1.0]
        p[:, [15, 16], 0] -= np.asarray(swing)[:, None] * [0.5, 1.0]
    return p


def render(pose: np.ndarray, cam: Camera, scene: int = 0) -> tuple[np.ndarray, np.ndarray]:
    depth = cam.world_to_camera(pose)[:, 2]
    uv = cam.project(pose)
    y, x = np.mgrid[0:H, 0:W]
    mask = np.zeros((H, W), bool)
    for a, b in H36M17.bones:
        r = BONE_RADIUS.get((a, b), 75) * F / depth[[a, b]].mean()
        d = uv[b] - uv[a]
        t = np.clip(((x - uv[a, 0]) * d[0] + (y - uv[a, 1]) * d[1]) / max(d @ d, 1e-9), 0, 1)
        mask |= (x - uv[a, 0] - t * d[0]) ** 2 + (y - uv[a, 1] - t * d[1]) ** 2 <= r * r
    frame = true_background(cam, scene)
    shade = (40 + 30 * y / H)[..., None]
    person = np.clip(np.array([200, 40, 60]) - shade * [1, 0.2, 0.5], 0, 255).astype(np.uint8)
    frame[mask] = person[mask]
    return frame, mask


def walk(T=24, y0=-1000.0, y1=1000.0):
    pos = np.zeros((T, 3))
    pos[:, 1] = np.linspace(y0, y1, T)
    return pos, 150 * np.sin(np.arange(T) * 0.8)


def still(T=24, y=300.0):
    pos = np.zeros((T, 3))
    pos[:, 1] = y
    return pos, 10 * np.sin(np.arange(T) * 0.8)


def make_sequence(root: Path, subject: str, name: str, positions, swing=None, labels=True, cams=None,
                  codec="mjpeg", scene=0) -> Sequence:
    cams = cams or rig()
    folder = Path(root) / subject / name
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    P = poses(positions, swing)
    views, masks = [], {}
    for cam in cams:
        rendered = [render(p, cam, scene) for p in P]
        ext = {"mjpeg": ".avi", "h264": ".mp4"}[codec]
        kw = {"quality": 2} if codec == "mjpeg" else {}
        video = write_video(folder / "videos" / f"{cam.name}{ext}", [f for f, _ in rendered], 25.0, codec, **kw)
        views.append(View(cam, video, codec, len(P)))
        masks[cam.name] = save_masks(folder / "masks" / f"{cam.name}.npz", np.stack([m for _, m in rendered]))
    return Sequence(subject, name, name.split("_")[0], 25.0, views, len(P),
                    poses3d=P.astype(np.float32) if labels else None, masks=masks, folder=folder)


def make_dataset(root: Path, sequences: list[Sequence], splits=None) -> Dataset:
    return Dataset(Path(root), "fixture", 25.0, "h36m17",
                   splits or {"train": sorted({s.subject for s in sequences})}, sequences, "session")


def bg_error(manifest: Manifest, cam: int, region: np.ndarray | None = None) -> float:
    """Mean absolute error (0..255) of a background model against the true one, optionally in a region."""
    c = manifest.sequences[0].cameras[cam]
    err = np.abs(manifest.background(c.background_id).astype(int) - true_background(c.camera)).mean(-1)
    return float(err[region].mean() if region is not None else err.mean())


def person_region(cam: Camera, positions, swing=None) -> np.ndarray:
    """Pixels the person covers in more than half of the frames."""
    return np.mean([render(p, cam)[1] for p in poses(positions, swing)], 0) > 0.5


# ---------------------------------------------------------------- frame access


@pytest.mark.parametrize("codec,kw", [("mjpeg", {}), ("h264", {"gop": 8})])
def test_seeking_reader_matches_sequential_decoding(tmp_path, codec, kw):
    y, x = np.mgrid[0:48, 0:64]
    frames = [np.stack([(x * 3 + t * 5) % 256, (y * 4 + t * 3) % 256, (x + y + t * 7) % 256], -1).astype(np.uint8)
              for t in range(40)]
    path = write_video(tmp_path / f"v.{codec}", frames, 25.0, codec, **kw)
    if codec == "h264":
        assert not probe(path).intra_only  # the seeks really have to land on key frames
    want = [37, 0, 5, 5, 17, 39, 9]
    np.testing.assert_array_equal(read_frames_at(path, want), read_frames(path, want))
    with pytest.raises(DataError, match="past the end"):
        read_frames_at(path, [3, 40])


# ---------------------------------------------------------------- backgrounds


@pytest.mark.parametrize("labels", [True, False])
def test_background_recovered_behind_a_moving_person(tmp_path, labels):
    s = make_sequence(tmp_path, "S1", "walk_0", *walk(), labels=labels)
    m = prepare(make_dataset(tmp_path, [s]), tmp_path / "out").manifest
    for cam in range(2):
        assert bg_error(m, cam) < 2.0
        region = person_region(s.views[cam].camera, *walk())
        assert bg_error(m, cam, region | ~region) < 2.0  # nothing of the person left anywhere
        err = np.abs(m.background(f"S1_cam_0{cam}").astype(int) - true_background(s.views[cam].camera)).max(-1)
        assert np.percentile(err, 99.5) < 15
    assert all(b.suspect is None for b in m.backgrounds.values())


def stand_then_leave(T: int = 30) -> np.ndarray:
    """A person who stands still on one spot for 57% of the frames, then walks off to the other side."""
    pos = np.zeros((T, 3))
    pos[:17, 1] = 400
    pos[17:, 1] = np.linspace(400, -1100, T - 17)
    return pos


def test_pooling_over_sequences_outvotes_a_person_standing_still(tmp_path):
    # The person stands still for 57% of "pause" and walks elsewhere in "walk": pooling shows the spot empty.
    pos = stand_then_leave()
    pause = make_sequence(tmp_path / "a", "S1", "pause_0", pos, labels=False)
    region = person_region(pause.views[0].camera, pos)
    alone = prepare(make_dataset(tmp_path / "a", [pause]), tmp_path / "a_out").manifest
    assert bg_error(alone, 0, region) > 40  # the median shows the person
    # ... and says so: where the person stood, the empty floor shows beside the walking person again and again
    info = alone.backgrounds["S1_cam_00"]
    assert info.suspect is not None and any("hardly moves" in n for n in alone.notes)
    ys, xs = np.nonzero(region)
    x0, y0, x1, y1 = info.suspect
    assert x0 <= xs.mean() <= x1 and y0 <= ys.mean() <= y1

    pause = make_sequence(tmp_path / "b", "S1", "pause_0", pos, labels=False)
    walking = make_sequence(tmp_path / "b", "S1", "walk_0", *walk(y0=-1000, y1=-200), labels=False)
    walking2 = make_sequence(tmp_path / "b", "S1", "walk_1", *walk(y0=1200, y1=-200), labels=False)
    pooled = prepare(make_dataset(tmp_path / "b", [pause, walking, walking2]), tmp_path / "b_out").manifest
    assert pooled.backgrounds["S1_cam_00"].sequences == ["S1/pause_0", "S1/walk_0", "S1/walk_1"]
    assert bg_error(pooled, 0, region) < 4


@pytest.mark.parametrize("same_scene", [True, False])
def test_other_subjects_on_the_same_rig_fill_in_a_ghost(tmp_path, same_scene):
    pos = stand_then_leave()
    a = make_sequence(tmp_path, "S1", "pause_0", pos, labels=False)
    other = make_sequence(tmp_path, "S2", "walk_0", *walk(y0=-1000, y1=0), scene=0 if same_scene else 3,
                          labels=False)
    m = prepare(make_dataset(tmp_path, [a, other]), tmp_path / "out").manifest
    info = m.backgrounds["S1_cam_00"]
    region = person_region(a.views[0].camera, pos)
    if same_scene:
        assert info.borrowed_from == ["S2_cam_00"] and info.borrowed_share > 0.01
        assert bg_error(m, 0, region) < 6
        assert any("filled in from S2_cam_00" in n for n in m.notes)
    else:  # a changed room must not lend its pixels
        assert info.borrowed_from == [] and info.suspect is not None
        assert bg_error(m, 0, region) > 40


def test_shadows_are_not_foreground():
    rng = np.random.default_rng(0)
    bg = rng.integers(60, 200, (40, 50, 3)).astype(np.uint8)
    frame = bg.copy()
    frame[20:35, 5:25] = (bg[20:35, 5:25] * 0.6).astype(np.uint8)  # a shadow: darker, same colour
    frame[5:30, 30:40] = (200, 40, 60)  # a person
    person = np.zeros((40, 50), bool)
    person[5:30, 30:40] = True
    np.testing.assert_array_equal(foreground_masks(frame, bg, 18.0, radius=1), person)
    with_shadow = foreground_masks(frame, bg, 18.0, radius=1, shadows=False)
    assert with_shadow[20:35, 5:25].all() and with_shadow[person].all()


def test_estimate_background_validates_shapes():
    with pytest.raises(ValueError, match="uint8"):
        estimate_background(np.zeros((0, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="exclude"):
        estimate_background(np.zeros((3, 4, 4, 3), np.uint8), exclude=np.zeros((3, 4, 5), bool))
    assert sample_indices(10, 4).tolist() == [1, 3, 6, 8]
    assert sample_indices(3, 10).tolist() == [0, 1, 2]


@pytest.mark.parametrize("n", [1, 2, 7, 48])
def test_background_medians_match_the_reference(n):
    """The partial-sort medians give what a plain median (rounded half to even) and a NaN-aware masked median
    (rounded half up) give, bit for bit, and the squared-distance test what the distance test gives."""
    rng = np.random.default_rng(n)
    samples = rng.integers(0, 256, (n, 37, 29, 3)).astype(np.uint8)
    samples[:, :5] = samples[:1, :5]  # ties
    plain = estimate_background(samples).image
    np.testing.assert_array_equal(plain, np.round(np.median(samples, 0)).astype(np.uint8))
    exclude = rng.random((n, 37, 29)) < 0.4
    exclude[:, 10:12] = False  # nothing left out: the masked median there comes from the partial sort
    model = estimate_background(samples, exclude, min_votes=2 if n > 1 else 1)
    v = np.where(exclude[..., None], np.nan, samples.astype(np.float64))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: the plain median is taken there
        lo, hi = np.nanquantile(v, 0.5, axis=0, method="lower"), np.nanquantile(v, 0.5, axis=0, method="higher")
    expect = np.floor((lo + hi + 1) / 2)
    votes = (~exclude).sum(0)
    expect[votes < (2 if n > 1 else 1)] = plain[votes < (2 if n > 1 else 1)]
    np.testing.assert_array_equal(model.image, expect.astype(np.uint8))
    frames, bg = samples[: min(n, 3)], samples[-1]
    for t in [0.0, 1.0, 2 ** 0.5, 17.3, 40.000001, 99.99999, 255 * 3 ** 0.5, *rng.uniform(0, 450, 50)]:
        np.testing.assert_array_equal(farther_than(frames, bg, t), colour_distance(frames, bg) > t)


# ---------------------------------------------------------------- boxes


def test_boxes_from_labels_only_by_explicit_opt_in(tmp_path):
    s = make_sequence(tmp_path, "S1", "walk_0", *walk())
    default = prepare(make_dataset(tmp_path, [s]), tmp_path / "a").manifest.sequences[0]
    assert default.box_source == "foreground"  # labels exist, but pre-training reads none
    seq = prepare(make_dataset(tmp_path, [s]), tmp_path / "b", PrepareOptions(label_boxes=True)).manifest.sequences[0]
    assert seq.box_source == "labels" and seq.boxes.shape == (24, 2, 4) and seq.boxes.dtype == np.float32
    for c, cam in enumerate(seq.cameras):
        b = seq.boxes[:, c]
        np.testing.assert_allclose(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1], rtol=1e-5)
        uv = cam.camera.project(s.poses3d) + 0.5  # pixel centres at integers -> the edges convention
        assert (uv[..., 0] >= b[:, None, 0]).all() and (uv[..., 0] <= b[:, None, 2]).all()
        assert (uv[..., 1] >= b[:, None, 1]).all() and (uv[..., 1] <= b[:, None, 3]).all()
        # and they hold the whole rendered body, not only the joints
        for t in (0, 11, 23):
            ys, xs = np.nonzero(render(s.poses3d[t], cam.camera)[1])
            assert b[t, 0] <= xs.min() and xs.max() + 1 <= b[t, 2] and b[t, 1] <= ys.min() and ys.max() + 1 <= b[t, 3]


@pytest.mark.parametrize("labels", [True, False])
def test_boxes_from_the_foreground_contain_the_person(tmp_path, labels):
    s = make_sequence(tmp_path, "S1", "walk_0", *walk(), labels=labels)
    seq = prepare(make_dataset(tmp_path, [s]), tmp_path / "out").manifest.sequences[0]
    assert seq.box_source == "foreground" and (seq.poses3d is None) != labels
    P = poses(*walk())
    for c, cam in enumerate(seq.cameras):
        b = seq.boxes[:, c]
        np.testing.assert_allclose(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1], rtol=1e-5)
        for t in range(0, 24, 3):
            ys, xs = np.nonzero(render(P[t], cam.camera)[1])
            assert b[t, 0] <= xs.min() and xs.max() + 1 <= b[t, 2] and b[t, 1] <= ys.min() and ys.max() + 1 <= b[t, 3]
            assert b[t, 2] - b[t, 0] < 1.6 * max(np.ptp(xs), np.ptp(ys))  # tight enough to be a person crop


def test_boxes_given_by_the_dataset_are_used_only_by_opt_in(tmp_path):
    s = make_sequence(tmp_path, "S1", "walk_0", *walk(T=12), labels=False)
    tight = []
    for p in poses(*walk(T=12)):
        row = []
        for v in s.views:
            ys, xs = np.nonzero(render(p, v.camera)[1])
            row.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
        tight.append(row)
    s.boxes = np.array(tight, np.float32)
    m = prepare(make_dataset(tmp_path, [s]), tmp_path / "out", PrepareOptions(label_boxes=True)).manifest
    seq = m.sequences[0]
    assert (seq.box_source, seq.motion_source) == ("boxes", "foreground")
    assert (seq.boxes[..., :2] <= s.boxes[..., :2] + 1e-3).all()
    assert (seq.boxes[..., 2:] >= s.boxes[..., 2:] - 1e-3).all()


def test_smoothing_reduces_jitter_and_keeps_the_person_inside():
    rng = np.random.default_rng(0)
    T = 60
    centre = np.stack([np.linspace(20, 100, T), np.full(T, 50.0)], 1)
    tight = np.concatenate([centre - [10, 30], centre + [10, 30]], 1) + rng.normal(0, 2.0, (T, 4))
    tight[17] = np.nan  # a frame without a detection
    raw = square_boxes(np.where(np.isnan(tight), np.nanmean(tight, 0), tight))
    smooth = crop_boxes(tight)

    def jitter(b):
        c = (b[:, :2] + b[:, 2:]) / 2
        return np.abs(np.diff(c, 2, axis=0)).mean()

    assert jitter(smooth) < 0.5 * jitter(raw)
    ok = np.isfinite(tight).all(1)
    assert (smooth[ok, :2] <= tight[ok, :2] + 1e-4).all() and (smooth[ok, 2:] >= tight[ok, 2:] - 1e-4).all()
    assert np.isfinite(smooth).all()


# ---------------------------------------------------------------- motion


def _pause_positions(T=30, pause=(10, 20)):
    pos = np.zeros((T, 3))
    y = np.concatenate([np.linspace(-900, 0, pause[0]), np.zeros(pause[1] - pause[0]),
                        np.linspace(0, 900, T - pause[1])])
    pos[:, 1] = y
    swing = 150 * np.sin(np.arange(T) * 0.8)
    swing[pause[0]:pause[1]] = swing[pause[0]]
    return pos, swing


@pytest.mark.parametrize("labels", [True, False])
def test_a_pause_is_marked_static(tmp_path, labels):
    pos, swing = _pause_positions()
    s = make_sequence(tmp_path, "S1", "pause_0", pos, swing, labels=labels)
    report = prepare(make_dataset(tmp_path, [s]), tmp_path / "out")
    seq = report.manifest.sequences[0]
    assert seq.motion_source == "foreground"  # from the images, labels or not
    assert seq.static[12:18].all()  # inside the pause, away from the window's reach into the moves
    assert not seq.static[:8].any() and not seq.static[22:].any()
    assert report.stats["static_frames"] == int(seq.static.sum())
    assert 6 <= report.stats["static_frames"] <= 12


def test_motion_from_poses_is_mean_joint_speed():
    p = poses(*walk(T=11, y0=0, y1=500))  # 50 mm/frame, arms swinging on top
    p[:] = TEMPLATE + np.arange(11)[:, None, None] * [0, 50.0, 0]
    np.testing.assert_allclose(motion_from_poses(p, window=5), 50.0, rtol=1e-6)


# ---------------------------------------------------------------- manifest


def test_manifest_round_trip(tmp_path):
    a = make_sequence(tmp_path, "S1", "walk_0", *walk())
    b = make_sequence(tmp_path, "S2", "walk_0", *walk(T=12), labels=False)
    ds = make_dataset(tmp_path, [a, b], splits={"train": ["S1"], "test": ["S2"]})
    m = prepare(ds, tmp_path / "out").manifest
    m2 = Manifest.load(tmp_path / "out")
    assert (m2.dataset_root, m2.fps, m2.skeleton, m2.splits) == (Path(tmp_path), 25.0, "h36m17", ds.splits)
    assert m2.split("train") == [0] and m2.split("test") == [1]
    assert m2.quality == m.quality and m2.options == m.options and m2.fingerprint == m.fingerprint
    for s, s2 in zip(m.sequences, m2.sequences):
        assert (s2.key, s2.subject, s2.name, s2.action, s2.fps, s2.num_frames) == \
               (s.key, s.subject, s.name, s.action, s.fps, s.num_frames)
        for k in ("boxes", "motion", "static"):
            np.testing.assert_array_equal(getattr(s2, k), getattr(s, k))
        assert (s.poses3d is None) == (s2.poses3d is None)
        if s.poses3d is not None:
            np.testing.assert_array_equal(s2.poses3d, s.poses3d)
        for c, c2 in zip(s.cameras, s2.cameras):
            assert (c2.name, c2.video, c2.codec, c2.size, c2.background_id) == \
                   (c.name, c.video, c.codec, c.size, c.background_id)
            for k in ("K", "dist", "R", "t"):
                np.testing.assert_array_equal(getattr(c2.camera, k), getattr(c.camera, k))
            assert (c2.camera.size, c2.camera.model, c2.camera.name) == (c.camera.size, c.camera.model, c.camera.name)
            np.testing.assert_array_equal(m2.background(c2.background_id), m.background(c.background_id))
    assert m2.background("S1_cam_00").shape == (H, W, 3)


def test_prepare_reuses_an_up_to_date_manifest_and_rebuilds_on_changes(tmp_path):
    s = make_sequence(tmp_path, "S1", "walk_0", *walk())
    ds = make_dataset(tmp_path, [s])
    first = prepare(ds)  # default: <dataset>/prepared
    assert first.path == tmp_path / "prepared" / "manifest.json" and not first.up_to_date
    again = prepare(ds)
    assert again.up_to_date and again.reasons == []

    # same size, same mtime, different bytes: the same frames in reverse order
    video = s.views[0].video
    st = video.stat()
    frames = [render(p, s.views[0].camera)[0] for p in s.poses3d[::-1]]
    write_video(video, frames, 25.0, "mjpeg", quality=2)
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert video.stat().st_size == st.st_size and video.stat().st_mtime_ns == st.st_mtime_ns
    changed = prepare(ds)
    assert not changed.up_to_date and any("video of cam_00 changed" in r for r in changed.reasons)
    assert prepare(ds).up_to_date

    ds2 = make_dataset(tmp_path, [s, make_sequence(tmp_path, "S1", "walk_1", *walk(T=8))])
    assert prepare(ds2).reasons == ["sequence S1/walk_1 added"]
    stale = tmp_path / "prepared" / "arrays" / "S1__walk_1.npz"
    assert stale.is_file()
    assert prepare(ds).reasons == ["sequence S1/walk_1 removed"] and not stale.exists()

    options = prepare(ds, options=PrepareOptions(fg_motion_threshold=0.05))
    assert not options.up_to_date and options.reasons == ["option fg_motion_threshold: 0.02 -> 0.05"]
    assert prepare(ds, options=PrepareOptions(fg_motion_threshold=0.05), force=True).reasons == ["rebuild forced"]


def test_frames_kept_from_the_background_step_give_the_same_preparation(tmp_path, monkeypatch):
    """A short video is decoded once (background samples and pass share the kept frames); the result is the one
    two decodes give, byte for byte, and the kept frames are gone afterwards."""
    import syncssl.data.preparation.prepare as prep
    s = make_sequence(tmp_path, "S1", "walk_0", *walk())
    ds = make_dataset(tmp_path, [s])
    once = prepare(ds, tmp_path / "once")
    monkeypatch.setattr(prep, "KEEP_DECODED_BYTES", 0)
    twice = prepare(ds, tmp_path / "twice")
    assert not (tmp_path / "once" / "decoded").exists()
    files = sorted(p.relative_to(tmp_path / "once") for p in (tmp_path / "once").rglob("*")
                   if p.is_file() and p.suffix in (".npz", ".png") and p.name != "masks_preview.png")
    assert any(f.parts[0] == "backgrounds" for f in files) and any(f.parts[0] == "arrays" for f in files)
    for f in files:
        assert (tmp_path / "once" / f).read_bytes() == (tmp_path / "twice" / f).read_bytes(), f
    assert once.manifest.stats["view_frames"] == twice.manifest.stats["view_frames"]


# ---------------------------------------------------------------- quality, preview, transcode


def test_mask_iou_is_high_and_the_preview_is_written(tmp_path):
    s = make_sequence(tmp_path, "S1", "walk_0", *walk())
    report = prepare(make_dataset(tmp_path, [s]), tmp_path / "out")
    q = report.manifest.quality
    assert q["iou"] > 0.8 and set(q["iou_per_camera"]) == {"cam_00", "cam_01"}
    assert all(v > 0.8 for v in q["iou_per_camera"].values()) and q["frames"] == 16
    preview = tmp_path / "out" / "masks_preview.png"
    assert preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and preview.stat().st_size > 10_000
    # the predicted mask is the person: far better than an empty or a full mask
    m = report.manifest
    frame = read_frames(s.views[0].video, [5])
    pred = foreground_masks(frame, m.background("S1_cam_00"), m.backgrounds["S1_cam_00"].threshold)[0]
    truth = render(s.poses3d[5], s.views[0].camera)[1]
    assert (pred & truth).sum() / (pred | truth).sum() > 0.8


@pytest.mark.parametrize("target", ["mjpeg", "h264-gop8"])
def test_transcode_writes_decode_friendly_copies(tmp_path, target):
    s = make_sequence(tmp_path, "S1", "walk_0", *walk(T=20), codec="h264")
    report = prepare(make_dataset(tmp_path, [s]), tmp_path / "out", PrepareOptions(transcode=target))
    st = report.stats
    assert st["bytes_before"] == sum(v.video.stat().st_size for v in s.views)
    for c in report.manifest.sequences[0].cameras:
        assert c.video.is_relative_to(tmp_path / "out" / "videos") and c.source_video != c.video
        info = probe(c.video)
        assert info.num_frames == 20 and info.size == (W, H)
        assert info.codec == ("mjpeg" if target == "mjpeg" else "h264")
        if target == "mjpeg":
            assert info.intra_only
    assert st["bytes_after"] == sum(c.video.stat().st_size for c in report.manifest.sequences[0].cameras) > 0
    report.manifest.check_videos()


# ---------------------------------------------------------------- bad input


def test_a_background_of_the_wrong_size_is_caught(tmp_path):
    from PIL import Image
    s = make_sequence(tmp_path, "S1", "walk_0", *walk(T=12))
    ds = make_dataset(tmp_path, [s])
    prepare(ds, tmp_path / "out")
    bg = tmp_path / "out" / "backgrounds" / "S1_cam_01.png"
    Image.fromarray(np.zeros((H // 2, W // 2, 3), np.uint8)).save(bg)
    with pytest.raises(DataError, match="64x48 but its cameras' videos are 128x96") as e:
        Manifest.load(tmp_path / "out").background("S1_cam_01")
    assert e.value.path == bg
    again = prepare(ds, tmp_path / "out")
    assert not again.up_to_date and any("S1_cam_01.png is 64x48" in r for r in again.reasons)
    assert again.manifest.background("S1_cam_01").shape == (H, W, 3)


def test_a_sequence_with_fewer_cameras_is_prepared(tmp_path):
    full = make_sequence(tmp_path, "S1", "walk_0", *walk(T=12))
    partial = make_sequence(tmp_path, "S1", "walk_1", *walk(T=12), cams=rig()[:1])
    m = prepare(make_dataset(tmp_path, [full, partial]), tmp_path / "out").manifest
    assert m.sequences[1].boxes.shape == (12, 1, 4) and m.sequences[1].camera_names == ["cam_00"]
    assert m.backgrounds["S1_cam_00"].sequences == ["S1/walk_0", "S1/walk_1"]
    assert m.backgrounds["S1_cam_01"].sequences == ["S1/walk_0"]
    assert any("only one camera" in n for n in m.notes)


def test_check_videos_names_a_video_shorter_than_the_manifest_says(tmp_path):
    s = make_sequence(tmp_path, "S1", "walk_0", *walk(T=12))
    m = prepare(make_dataset(tmp_path, [s]), tmp_path / "out").manifest
    m.check_videos()
    video = s.views[1].video
    write_video(video, read_frames(video)[:7], 25.0, "mjpeg")
    with pytest.raises(DataError, match="holds 7 frames but sequence S1/walk_0 needs 12") as e:
        Manifest.load(tmp_path / "out").check_videos()
    assert e.value.path == video


def test_empty_and_unknown_splits_are_errors(tmp_path):
    s = make_sequence(tmp_path, "S1", "walk_0", *walk(T=8))
    m = prepare(make_dataset(tmp_path, [s], splits={"train": ["S1"], "test": ["S9"]}), tmp_path / "out").manifest
    with pytest.raises(DataError, match="split 'test' .*S9.* has no prepared sequences"):
        m.split("test")
    with pytest.raises(DataError, match="no split 'val'"):
        m.split("val")


def test_bad_labels_and_empty_datasets_are_errors(tmp_path):
    s = make_sequence(tmp_path, "S1", "walk_0", *walk(T=8))
    s.poses3d = s.poses3d[:5]
    with pytest.raises(DataError, match=r"3D labels of S1/walk_0 have shape \(5, 17, 3\), expected \(8, 17, 3\)"):
        prepare(make_dataset(tmp_path, [s]), tmp_path / "out")
    with pytest.raises(DataError, match="no sequences"):
        prepare(make_dataset(tmp_path, []), tmp_path / "out")
    with pytest.raises(DataError, match="not a syncssl manifest"):
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "manifest.json").write_text("{}")
        Manifest.load(tmp_path / "bad")


# ---------------------------------------------------------------- the command


def test_cli_prepare_on_a_dataset_folder(tmp_path):
    from click.testing import CliRunner

    from syncssl.cli import data
    root = tmp_path / "ds"
    s = make_sequence(root, "S1", "walk_0", *walk(T=12))
    write_calibration(s.folder / "calibration.toml", rig())
    np.save(s.folder / "poses3d.npy", s.poses3d)
    write_dataset_json(root, name="fixture", fps=25.0, subjects=["S1"], splits={"train": ["S1"]})
    out = tmp_path / "prepared"
    args = ["prepare", str(root), "--out", str(out), "--fg-motion-threshold", "0.03", "--preset", "tiny"]
    r = CliRunner().invoke(data, args)
    assert r.exit_code == 0, r.output
    assert "static" in r.output and "mask IoU" in r.output and (out / "manifest.json").is_file()
    assert "op mask" in r.output and "tiles" in r.output and "boxes vs labels" in r.output
    m = Manifest.load(out)
    assert m.options["fg_motion_threshold"] == 0.03 and m.sequences[0].box_source == "foreground"
    assert m.quality["iou"] > 0.8
    r = CliRunner().invoke(data, args)
    assert r.exit_code == 0 and "up to date" in r.output
    shutil.rmtree(root / "S1")
    r = CliRunner().invoke(data, ["prepare", str(root), "--out", str(out)])
    assert r.exit_code != 0 and "Error" in r.output and "Traceback" not in r.output
