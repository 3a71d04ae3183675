"""Person tiles: cut once by prepare's decoding pass, checked, repaired, and JPEG records when raw ones do not fit."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from syncssl.data.preparation.prepare import prepare
from syncssl.data.preparation.tiles import TileSpec, TileStore, resolve_format
from syncssl.data.sources import open_dataset


@pytest.fixture()
def dataset(tiny_dataset, tmp_path):
    """A private copy of the tiny dataset (prepared), so that tests may damage its tiles."""
    root = tmp_path / "tiny"
    shutil.copytree(tiny_dataset, root)
    return root


def spec(**kw) -> TileSpec:
    return TileSpec.for_jitter(32, 0.05, 0.1, **kw)  # the tiny preset's crop and jitter


def test_tile_geometry_holds_every_jittered_crop():
    s = TileSpec.for_jitter(64, 0.05, 0.1)
    assert s.margin == pytest.approx(1.21) and s.size % 8 == 0
    # the largest jittered box: side x exp(0.1), centre moved by 0.05 side: inside margin x side
    assert 2 * 0.05 + np.exp(0.1) <= s.margin
    # at least the resolution of the finest crop (the box shrunk by exp(-0.1), sampled at 64)
    assert s.size / s.margin >= 64 * np.exp(0.1)


def test_prepare_cuts_one_tile_per_camera_frame_and_reuses_them(dataset):
    report = prepare(open_dataset(dataset), dataset / "prepared", tiles=spec(), crop_size=32)
    store = TileStore(report.tiles)
    m = report.manifest
    assert store.count == sum(s.num_frames * len(s.cameras) for s in m.sequences)
    assert store.frames(np.array([0, store.count - 1])).shape == (2, store.spec.size, store.spec.size, 3)
    assert store.has_backgrounds and store.stats["bytes_per_tile"] == 2 * store.spec.bytes_per_tile()
    assert "reused" in prepare(open_dataset(dataset), dataset / "prepared", tiles=spec(), crop_size=32).tiles_note
    # each tile's rect holds its crop box (with room for the jitter) inside the frame
    rects = store.rects.numpy()
    for i, s in enumerate(m.sequences):
        w, h = s.cameras[0].size
        rows = store.layout.row(i, 0, np.arange(s.num_frames))
        r, b = rects[rows], s.boxes[:, 0]
        assert (r[:, 0] >= 0.5).all() and (r[:, 2] <= w - 0.5).all() and (r[:, 3] <= h - 0.5).all()
        inside = (b[:, 0] >= 0.5) & (b[:, 2] <= w - 0.5) & (b[:, 1] >= 0.5) & (b[:, 3] <= h - 0.5)
        assert (r[inside, :2] <= b[inside, :2] + 1e-3).all() and (r[inside, 2:] >= b[inside, 2:] - 1e-3).all()


def test_a_damaged_block_is_found_and_cut_again(dataset):
    report = prepare(open_dataset(dataset), dataset / "prepared", tiles=spec(), crop_size=32)
    store = TileStore(report.tiles)
    first = store.layout.row(1, 2, 0)  # sequence 1, camera 2: one block
    good = store.frames(np.arange(first, first + 5)).clone()
    with open(report.tiles / "frames.u8", "r+b") as f:  # damage a few bytes in the middle of that block
        f.seek(int(first + 3) * store.spec.bytes_per_tile() + 100)
        f.write(b"\xff" * 64)
    again = prepare(open_dataset(dataset), dataset / "prepared", tiles=spec(), crop_size=32)
    assert "1 damaged blocks" in again.tiles_note
    assert torch.equal(TileStore(again.tiles).frames(np.arange(first, first + 5)), good)


def test_stale_tiles_are_rebuilt_when_the_boxes_change(dataset):
    report = prepare(open_dataset(dataset), dataset / "prepared", tiles=spec(), crop_size=32)
    meta = json.loads((report.tiles / "meta.json").read_text())
    meta["manifest"] = "another manifest"
    (report.tiles / "meta.json").write_text(json.dumps(meta))
    again = prepare(open_dataset(dataset), dataset / "prepared", tiles=spec(), crop_size=32)
    assert "another manifest" in again.tiles_note and TileStore(again.tiles).count == meta["count"]
    (report.tiles / "meta.json").unlink()  # an interrupted build: no meta, no set
    assert "no complete tile set" in prepare(open_dataset(dataset), dataset / "prepared", tiles=spec(),
                                             crop_size=32).tiles_note


def test_too_large_for_raw_tiles_goes_to_jpeg_records(dataset, monkeypatch):
    import syncssl.data.preparation.tiles as tiles
    monkeypatch.setattr(tiles, "memory_bytes", lambda: 1 << 20)  # a machine with 1 MiB: raw tiles do not fit
    auto = spec(format="auto")
    assert resolve_format(auto, 10**6).format == "jpeg" and resolve_format(auto, 1).format == "raw"
    report = prepare(open_dataset(dataset), dataset / "prepared", tiles=auto, crop_size=32)
    assert report.tiles.name.endswith("-jpeg") and (report.tiles / "frames.jpg").is_file()
    jpeg = TileStore(report.tiles)
    raw = TileStore(prepare(open_dataset(dataset), dataset / "prepared", tiles=spec(), crop_size=32).tiles)
    rows = np.array([0, 7, raw.count - 1])
    diff = (jpeg.frames(rows).float() - raw.frames(rows).float()).abs()
    assert diff.mean() < 4  # JPEG at quality 90: a few levels
    assert jpeg.stats["bytes_per_tile"] < 0.5 * raw.spec.bytes_per_tile()
    # and the training path reads them (backgrounds cut from the model per batch)
    from syncssl.data.loading.loader import TileViews, ViewAssembler
    m = report.manifest
    views = TileViews(m, m.split("train"), jpeg, torch.device("cpu"))
    images, ok = ViewAssembler(m, m.split("train"), views, crop_size=32)([(0, 0, 3), (0, 1, 3)],
                                                                          np.zeros(2, bool), np.zeros((2, 3)), 0)
    assert ok.all() and images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()


def test_every_store_of_a_tile_set_shares_one_mapping(dataset):
    # training's store and each evaluation split's: mapped (and populated) once per process, not once per store;
    # each mapping of its own counted the whole set again in the resident memory
    folder = prepare(open_dataset(dataset), dataset / "prepared", tiles=spec(), crop_size=32).tiles
    a, b = TileStore(folder), TileStore(folder)
    assert np.shares_memory(a._frames, b._frames) and np.shares_memory(a._backgrounds, b._backgrounds)
    rows = np.array([5, 0, 5, a.count - 1])
    assert torch.equal(a.frames(rows), torch.from_numpy(np.asarray(a._frames)[rows]))
    assert torch.equal(a.backgrounds(rows), torch.from_numpy(np.asarray(a._backgrounds)[rows]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tiles_reach_the_gpu_through_page_locked_memory(dataset):
    from syncssl.data.loading.loader import TileViews
    folder = prepare(open_dataset(dataset), dataset / "prepared", tiles=spec(), crop_size=32).tiles
    store = TileStore(folder)
    assert store.frames(np.arange(4), pin=True).is_pinned()
    from syncssl.data.preparation.manifest import Manifest
    manifest = Manifest.load(dataset / "prepared" / "manifest.json")
    idx = manifest.split("train")
    views = [(0, 0, 3), (0, 1, 3), (1, 2, 7)]
    cpu = TileViews(manifest, idx, store, torch.device("cpu")).gather(views, 0)
    gpu = TileViews(manifest, idx, store, torch.device("cuda", 0)).gather(views, 0)
    assert gpu.frames.is_cuda and torch.equal(gpu.frames.cpu(), cpu.frames)
    assert torch.equal(gpu.backgrounds.cpu(), cpu.backgrounds)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_jpeg_tiles_decode_on_the_gpu_with_nvjpeg(dataset, monkeypatch):
    from syncssl.data.decode import dali_available
    if not dali_available():
        pytest.skip("NVIDIA DALI is not installed")
    import syncssl.data.preparation.tiles as tiles
    monkeypatch.setattr(tiles, "memory_bytes", lambda: 1 << 20)  # JPEG records
    jpeg = TileStore(prepare(open_dataset(dataset), dataset / "prepared", tiles=spec(format="auto"),
                             crop_size=32).tiles)
    rows = np.array([0, 7, jpeg.count - 1])
    on_gpu = jpeg.frames(rows, device=torch.device("cuda", 0))
    on_cpu = jpeg.frames(rows)
    assert on_gpu.is_cuda and on_gpu.shape == on_cpu.shape
    assert (on_gpu.cpu().float() - on_cpu.float()).abs().mean() < 2  # two JPEG decoders: a level at most
