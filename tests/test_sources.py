"""The three source readers (generic dataset root, bare session, Human3.6M) and their error messages.

Every fixture is written here: tiny videos (64x48 or smaller, 12-30 frames) in the real layouts.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from syncssl.data.decode.video import write_video
from syncssl.data.sources import detect_layout, open_dataset
from syncssl.data.sources.calibration import write_calibration
from syncssl.data.sources.dataset import save_masks, write_dataset_json
from syncssl.errors import DataError
from syncssl.geometry import H36M_CAMERA_IDS, Camera, h36m_camera, look_at

EXT = {"mjpeg": ".avi", "h264": ".mp4", "vp9": ".webm"}
SIZE = (64, 48)


def make_camera(name, size=SIZE, angle=0.0, focal=50.0):
    """A camera 4 m from the origin looking at (0, 0, 900) mm, principal point at the image centre."""
    eye = [4000 * np.cos(angle), 4000 * np.sin(angle), 1200]
    R, t = look_at(eye, [0, 0, 900])
    w, h = size
    K = np.array([[focal * w / 64, 0, (w - 1) / 2], [0, focal * w / 64, (h - 1) / 2], [0, 0, 1]])
    return Camera(name, size, K, R=R, t=t)


def frames(n, size=SIZE, base=0):
    """Distinct flat-coloured frames (frame i is a different grey level) with a white square that moves."""
    w, h = size
    out = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        out[i] = (base + 7 * i) % 200 + 20
        x = (3 * i) % (w - 8)
        out[i, 10:18, x:x + 8] = 255
    return out


def poses(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 150, (n, 17, 3)) + [0, 0, 900]).astype(np.float32)


def write_sequence(folder, cameras, videos, *, poses3d=None, boxes=None, in_videos_dir=True):
    """cameras: calibration tables; videos: {file name: (codec, size, frames)}."""
    folder = Path(folder)
    vdir = folder / "videos" if in_videos_dir else folder
    vdir.mkdir(parents=True, exist_ok=True)
    if cameras is not None:
        write_calibration(folder / "calibration.toml", cameras)
    for i, (fname, (codec, size, n)) in enumerate(videos.items()):
        write_video(vdir / fname, frames(n, size, base=40 * i), fps=25, codec=codec)
    if poses3d is not None:
        np.save(folder / "poses3d.npy", poses3d)
    if boxes is not None:
        np.save(folder / "boxes.npy", boxes)
    return folder


def simple_sequence(folder, n=20, names=("cam_01", "cam_02"), lengths=None, **kw):
    cams = [make_camera(c, angle=i * 1.3) for i, c in enumerate(names)]
    lengths = lengths or [n] * len(names)
    vids = {f"{c}.avi": ("mjpeg", SIZE, m) for c, m in zip(names, lengths)}
    return write_sequence(folder, cams, vids, **kw)


def make_layout(root, *, longer_camera=3):
    """dataset.json with S1 (walk_00 labelled, one camera a few frames longer; jump_01) and S2 (walk_00)."""
    root = Path(root)
    root.mkdir(parents=True)
    write_dataset_json(root, name="tiny", fps=25, subjects=["S1", "S2"], splits={"train": ["S1"], "test": ["S2"]})
    n = 20
    seq = simple_sequence(root / "S1" / "walk_00", n, lengths=[n, n + longer_camera], poses3d=poses(n),
                          boxes=np.tile(np.array([[[5, 5, 30, 40]]], np.float32), (n, 2, 1)))
    (seq / "masks").mkdir()
    save_masks(seq / "masks" / "cam_01.npz", np.zeros((n, SIZE[1], SIZE[0]), bool))
    simple_sequence(root / "S1" / "jump_01", 12)
    simple_sequence(root / "S2" / "walk_00", 14)
    simple_sequence(root / "S3" / "run_00", 12)  # a subject not in dataset.json
    return root


# ---------------------------------------------------------------- generic session


def test_session_mixed_codecs_sizes_matched_by_name(tmp_path):
    # tables cam_01/cam_02/cam_03; videos cam01.mp4 (h264), cam_02.avi (mjpeg at half the calibrated size),
    # cam-03.webm (vp9, another size)
    cams = [make_camera("cam_01"), make_camera("cam_02", angle=1.0), make_camera("cam_03", (48, 48), angle=2.0)]
    write_sequence(tmp_path / "rig", cams, {
        "cam01.mp4": ("h264", SIZE, 16),
        "cam_02.avi": ("mjpeg", (32, 24), 16),
        "cam-03.webm": ("vp9", (48, 48), 16),
    })
    assert detect_layout(tmp_path / "rig") == "session"
    ds = open_dataset(tmp_path / "rig")
    assert ds.source == "session" and ds.splits == {"all": ["session"]}
    (seq,) = ds.sequences
    assert seq.subject == "session" and seq.name == "rig" and seq.num_frames == 16 and seq.fps == 25
    assert seq.camera_names == ["cam_01", "cam_02", "cam_03"]
    assert [v.video.name for v in seq.views] == ["cam01.mp4", "cam_02.avi", "cam-03.webm"]
    assert [v.codec for v in seq.views] == ["h264", "mjpeg", "vp9"]
    assert [v.camera.size for v in seq.views] == [(64, 48), (32, 24), (48, 48)]
    assert not any("sorted order" in n for n in seq.notes)
    # cam_02's calibration was made at 64x48: kept the video's size, intrinsics scaled, and said so
    assert any("cam_02" in n and "64x48" in n and "32x24" in n for n in seq.notes)
    X = poses(3).reshape(-1, 3)
    uv_full, uv_half = cams[1].project(X), seq.view("cam_02").camera.project(X)
    assert np.allclose(uv_half, (uv_full + 0.5) * 0.5 - 0.5, atol=1e-9)
    assert seq.poses3d is None and seq.boxes is None


def test_session_falls_back_to_sorted_order_with_note(tmp_path):
    cams = [make_camera("right"), make_camera("left", angle=1.0)]
    folder = write_sequence(tmp_path / "take", cams, {"a.avi": ("mjpeg", SIZE, 12), "b.avi": ("mjpeg", SIZE, 12)},
                            in_videos_dir=False)
    ds = open_dataset(folder)
    seq = ds.sequences[0]
    assert seq.view("left").video.name == "a.avi" and seq.view("right").video.name == "b.avi"
    assert any("sorted order" in n and "left <- a.avi" in n for n in seq.notes)
    assert any("sorted order" in n for n in ds.notes)


def test_session_poses_metres_are_flagged(tmp_path):
    folder = simple_sequence(tmp_path / "s", 12, poses3d=poses(12) / 1000.0)
    seq = open_dataset(folder).sequences[0]
    assert any("metres" in n for n in seq.notes)


# ---------------------------------------------------------------- generic dataset root


def test_layout_sequences_splits_labels_truncation(tmp_path):
    root = make_layout(tmp_path / "ds")
    assert detect_layout(root) == "dataset"
    ds = open_dataset(root)
    assert ds.name == "tiny" and ds.fps == 25 and ds.subjects == ["S1", "S2"]
    assert [s.key for s in ds.sequences] == ["S1/jump_01", "S1/walk_00", "S2/walk_00"]
    assert [s.key for s in ds.split("train")] == ["S1/jump_01", "S1/walk_00"]
    assert [s.key for s in ds.split("test")] == ["S2/walk_00"]
    walk = ds.sequences[1]
    assert walk.action == "walk" and ds.sequences[0].action == "jump"
    assert [v.num_frames for v in walk.views] == [20, 23] and walk.num_frames == 20
    assert any("truncated to the shortest, 20" in n and "cam_02.avi: 23" in n for n in walk.notes)
    assert any(n.startswith("S1/walk_00:") and "truncated" in n for n in ds.notes)
    assert walk.poses3d.shape == (20, 17, 3) and walk.poses3d.dtype == np.float32
    assert np.allclose(walk.poses3d, poses(20))
    assert walk.boxes.shape == (20, 2, 4)
    assert list(walk.masks) == ["cam_01"]
    assert ds.sequences[0].poses3d is None and not ds.sequences[0].masks
    assert any("S3" in n and "not a subject" in n for n in ds.notes)


def test_layout_poses_truncated_within_tolerance(tmp_path):
    folder = simple_sequence(tmp_path / "s", 20, poses3d=poses(18))
    seq = open_dataset(folder).sequences[0]
    assert seq.num_frames == 18 and seq.poses3d.shape[0] == 18
    assert any("18 poses for 20 frames" in n for n in seq.notes)
    np.save(folder / "poses3d.npy", poses(23))
    np.save(folder / "boxes.npy", np.zeros((22, 2, 4), np.float32))
    seq = open_dataset(folder).sequences[0]
    assert seq.num_frames == 20 and seq.poses3d.shape[0] == 20 and seq.boxes.shape[0] == 20
    assert np.array_equal(seq.poses3d, poses(23)[:20])


def test_layout_subject_missing_on_disk(tmp_path):
    root = make_layout(tmp_path / "ds")
    shutil.rmtree(root / "S2")
    with pytest.raises(DataError, match="S2") as e:
        open_dataset(root)
    assert e.value.path == root / "S2" and "missing" in e.value.problem


def test_layout_skip_broken_keeps_the_rest(tmp_path):
    root = make_layout(tmp_path / "ds")
    (root / "S1" / "jump_01" / "calibration.toml").write_text("[cam_01\nsize = 3")
    ds = open_dataset(root, skip_broken=True)
    assert [s.key for s in ds.sequences] == ["S1/walk_00", "S2/walk_00"]
    assert any("skipped broken sequence S1/jump_01" in n for n in ds.notes)


# ---------------------------------------------------------------- Human3.6M

H36M_17_OF_32 = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]  # DESIGN.md, written out


def h36m_pose32(n):
    """(1, n, 96): joint j of frame i at (1000 i + j, 100 j, 900 + j), so every joint is recognisable."""
    i, j = np.meshgrid(np.arange(n), np.arange(32), indexing="ij")
    p = np.stack([1000.0 * i + j, 100.0 * j, 900.0 + j], -1)
    return p.reshape(1, n, 96)


def write_cdf(path, pose):
    from cdflib.cdfwrite import CDF
    path.parent.mkdir(parents=True, exist_ok=True)
    c = CDF(str(path))
    c.write_var({"Variable": "Pose", "Data_Type": CDF.CDF_FLOAT, "Num_Elements": 1, "Rec_Vary": True,
                 "Dim_Sizes": list(pose.shape[1:])}, var_data=pose.astype(np.float32))
    c.close()


def make_h36m(root, *, subjects=("S1", "S9"), n=20, longer=2):
    root = Path(root)
    for s in subjects:
        vdir = root / s / "Videos"
        vdir.mkdir(parents=True)
        for seq in ("Walking 1", "TakingPhoto"):
            for k, cam in enumerate(H36M_CAMERA_IDS):
                m = n + (longer if k == 2 and seq == "Walking 1" else 0)
                write_video(vdir / f"{seq}.{cam}.mp4", frames(m, (32, 32) if k % 2 else (32, 34)), 50, "h264")
            write_cdf(root / s / "MyPoseFeatures" / "D3_Positions" / f"{seq}.cdf", h36m_pose32(n))
        write_video(vdir / f"_ALL.{H36M_CAMERA_IDS[0]}.mp4", frames(4, (32, 32)), 50, "h264")
    return root


def test_h36m_reader(tmp_path):
    root = make_h36m(tmp_path / "h36m")
    assert detect_layout(root) == "h36m"
    ds = open_dataset(root)
    assert ds.source == "h36m" and ds.fps == 50 and ds.splits == {"train": ["S1"], "test": ["S9"]}
    assert [s.key for s in ds.sequences] == ["S1/TakingPhoto", "S1/Walking 1", "S9/TakingPhoto", "S9/Walking 1"]
    photo, walk = ds.sequences[:2]
    assert photo.action == "Photo" and walk.action == "Walking"
    assert walk.camera_names == list(H36M_CAMERA_IDS)
    assert [v.num_frames for v in walk.views] == [20, 20, 22, 20] and walk.num_frames == 20
    assert any("truncated to the shortest, 20" in n for n in walk.notes)
    assert any("S1/Walking 1:" in n and "truncated" in n for n in ds.notes)
    assert any("_ALL" in n and "skipped 1" in n for n in ds.notes)
    # 32 -> 17 joints: the joints of the written-out list, in order
    assert walk.poses3d.shape == (20, 17, 3)
    for k, j in enumerate(H36M_17_OF_32):
        assert np.allclose(walk.poses3d[:, k], np.stack([1000.0 * np.arange(20) + j, np.full(20, 100.0 * j),
                                                         np.full(20, 900.0 + j)], -1))
    # cameras from the shipped table, sized from the videos
    for v in walk.views:
        assert v.camera.model == "h36m" and v.codec == "h264"
        assert v.camera.size == ((32, 34) if H36M_CAMERA_IDS.index(v.name) % 2 == 0 else (32, 32))
        table = h36m_camera("S1", v.name)
        assert np.allclose(v.camera.K, table.K) and np.allclose(v.camera.R, table.R)
        X = np.array([0.0, 0.0, 900.0])
        depth = v.camera.world_to_camera(X)[2]
        assert 3800 < depth < 5800  # "4-5.5 m"; a few cameras sit a little beyond 5.5 m
        uv = v.camera.project(X)  # near the centre of the table's nominal ~1000x1000 frame
        assert np.all(np.abs(uv - np.array(table.size) / 2) < 200), uv


def test_h36m_pose_length_mismatch(tmp_path):
    root = make_h36m(tmp_path / "h36m", subjects=("S1",))
    cdf = root / "S1" / "MyPoseFeatures" / "D3_Positions" / "Walking 1.cdf"
    cdf.unlink()
    write_cdf(cdf, h36m_pose32(40))
    with pytest.raises(DataError, match="labels do not match the frames: 40 poses vs 20 frames") as e:
        open_dataset(root)
    assert e.value.path == cdf


def test_h36m_missing_camera_and_unreadable_cdf(tmp_path):
    root = make_h36m(tmp_path / "h36m", subjects=("S1",))
    video = root / "S1" / "Videos" / f"TakingPhoto.{H36M_CAMERA_IDS[1]}.mp4"
    video.unlink()
    with pytest.raises(DataError, match=H36M_CAMERA_IDS[1]) as e:
        open_dataset(root)
    assert e.value.path == video and "missing" in e.value.problem
    shutil.rmtree(root / "S1" / "Videos")
    root = make_h36m(tmp_path / "h36m2", subjects=("S1",))
    cdf = root / "S1" / "MyPoseFeatures" / "D3_Positions" / "TakingPhoto.cdf"
    cdf.write_bytes(b"not a cdf at all" * 10)
    with pytest.raises(DataError, match="Pose") as e:
        open_dataset(root)
    assert e.value.path == cdf


# ---------------------------------------------------------------- bad input


def _corrupt(folder):
    p = folder / "videos" / "cam_02.avi"
    p.write_bytes(b"\x00garbage" * 200)
    return p, "readable|corrupt|no video"


def _truncate(folder):
    p = folder / "videos" / "cam_02.avi"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p, "truncated"


def _video_without_table(folder):
    p = folder / "videos" / "cam_03.avi"
    write_video(p, frames(20), 25, "mjpeg")
    return p, "no camera table"


def _table_without_video(folder):
    (folder / "videos" / "cam_02.avi").unlink()
    return folder, "cam_02.*has no video"


def _bad_toml(folder):
    p = folder / "calibration.toml"
    p.write_text("[cam_01\nsize = [64, 48]\n")
    return p, "parse"


def _no_toml(folder):
    p = folder / "calibration.toml"
    p.unlink()
    return p, "missing"


def _poses_too_long(folder):
    p = folder / "poses3d.npy"
    np.save(p, poses(60))
    return p, "labels do not match the frames: 60 poses vs 20 frames"


def _poses_bad_shape(folder):
    p = folder / "poses3d.npy"
    np.save(p, poses(20)[:, :16])
    return p, r"\(T, 17, 3\)"


def _poses_nan(folder):
    p = folder / "poses3d.npy"
    a = poses(20)
    a[7, 3, 1] = np.nan
    np.save(p, a)
    return p, "NaN.*frame 7"


def _counts_far_apart(folder):
    p = folder / "videos" / "cam_02.avi"
    write_video(p, frames(50), 25, "mjpeg")
    return p, "frame counts differ by 30, more than the tolerance"


def _aspect_mismatch(folder):
    p = folder / "videos" / "cam_02.avi"
    write_video(p, frames(20, (48, 48)), 25, "mjpeg")
    return folder / "calibration.toml", "aspect ratio"


@pytest.mark.parametrize("damage", [_corrupt, _truncate, _video_without_table, _table_without_video, _bad_toml,
                                    _no_toml, _poses_too_long, _poses_bad_shape, _poses_nan, _counts_far_apart,
                                    _aspect_mismatch])
def test_bad_input_names_file_and_problem(tmp_path, damage):
    root = make_layout(tmp_path / "ds")
    folder = root / "S1" / "jump_01"
    np.save(folder / "poses3d.npy", poses(12))
    simple_sequence(folder, 20, poses3d=poses(20))  # rewrite it at 20 frames, labelled
    path, problem = damage(folder)
    with pytest.raises(DataError, match=problem) as e:
        open_dataset(root)
    assert e.value.path == path, str(e.value)


def test_unknown_layout_and_missing_path(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="dataset.json.*S\\*/Videos.*calibration.toml") as e:
        open_dataset(tmp_path / "stuff")
    assert e.value.path == tmp_path / "stuff"
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")


def test_bad_dataset_json(tmp_path):
    root = make_layout(tmp_path / "ds")
    meta = json.loads((root / "dataset.json").read_text())
    meta["splits"]["test"] = ["S7"]
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="S7") as e:
        open_dataset(root)
    assert e.value.path == root / "dataset.json"
