"""The embedded synthetic dataset: layout, geometry, video, reproducibility, appearance, motion, failure paths.

One tiny dataset is generated per module (a few seconds); the checks read its files independently of the
generator wherever they can (tomllib + a from-scratch OpenCV projection, PyAV decoding, np.load).
"""
from __future__ import annotations

import dataclasses
import json
import re
import tomllib

import numpy as np
import pytest
from click.testing import CliRunner

from syncssl.cli import data as data_cli
from syncssl.cli import synth as synth_command
from syncssl.data.decode.video import probe, read_frames
from syncssl.data.sources.calibration import read_calibration
from syncssl.data.sources.dataset import load_masks
from syncssl.data.synthetic import (
    ACTIONS,
    GENERATOR,
    GENERATOR_VERSION,
    PRESETS,
    SequenceSpec,
    animate,
    ensure_synthetic,
    generate_report,
    generate_sequence,
    get_preset,
    make_subject,
    plan_sequences,
)
from syncssl.data.synthetic import generator as gen_module
from syncssl.data.synthetic.body import J
from syncssl.data.synthetic.generator import sequence_rng
from syncssl.data.synthetic.render import Body
from syncssl.data.synthetic.rig import make_rig
from syncssl.errors import DataError
from syncssl.geometry import H36M17

TINY = PRESETS["tiny"]
CAMERAS = [f"cam_{i:02d}" for i in range(1, TINY.num_cameras + 1)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "tiny"
    report = generate_report(root, "tiny", seed=0, workers=1, progress=False)
    return root, report


def sequences(root):
    return sorted(p for p in root.glob("*/*") if p.is_dir())


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(r):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


# ---------------------------------------------------------------- an independent reading of the files


def rodrigues(r):
    theta = np.linalg.norm(r)
    if theta < 1e-12:
        return np.eye(3)
    k = np.asarray(r) / theta
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * K @ K


def opencv_project(X_m, table):
    """OpenCV's documented pinhole + radial/tangential model, from the TOML table; X in metres."""
    R = rodrigues(np.array(table["rotation"]))
    Xc = X_m @ R.T + np.array(table["translation"])
    x, y = Xc[..., 0] / Xc[..., 2], Xc[..., 1] / Xc[..., 2]
    d = list(table["distortions"]) + [0.0] * (5 - len(table["distortions"]))
    k1, k2, p1, p2, k3 = d
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    K = np.array(table["matrix"])
    return np.stack([K[0, 0] * xd + K[0, 1] * yd + K[0, 2], K[1, 1] * yd + K[1, 2]], -1)


def test_layout_is_as_designed(tiny):
    root, report = tiny
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["name"] == "synthetic-tiny" and meta["fps"] == 25.0 and meta["skeleton"] == "h36m17"
    assert meta["subjects"] == ["S1", "S5", "S9"]
    assert meta["splits"] == {"train": ["S1", "S5"], "test": ["S9"]}
    assert meta["preset"] == "tiny" and meta["seed"] == 0 and meta["codec"] == "mjpeg"
    assert meta["generator"] == {"name": GENERATOR, "version": GENERATOR_VERSION}
    assert not root.with_name("tiny.partial").exists()
    seqs = sequences(root)
    assert len(seqs) == report.sequences == 6
    T = TINY.num_frames
    for seq in seqs:
        assert re.fullmatch(r"[A-Za-z]+_\d\d", seq.name) and seq.name.split("_")[0] in ACTIONS
        assert meta["actions"][f"{seq.parent.name}/{seq.name}"] == seq.name.split("_")[0]
        assert sorted(p.name for p in (seq / "videos").iterdir()) == [f"{c}.avi" for c in CAMERAS]
        assert sorted(p.name for p in (seq / "masks").iterdir()) == [f"{c}.npz" for c in CAMERAS]
        poses = np.load(seq / "poses3d.npy")
        boxes = np.load(seq / "boxes.npy")
        assert poses.dtype == np.float32 and poses.shape == (T, 17, 3)
        assert boxes.dtype == np.float32 and boxes.shape == (T, len(CAMERAS), 4)
        doc = tomllib.loads((seq / "calibration.toml").read_text())
        assert [k for k in doc if k != "metadata"] == CAMERAS
        for name in CAMERAS:
            t = doc[name]
            assert t["name"] == name and t["size"] == [160.0, 128.0] and t["fisheye"] is False
            assert len(t["distortions"]) in (4, 5) and any(v != 0 for v in t["distortions"])


def test_rig_is_human36m_like(tiny):
    root, _ = tiny
    cams = read_calibration(sequences(root)[0] / "calibration.toml")
    for cam in cams:
        c = cam.center
        assert 4000 < np.hypot(c[0], c[1]) < 6000 and 1200 <= c[2] <= 1800
        uv = cam.project(np.array([0.0, 0.0, 900.0]))
        w, h = cam.size
        assert abs(uv[0] - w / 2) < 0.15 * w and abs(uv[1] - h / 2) < 0.15 * h


def test_joints_land_on_the_mask_from_scratch_projection(tiny):
    root, _ = tiny
    hits = total = wrong_hits = 0
    for seq in sequences(root):
        doc = tomllib.loads((seq / "calibration.toml").read_text())
        poses_m = np.load(seq / "poses3d.npy").astype(np.float64) / 1000.0
        for k, name in enumerate(CAMERAS):
            masks = load_masks(seq / "masks" / f"{name}.npz")
            T, H, W = masks.shape
            for table, counter in ((doc[name], "right"), (doc[CAMERAS[(k + 1) % 4]], "wrong")):
                uv = np.rint(opencv_project(poses_m, table)).astype(int)
                inside = (uv[..., 0] >= 0) & (uv[..., 0] < W) & (uv[..., 1] >= 0) & (uv[..., 1] < H)
                t, j = np.nonzero(inside)
                on = masks[t, uv[t, j, 1], uv[t, j, 0]]
                if counter == "right":
                    hits, total = hits + on.sum(), total + inside.size
                else:
                    wrong_hits += on.sum()
    assert hits >= 0.95 * total
    assert wrong_hits < 0.5 * total  # a wrong camera does not land on the person: the check can fail


def test_joints_land_on_the_person_in_decoded_video(tiny):
    """Colour differs from the empty room (rendered by the generator, gain-corrected) at the projected joints."""
    from syncssl.data.synthetic import make_room
    from syncssl.data.synthetic.scene import render_background

    root, _ = tiny
    room = make_room(0)
    backgrounds = {}  # one rig for the whole dataset: one empty-room image per camera
    hits = total = 0
    for seq in sequences(root):
        cams = read_calibration(seq / "calibration.toml")
        poses = np.load(seq / "poses3d.npy").astype(np.float64)
        for cam in cams:
            if cam.name not in backgrounds:
                backgrounds[cam.name] = render_background(room, cam).image
            bg = backgrounds[cam.name]
            frames = read_frames(seq / "videos" / f"{cam.name}.avi").astype(np.float32)
            person = load_masks(seq / "masks" / f"{cam.name}.npz").any(0)
            gain = np.median((frames / np.maximum(bg, 1))[:, ~person], axis=1)  # illumination drift
            uv = np.rint(cam.project(poses)).astype(int)
            T = len(poses)
            t = np.repeat(np.arange(T), 17)
            u, v = uv[..., 0].ravel(), uv[..., 1].ravel()
            diff = np.abs(frames[t, v, u] - bg[v, u] * gain[t, None]).max(-1)
            hits, total = hits + (diff > 15).sum(), total + diff.size
    assert hits >= 0.95 * total


def test_boxes_are_the_masks_extent_and_hold_the_joints(tiny):
    root, _ = tiny
    for seq in sequences(root):
        boxes = np.load(seq / "boxes.npy")
        cams = read_calibration(seq / "calibration.toml")
        poses = np.load(seq / "poses3d.npy").astype(np.float64)
        for c, cam in enumerate(cams):
            m = load_masks(seq / "masks" / f"{cam.name}.npz")
            for t in (0, len(m) // 2, len(m) - 1):
                ys, xs = np.nonzero(m[t])
                assert boxes[t, c].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # pixel edges
            uv = cam.project(poses)
            assert (uv[..., 0] >= boxes[:, c, None, 0] - 1).all() and (uv[..., 0] <= boxes[:, c, None, 2] + 1).all()
            assert (uv[..., 1] >= boxes[:, c, None, 1] - 1).all() and (uv[..., 1] <= boxes[:, c, None, 3] + 1).all()


def test_every_video_has_one_frame_per_pose(tiny):
    root, _ = tiny
    for seq in sequences(root):
        T = len(np.load(seq / "poses3d.npy"))
        for name in CAMERAS:
            path = seq / "videos" / f"{name}.avi"
            info = probe(path, verify="all")
            assert info.num_frames == T and info.size == TINY.size and info.codec == "mjpeg" and info.intra_only
            assert abs(info.fps - 25.0) < 1e-6
            assert len(read_frames(path)) == T


def test_same_seed_same_bytes_in_any_process_order(tiny, tmp_path):
    root, _ = tiny
    spec = SequenceSpec("S5", "train", "Waving", "Waving_01")
    generate_sequence(tmp_path / "a", spec, "tiny", seed=0)
    generate_sequence(tmp_path / "b", spec, "tiny", seed=0)
    generate_sequence(tmp_path / "c", spec, "tiny", seed=1)
    for f in ("poses3d.npy", "calibration.toml"):
        ref = (root / "S5" / "Waving_01" / f).read_bytes()  # written inside the whole dataset's run
        assert (tmp_path / "a" / f).read_bytes() == ref == (tmp_path / "b" / f).read_bytes()
        assert (tmp_path / "c" / f).read_bytes() != ref
    # everything else too: labels, masks, and (encoders being deterministic) the videos
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 3 + 2 * len(CAMERAS)
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_background_is_static_per_camera_and_differs_between_cameras(tiny):
    root, _ = tiny
    seq = root / "S1" / "Walking_01"
    medians = []
    for name in CAMERAS:
        frames = read_frames(seq / "videos" / f"{name}.avi").astype(np.float32)
        median = np.median(frames, 0)
        medians.append(median)
        person = load_masks(seq / "masks" / f"{name}.npz").any(0)
        far = ~dilate(person, 25)  # away from the person and most of the shadow
        assert far.mean() > 0.3
        dev = np.abs(frames - median).mean(-1)[:, far]  # (T, n) per pixel
        assert dev.mean(1).max() < 4.0  # noise and illumination drift only
        assert np.percentile(dev, 99) < 15
    for a in range(4):
        for b in range(a + 1, 4):
            assert np.abs(medians[a] - medians[b]).mean() > 15


def test_every_subject_is_drawn_from_one_appearance_distribution_and_clothing_is_asymmetric():
    train = [make_subject(s, "train", 0) for s in PRESETS["small"].train_subjects]
    test = [make_subject(s, "test", 0) for s in PRESETS["small"].test_subjects]
    # the split is a name only: the same name in another split looks the same
    for s in ("S1", "S9"):
        assert make_subject(s, "train", 0).look == make_subject(s, "test", 0).look == make_subject(s, "pool", 0).look
    # colours spread over the whole range (dark, light, saturated, grey), for training and held-out subjects alike
    many = np.array([c for i in range(60) for c in make_subject(f"P{i:02d}", "pool", 0).look.clothing_colours()])
    assert many.min() < 40 and many.max() > 215 and len({tuple(c) for c in many}) > 300
    for s in train + test:
        body = Body(s)
        names = [f"{a}-{b}" for a, b, _ in Body.CAPSULES]
        left = [body.cap_mats[names.index(n)] for n in ("l_hip-l_knee", "l_shoulder-l_elbow")]
        right = [body.cap_mats[names.index(n)] for n in ("r_hip-r_knee", "r_shoulder-r_elbow")]
        assert left != right  # a striped trouser leg and an odd sleeve on one side only
    # subjects differ in build: bone lengths within about +-10% of each other, never identical
    lengths = np.stack([s.bone_lengths() for s in train + test])
    assert (lengths.std(0) > 1).all() and (lengths.max(0) / lengths.min(0) < 1.35).all()


def _asymmetry(joints: np.ndarray) -> float:
    """Mean distance (mm) between a pose and its left/right mirror image, in the body's own frame."""
    hips = joints[:, J["l_hip"]] - joints[:, J["r_hip"]]
    left = hips / np.linalg.norm(hips, axis=-1, keepdims=True)
    rel = joints[:, :17] - joints[:, :1]
    y = (rel * left[:, None]).sum(-1, keepdims=True)
    mirrored = (rel - 2 * y * left[:, None])[:, H36M17.mirror_permutation]
    return float(np.linalg.norm(rel - mirrored, axis=-1).mean())


@pytest.mark.parametrize("action", ACTIONS)
def test_motion_moves_keeps_bones_and_feet_and_is_asymmetric(action):
    subject = make_subject("S7", "train", 3)
    m = animate(subject, action, 150, 25.0, sequence_rng(3, "S7", action, "motion"))
    j = m.joints
    assert np.isfinite(j).all()
    bones = np.stack([np.linalg.norm(j[:, c] - j[:, p], axis=-1) for p, c in H36M17.bones], -1)
    assert np.abs(bones - subject.bone_lengths()).max() < 1e-6  # forward kinematics keeps bones exact
    root_xy = j[:, 0, :2]
    spread = np.linalg.norm(root_xy[:, None] - root_xy[None], axis=-1).max()
    assert spread > 400  # the person travels around the capture area
    assert np.hypot(root_xy[:, 0], root_xy[:, 1]).max() < 1800
    feet = j[:, [J["l_foot"], J["r_foot"]], 2].min(1)
    assert abs(feet.min() - subject.ankle_height) < 1 and np.median(feet) < subject.ankle_height + 60
    assert _asymmetry(j) > 25
    # holds are exact repeats
    assert np.array_equal(j[1:][m.still[1:]], j[:-1][m.still[1:]])


def test_holds_exist_and_all_actions_are_covered():
    still = sum(animate(make_subject("S1", "train", 0), a, 150, 25.0,
                        sequence_rng(0, "S1", a, "motion")).still.sum() > 0 for a in ACTIONS)
    assert still >= 3
    for name in ("small", "small-pool", "large"):
        p = PRESETS[name]
        specs = plan_sequences(p)
        assert len(specs) == p.num_sequences
        for _split, subjects in (("train", p.train_subjects), ("test", p.test_subjects)):
            assert {s.action for s in specs if s.subject in subjects} == set(ACTIONS)
        per_subject = {s: {x.action for x in specs if x.subject == s} for s in p.train_subjects + p.test_subjects}
        assert all(len(v) >= 4 for v in per_subject.values())
    assert PRESETS["small"].subjects == ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
    # the unlabelled pre-training pool: many people, every action type among them, the same labelled protocol
    pool = PRESETS["small-pool"]
    assert pool.train_subjects + pool.test_subjects == PRESETS["small"].subjects
    assert len(pool.train_subjects + pool.pool) >= 29
    assert {s.action for s in plan_sequences(pool) if s.split == "pool"} == set(ACTIONS)
    # twice the pool: the same labelled protocol and the same first 24 people, 24 more
    pool48 = PRESETS["small-pool-48"]
    assert pool48.pool[:24] == pool.pool and len(pool48.pool) == 48
    assert [x for x in plan_sequences(pool48) if x.split != "pool"] == [
        x for x in plan_sequences(pool) if x.split != "pool"]
    # small's frames over more people: as many sequences and frames, S1 and the held-out subjects as in small
    many, small = PRESETS["small-many"], PRESETS["small"]
    specs = plan_sequences(many)
    assert many.num_sequences == small.num_sequences and many.num_frames == small.num_frames
    by_subject = {s: [x for x in specs if x.subject == s] for s in many.subjects}
    assert [(x.action, x.split) for x in by_subject["S1"] + by_subject["S9"] + by_subject["S11"]] == [
        (x.action, x.split) for x in plan_sequences(small) if x.subject in ("S1", "S9", "S11")]
    assert all(len(by_subject[s]) == 2 for s in ("S5", "S6", "S7", "S8"))
    assert all(len(by_subject[s]) == 1 for s in many.pool) and len(many.pool) == 24
    assert {s.action for s in specs if s.split != "test"} == set(ACTIONS)


# ---------------------------------------------------------------- the command and the failure paths


def test_cli_choices_match_the_presets():
    opts = {o.name: o for o in synth_command.params}
    assert list(opts["preset"].type.choices) == list(PRESETS)


def test_unknown_preset_codec_action_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="tiny, small, small-pool, small-pool-48, small-many, large"):
        get_preset("huge")
    with pytest.raises(ValueError, match="mjpeg, h264, vp9"):
        generate_report(tmp_path / "x", "tiny", codec="xvid", progress=False)
    with pytest.raises(ValueError, match="Walking"):
        animate(make_subject("S1", "train", 0), "Dancing", 10, 25.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="even"):
        dataclasses.replace(TINY, size=(161, 128))
    result = CliRunner().invoke(data_cli, ["synth", "--preset", "huge", "--out", str(tmp_path / "y")])
    assert result.exit_code == 2 and "tiny" in result.output and "large" in result.output


def test_never_overwrites_a_foreign_folder(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a syncssl synthetic dataset"):
        ensure_synthetic(foreign, "tiny", progress=False)
    with pytest.raises(DataError, match="not a syncssl synthetic dataset"):
        generate_report(foreign, "tiny", progress=False, force=True)
    result = CliRunner().invoke(data_cli, ["synth", "--preset", "tiny", "--out", str(foreign), "--force"])
    assert result.exit_code != 0 and "not a syncssl synthetic dataset" in result.output
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_ensure_and_cli_reuse_a_matching_dataset_and_regenerate_otherwise(tiny, monkeypatch):
    root, _ = tiny
    stamp = (root / "dataset.json").stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(gen_module, "generate", lambda *a, **k: calls.append((a, k)) or root)
    assert ensure_synthetic(root, "tiny", seed=0) == root and not calls
    result = CliRunner().invoke(data_cli, ["synth", "--preset", "tiny", "--out", str(root)])
    assert result.exit_code == 0 and "already holds" in result.output
    result = CliRunner().invoke(data_cli, ["synth", "--preset", "tiny", "--seed", "7", "--out", str(root)])
    assert result.exit_code != 0 and "--force" in result.output and "seed 0" in result.output
    ensure_synthetic(root, "tiny", seed=7)
    assert len(calls) == 1 and calls[0][0][2] == 7  # another seed: regenerated
    assert (root / "dataset.json").stat().st_mtime_ns == stamp


def test_a_failed_generation_leaves_no_dataset(tmp_path, monkeypatch):
    root = tmp_path / "broken"
    real = gen_module._run_one
    done = []

    def fail_after_one(job):
        if done:
            raise RuntimeError("killed")
        done.append(1)
        return real(job)

    monkeypatch.setattr(gen_module, "_run_one", fail_after_one)
    small = dataclasses.replace(TINY, name="tiny", num_frames=4, train_subjects=("S1",), actions_per_subject=1,
                                actions=("Walking",))
    with pytest.raises(RuntimeError):
        generate_report(root, small, workers=1, progress=False)
    assert not root.exists()  # only <root>.partial, which the next run clears
    monkeypatch.setattr(gen_module, "_run_one", real)
    generate_report(root, small, workers=1, progress=False)
    assert (root / "dataset.json").is_file() and not root.with_name("broken.partial").exists()


def test_the_generic_reader_opens_it(tiny):
    from syncssl.data.sources import open_dataset

    root, _ = tiny
    ds = open_dataset(root)
    assert ds.source == "synthetic" and len(ds.sequences) == 6 and ds.fps == 25.0
    assert {s.action for s in ds.sequences} == {"Walking", "Waving"}
    for s in ds.sequences:
        assert s.num_frames == TINY.num_frames and s.poses3d.shape == (TINY.num_frames, 17, 3)
        assert s.camera_names == CAMERAS and set(s.masks) == set(CAMERAS)


def test_an_unlabelled_pool_of_subjects_for_pre_training(tmp_path):
    from dataclasses import replace
    preset = replace(PRESETS["tiny"], name="tiny-pool", pool_subjects=3, pool_actions=1, pool_frames=12)
    specs = plan_sequences(preset)
    pool = [s for s in specs if s.split == "pool"]
    assert [s.subject for s in pool] == ["P01", "P02", "P03"] and len({s.action for s in pool}) == 2
    report = generate_report(tmp_path / "ds", preset, seed=0, progress=False, workers=1)
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["splits"]["pool"] == ["P01", "P02", "P03"]
    assert meta["splits"]["pretrain"] == ["S1", "S5", "P01", "P02", "P03"] and meta["splits"]["test"] == ["S9"]
    assert np.load(tmp_path / "ds" / "P02" / pool[1].name / "poses3d.npy").shape[0] == 12
    assert report.frames == 4 * 40 + 2 * 40 + 3 * 12  # camera-frames per camera: labelled subjects' takes + the pool's


def test_a_rig_per_subject_drawn_from_the_ranges_and_framed(tmp_path):
    """small-pool-rigs' levers at tiny scale: each person their own rig (the same for all their takes), heights and
    distances in the preset's ranges, a standing person at the centre spanning the framing share of the height;
    a preset without them keeps the one rig its seed always gave."""
    from dataclasses import replace
    rigs = PRESETS["small-pool-rigs"]
    preset = replace(PRESETS["tiny"], name="tiny-rigs", rig_per_subject=True, camera_height=rigs.camera_height,
                     camera_distance=rigs.camera_distance, framing=rigs.framing, area_radius=rigs.area_radius,
                     num_frames=4)
    generate_report(tmp_path / "ds", preset, seed=0, progress=False, workers=1)
    by_subject: dict[str, list] = {}
    for folder in sorted((tmp_path / "ds").glob("*/*/calibration.toml")):
        by_subject.setdefault(folder.parent.parent.name, []).append(read_calibration(folder))
    centres = {s: [np.round(c.center) for c in takes[0]] for s, takes in by_subject.items()}
    for takes in by_subject.values():
        for cams in takes[1:]:  # every take of a person: one rig
            np.testing.assert_allclose([c.center for c in cams], [c.center for c in takes[0]])
        for cam in takes[0]:
            c = cam.center
            assert 2500 <= np.hypot(c[0], c[1]) <= 6000 and 1000 <= c[2] <= 2400
            top, bottom = cam.project(np.array([[0.0, 0.0, 1800.0], [0.0, 0.0, 0.0]]))[:, 1]
            assert 0.3 * cam.size[1] < bottom - top < 0.95 * cam.size[1]  # ~framing at the aim point
    assert not np.allclose(centres["S1"], centres["S5"])  # another person, another rig
    default = make_rig(4, PRESETS["tiny"].size, 0)  # what c0e8a51 drew for this seed, before the ranges existed
    np.testing.assert_allclose([c.center for c in default[:2]], [[2632.316, 3898.052, 1332.193],
                                                                [-3161.926, 3210.47, 1429.776]], atol=1e-3)
    assert abs(default[0].K[0, 0] - 168.164144) < 1e-5


def test_a_bystander_is_drawn_in_no_label_and_hides_the_person_where_nearer():
    """A preset with a bystander renders a second person-sized region beside the person: the person's poses and
    its mask outside occlusions are the same as without, and the mask loses only what a nearer bystander covers."""
    from syncssl.data.synthetic.generator import render_sequence
    alone = dataclasses.replace(PRESETS["tiny"], name="tiny-alone", num_frames=12)
    spec = plan_sequences(alone)[0]
    (m0, _, f0), (m1, _, f1) = (render_sequence(spec, p, seed=0)
                                for p in (alone, dataclasses.replace(alone, name="tiny-two", bystanders=1)))
    np.testing.assert_array_equal(m0.joints, m1.joints)
    extra = []
    for views0, views1 in zip(f0, f1):
        for (im0, mask0), (im1, mask1) in zip(views0, views1):
            assert not (mask1 & ~mask0).any()  # the bystander adds nothing to the person's mask, may hide some
            changed = np.abs(im1.astype(int) - im0).max(-1) > 40
            extra.append((changed & ~mask0).mean())  # the bystander (and its shadow), where the person is not
    assert np.median(extra) > 0.01, "no second person in most views"
    with pytest.raises(ValueError, match="bystanders must be >= 0"):
        dataclasses.replace(alone, bystanders=-1)
