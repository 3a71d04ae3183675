"""syncssl-sync: the offset search, sync.toml and its plumbing into the sources and prepare, the command.

A tiny model trained for a few steps cannot find offsets, so the machinery is tested with planted scores (the
search alone) and with a stub scorer on a "mirror rig": every camera films the same video, shifted by a known
offset, so that a scorer comparing the crops' pixels peaks exactly at the truth, through the real data path.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from syncssl.data.decode.video import iter_frames, read_frames, write_video
from syncssl.data.sources import open_dataset
from syncssl.data.sources.calibration import read_calibration, write_calibration
from syncssl.data.sources.syncfile import SYNC_NAME, normalised, read_sync_file, write_sync_file
from syncssl.errors import DataError
from syncssl.sync import SyncOptions, apply_offsets, search, synchronize
from syncssl.sync.inject import shift_dataset, shift_sequence
from syncssl.sync.pipeline import LoadedModel, PairNetScorer
from syncssl.train.config import load_config

FAST = dict(replicates=40, joint_replicates=16, adapt_steps=0)  # the pixel stub is no model to adapt


class PixelScorer:
    """Embeds a crop as its 8x8 block means; a pair's log-odds fall with the crops' difference (two copies of
    one instant look alike, other instants do not)."""

    def embed(self, images):
        return F.avg_pool2d(images.float(), 4).flatten(1)

    def log_odds(self, a, b):
        return -(a - b).abs().mean(1) * 10


# The stub's own numbers for the domain check (what it reads on its own kind of data): far-apart instants read
# unsynchronized, cross-camera log-odds between -10 and 0.
STUB_REFERENCE = dict(same_frame_sync=0.0, far_apart_unsync=1.0, cross_q05=-10.0, cross_q50=-3.0, cross_q95=0.0)


def stub_model() -> LoadedModel:
    return LoadedModel(PixelScorer(), load_config("tiny"), None, 0, reference=STUB_REFERENCE)


def mirror_rig(src_seq: Path, out: Path, cameras=("cam_a", "cam_b", "cam_c")) -> Path:
    """A sequence folder whose cameras all hold the first camera's video (and calibration)."""
    out.mkdir(parents=True)
    cam = read_calibration(src_seq / "calibration.toml")[0]
    write_calibration(out / "calibration.toml", [dataclasses.replace(cam, name=c) for c in cameras])
    (out / "videos").mkdir()
    video = next((src_seq / "videos").glob(f"{cam.name}.*"))
    for c in cameras:
        shutil.copy(video, out / "videos" / f"{c}{video.suffix}")
    return out


TRUTH = {"cam_a": 0, "cam_b": 3, "cam_c": -2}


@pytest.fixture(scope="module")
def mirror_session(tiny_dataset, tmp_path_factory):
    """A bare session (calibration + videos) of the mirror rig, cam_b 3 frames early, cam_c 2 frames late and
    2 frames shorter; and the stub's result on it."""
    tmp = tmp_path_factory.mktemp("mirror")
    rig = mirror_rig(tiny_dataset / "S9" / "Walking_01", tmp / "rig")
    session = tmp / "session"
    shift_sequence(rig, session, TRUTH, trim_end={"cam_c": 2}, labels=False)
    result = synchronize(session, stub_model(), SyncOptions(max_offset_s=0.24, **FAST), progress=False,
                         log=lambda m: None)
    return session, result


# ---------------------------------------------------------------- the search on planted scores


def planted_curves(truth: dict[str, int], span: int, rng, n: int = 60, noise: float = 0.5, peak: float = 2.0):
    """Per-instant log-odds of every pair (a, b): +peak at the true offset truth[b] - truth[a], -1 elsewhere."""
    cams = list(truth)
    curves = {}
    for i, a in enumerate(cams):
        for b in cams[i + 1:]:
            s = span if i == 0 else 2 * span
            offsets = np.arange(-s, s + 1)
            L = np.where(offsets[None, :] == truth[b] - truth[a], peak, -1.0) + rng.normal(0, noise, (n, len(offsets)))
            curves[(a, b)] = search.Curve(a, b, offsets, L.astype(np.float32))
    return curves


def test_search_recovers_planted_offsets_exactly():
    rng = np.random.default_rng(0)
    truth = {"c1": 0, "c2": 7, "c3": -4, "c4": 2}
    curves = planted_curves(truth, 10, rng)
    pairs = {k: search.analyse_curve(c, rng=rng) for k, c in curves.items()}
    for (a, b), e in pairs.items():
        assert e.determined and e.offset == truth[b] - truth[a] and e.support > 0.95 and e.margin > 2
        assert e.interval == (e.offset, e.offset)
    direct = {b: pairs[("c1", b)] for b in ("c2", "c3", "c4")}
    joint = search.joint_offsets(list(truth), "c1", curves, 10, rng=rng, replicates=20, direct=direct)
    assert {c: e.offset for c, e in joint.items()} == truth
    assert all(t.consistent and t.residual == 0 for t in search.triplet_checks(list(truth), pairs))
    assert len(search.triplet_checks(list(truth), pairs)) == 4


def test_joint_places_a_camera_the_reference_sees_badly():
    """c3's pair with the reference is pure noise; its pairs with c2 and c4 are not: the joint search places it."""
    rng = np.random.default_rng(1)
    truth = {"c1": 0, "c2": 5, "c3": -6, "c4": 1}
    curves = planted_curves(truth, 8, rng, noise=0.4)
    curves[("c1", "c3")] = search.Curve("c1", "c3", np.arange(-8, 9), rng.normal(-1, 1.0, (60, 17)).astype(np.float32))
    direct = {b: search.analyse_curve(curves[("c1", b)], rng=rng) for b in ("c2", "c3", "c4")}
    joint = search.joint_offsets(list(truth), "c1", curves, 8, rng=rng, replicates=20, direct=direct)
    assert joint["c3"].determined and joint["c3"].offset == -6
    # coordinate ascent (used for large rigs) finds the same
    limit, search.EXHAUSTIVE_LIMIT = search.EXHAUSTIVE_LIMIT, 0
    try:
        again = search.joint_offsets(list(truth), "c1", curves, 8, rng=rng, replicates=8,
                                     start={c: e.best for c, e in direct.items()}, direct=direct)
    finally:
        search.EXHAUSTIVE_LIMIT = limit
    assert {c: e.offset for c, e in again.items()} == truth


def test_a_camera_the_joint_search_cannot_settle_takes_its_sure_reference_pair():
    """c2's pair with the reference is clean (+5); c3's two pairs agree on another story (c2 at -3) almost as
    strongly, so the joint resamples split between the two: c2 then takes its reference pair's estimate, and the
    joint search's peak and support stay in ``extra``."""
    rng = np.random.default_rng(0)

    def peak(offsets, at, height):
        return (np.where(offsets[None] == at, height, -1.0) + rng.normal(0, 0.8, (60, len(offsets)))).astype(np.float32)

    near, far = np.arange(-8, 9), np.arange(-16, 17)
    curves = {("c1", "c2"): search.Curve("c1", "c2", near, peak(near, 5, 2.0)),
              ("c1", "c3"): search.Curve("c1", "c3", near, peak(near, -6, 2.0)),
              ("c2", "c3"): search.Curve("c2", "c3", far, peak(far, -3, 2.0))}
    direct = {b: search.analyse_curve(curves[("c1", b)], rng=rng) for b in ("c2", "c3")}
    assert direct["c2"].offset == 5 and direct["c2"].support > 0.95
    joint = search.joint_offsets(["c1", "c2", "c3"], "c1", curves, 8, rng=rng, replicates=20, direct=direct)
    assert joint["c2"].offset == 5 and joint["c2"].extra["from"] == "reference pair"
    assert joint["c2"].extra["joint"]["best"] == -3 and joint["c2"].extra["joint"]["support"] < 0.9
    assert joint["c3"].offset == -6  # c3 too: the split moves it with c2 (from the joint or its own pair)
    noisy = search.analyse_curve(search.Curve("c1", "c2", near, rng.normal(-1, 1, (60, 17)).astype(np.float32)),
                                 rng=rng)
    alone = search.joint_offsets(["c1", "c2", "c3"], "c1", curves, 8, rng=rng, replicates=20,
                                 direct={**direct, "c2": noisy})
    assert not alone["c2"].determined  # no sure reference pair to fall back on: still not determined


def test_flat_and_noisy_curves_are_not_determined():
    rng = np.random.default_rng(2)
    offsets = np.arange(-10, 11)
    flat = search.analyse_curve(search.Curve("a", "b", offsets, np.full((50, 21), -0.7, np.float32)), rng=rng)
    assert not flat.determined and flat.status == "not determined" and "flat" in flat.reason
    assert flat.best is not None  # the best peak is still reported, for the figure
    noisy = search.analyse_curve(search.Curve("a", "b", offsets, rng.normal(0, 1, (50, 21)).astype(np.float32)),
                                 rng=rng)
    assert not noisy.determined and "not stable" in noisy.reason
    few = search.analyse_curve(search.Curve("a", "b", offsets, np.full((3, 21), 1.0, np.float32)), rng=rng)
    assert not few.determined and "instants" in few.reason
    flat_joint = search.joint_offsets(["a", "b", "c"], "a", {
        ("a", "b"): search.Curve("a", "b", offsets, np.zeros((50, 21), np.float32)),
        ("a", "c"): search.Curve("a", "c", offsets, np.zeros((50, 21), np.float32)),
        ("b", "c"): search.Curve("b", "c", offsets, np.zeros((50, 21), np.float32))}, 10, rng=rng, replicates=8,
        direct={"b": flat, "c": flat})
    assert not flat_joint["b"].determined and not flat_joint["c"].determined


def test_peak_at_the_edge_of_the_range_is_not_determined():
    rng = np.random.default_rng(3)
    offsets = np.arange(-5, 6)
    L = np.tile(np.linspace(-2, 1, 11), (40, 1)) + rng.normal(0, 0.1, (40, 11))  # still rising at +5
    e = search.analyse_curve(search.Curve("a", "b", offsets, L.astype(np.float32)), rng=rng)
    assert not e.determined and e.best == 5 and "raise --max-offset" in e.reason


def test_offsets_scored_on_few_instants_do_not_steal_the_peak():
    """An offset near the end of the overlap is scored on one instant; a lucky high log-odds there beats the true
    peak's mean of 200 instants in the plain mean, not in the shrunk one."""
    rng = np.random.default_rng(4)
    offsets = np.arange(-10, 11)
    L = np.where(offsets[None, :] == 0, 1.5, -1.0) + rng.normal(0, 1.0, (200, 21))
    L[1:, -1] = np.nan  # offset +10: a single instant
    L[0, -1] = 2.5
    curve = search.Curve("a", "b", offsets, L.astype(np.float32))
    assert offsets[np.nanargmax(curve.raw_score)] == 10  # the plain mean is fooled
    mean, k = curve.prior
    assert 0.2 < k < 20 and -1.0 < mean < -0.7
    assert offsets[np.nanargmax(curve.score)] == 0
    np.testing.assert_allclose(curve.score[10], curve.raw_score[10], atol=0.02)  # 200 instants: barely shrunk
    e = search.analyse_curve(curve, rng=rng)
    assert e.determined and e.offset == 0 and e.support > 0.9


def test_peak_next_to_the_edge_is_not_determined():
    """A peak one frame inside the search range may still be a truth just beyond it (within the tolerance)."""
    rng = np.random.default_rng(5)
    offsets = np.arange(-8, 9)
    for where, determined in ((7, False), (-7, False), (6, True)):
        L = np.where(offsets[None, :] == where, 2.0, -1.0) + rng.normal(0, 0.3, (60, 17))
        e = search.analyse_curve(search.Curve("a", "b", offsets, L.astype(np.float32)), rng=rng)
        assert e.best == where and e.determined == determined, (where, e.reason)
        truth = {"c1": 0, "c2": where, "c3": 2}
        joint = search.joint_offsets(list(truth), "c1", planted_curves(truth, 8, rng), 8, rng=rng, replicates=8)
        assert joint["c2"].best == where and joint["c2"].determined == determined
        assert joint["c3"].determined and joint["c3"].offset == 2


def test_inconsistent_triplets_are_reported():
    est = lambda d: search.Estimate(d, d, "ok")  # noqa: E731
    pairs = {("a", "b"): est(4), ("b", "c"): est(3), ("a", "c"): est(12),
             ("a", "d"): est(1), ("b", "d"): est(-3), ("c", "d"): est(-6)}
    checks = search.triplet_checks(["a", "b", "c", "d"], pairs)
    by = {t.cameras: t for t in checks}
    assert not by[("a", "b", "c")].consistent and by[("a", "b", "c")].residual == -5
    assert by[("a", "b", "d")].consistent and by[("a", "b", "d")].residual == 0
    assert not by[("a", "c", "d")].consistent


def test_reversed_curve_flips_the_offsets():
    c = search.Curve("a", "b", np.arange(-2, 3), np.array([[0, 1, 2, 3, 4]], np.float32))
    r = c.reversed()
    assert (r.offsets == np.arange(-2, 3)).all() and r.at(2) == c.at(-2) and r.a == "b"


@pytest.mark.parametrize("center", [False, True])
def test_pairnet_scorer_is_the_models_sync_head_on_pairs(center):
    """Scoring from cached per-view embeddings equals PairNet's forward on the (unflipped) pair images."""
    from syncssl.models.pairnet import PairNet, PairNetConfig
    torch.manual_seed(0)
    model = PairNet(PairNetConfig(depth=18, width=0.125, head_hidden=32, center=center)).train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32) * 2 + 1)  # BN statistics other than the initial ones
    model.eval()
    scorer = PairNetScorer(model)
    images = torch.randn(10, 3, 32, 32)
    with torch.no_grad():
        logits = model(images)["sync"]
    emb = scorer.embed(images)
    got = scorer.log_odds(emb[0::2], emb[1::2])
    torch.testing.assert_close(got, logits[:, 1] - logits[:, 0], rtol=1e-4, atol=1e-4)
    # and any other pairing of the same embeddings is that pair's forward
    with torch.no_grad():
        swapped = model(torch.stack([images[0], images[3]]))["sync"]
    torch.testing.assert_close(scorer.log_odds(emb[:1], emb[3:4]), swapped[:, 1] - swapped[:, 0], rtol=1e-4,
                               atol=1e-4)


# ---------------------------------------------------------------- sync.toml and the sources


def test_sync_file_round_trip_and_errors(tmp_path):
    path = write_sync_file(tmp_path, {"cam_01": 5, "cam 2": 2, "cam_03": 9}, reference="cam_01", fps=25.0,
                           comment="a test")
    sf = read_sync_file(tmp_path)
    assert sf.path == path and sf.start == {"cam_01": 3, "cam 2": 0, "cam_03": 7} and sf.reference == "cam_01"
    assert sf.fps == 25.0 and normalised({"a": -3, "b": 2}) == {"a": 0, "b": 5} and sf.excluded == ()
    write_sync_file(tmp_path, {"cam_01": 0, "cam_03": 2}, reference="cam_01", excluded=["cam 2"])
    assert read_sync_file(tmp_path).excluded == ("cam 2",) and read_sync_file(tmp_path).start == {"cam_01": 0,
                                                                                                "cam_03": 2}
    assert read_sync_file(tmp_path / "nowhere") is None
    for text, words in (("[offsets]\ncam_01 = -1\n", "whole number"), ("[offsets]\ncam_01 = 1.5\n", "whole number"),
                        ("reference = 3\n[offsets]\na = 1\n", "reference"), ("x = [\n", "not valid TOML"),
                        ("fps = 25\n", "[offsets]"), ('excluded = "a"\n[offsets]\nb = 1\n', "list of camera names"),
                        ('excluded = ["a"]\n[offsets]\na = 1\n', "both excluded and given"),
                        ('reference = "a"\nexcluded = ["a"]\n[offsets]\nb = 1\n', "cannot be excluded")):
        (tmp_path / SYNC_NAME).write_text(text)
        with pytest.raises(DataError, match=words.replace("[", r"\[").replace("]", r"\]")):
            read_sync_file(tmp_path)


def test_iter_frames_from_a_start_frame(tmp_path):
    frames = (np.arange(12)[:, None, None, None] * 20 + np.zeros((12, 16, 16, 3))).astype(np.uint8)
    video = write_video(tmp_path / "v.avi", frames, 25.0)
    got = np.stack(list(iter_frames(video, 5, start=4)))
    np.testing.assert_array_equal(got, read_frames(video, np.arange(4, 9)))
    with pytest.raises(DataError, match=r"holds only 12 decodable frames.*needs 10 \+ 5"):
        list(iter_frames(video, 5, start=10))


@pytest.fixture(scope="module")
def shifted_pair(tiny_dataset, tmp_path_factory):
    """S9/Walking_01 shifted (cam_02 +3, cam_03 -2, cam_04 +1; labels cut alike) and an unshifted copy of the same
    instants with the same re-encoding, both in dataset roots."""
    tmp = tmp_path_factory.mktemp("shifted")
    truth = {"cam_01": 0, "cam_02": 3, "cam_03": -2, "cam_04": 1}
    key = "S9/Walking_01"
    shifted = shift_dataset(tiny_dataset, tmp / "shifted", {key: truth})["sequences"][key]
    # the unshifted copy starts every camera at the instant the shifted one's overlap starts
    first = shifted["first"] - min(truth.values())
    plain = shift_dataset(tiny_dataset, tmp / "plain", {key: {c: 0 for c in truth}}, first=first,
                          length=shifted["length"] - (max(truth.values()) - min(truth.values())))
    return tmp / "shifted", tmp / "plain", truth, shifted, plain["sequences"][key]


def test_sources_apply_sync_toml(shifted_pair):
    shifted, plain, truth, info, plain_info = shifted_pair
    folder = shifted / "S9" / "Walking_01"
    assert all(v.start == 0 for v in open_dataset(shifted).sequences[0].views)  # no sync.toml: as before
    start = {c: d - min(truth.values()) for c, d in truth.items()}
    write_sync_file(folder, start, reference="cam_01")
    seq = open_dataset(shifted).sequences[0]
    assert {v.name: v.start for v in seq.views} == start and seq.sync_file == folder / SYNC_NAME
    assert seq.num_frames == plain_info["length"] == open_dataset(plain).sequences[0].num_frames
    assert any("offsets applied" in n for n in seq.notes)
    # labels follow the reference's frames: they now match the unshifted copy's, instant by instant
    np.testing.assert_array_equal(seq.poses3d, open_dataset(plain).sequences[0].poses3d)
    np.testing.assert_array_equal(seq.boxes, open_dataset(plain).sequences[0].boxes)
    # frame t of every camera is the unshifted copy's frame t (the same bytes: the same re-encoding)
    p = open_dataset(plain).sequences[0]
    for v, w in zip(seq.views, p.views):
        np.testing.assert_array_equal(read_frames(v.video, [v.start + 5]), read_frames(w.video, [5]))
    (folder / SYNC_NAME).write_text('[offsets]\ncam_09 = 2\n')
    with pytest.raises(DataError, match="cam_09.*calibration does not have"):
        open_dataset(shifted)
    (folder / SYNC_NAME).write_text('excluded = ["cam_09"]\n[offsets]\ncam_02 = 2\n')
    with pytest.raises(DataError, match="excludes camera.*cam_09.*calibration does not have"):
        open_dataset(shifted)
    (folder / SYNC_NAME).write_text('excluded = ["cam_01", "cam_02", "cam_03", "cam_04"]\n[offsets]\n')
    with pytest.raises(DataError, match="excludes every camera|offsets"):
        open_dataset(shifted)
    (folder / SYNC_NAME).write_text('[offsets]\ncam_02 = 400\n')
    with pytest.raises(DataError, match="leaves nothing"):
        open_dataset(shifted)
    (folder / SYNC_NAME).unlink()


def test_excluded_camera_is_left_out_of_the_sequence(shifted_pair):
    """A camera that sync.toml excludes (its offset was not determined) leaves the sequence: its video, its boxes'
    column and its masks; the others are aligned as usual and the overlap is theirs alone."""
    from syncssl.data.sources.inspect import inspect_dataset
    shifted, plain, truth, info, plain_info = shifted_pair
    folder = shifted / "S9" / "Walking_01"
    kept = {c: d - min(truth.values()) for c, d in truth.items() if c != "cam_03"}
    write_sync_file(folder, kept, reference="cam_01", excluded=["cam_03"])
    try:
        seq = open_dataset(shifted).sequences[0]
        full = open_dataset(plain).sequences[0]
        assert seq.camera_names == ["cam_01", "cam_02", "cam_04"] and seq.left_out == ("cam_03",)
        assert {v.name: v.start for v in seq.views} == normalised(kept)
        assert any("left out (offset not known): cam_03" in n for n in seq.notes)
        assert not any("names no camera" in n for n in seq.notes)  # its masks are expected, not a stray file
        assert set(seq.masks) <= {"cam_01", "cam_02", "cam_04"}
        # cam_03 started latest, so without it the overlap starts earlier: the plain copy's frame 0 (the
        # overlap of all four) is this sequence's frame `shift`; labels and the kept boxes' columns match there
        shift = (truth["cam_01"] - min(truth.values())) - seq.views[0].start
        m = min(seq.num_frames - shift, full.num_frames)
        assert shift == 2 and m > 10
        np.testing.assert_array_equal(seq.boxes[shift:shift + m], full.boxes[:m][:, [0, 1, 3]])
        np.testing.assert_array_equal(seq.poses3d[shift:shift + m], full.poses3d[:m])
        report = inspect_dataset(shifted)
        assert report.sequences[0].left_out == ("cam_03",) and report.sequences[0].cameras == 3
    finally:
        (folder / SYNC_NAME).unlink()


def test_prepare_on_an_applied_session_finds_the_unshifted_boxes(shifted_pair, tmp_path):
    """A shifted dataset with the right sync.toml prepares to the same person boxes as the unshifted one, and the
    offsets are part of the manifest's fingerprint."""
    from syncssl.data.preparation.prepare import prepare
    from syncssl.data.sources.inspect import inspect_dataset
    shifted, plain, truth, _, _ = shifted_pair
    folder = shifted / "S9" / "Walking_01"
    write_sync_file(folder, {c: d - min(truth.values()) for c, d in truth.items()}, reference="cam_01")
    try:
        a = prepare(open_dataset(shifted), tmp_path / "a", workers=2).manifest
        b = prepare(open_dataset(plain), tmp_path / "b", workers=2).manifest
        sa, sb = a.sequences[0], b.sequences[0]
        assert [c.start for c in sa.cameras] == [d - min(truth.values()) for d in truth.values()]
        # the same frames, so the same backgrounds, masks, boxes and static frames, exactly
        np.testing.assert_array_equal(sa.tight, sb.tight)
        np.testing.assert_array_equal(sa.boxes, sb.boxes)
        np.testing.assert_array_equal(sa.static, sb.static)
        np.testing.assert_array_equal(sa.poses3d, sb.poses3d)
        assert a.quality["iou"] == b.quality["iou"]  # ground-truth masks read at each camera's file frames
        rep = inspect_dataset(shifted)
        assert rep.synced_sequences == 1 and rep.sequences[0].offsets["cam_03"] == 0
        # changing an offset makes the prepared data stale, naming why
        write_sync_file(folder, {"cam_01": 2, "cam_02": 5, "cam_03": 0, "cam_04": 4}, reference="cam_01")
        again = prepare(open_dataset(shifted), tmp_path / "a", workers=2)
        assert not again.up_to_date and any("start" in r for r in again.reasons)
    finally:
        (folder / SYNC_NAME).unlink()


# ---------------------------------------------------------------- the pipeline and the command


def test_mirror_rig_offsets_are_recovered_exactly(mirror_session):
    session, result = mirror_session
    (s,) = result.sequences
    assert s.reference == "cam_a"
    got = {c.camera: c.estimate.offset for c in s.cameras}
    assert got == TRUTH
    assert all(c.direct.offset == TRUTH[c.camera] for c in s.cameras)
    assert all(c.estimate.support >= 0.9 for c in s.cameras[1:])
    assert s.pairs[("cam_b", "cam_c")].offset == TRUTH["cam_c"] - TRUTH["cam_b"]
    assert [t.consistent for t in s.triplets] == [True]
    assert {c.camera: c.frames for c in s.cameras}["cam_c"] == {c.camera: c.frames for c in s.cameras}["cam_a"] - 2
    out = session / "sync"
    doc = json.loads((out / "sync.json").read_text())
    assert doc["sequences"][0]["cameras"][1]["offset_frames"] == 3
    assert (out / "sync.csv").read_text().count("\n") == 4 and (out / "scores.png").stat().st_size > 1000


def test_each_camera_from_its_reference_pair_alone_is_confirmed_too(mirror_session, tmp_path):
    """Without the joint search (--independent), the reference pairs' own estimates are checked by the same evidence
    rule: the pairs with the reference vote and the camera triplet closes, so the rig is placed as jointly."""
    session, _ = mirror_session
    result = synchronize(session, stub_model(), SyncOptions(max_offset_s=0.24, joint=False, **FAST),
                         out=tmp_path / "out", progress=False, log=lambda m: None)
    assert {c.camera: c.estimate.offset for c in result.sequences[0].cameras} == TRUTH


def test_mirrored_scoring_averages_the_mirror_images_pass(mirror_session, tmp_path, monkeypatch):
    """--mirrored embeds every view a second time, mirrored, and scores the mirrored pairs too."""
    from syncssl.sync import domain, pipeline
    monkeypatch.setattr(pipeline, "_domain_checks",  # its own sample of crops is not what is counted here
                        lambda model, plans, *a: {p.seq.key: domain.DomainCheck(True) for p in plans})
    class Recording(PixelScorer):
        def __init__(self):
            self.batches = []

        def embed(self, images):
            self.batches.append(images.float().clone())
            return super().embed(images)

    session, _ = mirror_session
    scorer = Recording()
    model = dataclasses.replace(stub_model(), scorer=scorer)
    result = synchronize(session, model, SyncOptions(max_offset_s=0.24, mirrored=True, **FAST), out=tmp_path / "out",
                         progress=False, log=lambda m: None)
    plain, mirrored = torch.cat(scorer.batches[0::2]), torch.cat(scorer.batches[1::2])  # each batch, then mirrored
    assert len(plain) == len(mirrored) == result.views_embedded
    torch.testing.assert_close(mirrored, plain.flip(-1))
    assert {c.camera: c.estimate.offset for c in result.sequences[0].cameras} == TRUTH


def test_apply_then_resync_reads_aligned_frames(mirror_session, tmp_path):
    """--apply writes sync.toml; the sources, prepare and the video path then read aligned frames, so a second
    search (here through the video decoder) finds every residual offset 0."""
    from syncssl.data.sources.inspect import inspect_dataset
    session, result = mirror_session
    work = tmp_path / "session"
    shutil.copytree(session, work, ignore=shutil.ignore_patterns("sync"))
    result = dataclasses.replace(result, dataset=work,
                                 sequences=[dataclasses.replace(result.sequences[0], folder=work)])
    (path,) = apply_offsets(result, log=lambda m: None)
    assert read_sync_file(work).start == {"cam_a": 2, "cam_b": 5, "cam_c": 0}
    assert inspect_dataset(work).sequences[0].offsets == {"cam_a": 2, "cam_b": 5, "cam_c": 0}
    again = synchronize(work, stub_model(), SyncOptions(max_offset_s=0.24, **FAST), source="video",
                        progress=False, log=lambda m: None)
    (s,) = again.sequences
    assert {c.camera: c.estimate.offset for c in s.cameras} == {"cam_a": 0, "cam_b": 0, "cam_c": 0}
    assert s.applied == {"cam_a": 2, "cam_b": 5, "cam_c": 0}
    apply_offsets(again, log=lambda m: None)  # composing with what is applied leaves it as it was
    assert read_sync_file(work).start == {"cam_a": 2, "cam_b": 5, "cam_c": 0}


def test_offsets_beyond_the_overlap_are_refused(mirror_session):
    session, _ = mirror_session
    with pytest.raises(DataError, match=r"larger than the recordings' overlap.*largest --max-offset"):
        synchronize(session, stub_model(), SyncOptions(max_offset_s=2.0), progress=False, log=lambda m: None)
    with pytest.raises(DataError, match="no such camera"):
        synchronize(session, stub_model(), SyncOptions(reference="cam_z"), progress=False, log=lambda m: None)


def test_undetermined_cameras_are_reported_and_left_out(mirror_session, tmp_path):
    """A scorer that sees nothing (constant log-odds) gives flat curves: every camera "not determined", the
    table says why, and --apply leaves them out of the aligned sequence."""
    from syncssl.sync import render_table

    class Blind(PixelScorer):
        def log_odds(self, a, b):
            return torch.zeros(len(a))

    session, _ = mirror_session
    # its own data never asked it about far-apart instants: inside its domain, and blind
    model = dataclasses.replace(stub_model(), scorer=Blind(), reference=dict(STUB_REFERENCE, far_apart_unsync=0.5))
    # the classifier alone: the mirror rig's copies of one camera show the same motion, which would place them
    result = synchronize(session, model, SyncOptions(max_offset_s=0.24, cue="classifier", **FAST), out=tmp_path / "out",
                         progress=False, log=lambda m: None)
    assert result.sequences[0].domain.inside
    assert all(not c.estimate.determined for c in result.sequences[0].cameras[1:])
    from rich.console import Console
    console = Console(record=True, width=200)
    render_table(result, console)
    text = console.export_text()
    assert "not determined" in text and "flat" in text and "100%" not in text
    work = tmp_path / "session"
    shutil.copytree(session, work, ignore=shutil.ignore_patterns("sync"))
    result = dataclasses.replace(result, dataset=work,
                                 sequences=[dataclasses.replace(result.sequences[0], folder=work)])
    said = []
    (path,) = apply_offsets(result, log=said.append)  # every camera but the reference is left out
    assert "left out" in said[0] and "only the reference" in said[0]
    sf = read_sync_file(work)
    assert sf.excluded == ("cam_b", "cam_c") and sf.start == {"cam_a": 0}
    assert open_dataset(work).sequences[0].camera_names == ["cam_a"]


def test_out_of_domain_scores_are_not_determined(mirror_session, tmp_path):
    """A classifier whose log-odds lie far outside its own range (as the synthetic model's on real footage) is not
    trusted, even though its peaks would be right: nothing is committed, and the reason says why."""
    class Loud(PixelScorer):
        def log_odds(self, a, b):
            return super().log_odds(a, b) * 100 - 300

    session, _ = mirror_session
    model = dataclasses.replace(stub_model(), scorer=Loud())
    # the classifier alone (the mirror rig's copies of one camera show the same motion: the motion cue places them)
    result = synchronize(session, model, SyncOptions(max_offset_s=0.24, cue="classifier", **FAST),
                         out=tmp_path / "out", progress=False, log=lambda m: None)
    seq = result.sequences[0]
    assert not seq.domain.inside and "outside" in seq.domain.reasons[0]
    assert all(not c.estimate.determined for c in seq.cameras[1:])  # its (right) peaks are not even looked at
    assert all("outside its domain" in c.estimate.reason for c in seq.cameras[1:])
    assert any("outside its domain" in n for n in result.notes)
    doc = json.loads((tmp_path / "out" / "sync.json").read_text())
    assert doc["sequences"][0]["domain"]["inside"] is False
    # the same scores, in range: committed
    inside = synchronize(session, stub_model(), SyncOptions(max_offset_s=0.24, **FAST), out=tmp_path / "in",
                         progress=False, log=lambda m: None)
    assert [c.estimate.offset for c in inside.sequences[0].cameras[1:]] == [3, -2]


def test_force_applies_the_best_peak_of_an_undetermined_camera(mirror_session, tmp_path):
    session, result = mirror_session
    work = tmp_path / "session"
    shutil.copytree(session, work, ignore=shutil.ignore_patterns("sync"))
    s = result.sequences[0]
    cams = [dataclasses.replace(c, estimate=dataclasses.replace(c.estimate, offset=None, status="not determined",
                                                                reason="planted"))
            if c.camera == "cam_b" else c for c in s.cameras]
    result = dataclasses.replace(result, dataset=work, sequences=[dataclasses.replace(s, folder=work, cameras=cams)])
    said = []
    (path,) = apply_offsets(result, log=said.append)  # cam_b is left out, the others aligned
    assert "cam_b not determined: left out" in said[0] and "only the reference" not in said[0]
    sf = read_sync_file(work)
    assert sf.start == {"cam_a": 2, "cam_c": 0} and sf.excluded == ("cam_b",)
    assert "cam_b not determined" in path.read_text()
    seq = open_dataset(work).sequences[0]
    assert seq.camera_names == ["cam_a", "cam_c"] and seq.left_out == ("cam_b",)
    from syncssl import cli
    r = CliRunner(env={"COLUMNS": "250"}).invoke(cli.data, ["inspect", str(work)])
    assert r.exit_code == 0 and "cam_b left out" in r.output and "cam_a 2" in r.output, r.output
    # the two kept cameras show the same instant (the mirror rig: the same bytes at aligned frames)
    a, c = seq.views
    np.testing.assert_array_equal(read_frames(a.video, [a.start + 4]), read_frames(c.video, [c.start + 4]))
    (path,) = apply_offsets(result, log=said.append, force=True)
    assert read_sync_file(work).start == {"cam_a": 2, "cam_b": 5, "cam_c": 0}  # cam_b's best peak, +3
    assert read_sync_file(work).excluded == ()  # this search measured cam_b: its peak replaces the exclusion
    assert "cam_b +3 (not determined: best peak)" in path.read_text() and "--force" in said[-1]


def test_benchmark_summary_counts_misses_and_buckets():
    from syncssl.bench.sync import _summarise
    rows = [dict(action="Walking", truth=10, joint=10, joint_best=10, direct=None, direct_best=9),
            dict(action="Walking", truth=-40, joint=None, joint_best=-39, direct=None, direct_best=3),
            dict(action="Waving", truth=3, joint=7, joint_best=7, direct=7, direct_best=7),
            dict(action="Waving", truth=45, joint=44, joint_best=44, direct=44, direct_best=44)]
    s = _summarise(rows)
    assert s["joint"]["within_1_frame"] == 0.5 and s["joint"]["determined"] == 0.75 and s["joint"]["exact"] == 0.25
    assert s["direct"]["within_1_frame"] == 0.25 and s["direct"]["within_1_frame_of_determined"] == 0.5
    assert s["best_peak_within_1_frame"] == 0.75
    assert s["joint_within_1_frame_by_action"] == {"Walking": 0.5, "Waving": 0.5}
    assert s["joint_within_1_frame_by_offset"] == {"|offset| <= 22 frames": 0.5, "|offset| > 22 frames": 0.5}
    one = _summarise(rows[:1])  # an empty bucket is None, not NaN
    assert one["joint_within_1_frame_by_offset"] == {"|offset| <= 5 frames": None, "|offset| > 5 frames": 1.0}


def test_benchmark_recording_length(tmp_path):
    from syncssl.bench.sync import long_preset, run_sync_benchmark
    from syncssl.data.synthetic import PRESETS
    from syncssl.errors import ConfigError
    n = PRESETS["small"].num_frames
    same = long_preset("small", 50)  # the preset's length keeps its cached render's name
    assert same.name == "small-heldout-long50" and same.num_frames == n + 100 and same.train_subjects == ()
    longer = long_preset("small", 50, 240)
    assert longer.name == "small-heldout-240f-long50" and longer.num_frames == 340
    assert long_preset("small", 50, n).name == same.name
    with pytest.raises(ConfigError, match="100 frames cannot hold offsets of \\+-50"):  # refused before rendering
        run_sync_benchmark("no-model", out=tmp_path / "out", data_root=tmp_path / "data", frames=100)
    assert not (tmp_path / "data").exists() and not (tmp_path / "out").exists()


def test_benchmark_copies_are_datasets_syncssl_accepts(tiny_dataset, tmp_path):
    """The benchmark's shifted copy opens as a dataset (its splits pass dataset.json's checks) and evaluates."""
    from syncssl.bench.sync import copy_splits
    from syncssl.data.preparation.manifest import Manifest
    from syncssl.data.sources import open_dataset
    from syncssl.data.synthetic import PRESETS
    from syncssl.sync.inject import shift_dataset
    splits = copy_splits(PRESETS["tiny"])
    shift_dataset(tiny_dataset, tmp_path / "shifted", {"S9/Walking_01": {"cam_01": 0, "cam_02": 3}}, first=5,
                  length=30, splits=splits)
    ds = open_dataset(tmp_path / "shifted", verify="none")
    assert ds.splits == {"test": ["S9"]} and {s.subject for s in ds.sequences} == {"S9"}
    m = SimpleNamespace(splits=ds.splits)  # what the manifest's split queries read
    train = Manifest.resolve_split(m, "auto")
    assert train == "test" and Manifest.resolve_eval_split(m, "test", train) == ("test", False)  # seen = evaluated


def test_cli_runs_with_the_stub(mirror_session, monkeypatch, tmp_path):
    from syncssl import cli
    from syncssl import sync as sync_pkg
    session, _ = mirror_session
    work = tmp_path / "session"
    shutil.copytree(session, work, ignore=shutil.ignore_patterns("sync"))
    monkeypatch.setattr(sync_pkg, "load_model", lambda path, device="cpu": stub_model())
    r = CliRunner().invoke(cli.sync, [str(work), "--model", str(work), "--max-offset", "0.24", "--apply",
                                      "--adapt", "0",  # the pixel stub is no model to adapt
                                      "--out", str(tmp_path / "out")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "+3" in r.output and "applied:" in r.output and "add up" in r.output
    assert read_sync_file(work).start == {"cam_a": 2, "cam_b": 5, "cam_c": 0}
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"sync.json", "sync.csv", "scores.png"}
    assert (work / "sync-prepared" / "manifest.json").is_file()  # beside the data: every later run reuses it
    options = lambda: json.loads((tmp_path / "out" / "sync.json").read_text())["options"]  # noqa: E731
    assert options()["cue"] == "fused" and options()["tolerance_s"] == 0.04  # recorded
    r = CliRunner().invoke(cli.sync, [str(work), "--model", str(work), "--max-offset", "0.24", "--adapt", "0",
                                      "--cue", "classifier", "--out", str(tmp_path / "out2")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "out2" / "sync.json").read_text())["options"]["cue"] == "classifier"
    for cue, says in (("motion+colour", "some of classifier, geometry, motion"), ("classifier", "needs --model")):
        r = CliRunner().invoke(cli.sync, [str(work), "--cue", cue])
        assert r.exit_code == 2 and says in r.output, r.output
    r = CliRunner(env={"COLUMNS": "250"}).invoke(cli.data, ["inspect", str(work)])
    assert r.exit_code == 0 and "sync offsets" in r.output and "cam_b 5" in r.output, r.output
    r = CliRunner().invoke(cli.sync, [str(work), "--model", str(work), "--max-offset", "9"])
    assert r.exit_code != 0 and "overlap" in r.output


def _tiny_checkpoint(folder: Path) -> Path:
    """A random-init PairNet checkpoint in the tiny preset's config: a real model, no training."""
    from syncssl import config as cfglib
    from syncssl.models.pairnet import PairNet
    from syncssl.train import checkpoint as ckpt
    cfg = load_config("tiny")
    torch.manual_seed(0)
    model = PairNet(cfg.model)
    state = {"model": model.state_dict(), "config": cfglib.to_dict(cfg), "step": 0,
             "arch": {"model": "PairNet", **dataclasses.asdict(cfg.model)}}
    ckpt.save(folder / "checkpoints", 0, state)
    return folder


def test_bare_session_with_mixed_codecs_and_sizes_runs_end_to_end(tiny_dataset, tmp_path):
    """Calibration and videos only (no labels), one camera re-encoded to H.264 at twice the size, one camera
    shifted and cameras of different lengths: the command runs through with a real (untrained) PairNet and says
    what it finds for every camera."""
    from PIL import Image

    from syncssl import cli
    session = tmp_path / "session"
    shift_sequence(tiny_dataset / "S9" / "Waving_01", session, {"cam_02": 2}, trim_end={"cam_04": 3}, labels=False)
    assert not any(session.glob("*.npy")) and not (session / "masks").exists()
    big = session / "videos" / "cam_03.mp4"
    frames = read_frames(session / "videos" / "cam_03.avi")
    write_video(big, [np.asarray(Image.fromarray(f).resize((f.shape[1] * 2, f.shape[0] * 2))) for f in frames],
                25.0, "h264")
    (session / "videos" / "cam_03.avi").unlink()
    ds = open_dataset(session, frame_tolerance=100)
    assert {v.codec for v in ds.sequences[0].views} == {"mjpeg", "h264"}
    model = _tiny_checkpoint(tmp_path / "run")
    r = CliRunner().invoke(cli.sync, [str(session), "--model", str(model), "--max-offset", "0.2", "--device", "cpu"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    doc = json.loads((session / "sync" / "sync.json").read_text())
    cams = doc["sequences"][0]["cameras"]
    assert [c["camera"] for c in cams] == ["cam_01", "cam_02", "cam_03", "cam_04"]
    assert all(c["status"] in ("ok", "not determined", "reference") for c in cams)
    assert {c["camera"]: c["frames"] for c in cams}["cam_04"] < {c["camera"]: c["frames"] for c in cams}["cam_01"]
    assert (session / "sync" / "scores.png").is_file()


# ---------------------------------------------------------------- --adapt (test-time self-training)


def _rig_plan(fps=25.0, lengths=(40, 40, 36), static=()):
    """A plan-like object of three cameras (manifest indices 10, 11, 12) for adapt.aligned_rigs."""
    from types import SimpleNamespace
    cams = ["cam_a", "cam_b", "cam_c"]
    usable = {c: np.ones(n, bool) for c, n in zip(cams, lengths)}
    for c, t in static:
        usable[c][t] = False
    return SimpleNamespace(seq=SimpleNamespace(fps=fps), usable=usable, lengths=dict(zip(cams, lengths)),
                           index={c: 10 + i for i, c in enumerate(cams)})


def _rig_result(offsets: dict):
    """A SequenceResult-like object: cam_a the reference, the others at ``offsets`` (None: not determined)."""
    from types import SimpleNamespace
    cams = [SimpleNamespace(camera="cam_a", estimate=search.Estimate(0, 0, "reference"))]
    for c, d in offsets.items():
        est = search.Estimate(d, d, "ok") if d is not None else search.Estimate(None, 5, "not determined")
        cams.append(SimpleNamespace(camera=c, estimate=est))
    return SimpleNamespace(reference="cam_a", cameras=cams)


def test_adapt_learns_only_from_determined_cameras():
    from syncssl.sync.adapt import aligned_rigs
    sampling = load_config("tiny").sampling
    plan = _rig_plan(static=[("cam_b", [7])])
    rigs, cameras, sequences = aligned_rigs([plan, plan], [_rig_result({"cam_b": 3, "cam_c": None}),
                                                           _rig_result({"cam_b": None, "cam_c": None})], sampling)
    assert (cameras, sequences) == (2, 1)  # the second sequence has the reference alone
    assert sorted((r.a, r.b, r.d) for r in rigs) == [(10, 11, 3), (11, 10, -3)]
    ab = next(r for r in rigs if r.a == 10)
    assert 4 not in ab.instants  # cam_b's frame 7 is static
    assert ab.instants.min() == 0 and ab.instants.max() == 36  # t + 3 < 40
    assert ab.window == sampling.window(25.0)


def test_adapt_pairs_carry_the_labels_of_the_aligned_rig():
    """A synchronized pair is (a at t, b at t + d); an unsynchronized one lies a training-window offset further;
    only synchronized pairs are flipped, on one of their two views; shares as the pre-training sampler's."""
    from syncssl.sync.adapt import aligned_rigs, draw_pairs
    sampling = load_config("tiny").sampling
    rigs, _, _ = aligned_rigs([_rig_plan(lengths=(200, 200, 200))], [_rig_result({"cam_b": 3, "cam_c": -20})],
                              sampling)
    d = {(r.a, r.b): r.d for r in rigs}
    lo, hi = rigs[0].window
    views, flip, jitter, sync, flip_label = draw_pairs(rigs, 2000, sampling, np.random.default_rng(0))
    assert len(views) == 4000 and jitter.shape == (4000, 3)
    for row, ((a, _, t), (b, _, u)) in enumerate(zip(views[0::2], views[1::2])):
        extra = u - t - d[(a, b)]
        assert (extra == 0) if sync[row] else (lo <= abs(extra) <= hi), (row, extra)
    pairs_flipped = flip.reshape(-1, 2)
    assert (pairs_flipped.sum(1) == flip_label).all() and not (flip_label & (sync == 0)).any()
    assert abs(sync.mean() - sampling.sync_fraction) < 0.04
    assert abs(flip_label[sync == 1].mean() - sampling.flip_fraction) < 0.05
    shift, scale = sampling.jitter_bounds(False)
    assert np.abs(jitter[:, :2]).max() <= shift and np.abs(jitter[:, 2]).max() <= scale


def test_adapt_fine_tunes_a_copy_and_searches_again(mirror_session, tmp_path):
    """The first search (the pixel stub: it finds the mirror rig exactly) determines every camera; a real PairNet
    is then fine-tuned on their pairs (the model given stays as it was) and the cameras are searched again with
    it; the first search's estimates are kept beside the new ones, in the result and in sync.json."""
    from syncssl.models.pairnet import PairNet

    class StubPairNet(PairNetScorer):  # searches with the pixel stub, adapts the real model
        embed, log_odds, flip_log_odds = PixelScorer.embed, PixelScorer.log_odds, None

    session, _ = mirror_session
    cfg = load_config("tiny")
    torch.manual_seed(0)
    net = PairNet(cfg.model)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = LoadedModel(StubPairNet(net), cfg, None, 0, reference=STUB_REFERENCE)
    options = SyncOptions(max_offset_s=0.24, **dict(FAST, adapt_steps=3))
    result = synchronize(session, model, options, out=tmp_path / "out", progress=False, log=lambda m: None)
    rep = result.adapted
    assert (rep.steps, rep.cameras, rep.sequences) == (3, 3, 1) and rep.candidates > 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # a copy was trained
    (s,) = result.sequences
    assert {c.camera: c.first.offset for c in s.cameras} == TRUTH
    doc = json.loads((tmp_path / "out" / "sync.json").read_text())
    assert doc["adapted"]["steps"] == 3
    assert [c["first_search"]["offset_frames"] for c in doc["sequences"][0]["cameras"]] == [0, 3, -2]
    with pytest.raises(ValueError, match="adapt"):
        SyncOptions(adapt_steps=-1)


# ---------------------------------------------------------------- the rig's geometry as a second cue


def _rig_camera(name: str, eye):
    from syncssl.geometry import Camera
    from syncssl.geometry.camera import look_at
    R, t = look_at(np.asarray(eye, float), [0, 0, 900])
    K = np.array([[1100.0, 0, 500], [0, 1100.0, 500], [0, 0, 1]])
    return Camera(name, (1000, 1000), K, np.array([0.05, -0.02, 0.001, 0.0005, 0.0]), R, t)


def test_essential_matrix_relates_the_two_images_of_a_world_point():
    from syncssl.sync import epipolar
    a, b = _rig_camera("a", [4500, 300, 1500]), _rig_camera("b", [-600, 4200, 1700])
    X = np.random.default_rng(0).uniform([-1500, -1500, 0], [1500, 1500, 2000], (20, 3))
    xa = epipolar.normalised(a, a.project(X))
    xb = epipolar.normalised(b, b.project(X))
    h = lambda x: np.concatenate([x, np.ones((len(x), 1))], 1)
    assert np.abs(np.einsum("ni,ij,nj->n", h(xb), epipolar.essential(a, b), h(xa))).max() < 1e-9
    # one viewpoint (a mirror rig, two copies of one camera) has no epipolar geometry: the pipeline skips the cue
    assert epipolar.has_baseline(a, b) and not epipolar.has_baseline(a, dataclasses.replace(a, name="copy"))
    with pytest.raises(ValueError, match="pixels"):
        epipolar.normalised(a, np.zeros((3, 5)))


def test_smoothed_cue_keeps_its_gaps_and_averages_over_neighbouring_offsets():
    from syncssl.sync import epipolar
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 30))
    x[0, :4] = np.nan  # offsets whose frame does not exist
    x[2, 10] = np.nan
    half = 3
    got = epipolar.smooth_rows(x, half)
    for i in range(5):
        for k in range(30):
            window = x[i, max(0, k - half): k + half + 1]
            want = np.nan if np.isnan(x[i, k]) else np.nanmean(window)
            assert np.isnan(got[i, k]) if np.isnan(want) else got[i, k] == pytest.approx(want)


def test_benchmark_measures_whom_the_preparation_follows(tmp_path, monkeypatch):
    """person_followed: the share of camera-frames whose prepared box lies on the labelled person (camera found by
    name in the calibration); boxes on a bystander or missing count as misses / are skipped."""
    from syncssl.bench import sync as bench
    from syncssl.data.preparation import manifest as manifest_module
    from syncssl.data.synthetic import PRESETS
    assert bench.long_preset("small", 50, bystanders=1).name == "small-heldout-long50-bystanders1"
    assert bench.long_preset("small", 50, bystanders=1).bystanders == 1
    seq = tmp_path / "S9" / "Walking_01"
    seq.mkdir(parents=True)
    (seq / "calibration.toml").write_text("[cam_02]\n[cam_01]\n")
    person = np.array([100, 50, 140, 170], np.float32)  # 120 px tall
    truth = np.zeros((4, 2, 4), np.float32)
    truth[:, 0], truth[:, 1] = person, person + 200  # cam_01 (first by name), cam_02
    np.save(seq / "boxes.npy", truth)
    on, off, gone = person + [-10, -20, 10, 20], person + [150, 0, 150, 0], np.full(4, np.nan, np.float32)
    cams = {"cam_01": np.stack([on, on, off, gone]), "cam_02": np.stack([on + 200] * 4)}
    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / manifest_module.MANIFEST_NAME).write_text("{}")
    fake = SimpleNamespace(sequences=[SimpleNamespace(subject="S9", name=f"Walking_01@{c}", boxes=b[:, None])
                                      for c, b in cams.items()])
    monkeypatch.setattr(manifest_module.Manifest, "load", staticmethod(lambda path: fake))
    assert bench.person_followed(tmp_path, tmp_path / "prepared") == pytest.approx(6 / 7)
    assert bench.person_followed(tmp_path, tmp_path / "nothing") is None
    assert PRESETS["small"].bystanders == 0


def test_a_model_pre_trained_on_the_very_recordings_is_left_out_on_their_pairs(mirror_session, tmp_path):
    """A model pre-trained on these recordings took them as synchronized as they were aligned then, and reads that
    alignment back (on a real recording with one camera 7 frames late, such a model committed it at +0 with 97%
    support): on every pair of cameras it learnt together its classifier is left out, and a note says why. A
    camera learnt alone teaches it no alignment: its pairs count."""
    from syncssl.data.preparation.manifest import file_digest

    session, _ = mirror_session
    digest = {v.stem: file_digest(v)["sha1"] for v in sorted((session / "videos").iterdir())}
    learnt = dataclasses.replace(stub_model(), reference=dict(STUB_REFERENCE, recordings=[sorted(digest.values())]))
    result = synchronize(session, learnt, SyncOptions(max_offset_s=0.24, cue="classifier", **FAST),
                         out=tmp_path / "out",
                         progress=False, log=lambda m: None)
    seq = result.sequences[0]
    assert seq.domain.inside and seq.domain.learnt == [("cam_a", "cam_b"), ("cam_a", "cam_c"), ("cam_b", "cam_c")]
    assert all(not c.estimate.determined for c in seq.cameras[1:])  # the stub's peaks are right, and not looked at
    assert all("classifier" not in cues for cues in seq.cue_curves.values())
    assert any("left out on the camera pairs it was pre-trained on (cam_a-cam_b, cam_a-cam_c, cam_b-cam_c)" in n
               for n in result.notes)
    doc = json.loads((tmp_path / "out" / "sync.json").read_text())
    assert doc["sequences"][0]["domain"]["learnt_pairs"] == [["cam_a", "cam_b"], ["cam_a", "cam_c"], ["cam_b", "cam_c"]]
    alone = dataclasses.replace(stub_model(), reference=dict(STUB_REFERENCE, recordings=[[digest["cam_b"], "0" * 40]]))
    result = synchronize(session, alone, SyncOptions(max_offset_s=0.24, **FAST), progress=False, log=lambda m: None)
    assert result.sequences[0].domain.learnt == []
    assert [c.estimate.offset for c in result.sequences[0].cameras[1:]] == [3, -2]


def test_benchmark_measures_whether_camera_pairs_follow_the_same_person(tmp_path, monkeypatch):
    """same_person: at the true alignment, the share of a camera pair's instants in which both preparations follow
    the same person (the labelled one or a bystander, from the scene's own motions), a box on nobody a mismatch."""
    from syncssl.bench import sync as bench
    from syncssl.data.preparation import manifest as manifest_module
    from syncssl.data.preparation.boxes import boxes_from_joints
    from syncssl.data.synthetic.generator import bystander, plan_sequences, render_sequence
    preset = bench.long_preset("tiny", 4, bystanders=1)
    spec = plan_sequences(preset)[0]
    motion, cameras, _ = render_sequence(spec, preset, 0)
    T = len(motion.joints)
    other = bystander(spec, preset, 0, 0, motion, T)[1]
    person = boxes_from_joints(motion.joints[:, :17], cameras[1])
    half = np.concatenate([boxes_from_joints(other.joints[:, :17], cameras[0])[:T // 2],
                           boxes_from_joints(motion.joints[:, :17], cameras[0])[T // 2:]])
    nobody = np.full((T, 4), np.nan, np.float32)
    nobody[:2] = [0, 0, 1, 1]  # a box on nobody, two frames
    cams = {cameras[0].name: half, cameras[1].name: person, cameras[2].name: nobody}
    (tmp_path / manifest_module.MANIFEST_NAME).write_text("{}")
    fake = SimpleNamespace(sequences=[SimpleNamespace(subject=spec.subject, name=f"{spec.name}@{c}", boxes=b[:, None])
                                      for c, b in cams.items()])
    monkeypatch.setattr(manifest_module.Manifest, "load", staticmethod(lambda path: fake))
    truth = {f"{spec.subject}/{spec.name}": {c.name: 0 for c in cameras}}
    # pair 0-1: the second half alike (T - T // 2 of T); pairs with camera 2: two instants each, both mismatches
    want = (T - T // 2) / (T + 4)
    assert bench.same_person(tmp_path, truth, 0, preset, 0) == pytest.approx(want)
    assert bench.same_person(tmp_path / "nothing", truth, 0, preset, 0) is None
