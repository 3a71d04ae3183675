"""syncssl-sync commits an offset only when independent evidence agrees: the silhouettes' epipolar tangency, the
commitment rule, --adapt's limits, time tolerances and the search range. Tiny data only."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from test_sync import FAST, _rig_camera

from syncssl.data.sources.calibration import read_calibration
from syncssl.errors import DataError
from syncssl.sync import SyncOptions, domain, search, synchronize, tangency
from syncssl.sync.epipolar import has_baseline
from syncssl.sync.inject import shift_sequence
from syncssl.sync.pipeline import NO_TANGENTS, CameraResult, confirm, merge_adapted, search_spans

# ---------------------------------------------------------------- the tangency cue


def _body(t: int, rng) -> np.ndarray:
    """A cloud of points on a person who sways, bends and raises an arm over time (mm, world)."""
    pts = rng.uniform([-200, -150, 0], [200, 150, 1750], (400, 3))
    pts[:, 0] += 300 * np.sin(0.3 * t) * pts[:, 2] / 1750  # bending sideways
    arm = np.linspace(0, 1, 40)[:, None] * np.array([700 * np.cos(0.2 * t), 0, 700 * np.sin(0.2 * t)])
    return np.concatenate([pts, arm + [0, 0, 1450]])


def test_tangent_planes_of_one_instant_coincide_and_part_as_the_body_moves():
    a, b = _rig_camera("a", [4500, 300, 1500]), _rig_camera("b", [-600, 4200, 1700])
    pencil = tangency.Pencil(a, b)
    rng = np.random.default_rng(0)
    bodies = [_body(t, rng) for t in range(40)]
    outlines = [tangency.Outlines(np.concatenate([c.project(x) for x in bodies]).astype(np.float32),
                                  np.arange(0, 441 * 41, 441)) for c in (a, b)]
    wa, wb = pencil.wedges(0, outlines[0]), pencil.wedges(1, outlines[1])
    assert np.abs(wa - wb).max() < 1e-4  # the same instant: the same two tangent planes, seen from either camera
    r = tangency.tangency_residual(wa[:, None], wb[None]).mean(-1)  # every pairing of instants
    assert np.diagonal(r).max() < 1e-5 and np.median(r[~np.eye(40, dtype=bool)]) > 100 * np.diagonal(r).max()
    shift = 3  # b's frame t + 3 shows a's frame t
    wb_late = np.concatenate([np.full((shift, 2), np.nan), wb])[:40]
    L = tangency.cue_matrix(tangency.TangencyCue(), wa, wb_late, np.arange(40), np.arange(-8, 9), 25.0)
    assert np.arange(-8, 9)[np.nanargmax(np.nanmean(L, 0))] == shift


def test_the_tangency_cue_recovers_known_offsets_on_a_rig_without_labels(tiny_dataset, tmp_path):
    """The embedded rig, shifted and stripped of its labels (a bare session): geometry alone, no model, from the
    silhouettes prepare's background models give. The tiny preset's clips (35 frames of 160x128 per camera) are weak
    evidence: the best peaks lie within 2 frames of the truth for most cameras (one may miss by a few frames, as it
    does on S9/Waving_01 whatever the code: `syncssl bench sync --cue geometry` measures 46-47 of 48 within 1 frame
    on `small`), and nothing is committed wrong; the exact recovery from exact silhouettes is the test above."""
    truth = {"cam_01": 0, "cam_02": 3, "cam_03": 0, "cam_04": -2}
    session = tmp_path / "session"
    shift_sequence(tiny_dataset / "S9" / "Walking_01", session, truth, labels=False)
    assert not list(session.glob("*.npy")) and not (session / "masks").exists()
    result = synchronize(session, None, SyncOptions(cue="geometry", max_offset_s=0.24, threads=1, **FAST),
                         progress=False, log=lambda m: None)
    (seq,) = result.sequences
    got = {c.camera: c.estimate for c in seq.cameras}
    misses = sorted(abs(e.best - truth[c]) for c, e in got.items())
    assert misses[len(misses) // 2] <= 2 and misses[-1] <= 4, {c: e.best for c, e in got.items()}
    assert all(e.offset == truth[c] for c, e in got.items() if e.determined)
    assert all(e.reason for e in got.values() if not e.determined)
    assert result.checkpoint is None and "silhouettes" in result.source
    with pytest.raises(ValueError, match="needs a model"):
        synchronize(session, None, SyncOptions(cue="classifier"), progress=False, log=lambda m: None)


def test_a_pair_of_facing_cameras_says_why_the_geometry_scored_nothing(tiny_dataset, tmp_path, monkeypatch):
    """Two cameras facing each other have no usable tangents (their baseline runs through the person): the pair's
    reason says so, not only that nothing was scored, and its panel in the figure says it too."""
    from syncssl.sync import pipeline
    session = tmp_path / "session"
    shift_sequence(tiny_dataset / "S9" / "Walking_01", session, {"cam_02": 3}, labels=False)
    cams = {c.name: c for c in read_calibration(session / "calibration.toml")}
    facing = {cams["cam_01"].name, cams["cam_03"].name}
    monkeypatch.setattr(pipeline, "has_baseline", lambda a, b: {a.name, b.name} != facing and has_baseline(a, b))
    result = synchronize(session, None, SyncOptions(cue="geometry", max_offset_s=0.24, threads=1, **FAST),
                         out=tmp_path / "out", progress=False, log=lambda m: None)
    (seq,) = result.sequences
    assert seq.pairs[("cam_01", "cam_03")].reason == NO_TANGENTS
    assert all(e.reason != NO_TANGENTS for k, e in seq.pairs.items() if k != ("cam_01", "cam_03"))
    assert seq.figure is not None and seq.figure.stat().st_size > 0


# ---------------------------------------------------------------- the commitment rule and --adapt


def _curve(a: str, b: str, peak: int, rng, n: int = 60, span: int = 10, height: float = 2.0):
    offsets = np.arange(-span, span + 1)
    L = rng.normal(0, 0.5, (n, len(offsets))) + height * np.exp(-0.5 * (offsets - peak) ** 2)
    return search.Curve(a, b, offsets, L.astype(np.float32))


def test_a_planted_wrong_answer_is_not_confirmed_by_the_model_that_learnt_it():
    """An adapted classifier that learnt a wrong first answer (cam_b at +4; the truth is 0) peaks there again, with
    all the support it likes; the geometry peaks at the truth. The classifier may not vouch (it is not independent
    of the answer), the geometry contradicts: not determined. With the classifier allowed to vote, the geometry
    still contradicts it."""
    rng = np.random.default_rng(0)
    cue_curves = {("cam_a", "cam_b"): {"classifier": _curve("cam_a", "cam_b", 4, rng, height=6.0),
                                       "geometry": _curve("cam_a", "cam_b", 0, rng)}}
    chosen = {"cam_a": search.Estimate(0, 0, "reference"), "cam_b": search.Estimate(4, 4, "ok", support=0.98)}
    for voters in (["geometry"], ["classifier", "geometry"]):
        est = confirm("cam_b", chosen, cue_curves, [], {}, 1, voters)
        assert not est.determined and "geometry prefers" in est.reason, est.reason
    # the same classifier on the truth, the geometry agreeing: committed (two lines of evidence)
    cue_curves[("cam_a", "cam_b")]["classifier"] = _curve("cam_a", "cam_b", 0, rng, height=6.0)
    right = {"cam_a": chosen["cam_a"], "cam_b": search.Estimate(0, 0, "ok", support=0.98)}
    assert confirm("cam_b", right, cue_curves, [], {}, 1, ["classifier", "geometry"]).offset == 0
    alone = confirm("cam_b", right, cue_curves, [], {}, 1, ["geometry"])  # one line of evidence is not enough
    assert not alone.determined and "only one line of evidence (geometry)" in alone.reason


def test_the_paired_test_counts_neighbouring_instants_as_dependent():
    """Per-instant differences that follow each other from frame to frame (AR(1), rho 0.8) around a true mean of 0:
    the plain standard error calls half of them significant; the paired test stays near its nominal rate."""
    rng = np.random.default_rng(0)
    plain = calibrated = 0
    for _ in range(300):
        x = np.zeros(100)
        for i, e in enumerate(rng.normal(0, 0.6, 100)):
            x[i] = 0.8 * x[i - 1] + e if i else e
        plain += abs(x.mean() / (x.std(ddof=1) / 10)) >= 2
        calibrated += abs(search.paired_z(x)) >= 2
    assert plain / 300 > 0.4 and calibrated / 300 < 0.15, (plain, calibrated)


def test_an_alternative_scored_on_a_few_instants_does_not_contradict():
    """Offsets near the end of the overlap are scored on the few frames at the clips' ends. Planted: a clear peak at
    0 over 60 instants, and 12 instants that read higher still at +25..+30; those may not outvote the peak."""
    rng = np.random.default_rng(2)
    offsets = np.arange(-30, 31)
    L = rng.normal(0, 0.5, (60, len(offsets))) + 2.0 * np.exp(-0.5 * offsets ** 2)
    L[:, offsets >= 25] = np.nan
    L[:12, offsets >= 25] = 5.0
    curve = search.Curve("a", "b", offsets, L.astype(np.float32))
    v = search.vote(curve, 0, tolerance=1)
    assert v.verdict == "confirms" and abs(v.elsewhere) < 25, v


def _broad_curve(a: str, b: str, peak: int, seed: int) -> search.Curve:
    rng = np.random.default_rng(seed)
    offsets = np.arange(-12, 13)
    L = rng.normal(0, 1.0, (60, len(offsets))) + 2.0 * np.exp(-0.5 * ((offsets - peak) / 2.5) ** 2)
    return search.Curve(a, b, offsets, L.astype(np.float32))


@pytest.mark.parametrize("alias", [0, 6])
def test_a_camera_loop_counts_a_significant_peak_that_wanders_by_a_frame(alias):
    """Four cameras in a loop (a-b, b-c, c-d, d-a; a-c and b-d face each other). Pair b-c has a broad peak: under
    resampling it wanders by a frame (support below 90% at 1 frame), yet it stands out against every other peak.
    The loop adds up with it, so camera c is committed on the geometry and the loop. Where the same broad peak lies
    6 frames from where the other pairs put it (an alias), the loop does not add up and nothing is committed."""
    rng = np.random.default_rng(1)
    truth = {"a": 0, "b": 2, "c": 5, "d": -3}
    curves = {("a", "b"): _curve("a", "b", 2, rng), ("b", "c"): _broad_curve("b", "c", 3 + alias, seed=5),
              ("c", "d"): _curve("c", "d", -8, rng), ("a", "d"): _curve("a", "d", -3, rng)}
    pairs = {k: search.analyse_curve(c, rng=np.random.default_rng(0), tolerance=1, edge=False)
             for k, c in curves.items()}
    assert pairs[("b", "c")].support < 0.9 and not pairs[("b", "c")].determined  # the premise
    chosen = {c: search.Estimate(d, d, "reference" if c == "a" else "ok", support=0.98) for c, d in truth.items()}
    cue_curves = {k: {"geometry": c} for k, c in curves.items()}
    before = search.triplet_checks(list(truth), pairs, 1, sizes=(3, 4))
    assert not before  # a loop needs every pair: b-c's was not determined
    in_loops = search.loop_estimates(curves, pairs, 1)
    loops = search.triplet_checks(list(truth), in_loops, 1, sizes=(3, 4))
    est = confirm("c", chosen, cue_curves, loops, in_loops, 1, ["geometry"])
    if alias:
        assert not est.determined and "do not add up" in est.reason, est.reason
    else:
        assert est.offset == 5 and "loop a+b+c+d" in est.extra["evidence"]["confirmed_by"], est.reason


def test_adapt_never_raises_or_moves_a_first_answer():
    def cams(*estimates):
        return [CameraResult("cam_a", search.Estimate(0, 0, "reference"), None, 40)] + [
            CameraResult(f"cam_{c}", e, None, 40) for c, e in zip("bcd", estimates)]

    first = cams(search.Estimate(3, 3, "ok", support=0.91),  # committed
                 search.Estimate(5, 5, "ok", support=0.92),  # committed; the adapted model moves it
                 search.Estimate(None, 7, "not determined", "the peak is not stable"))  # wrong, never committed
    second = cams(search.Estimate(3, 3, "ok", support=1.0),
                  search.Estimate(9, 9, "ok", support=1.0),
                  search.Estimate(None, 7, "not determined", "only one line of evidence (nothing) confirms it"))
    merge_adapted(first, second, tolerance=1)
    b, c, d = (x.estimate for x in second[1:])
    assert b.offset == 3 and b.support == 0.91  # kept, with the first search's support: not raised
    assert not c.determined and "two searches disagree" in c.reason
    assert not d.determined and d.best == 7  # the adapted model's conviction does not commit it
    assert all(x.first is f.estimate for x, f in zip(second, first))


def test_a_model_that_reads_random_cross_camera_pairs_as_synchronized_is_outside_its_domain():
    """The numbers measured with a synthetic model of 3000 steps: on its own data it passes no known-answer question
    (all below 75%), so the score distribution alone decides. On real footage it read random cross-camera pairs as
    synchronized (median +4.95): outside. On the held-out synthetic subjects (median -2.6..+0.5): inside."""
    own = dict(same_frame_sync=0.69, far_apart_unsync=0.51, mirror_flipped=0.08, cross_q05=-7.81, cross_q50=-1.85,
               cross_q95=1.50)
    real = dict(same_frame_sync=0.5, far_apart_unsync=0.38, mirror_flipped=0.08, cross_q05=1.26, cross_q50=4.95,
                cross_q95=7.25)
    check = domain.compare(real, own)
    assert not check.inside and "median log-odds on cross-camera pairs is 5.0" in check.reasons[0], check.reasons
    for median in (-2.57, 0.49):
        assert domain.compare(dict(own, cross_q05=-10.3, cross_q50=median, cross_q95=2.3), own).inside


# ---------------------------------------------------------------- time, not frames; the search range


@pytest.mark.parametrize("fps,seconds,frames", [(25, 0.04, 1), (50, 0.04, 2), (60, 0.04, 2), (30, 0.04, 1),
                                                (100, 0.04, 4), (10, 0.04, 1), (60, 0.1, 6)])
def test_tolerances_are_in_time(fps, seconds, frames):
    assert search.tolerance_frames(seconds, fps) == frames


def test_a_right_peak_at_60_fps_is_stable_within_40_ms():
    """A peak whose resamples spread over +-2 frames at 60 fps (+-33 ms) is stable within 40 ms."""
    rng = np.random.default_rng(3)
    offsets = np.arange(-20, 21)
    L = rng.normal(0, 1.0, (80, len(offsets))) + 1.2 * np.exp(-0.5 * (offsets / 1.5) ** 2)
    curve = search.Curve("a", "b", offsets, L.astype(np.float32))
    one = search.analyse_curve(curve, rng=np.random.default_rng(0), tolerance=1)
    two = search.analyse_curve(curve, rng=np.random.default_rng(0), tolerance=search.tolerance_frames(0.04, 60))
    assert two.support > one.support and abs(two.best) <= 2


def test_one_clean_peak_over_the_whole_range_confirms_its_offset_and_only_that():
    """A curve that falls on both sides of its peak all the way to the ends is one lobe: the peak's own shoulders
    beyond the cue's resolution are the alternative, so the clearest evidence confirms (it was once silent), an
    offset beyond the resolution is contradicted, and pure noise says nothing."""
    rng = np.random.default_rng(5)
    offsets = np.arange(-50, 51)
    peak = -2.0 * np.abs(offsets - 3) / 10.0  # strictly unimodal, peak at +3
    L = (rng.normal(0, 1.0, (100, len(offsets))) * 0.3 + peak).astype(np.float32)
    curve = search.Curve("a", "b", offsets, L)
    assert search.lobe(curve.score, int(np.argmax(curve.score))) == (0, len(offsets) - 1)
    assert search.vote(curve, 3, tolerance=2).verdict == "confirms"
    assert search.vote(curve, 12, tolerance=2).verdict == "contradicts"
    noise = search.Curve("a", "b", offsets, rng.normal(0, 1.0, (100, len(offsets))).astype(np.float32))
    assert search.vote(noise, 3, tolerance=2).verdict != "confirms"


class _Seq:
    def __init__(self, key, lengths, fps=60.0):
        self.key, self.folder, self.fps = key, None, fps
        self.views = [SimpleNamespace(name=c, num_frames=n, start=0) for c, n in lengths.items()]

    def view(self, name):
        return next(v for v in self.views if v.name == name)


def test_the_search_range_defaults_to_the_recordings_and_a_refusal_names_every_pair():
    seqs = [_Seq("s/one", {"cam_01": 100, "cam_02": 93, "cam_03": 70}), _Seq("s/two", {"cam_01": 100, "cam_02": 80})]
    assert search_spans(seqs, SyncOptions()) == {"s/one": 35, "s/two": 40}  # half the shorter one in common
    assert search_spans(seqs, SyncOptions(max_offset_s=0.5)) == {"s/one": 30, "s/two": 30}
    with pytest.raises(DataError) as e:
        search_spans(seqs, SyncOptions(max_offset_s=1.0))  # 60 frames: too many for every pair but one
    msg = str(e.value)
    for part in ("cam_02 1.05 s (63 frames)", "cam_03 0.67 s (40 frames)", "s/two against cam_01: cam_02 0.83 s",
                 "the largest --max-offset for all is 0.67 s"):
        assert part in msg, msg


def test_the_recordings_a_model_learnt_are_those_of_its_training_split(tiny_dataset):
    """domain.recordings: the videos' digests of the sequences of the split the model was pre-trained on (a test
    person's recordings are not learnt); an unknown split counts every sequence (the safe side)."""
    from syncssl.data.preparation.manifest import Manifest
    m = Manifest.load(tiny_dataset / "prepared")
    train = {m.sequences[i].key for i in m.split(m.resolve_split("auto"))}
    digests = {k: sorted(v["sha1"] for v in s["videos"].values()) for k, s in m.fingerprint["sequences"].items()}
    assert train and len(train) < len(digests)
    assert sorted(domain.recordings(m, "auto")) == sorted(digests[k] for k in train)
    assert sorted(domain.recordings(m, "no-such-split")) == sorted(digests.values())
    assert sorted(domain.recordings(m)) == sorted(digests.values())
