"""Bad input and faults a user study ran into: each gives one clear first line naming the file (or config key)
and the problem, and never a traceback from the CLI; or it is survived correctly.

Every fixture is written here and small: videos of 64x48 noise (so that every frame's data is large enough
to damage), calibration files, configs.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_sources import make_camera, simple_sequence, write_sequence

from syncssl import cli
from syncssl.data.decode import video as vid  # iter_frames and read_frames_at are looked up in the tests
from syncssl.data.decode.video import probe, read_frames, write_video
from syncssl.data.sources import open_dataset
from syncssl.errors import CheckpointError, DataError

av = pytest.importorskip("av")  # PyAV writes and reads every video here


def first_line(result) -> str:
    """The CLI's first line of output; a clean failure prints ``Error: ...`` and nothing before it."""
    # CliRunner catches what escapes the command: a traceback a user would see is result.exception here
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    return result.output.strip().splitlines()[0]


def noise(n, size=(64, 48), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size[1], size[0], 3), dtype=np.uint8)


def packet_span(path: Path, frame: int) -> tuple[int, int]:
    """(file offset, size) of frame ``frame``'s packet."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        packets = sorted((p.pts, p.pos, p.size) for p in c.demux(s) if p.size > 0)
    return packets[frame][1], packets[frame][2]


def damage(path: Path, frame: int, before: int = 0, seed: int = 0) -> Path:
    """Random bytes over frame ``frame``'s data (and ``before`` bytes ahead of it): the size stays the same."""
    pos, size = packet_span(path, frame)
    data = bytearray(path.read_bytes())
    data[pos - before:pos + size] = np.random.default_rng(seed).integers(0, 256, size + before, np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def noise_session(folder: Path, codec: str, n: int = 20) -> tuple[Path, Path]:
    """A session of two cameras whose frames are noise; returns (folder, the second camera's video)."""
    ext = {"mjpeg": ".avi", "h264": ".mp4"}[codec]
    cams = [make_camera("cam_01"), make_camera("cam_02", angle=1.0)]
    write_sequence(folder, cams, {})
    for i, c in enumerate(cams):
        write_video(folder / "videos" / f"{c.name}{ext}", noise(n, seed=i), 25, codec)
    return folder, folder / "videos" / f"cam_02{ext}"


# ---------------------------------------------------------------- 1. damage inside a video


@pytest.mark.parametrize("codec", ["h264", "mjpeg"])
def test_damage_in_the_middle_is_found_by_deep_inspect_and_named_by_every_reader(tmp_path, codec):
    folder, video = noise_session(tmp_path / "rig", codec)
    damage(video, 10)  # the frame's data only: every packet is still there
    res = CliRunner().invoke(cli.data, ["inspect", str(folder), "--deep"])
    assert res.exit_code != 0
    assert first_line(res).startswith(f"Error: {video}: corrupt: frame 10 does not decode (")
    for read in (lambda: read_frames(video), lambda: list(vid.iter_frames(video, 20)),
                 lambda: vid.read_frames_at(video, [3, 12, 19])):
        with pytest.raises(DataError) as e:
            read()
        assert e.value.problem.startswith("corrupt: frame 10 does not decode (Invalid data"), e.value.problem
        assert e.value.path == video



def test_prepare_names_a_video_damaged_in_the_middle(tmp_path):
    from syncssl.data.preparation.prepare import prepare
    folder, video = noise_session(tmp_path / "rig", "h264")
    damage(video, 10)
    with pytest.raises(DataError) as e:  # its NAL framing gives it away before any decoding
        prepare(open_dataset(folder), tmp_path / "prepared")
    assert e.value.path == video and e.value.problem.startswith("corrupt: frame 10 is damaged (h264 data: a NAL unit")
    with pytest.raises(DataError) as e:  # and the decoding pass, given the dataset unchecked
        prepare(open_dataset(folder, verify="none"), tmp_path / "prepared")
    assert e.value.path == video and e.value.problem.startswith("corrupt: frame 10 does not decode")

def test_full_size_avi_with_a_damaged_frame_is_corrupt_not_truncated(tmp_path):
    folder, video = noise_session(tmp_path / "rig", "mjpeg")
    size = video.stat().st_size
    damage(video, 10, before=8)  # the chunk header too: the demuxer drops the frame
    assert video.stat().st_size == size
    with pytest.raises(DataError) as e:
        probe(video)  # the default, verify="ends"
    assert e.value.path == video and e.value.problem.startswith("corrupt: frame 10 does not decode")
    assert "not truncated" in e.value.problem
    res = CliRunner().invoke(cli.data, ["inspect", str(folder)])
    assert res.exit_code != 0 and first_line(res).startswith(f"Error: {video}: corrupt: frame 10 does not decode")
    with pytest.raises(DataError, match="holds only 19 decodable frames of the 20 its header promises"):
        list(vid.iter_frames(video, 20))
    # a real truncation is still called one
    video.write_bytes(video.read_bytes()[: size // 2])
    with pytest.raises(DataError) as e:
        probe(video)
    assert e.value.problem.startswith("truncated: the header promises 20 frames")


def test_file_digest_sees_damage_in_the_middle(tmp_path):
    from syncssl.data.preparation.manifest import file_digest
    path = write_video(tmp_path / "v.avi", noise(20, (128, 96)), 25, "mjpeg")
    assert path.stat().st_size > 3 * (1 << 16)  # the middle is outside the first and last 64 KiB
    before = file_digest(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    after = file_digest(path)
    assert after["bytes"] == before["bytes"] and after["sha1"] != before["sha1"]


# ---------------------------------------------------------------- 2. NaN / inf in a calibration


@pytest.mark.parametrize("key, value", [("translation", "[ 0.1, nan, 4.0]"),
                                        ("matrix", "[ [ 50.0, 0.0, inf], [ 0.0, 50.0, 23.5], [ 0.0, 0.0, 1.0]]"),
                                        ("distortions", "[ nan, 0.0, 0.0, 0.0]"),
                                        ("size", "[ 64.0, nan]"), ("rotation", "[ 0.0, -inf, 0.0]")])
def test_calibration_refuses_nan_and_inf_naming_file_camera_and_key(tmp_path, key, value):
    folder = simple_sequence(tmp_path / "rig", 12)
    calib = folder / "calibration.toml"
    lines = calib.read_text().splitlines()
    # the second camera's table: replace its line for this key
    at = next(i for i, line in enumerate(lines) if line.startswith(f"{key} =") and i > lines.index("[cam_02]"))
    lines[at] = f"{key} = {value}"
    calib.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        open_dataset(folder)
    assert e.value.path == calib
    assert e.value.problem.startswith(f"camera [cam_02]: {key} holds NaN or infinite values"), e.value.problem
    res = CliRunner().invoke(cli.data, ["inspect", str(folder)])
    assert res.exit_code != 0
    assert first_line(res) == f"Error: {calib}: {e.value.problem}"


# ---------------------------------------------------------------- 3. batch size and world size


def test_batch_size_not_divisible_by_the_processes_is_refused_before_launching(tmp_path, monkeypatch):
    launched = []
    monkeypatch.setattr(cli, "_launch_workers", lambda n, args, module: launched.append(n) or 0)
    res = CliRunner().invoke(cli.train, ["--preset", "tiny", "--nproc", "3", "train.batch_size=8",
                                         f"train.run_dir='{tmp_path / 'run'}'"])
    assert res.exit_code != 0 and not launched
    assert first_line(res) == ("Error: train.batch_size 8 is not divisible by the 3 processes of --nproc 3: each "
                               "takes batch_size / 3 pairs; use train.batch_size=6 or 9")
    # under torchrun (no CLI launcher) every rank says the same one line, before the process group
    from syncssl.errors import ConfigError
    from syncssl.train.config import load_config
    from syncssl.train.run import run_training
    monkeypatch.setenv("WORLD_SIZE", "3")
    cfg = load_config("tiny", None, ["train.batch_size=8", f"train.run_dir='{tmp_path / 'run'}'"])
    with pytest.raises(ConfigError, match="^train.batch_size 8 is not divisible by the 3 processes"):
        run_training(cfg)


# ---------------------------------------------------------------- 4. run directory


def _train_cli(run_dir, *extra):
    # a dataset that does not exist: the run directory must be refused before the data is looked at
    return CliRunner().invoke(cli.train, ["--preset", "tiny", "data.dataset='/nonexistent/dataset'",
                                          f"train.run_dir='{run_dir}'", *extra])


def test_run_dir_that_is_a_file_is_refused_before_the_data_loads(tmp_path):
    file = tmp_path / "run"
    file.write_text("not a folder")
    res = _train_cli(file)
    assert res.exit_code != 0
    assert first_line(res) == f"Error: train.run_dir: {file} is a file, not a folder; choose another run directory"
    res = _train_cli(file / "sub")
    assert first_line(res) == f"Error: train.run_dir: cannot create {file / 'sub'}: {file} is a file, not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere (the read-only test below covers it)")
def test_run_dir_not_writable_is_refused_before_the_data_loads(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        res = _train_cli(locked / "run")
    finally:
        locked.chmod(0o700)
    assert res.exit_code != 0
    assert first_line(res).startswith(f"Error: train.run_dir: cannot write in {locked} (permission denied)")


def test_run_dir_on_a_read_only_mount_is_refused(tmp_path, monkeypatch):
    # what a read-only mount (or a full disk) answers when the scratch file is created
    import tempfile

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    res = _train_cli(tmp_path / "run")
    assert res.exit_code != 0
    assert first_line(res) == (f"Error: train.run_dir: cannot write in {tmp_path / 'run'} (Read-only file system); "
                               "choose another run directory")


# ---------------------------------------------------------------- 5. --resume <checkpoint>/state.pt


def test_resume_accepts_a_checkpoint_its_state_pt_or_a_run_folder(tmp_path):
    import torch

    from syncssl.train import checkpoint as ckpt
    run = tmp_path / "run"
    step = ckpt.save(run / "checkpoints", 3, {"w": torch.ones(2)})
    for given in (step, step / "state.pt", step / "meta.json", run, run / "checkpoints"):
        assert ckpt.resolve_resume(str(given), tmp_path / "elsewhere")[0] == step, given
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "elsewhere").mkdir()
    for given, problem in ((tmp_path / "notes.txt", "is a file but not the state.pt of a checkpoint folder"),
                           (tmp_path / "nowhere", "does not exist"),
                           (tmp_path / "elsewhere", "no loadable checkpoint found")):
        with pytest.raises(CheckpointError) as e:
            ckpt.resolve_resume(str(given), tmp_path)
        assert str(e.value).startswith(f"{given}: {problem}"), str(e.value)
        assert "give a checkpoint folder (<run>/checkpoints/step-N), its state.pt, or a run folder" in str(e.value)


def test_cli_resume_from_state_pt_of_a_healthy_checkpoint(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    common = ["--preset", "tiny", f"data.dataset='{tiny_dataset}'", "train.eval_pairs=16", "train.ckpt_every=100"]
    res = CliRunner().invoke(cli.train, [*common, "--run-dir", str(run), "--steps", "2"])
    assert res.exit_code == 0, res.output
    state = run / "checkpoints" / "step-00000002" / "state.pt"
    res = CliRunner().invoke(cli.train, [*common, "--run-dir", str(tmp_path / "run2"), "--steps", "3",
                                         "--resume", str(state)])
    assert res.exit_code == 0, res.output
    assert f"resumed from {state.parent} at step 2" in res.output
    res = CliRunner().invoke(cli.train, [*common, "--run-dir", str(tmp_path / "run3"), "--resume",
                                         str(tmp_path / "missing")])
    assert res.exit_code != 0 and first_line(res).startswith(f"Error: {tmp_path / 'missing'}: does not exist; give")


# ---------------------------------------------------------------- 6. disk full while writing a checkpoint


class _FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes are written (what a full disk answers)."""

    def __init__(self, room: int):
        self.room, self.written = room, 0

    def write(self, b):
        if self.written + len(b) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.written += len(b)
        return len(b)

    def flush(self):
        pass


def _enospc_direct(monkeypatch, ckpt):
    import torch

    def save(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", save)


def _enospc_wrapped_by_torch(monkeypatch, ckpt):
    import torch
    real = torch.save

    def save(obj, f, *a, **k):  # torch's writer gets the ENOSPC and raises its own RuntimeError
        real(obj, _FullDisk(room=100), *a, **k)
    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(RuntimeError, match="inline_container") as e:  # what torch really raises
        save({"w": torch.ones(1000)}, None)
    assert isinstance(e.value.__context__, OSError) and e.value.__context__.errno == errno.ENOSPC


def _enospc_from_the_kernel(monkeypatch, ckpt):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    import builtins
    real_open = builtins.open

    def open_(path, mode="r", *a, **k):  # state.pt lands on /dev/full: every write fails with ENOSPC
        return real_open("/dev/full" if Path(path).name == "state.pt" else path, mode, *a, **k)
    monkeypatch.setattr(ckpt, "open", open_, raising=False)


@pytest.mark.parametrize("fill", [_enospc_direct, _enospc_wrapped_by_torch, _enospc_from_the_kernel])
def test_disk_full_while_writing_a_checkpoint_keeps_the_last_good_one(tmp_path, monkeypatch, fill):
    import torch

    from syncssl.train import checkpoint as ckpt
    folder = tmp_path / "checkpoints"
    ckpt.save(folder, 1, {"w": torch.ones(3)})
    fill(monkeypatch, ckpt)
    with pytest.raises(DataError) as e:
        ckpt.save(folder, 2, {"w": torch.full((100000,), 2.0)})
    line = str(e.value)
    assert line.startswith(f"no space left on {folder} while writing checkpoint step 2 ("), line
    assert line.endswith("free); the last good checkpoint, step-00000001, is kept") and "\n" not in line
    monkeypatch.undo()
    assert [p.name for p in folder.iterdir()] == ["step-00000001"]  # the partial folder is gone
    assert torch.equal(ckpt.load(folder / "step-00000001")["w"], torch.ones(3))


def test_disk_full_during_training_is_one_line_from_the_cli(tiny_dataset, tmp_path, monkeypatch):
    _enospc_wrapped_by_torch(monkeypatch, None)
    run = tmp_path / "run"
    res = CliRunner().invoke(cli.train, ["--preset", "tiny", f"data.dataset='{tiny_dataset}'", "--run-dir", str(run),
                                         "--steps", "2", "train.ckpt_every=100"])
    assert res.exit_code != 0
    assert f"Error: no space left on {run / 'checkpoints'} while writing checkpoint step 2" in res.output
    assert "Traceback" not in res.output and not any((run / "checkpoints").iterdir())


def test_translate_disk_errors_for_other_writers(tmp_path, monkeypatch):
    from syncssl.errors import DiskError
    from syncssl.storage import translate_disk_errors
    out = tmp_path / "prepared"
    with pytest.raises(DiskError) as e:
        with translate_disk_errors(out, "the background of S1/cam_01"):
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
    assert str(e.value) == f"disk quota exceeded on {out} while writing the background of S1/cam_01"
    assert e.value.path == out
    with pytest.raises(ValueError, match="unrelated"):  # anything else passes untouched
        with translate_disk_errors(out, "x"):
            raise ValueError("unrelated")
    # torch.save to a path loses the errno (only "inline_container ... iostream error"): a full disk tells
    from syncssl import storage
    torch_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    for free, expected in ((0, DiskError), (10 << 30, RuntimeError)):
        monkeypatch.setattr(storage, "free_bytes", lambda path, free=free: free)
        with pytest.raises(expected) as e:
            with translate_disk_errors(out, "x"):
                raise torch_error
        assert (str(e.value) == f"no space left on {out} while writing x (0 B free)") == (expected is DiskError)


# ---------------------------------------------------------------- 7. binary or non-UTF-8 JSON / TOML files

BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))


def test_binary_dataset_json_is_named(tmp_path):
    from test_sources import make_layout
    root = make_layout(tmp_path / "ds")
    meta = root / "dataset.json"
    meta.write_bytes(BINARY)
    res = CliRunner().invoke(cli.data, ["inspect", str(root)])
    assert res.exit_code != 0
    assert first_line(res) == f"Error: {meta}: not UTF-8 text (byte 0x89 at offset 0): a binary or damaged file"
    meta.write_text("[1, 2, 3]")  # valid JSON, but not an object
    res = CliRunner().invoke(cli.data, ["inspect", str(root)])
    assert first_line(res).startswith(f"Error: {meta}: expected a JSON object with name, fps, subjects and splits")


def test_non_utf8_calibration_is_named(tmp_path):
    folder = simple_sequence(tmp_path / "rig", 12)
    calib = folder / "calibration.toml"
    calib.write_bytes(calib.read_bytes().replace(b'name = "cam_02"', b'name = "cam_\xe902"'))  # Latin-1 e-acute
    offset = calib.read_bytes().index(b"\xe9")
    res = CliRunner().invoke(cli.data, ["inspect", str(folder)])
    assert res.exit_code != 0
    assert first_line(res) == f"Error: {calib}: not UTF-8 text (byte 0xe9 at offset {offset}): a binary or damaged file"


def test_binary_config_file_is_named(tmp_path):
    config = tmp_path / "run.toml"
    config.write_bytes(BINARY)
    res = CliRunner().invoke(cli.train, ["--preset", "tiny", "--config", str(config)])
    assert res.exit_code != 0
    assert first_line(res) == (f"Error: {config}: not UTF-8 text (byte 0x89 at offset 0): a binary or damaged "
                               "file, not a TOML config")


def test_binary_dataset_json_is_not_taken_for_a_synthetic_dataset(tmp_path):
    (tmp_path / "synthetic-tiny").mkdir()
    (tmp_path / "synthetic-tiny" / "dataset.json").write_bytes(BINARY)
    res = CliRunner().invoke(cli.data, ["synth", "--preset", "tiny", "--out", str(tmp_path / "synthetic-tiny")])
    assert res.exit_code != 0
    assert first_line(res).startswith(f"Error: {tmp_path / 'synthetic-tiny'} exists and holds files that are not a "
                                      "synthetic dataset")


# ---------------------------------------------------------------- 8. too many decode failures


def test_too_many_decode_failures_is_one_line_naming_the_files(tmp_path, monkeypatch):
    from syncssl.data.decode import FailurePolicy, FrameRequest, PyAVDecoder
    from syncssl.errors import TooManyDecodeFailures
    good = write_video(tmp_path / "good.avi", noise(12), 25, "mjpeg")
    bad = damage(write_video(tmp_path / "bad.avi", noise(12, seed=1), 25, "mjpeg"), 5)
    gone = tmp_path / "gone.avi"
    with PyAVDecoder(FailurePolicy(max_failure_share=0.4, grace_requests=0), num_threads=1) as d:
        with pytest.raises(TooManyDecodeFailures) as e:
            d.decode([FrameRequest(good, [1], "mjpeg"), FrameRequest(bad, [5], "mjpeg"),
                      FrameRequest(gone, [0], "mjpeg")])
    line = str(e.value)
    assert "\n" not in line and line.startswith("decoding failed for 2 files (")
    assert "more than the 40.0% allowed by data.max_decode_failures): " in line
    assert f"{bad}: corrupt: frame 5 does not decode (Invalid data" in line and f"{gone}: video file is missing" in line
    # the command line shows it as one clean error
    from syncssl.train import run

    def failing(cfg, **options):
        raise TooManyDecodeFailures(line)
    monkeypatch.setattr(run, "run_training", failing)
    res = CliRunner().invoke(cli.train, ["--preset", "tiny", f"train.run_dir='{tmp_path / 'run'}'"])
    assert res.exit_code != 0 and first_line(res) == f"Error: {line}"


# ---------------------------------------------------------------- 9. minor: notes and --help-config


def test_truncation_note_names_the_shorter_camera(tmp_path):
    folder = simple_sequence(tmp_path / "rig", 20, names=("left", "right", "top"), lengths=[20, 18, 20])
    (note,) = [n for n in open_dataset(folder).sequences[0].notes if "truncated" in n]
    assert note == ("camera right (right.avi) is shorter than the others: 18 frames, "
                    "against left.avi: 20, top.avi: 20; truncated to the shortest, 18 frames")


def test_help_config_shows_the_chosen_presets_values():
    from syncssl.train.config import load_config
    tiny = load_config("tiny", None, [])
    res = CliRunner().invoke(cli.train, ["--preset", "tiny", "--help-config"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in res.output.splitlines()
            if line.count("│") >= 3 and line.split("│")[1].strip()}
    assert "value (preset tiny)" in res.output
    assert rows["train.steps"] == str(tiny.train.steps) == "6" and rows["data.crop_size"] == "32"
    assert rows["optim.warmup_steps"] == "2"


# ---------------------------------------------------------------- 10. calibrated size vs video size


def _sized(calibrated, video_size):
    from syncssl.data.decode.video import VideoInfo
    from syncssl.data.sources.layout import _sized_camera
    cam = make_camera("cam_03", calibrated)
    info = VideoInfo(Path("cam_03.mp4"), "h264", *video_size, num_frames=10, fps=25.0, intra_only=False)
    return cam, *_sized_camera(Path("calibration.toml"), cam, info)


def test_resize_scales_the_intrinsics():
    cam, sized, notes = _sized((1920, 1080), (960, 540))
    assert sized.size == (960, 540) and np.isclose(sized.K[0, 0], cam.K[0, 0] / 2)
    assert notes == ["camera cam_03: the calibration says 1920x1080, the video cam_03.mp4 is 960x540; a resize: "
                     "intrinsics scaled by 0.5"]


@pytest.mark.parametrize("calibrated, video_size", [((1920, 1088), (1920, 1080)), ((1920, 1080), (1920, 1088)),
                                                    ((1088, 1920), (1080, 1920))])
def test_coded_size_padding_is_a_crop_not_a_resize(calibrated, video_size):
    cam, sized, notes = _sized(calibrated, video_size)
    assert sized.size == video_size and np.array_equal(sized.K, cam.K)  # scaling would move the edge ~14 px
    X = np.array([[1500.0, 900.0, 1400.0], [0.0, 0.0, 900.0]])
    assert np.allclose(sized.project(X), cam.project(X))
    w, h = calibrated
    assert notes == [f"camera cam_03: the calibration says {w}x{h}, the video cam_03.mp4 is "
                     f"{video_size[0]}x{video_size[1]}; a coded-size padding difference, taken as a crop: "
                     "intrinsics unchanged"]


@pytest.mark.parametrize("video_size", [(1440, 1080), (1920, 1060), (1900, 1080)])
def test_other_size_differences_are_refused(video_size):
    with pytest.raises(DataError) as e:
        _sized((1920, 1080), video_size)
    assert e.value.path == Path("calibration.toml")
    assert e.value.problem.startswith(f"camera [cam_03] is 1920x1080 but its video cam_03.mp4 is "
                                      f"{video_size[0]}x{video_size[1]}: neither a resize")


def test_session_with_padded_calibration_size_reads_as_a_crop(tmp_path):
    cams = [make_camera("cam_01"), make_camera("cam_02", (64, 56), angle=1.0)]  # calibrated on the coded size
    write_sequence(tmp_path / "rig", cams, {"cam_01.mp4": ("h264", (64, 48), 12), "cam_02.mp4": ("h264", (64, 48), 12)})
    seq = open_dataset(tmp_path / "rig").sequences[0]
    assert seq.view("cam_02").camera.size == (64, 48) and np.array_equal(seq.view("cam_02").camera.K, cams[1].K)
    assert any(n.startswith("camera cam_02: the calibration says 64x56, the video cam_02.mp4 is 64x48; a coded-size "
                            "padding difference, taken as a crop") for n in seq.notes)
