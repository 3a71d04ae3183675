"""``syncssl-data inspect`` (report and CLI) and ``syncssl-data preview`` (PNG grid, joints where projected)."""
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from test_sources import make_camera, make_layout

from syncssl.cli import data
from syncssl.data.decode.video import read_frames, write_video
from syncssl.data.sources import open_dataset
from syncssl.data.sources.calibration import write_calibration
from syncssl.data.sources.inspect import decoders_for, inspect_dataset
from syncssl.data.sources.preview import BOX_COLOUR, SIDE_COLOURS, preview_instants, render_preview
from syncssl.geometry import H36M17

# A standing person facing +x (towards the camera at angle 0), joints in H36M17 order, mm; left is +y.
STANDING = np.array([
    [0, 0, 950], [0, -120, 950], [0, -120, 520], [0, -120, 90], [0, 120, 950], [0, 120, 520], [0, 120, 90],
    [0, 0, 1180], [0, 0, 1450], [0, 0, 1550], [0, 0, 1690], [0, 180, 1420], [0, 200, 1150], [0, 210, 900],
    [0, -180, 1420], [0, -200, 1150], [0, -210, 900]], np.float64)


def walking(n):
    """(n, 17, 3): the standing pose drifting sideways and swinging its arms, so every frame differs."""
    t = np.arange(n)[:, None]
    p = np.repeat(STANDING[None], n, 0)
    p[..., 1] += 25.0 * (t - n / 2)
    swing = 120.0 * np.sin(t / 3.0)
    p[:, [12, 13], 0] += swing  # left arm forward ...
    p[:, [15, 16], 0] -= swing  # ... right arm back
    return p.astype(np.float32)


def grey(c, i):
    return 30 + 9 * i + 40 * c


def flat_session(folder, n=16, size=(64, 48), poses3d=True, boxes=None):
    """Two cameras (mjpeg, h264) whose frame i of camera c is the flat grey level grey(c, i)."""
    folder = Path(folder)
    (folder / "videos").mkdir(parents=True)
    cams = [make_camera("front", size, angle=0.0), make_camera("side", size, angle=0.6)]
    write_calibration(folder / "calibration.toml", cams)
    w, h = size
    for c, (cam, codec) in enumerate(zip(cams, ("mjpeg", "h264"))):
        frames = [np.full((h, w, 3), grey(c, i), np.uint8) for i in range(n)]
        write_video(folder / "videos" / f"{cam.name}.{'avi' if codec == 'mjpeg' else 'mp4'}", frames, 25, codec)
    if poses3d:
        np.save(folder / "poses3d.npy", walking(n))
    if boxes is not None:
        np.save(folder / "boxes.npy", boxes)
    return folder, cams


def pinhole(cam, X):
    """Plain pinhole projection written out (the fixture cameras have no distortion)."""
    Xc = X @ cam.R.T + cam.t
    return (Xc[:, :2] / Xc[:, 2:]) @ cam.K[:2, :2].T + cam.K[:2, 2]


def rendered(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(int)


def pixel(img, ax, uv):
    x, y = ax.transData.transform(uv)
    return img[int(round(img.shape[0] - y)), int(round(x))]


def rgb(hex_colour):
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


# ---------------------------------------------------------------- inspect


def test_decoders_per_codec():
    assert decoders_for("mjpeg") == ["DALI GPU (NVDEC)", "DALI CPU", "PyAV"]
    assert decoders_for("h264") == ["DALI GPU (NVDEC)", "PyAV"]
    assert decoders_for("vp8") == ["DALI CPU", "PyAV"]
    assert decoders_for("prores") == ["PyAV"]


def test_inspect_report(tmp_path):
    root = make_layout(tmp_path / "ds")
    r = inspect_dataset(root)
    assert r.layout == "dataset" and r.name == "tiny" and r.fps == 25
    assert [s.key for s in r.sequences] == ["S1/jump_01", "S1/walk_00", "S2/walk_00"]
    assert r.labelled_sequences == 1 and r.num_frames == 12 + 20 + 14 and r.num_videos == 6
    walk = r.sequences[1]
    assert walk.poses and walk.boxes and walk.masks and walk.num_frames == 20
    assert r.codecs == {"mjpeg": (6, ["DALI GPU (NVDEC)", "DALI CPU", "PyAV"])}
    assert [c.name for c in r.cameras] == ["cam_01", "cam_02"] and r.cameras[0].sizes == [(64, 48)]
    assert any("truncated" in n for n in r.notes)


def test_cli_inspect_valid_session(tmp_path):
    folder, _ = flat_session(tmp_path / "rig")
    res = CliRunner().invoke(data, ["inspect", str(folder), "--deep"])
    assert res.exit_code == 0, res.output
    for word in ("single session", "front", "side", "h264", "mjpeg", "DALI GPU (NVDEC), PyAV", "every frame decoded",
                 "valid"):
        assert word in res.output, word


def test_cli_inspect_broken_names_the_file(tmp_path):
    root = make_layout(tmp_path / "ds")
    bad = root / "S2" / "walk_00" / "videos" / "cam_01.avi"
    bad.write_bytes(bad.read_bytes()[:300])
    res = CliRunner().invoke(data, ["inspect", str(root)])
    assert res.exit_code != 0
    assert "Error:" in res.output and "cam_01.avi" in res.output and "Traceback" not in res.output
    # the same dataset inspected with --skip-broken: valid, the broken sequence reported as a note
    res = CliRunner().invoke(data, ["inspect", str(root), "--skip-broken"])
    assert res.exit_code == 0 and "skipped broken sequence S2/walk_00" in res.output


def test_cli_inspect_unknown_layout(tmp_path):
    res = CliRunner().invoke(data, ["inspect", str(tmp_path)])
    assert res.exit_code != 0 and str(tmp_path) in res.output and "not a dataset" in res.output


# ---------------------------------------------------------------- preview


def test_preview_instants_spread():
    assert preview_instants(20, 4) == [2, 7, 12, 17]
    assert preview_instants(3, 5) == [0, 1, 2]
    assert preview_instants(1, 1) == [0]


def test_preview_draws_joints_where_they_project(tmp_path):
    folder, cams = flat_session(tmp_path / "rig")
    seq = open_dataset(folder).sequences[0]
    ts = preview_instants(seq.num_frames, 3)
    frames = [read_frames(v.video, ts) for v in seq.views]
    fig, axes = render_preview(seq, ts, frames, cell_inches=4.0)
    img = rendered(fig)
    assert axes.shape == (2, 3)
    X = walking(seq.num_frames)
    checked = 0
    for c, cam in enumerate(cams):
        for k, t in enumerate(ts):
            ax = axes[c, k]
            # the frame shown is camera c at instant t: its corner holds that frame's grey level
            assert np.all(np.abs(pixel(img, ax, (2, 2)) - grey(c, t)) <= 6), (c, t, pixel(img, ax, (2, 2)))
            uv = pinhole(cam, X[t].astype(np.float64))
            disp = ax.transData.transform(uv)
            for j in range(17):
                px = pixel(img, ax, uv[j])
                assert np.abs(px - grey(c, t)).max() > 40, f"joint {j} of camera {c} at frame {t} not drawn"
                side = H36M17.side(j)
                others = [i for i in range(17) if H36M17.side(i) != side]
                if np.min(np.linalg.norm(disp[others] - disp[j], axis=1)) > 9:  # no dot of another colour on top
                    assert np.abs(px - rgb(SIDE_COLOURS[side])).max() <= 40, (j, side, px)
                    checked += 1
    assert checked >= 30  # most joints are isolated at this scale: the colour test really ran
    # a point away from the person is left as the frame
    ax = axes[0, 0]
    assert np.all(np.abs(pixel(img, ax, (60, 44)) - grey(0, ts[0])) <= 6)


def test_preview_boxes_without_poses(tmp_path):
    n = 12
    boxes = np.tile(np.array([[[10, 8, 50, 40]]], np.float32), (n, 2, 1))
    folder, _ = flat_session(tmp_path / "rig", n=n, poses3d=False, boxes=boxes)
    seq = open_dataset(folder).sequences[0]
    ts = preview_instants(n, 2)
    fig, axes = render_preview(seq, ts, [read_frames(v.video, ts) for v in seq.views], cell_inches=4.0)
    img = rendered(fig)
    for ax in axes.ravel():
        assert np.abs(pixel(img, ax, (30, 8)) - rgb(BOX_COLOUR)).max() <= 40  # top edge of the box
        assert np.abs(pixel(img, ax, (30, 24)) - rgb(BOX_COLOUR)).max() > 60  # its inside is not drawn over


def test_cli_preview_writes_png_grid(tmp_path):
    from matplotlib.image import imread
    root = make_layout(tmp_path / "ds")
    res = CliRunner().invoke(data, ["preview", str(root), "--instants", "3"])
    assert res.exit_code == 0, res.output
    out = root / "preview.png"
    assert res.output.strip() == str(out)
    img = imread(out)
    # 3 columns of 3-inch cells at 100 dpi; 2 camera rows of 64x48 frames (plus titles)
    assert img.shape[1] == 900 and 2 * 225 < img.shape[0] < 2 * 225 + 150, img.shape
    assert img[..., :3].std() > 0.05  # not a blank canvas
    other = tmp_path / "p" / "unlabelled.png"
    res = CliRunner().invoke(data, ["preview", str(root), "--sequence", "S2/walk_00", "--out", str(other),
                                    "--instants", "2"])
    assert res.exit_code == 0, res.output
    assert imread(other).shape[1] == 600
    res = CliRunner().invoke(data, ["preview", str(root), "--sequence", "S9/nothing"])
    assert res.exit_code != 0 and "no sequence 'S9/nothing'" in res.output and "S1/walk_00" in res.output
