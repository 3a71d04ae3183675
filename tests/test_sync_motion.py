"""The motion-timing cue of syncssl-sync: when the person changes pace, every camera sees it at the same instant,
whatever it sees of the person. Planted series, then the embedded rig with its labels removed."""
from __future__ import annotations

import numpy as np
import pytest
from test_sync import FAST, TRUTH, mirror_rig

from syncssl.sync import SyncOptions, motion, synchronize
from syncssl.sync.inject import shift_sequence


def _pace(T: int, rng) -> np.ndarray:
    """A person's activity over time: bursts of motion between still moments."""
    x = np.convolve(rng.exponential(1.0, T + 20) * (rng.random(T + 20) < 0.3), np.hanning(9), "same")[10:T + 10]
    return 50 + 400 * x


def test_windows_are_unit_vectors_and_flat_or_partial_windows_say_nothing():
    x = np.r_[np.zeros(10), np.arange(10.0), np.full(10, 5.0), np.nan, np.arange(9.0)]
    w = motion.windows(x, 2)
    assert w.shape == (len(x), 5)
    ok = np.isfinite(w).all(1)
    assert not ok[:2].any() and not ok[-2:].any()  # the window leaves the series
    assert not ok[4] and not ok[24]  # all zeros; all fives: no change of pace
    assert not ok[29:32].any()  # a NaN inside
    np.testing.assert_allclose(np.linalg.norm(w[ok], axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w[ok].sum(1), 0.0, atol=1e-9)
    short = motion.windows(np.arange(3.0), 2)
    assert short.shape == (3, 5) and not np.isfinite(short).any()


@pytest.mark.parametrize("shift", [-7, 0, 4])
def test_the_cue_recovers_a_known_offset_whatever_each_camera_sees_of_the_motion(shift):
    """Camera b sees the motion 3 times larger, with its own noise and a slow drift (the person turning towards
    it): the correlation of windows peaks at the shift all the same."""
    rng = np.random.default_rng(1)
    pace = _pace(160, rng)
    a = pace[20:140] + rng.normal(0, 5, 120)
    b = 3 * pace[20 - shift:140 - shift] + rng.normal(0, 20, 120) + np.linspace(0, 300, 120)
    offsets = np.arange(-12, 13)
    M = motion.cue_matrix(motion.MotionCue(), a, b, np.arange(120), offsets, 25.0)
    assert M.shape == (120, 25) and M.dtype == np.float32
    assert np.nanmax(np.abs(M)) <= motion.MotionCue().weight + 1e-5  # a correlation, times the weight
    assert offsets[np.nanargmax(np.nanmean(M, 0))] == shift
    # where b's frame does not exist, nothing is scored
    assert np.isnan(M[0, offsets < 0]).all() and np.isnan(M[-1, offsets > 0]).all()


def test_changed_pixels_count_inside_the_persons_box_only():
    before = np.zeros((60, 80), np.uint8)
    after = before.copy()
    after[10:20, 10:20] = 200  # inside the box (full resolution: 2x)
    after[50:60, 70:80] = 200  # someone else, far outside it
    after[30:32, 30:32] = 10  # below the threshold
    box = np.array([20.0, 20.0, 40.0, 40.0])  # x0, y0, x1, y1 at full resolution; grown by a fifth
    assert motion.changed_pixels(before, after, box, 2) == 100
    assert np.isnan(motion.changed_pixels(before, after, np.full(4, np.nan), 2))
    with pytest.raises(ValueError):
        motion.MotionCue(window_s=0)


def test_motion_alone_places_a_rig_without_labels_or_calibrated_geometry(tiny_dataset, tmp_path):
    """Copies of one camera (no baseline, so no tangency) shifted by known offsets: the motion cue needs neither
    the geometry nor a model, and places every camera right, with the camera loop as its second line."""
    rig = mirror_rig(tiny_dataset / "S9" / "Walking_01", tmp_path / "rig")
    session = tmp_path / "session"
    shift_sequence(rig, session, TRUTH, labels=False)
    result = synchronize(session, None, SyncOptions(cue="motion", max_offset_s=0.24, threads=1, **FAST),
                         out=tmp_path / "out", progress=False, log=lambda m: None)
    (seq,) = result.sequences
    got = {c.camera: c.estimate for c in seq.cameras}
    assert {c: e.best for c, e in got.items()} == TRUTH
    assert all(e.offset == TRUTH[c] for c, e in got.items() if e.determined)
    assert all(set(cues) == {"motion"} for cues in seq.cue_curves.values())
    # without a model, fused is the geometry and the motion (here the geometry has no baseline to work with)
    fused = synchronize(session, None, SyncOptions(max_offset_s=0.24, threads=1, **FAST), out=tmp_path / "fused",
                        progress=False, log=lambda m: None)
    assert {c.camera: c.estimate.best for c in fused.sequences[0].cameras} == TRUTH
    with pytest.raises(ValueError, match="needs a model"):
        synchronize(session, None, SyncOptions(cue="classifier+motion"), progress=False, log=lambda m: None)
    with pytest.raises(ValueError, match="joined by"):
        SyncOptions(cue="motion+colour")


def test_geometry_and_motion_together_on_the_embedded_rig_without_labels(tiny_dataset, tmp_path):
    """The embedded rig, shifted and stripped of its labels: the two model-free cues fused. The tiny preset's clips
    (35 frames of walking, a periodic motion) are weak evidence, as for the geometry alone: most best peaks lie
    within 2 frames of the truth, and nothing is committed wrong."""
    truth = {"cam_01": 0, "cam_02": 3, "cam_03": 0, "cam_04": -2}
    session = tmp_path / "session"
    shift_sequence(tiny_dataset / "S9" / "Walking_01", session, truth, labels=False)
    result = synchronize(session, None, SyncOptions(cue="geometry+motion", max_offset_s=0.24, threads=1, **FAST),
                         out=tmp_path / "out", progress=False, log=lambda m: None)
    (seq,) = result.sequences
    got = {c.camera: c.estimate for c in seq.cameras}
    misses = sorted(abs(e.best - truth[c]) for c, e in got.items())
    assert misses[len(misses) // 2] <= 2 and misses[-1] <= 4, {c: e.best for c, e in got.items()}
    assert all(e.offset == truth[c] for c, e in got.items() if e.determined)
    assert any(set(cues) == {"geometry", "motion"} for cues in seq.cue_curves.values())
    assert seq.figure is not None and seq.figure.stat().st_size > 0


def test_a_periodic_motion_does_not_vouch_for_one_of_its_periods():
    """Arm circles repeat: the true offset and the one a period away score alike, so the motion cue must stay
    silent there (no confirmation, no contradiction), while an irregular pace confirms its true offset."""
    from syncssl.sync import search
    rng = np.random.default_rng(4)
    T, shift, offsets = 150, 3, np.arange(-15, 16)
    t = np.arange(T + 20)
    for pace, want in ((100 + 80 * np.sin(2 * np.pi * t / 12), {"silent"}), (_pace(T + 20, rng), {"confirms"})):
        a = pace[10:10 + T] + rng.normal(0, 2, T)
        b = 2 * pace[10 - shift:10 - shift + T] + rng.normal(0, 4, T)
        M = motion.cue_matrix(motion.MotionCue(), a, b, np.arange(20, T - 20), offsets, 25.0)
        curve = search.Curve("a", "b", offsets, M)
        assert search.vote(curve, shift, tolerance=1).verdict in want
        assert search.vote(curve, shift + 12, tolerance=1).verdict != "confirms"  # a period away
