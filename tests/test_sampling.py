"""The pair sampler: purity, resumability, rank sharding, balance, offsets, static frames, modes, errors."""
from itertools import islice

import numpy as np
import pytest

from syncssl.data.loading.sampling import PairPlan, PairSampler, SamplerSequence, SamplingConfig, cross_pairs

FIELDS = ("seq", "cam", "frame", "offset", "sync", "flip", "flip_label", "jitter", "mirror")


def sequences():
    """Two rigs: 50 fps with a static stretch, 25 fps fully moving."""
    static = np.zeros(600, bool)
    static[100:200] = True  # the subject stands still
    static[::7] = True  # and some scattered frames
    return [SamplerSequence(600, 4, 50.0, static=static, name="S1/walk"),
            SamplerSequence(300, 3, 25.0, name="S5/eat")]


def same(a: PairPlan, b: PairPlan) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in FIELDS)


def test_plan_is_a_pure_function_of_seed_and_step():
    a = PairSampler(sequences(), SamplingConfig(batch_size=16), seed=3)
    b = PairSampler(sequences(), SamplingConfig(batch_size=16), seed=3)
    for step in (9, 2, 7):  # history must not matter
        a.plan(step)
    assert same(a.plan(5), b.plan(5))
    assert same(a.plan(5), a.plan(5))
    assert not same(a.plan(5), a.plan(6))
    assert not same(a.plan(5), PairSampler(sequences(), SamplingConfig(batch_size=16), seed=4).plan(5))


def test_resume_from_a_step_without_replay():
    s = PairSampler(sequences(), SamplingConfig(batch_size=8), seed=1)
    resumed = list(islice(s.from_step(40), 3))
    assert [p.step for p in resumed] == [40, 41, 42]
    for p in resumed:
        assert same(p, PairSampler(sequences(), SamplingConfig(batch_size=8), seed=1).plan(p.step))
    assert same(next(iter(s)), s.plan(0))


def test_ranks_take_disjoint_rows_of_the_single_process_global_batch():
    world, n = 4, 8
    single = PairSampler(sequences(), SamplingConfig(batch_size=n * world), seed=11)
    ranks = [PairSampler(sequences(), SamplingConfig(batch_size=n), seed=11, rank=r, world_size=world)
             for r in range(world)]
    for step in (0, 13):
        plans = [r.plan(step) for r in ranks]
        assert [p.rank for p in plans] == list(range(world)) and all(len(p) == n for p in plans)
        whole = single.plan(step)
        for f in FIELDS:
            assert np.array_equal(np.concatenate([getattr(p, f) for p in plans]), getattr(whole, f)), f
        assert not same(plans[0], plans[1])  # independent streams, not copies


def test_labels_are_balanced_at_the_configured_fractions():
    # default: the paper's flip protocol, three equal kinds (unsync, sync, sync + flipped): both heads balanced
    s = PairSampler(sequences(), SamplingConfig(batch_size=30), seed=0)
    plans = [s.plan(k) for k in range(60)]
    assert all(p.sync.sum() == 20 and p.flip_label.sum() == 10 for p in plans)  # exact per global batch
    for p in plans:
        assert (p.sync[p.flip_label == 1] == 1).all()  # a flipped pair is a synchronized pair, as in the paper
        assert np.array_equal(p.flip.sum(1), p.flip_label)  # one mirrored view exactly when flipped
        unflipped = p.flip_label == 0
        assert p.sync[unflipped].sum() == (~unflipped).sum() == (p.sync[unflipped] == 0).sum()  # 10 / 10 / 10
    views = np.concatenate([p.flip[p.flip_label == 1].argmax(1) for p in plans])
    assert 0.4 < views.mean() < 0.6  # either view

    odd = PairSampler(sequences(), SamplingConfig(batch_size=10, sync_fraction=0.3, flip_fraction=0.75), seed=0)
    sync = np.concatenate([odd.plan(k).sync for k in range(300)])
    flip = np.concatenate([odd.plan(k).flip_label for k in range(300)])
    assert abs(sync.mean() - 0.3) < 0.01 and abs(flip[sync == 1].mean() - 0.75) < 0.02  # no rounding bias


def test_independent_flips_are_an_explicit_ablation():
    s = PairSampler(sequences(), SamplingConfig(batch_size=32, sync_fraction=0.5, flip_unsync=True), seed=0)
    plans = [s.plan(k) for k in range(60)]
    assert all(p.sync.sum() == 16 and p.flip_label.sum() == 16 for p in plans)
    sync = np.concatenate([p.sync for p in plans])
    flip = np.concatenate([p.flip_label for p in plans])
    assert abs(flip[sync == 1].mean() - 0.5) < 0.06 and abs(flip[sync == 0].mean() - 0.5) < 0.06  # independent


def test_offsets_stay_in_the_window_converted_with_each_fps():
    s = PairSampler(sequences(), SamplingConfig(batch_size=64), seed=2)
    assert s.window(0) == (5, 127) and s.window(1) == (3, 63)  # 0.1..2.54 s at 50 and 25 fps
    plans = [s.plan(k) for k in range(40)]
    seq = np.concatenate([p.seq for p in plans])
    off = np.concatenate([p.offset for p in plans])
    sync = np.concatenate([p.sync for p in plans])
    frame = np.concatenate([p.frame for p in plans])
    assert (off[sync == 1] == 0).all() and (frame[sync == 1, 0] == frame[sync == 1, 1]).all()
    assert (frame[:, 1] - frame[:, 0] == off).all()
    for i, (lo, hi) in enumerate([(5, 127), (3, 63)]):
        d = np.abs(off[(sync == 0) & (seq == i)])
        assert len(d) and d.min() >= lo and d.max() <= hi
        assert (off[(sync == 0) & (seq == i)] < 0).any() and (off[(sync == 0) & (seq == i)] > 0).any()
        # both views inside their own sequence
        n = 600 if i == 0 else 300
        assert frame[seq == i].min() >= 0 and frame[seq == i].max() < n
    assert np.abs(off[(sync == 0) & (seq == 1)]).max() > 50  # the window really stretches at 25 fps

    frames = PairSampler(sequences(), SamplingConfig(batch_size=64, offset_unit="frames", min_offset=4,
                                                     max_offset=10), seed=2)
    d = np.abs(np.concatenate([p.offset[p.sync == 0] for p in (frames.plan(k) for k in range(10))]))
    assert d.min() >= 4 and d.max() <= 10 and frames.window(0) == frames.window(1) == (4, 10)


def test_window_is_clipped_to_short_sequences():
    short = [SamplerSequence(20, 2, 50.0, name="short")]  # window 5..127 frames, sequence of 20
    s = PairSampler(short, SamplingConfig(batch_size=32), seed=0)
    for k in range(10):
        p = s.plan(k)
        assert p.frame.min() >= 0 and p.frame.max() < 20
        assert (np.abs(p.offset[p.sync == 0]) >= 5).all()


def test_static_frames_are_never_used_and_are_reported():
    seqs = sequences()
    s = PairSampler(seqs, SamplingConfig(batch_size=64), seed=5)
    static = seqs[0].static
    for k in range(30):
        p = s.plan(k)
        on0 = p.seq == 0
        assert not static[p.frame[on0]].any()
    summary = s.summary()
    assert summary["frames_static"] == static.sum() and summary["frames"] == 900
    assert summary["static_share"] == pytest.approx(static.sum() / 900)
    assert "static" in s.describe() and str(int(static.sum())) in s.describe()


def test_sequences_are_drawn_in_proportion_to_their_usable_frames():
    seqs = [SamplerSequence(400, 2, 50.0), SamplerSequence(400, 2, 50.0, static=np.arange(400) >= 100)]
    s = PairSampler(seqs, SamplingConfig(batch_size=100), seed=0)
    seq = np.concatenate([s.plan(k).seq for k in range(100)])
    assert abs((seq == 0).mean() - 400 / 500) < 0.02


def test_unusable_sequences_are_excluded_with_a_reason():
    frozen = SamplerSequence(50, 4, 50.0, static=np.ones(50, bool), name="S2/frozen")
    s = PairSampler(sequences() + [frozen], SamplingConfig(batch_size=16), seed=0)
    summary = s.summary()
    assert summary["sequences_used"] == 2 and "S2/frozen" in summary["excluded"]
    assert "static" in summary["excluded"]["S2/frozen"]
    assert not (np.concatenate([s.plan(k).seq for k in range(20)]) == 2).any()
    with pytest.raises(ValueError, match="no sequence can provide"):
        PairSampler([frozen], SamplingConfig(batch_size=4))


def test_pose_change_filter_reads_labels_only_when_asked_by_name():
    T, rng = 400, np.random.default_rng(0)
    # the pose changes only every 20 frames (a subject that moves in jerks): many offsets give the same pose
    steps = rng.normal(0, 30, (T // 20, 17, 3)).cumsum(0).astype(np.float32)
    poses = np.repeat(steps, 20, axis=0)
    seqs = [SamplerSequence(T, 4, 50.0, poses3d=poses)]

    def changes(sampler):
        out = []
        for k in range(30):
            p = sampler.plan(k)
            u = p.sync == 0
            out.append(np.linalg.norm(poses[p.frame[u, 0]] - poses[p.frame[u, 1]], axis=-1).mean(-1))
        return np.concatenate(out)

    assert (changes(PairSampler(seqs, SamplingConfig(batch_size=32), seed=0)) < 1e-3).any()  # the filter matters
    filtered = changes(PairSampler(seqs, SamplingConfig(batch_size=32, label_min_pose_change_mm=20.0), seed=0))
    assert filtered.min() >= 20.0
    no_poses = PairSampler([SamplerSequence(T, 4, 50.0, name="S9/x")],
                           SamplingConfig(batch_size=8, label_min_pose_change_mm=20.0))
    assert no_poses.summary()["pose_filter_off"] == ["S9/x"]


def test_silhouette_filter_rejects_ambiguous_pairs_without_labels():
    T, C = 400, 2
    rng = np.random.default_rng(1)
    # the silhouette changes only every 20 frames: many offsets show the same silhouette (a rigid pair)
    shapes = rng.random((T // 20, C, 256)) < 0.3
    bits = np.packbits(np.repeat(shapes, 20, axis=0), axis=-1)
    seqs = [SamplerSequence(T, C, 50.0, silhouettes=bits)]

    def changes(sampler):
        out = []
        for k in range(30):
            p = sampler.plan(k)
            u = p.sync == 0
            a, b = seqs[0].silhouettes[p.frame[u, 0]], seqs[0].silhouettes[p.frame[u, 1]]
            out.append(((a ^ b).sum(-1) / np.maximum((a | b).sum(-1), 1)).mean(-1))
        return np.concatenate(out)

    assert (changes(PairSampler(seqs, SamplingConfig(batch_size=32), seed=0)) == 0).any()
    assert changes(PairSampler(seqs, SamplingConfig(batch_size=32, min_silhouette_change=0.2), seed=0)).min() >= 0.2
    bare = PairSampler([SamplerSequence(T, C, 50.0, name="S9/x")],
                       SamplingConfig(batch_size=8, min_silhouette_change=0.2))
    assert bare.summary()["silhouette_filter_off"] == ["S9/x"]


def test_prepared_sequences_reach_the_sampler_without_labels():
    from types import SimpleNamespace
    prepared = SimpleNamespace(num_frames=120, cameras=["c0", "c1"], fps=30.0, subject="S7", key="S7/sit",
                               static=np.arange(120) < 20, poses3d=np.ones((120, 17, 3), np.float32),
                               silhouettes=np.zeros((120, 2, 32), np.uint8))
    assert SamplerSequence.from_sequence(prepared).poses3d is None  # pre-training reads no labels
    assert SamplerSequence.from_sequence(prepared, labels=True).poses3d.shape == (120, 17, 3)  # opt-in
    assert SamplerSequence.from_sequence(prepared).silhouettes.shape == (120, 2, 256)


def test_multiview_uses_two_cameras_and_single_view_one():
    multi = PairSampler(sequences(), SamplingConfig(batch_size=64), seed=0)
    single = PairSampler(sequences(), SamplingConfig(batch_size=64, mode="single_view"), seed=0)
    for k in range(10):
        m, s = multi.plan(k), single.plan(k)
        assert (m.cam[:, 0] != m.cam[:, 1]).all()
        assert (s.cam[:, 0] == s.cam[:, 1]).all()
        assert (m.cam.max(1) < np.where(m.seq == 0, 4, 3)).all()
        # single view: a sync pair is one frame under two different augmentations
        sync = s.sync == 1
        assert (s.frame[sync, 0] == s.frame[sync, 1]).all()
        assert (np.abs(s.jitter[:, 0] - s.jitter[:, 1]).max(-1) > 0).all()
        assert np.abs(s.jitter[..., :2]).max() <= 0.15 and np.abs(m.jitter[..., :2]).max() <= 0.05
        assert np.abs(s.jitter[..., :2]).max() > 0.05  # stronger than the multiview jitter
    assert {(0, 1), (1, 0), (2, 3)} <= {tuple(c) for p in (multi.plan(k) for k in range(10)) for c in p.cam}


def test_single_view_pairs_mixed_into_multiview_training():
    config = SamplingConfig(batch_size=256)
    paper = PairSampler(sequences(), config, seed=0)
    mixed = PairSampler(sequences(), SamplingConfig(batch_size=256, single_view_share=0.25), seed=0)
    for k in range(5):
        p, m = paper.plan(k), mixed.plan(k)
        single = m.cam[:, 0] == m.cam[:, 1]
        assert 0.15 < single.mean() < 0.35
        # the rows left multiview are the paper's rows; the single-view ones keep their anchors and labels
        for f in ("seq", "frame", "offset", "sync", "flip", "flip_label"):
            assert np.array_equal(getattr(p, f), getattr(m, f)), f
        assert np.array_equal(p.cam[~single], m.cam[~single]) and np.array_equal(p.cam[single, 0], m.cam[single, 0])
        assert np.allclose(p.jitter[~single], m.jitter[~single])
        assert np.allclose(m.jitter[single][..., :2], p.jitter[single][..., :2] * 3)  # 0.15 / 0.05
    with pytest.raises(ValueError, match="single_view_share"):
        SamplingConfig(single_view_share=1.5)


def test_temporal_single_view_pairs_are_two_nearby_instants():
    paper = PairSampler(sequences(), SamplingConfig(batch_size=256, mode="single_view"), seed=0)
    temporal = PairSampler(sequences(), SamplingConfig(batch_size=256, mode="single_view",
                                                       single_view_sync_window=2), seed=0)
    seen = set()
    for k in range(5):
        p, t = paper.plan(k), temporal.plan(k)
        sync = t.sync == 1
        gap = t.frame[:, 1] - t.frame[:, 0]
        # synchronized: two different instants at most 2 frames apart, inside the sequence
        assert (np.abs(gap[sync]) >= 1).all() and (np.abs(gap[sync]) <= 2).all()
        assert np.array_equal(gap, t.offset)
        lengths = np.where(t.seq == 0, 600, 300)
        assert (t.frame >= 0).all() and (t.frame < lengths[:, None]).all()
        seen |= set(gap[sync].tolist())
        # drawn last: everything else is the paper's variant's plan
        assert np.array_equal(p.frame[:, 0], t.frame[:, 0]) and np.array_equal(p.offset[~sync], t.offset[~sync])
        for f in ("seq", "cam", "sync", "flip", "flip_label", "jitter"):
            assert np.array_equal(getattr(p, f), getattr(t, f)), f
    assert seen == {-2, -1, 1, 2}
    # nearby must stay apart from distant: the window's lower end (0.1 s = 3 frames at 25 fps) is above it
    with pytest.raises(ValueError, match="single_view_sync_window.*S5/eat"):
        PairSampler(sequences(), SamplingConfig(mode="single_view", single_view_sync_window=3))
    with pytest.raises(ValueError, match="single_view_sync_window"):
        SamplingConfig(single_view_sync_window=-1)


def test_largest_jitter_covers_every_kind_of_pair_drawn():
    # tiles are cut once with this margin: a pair jittered beyond it would read past the tile
    assert SamplingConfig().max_jitter() == (0.05, 0.1)
    assert SamplingConfig(mode="single_view").max_jitter() == (0.15, 0.25)
    assert SamplingConfig(single_view_share=0.25).max_jitter() == (0.15, 0.25)
    assert SamplingConfig(single_view_share=0.25, jitter_scale=0.4).max_jitter() == (0.15, 0.4)
    plan = PairSampler(sequences(), SamplingConfig(batch_size=512, single_view_share=0.5), seed=0).plan(0)
    shift, scale = SamplingConfig(single_view_share=0.5).max_jitter()
    assert np.abs(plan.jitter[..., :2]).max() <= shift and np.abs(plan.jitter[..., 2]).max() <= scale
    assert np.abs(plan.jitter[..., :2]).max() > 0.05


def test_clear_errors_on_impossible_configurations():
    with pytest.raises(ValueError, match="no sequences"):
        PairSampler([], SamplingConfig())
    with pytest.raises(ValueError, match="offset window"):
        PairSampler(sequences(), SamplingConfig(min_offset=20.0, max_offset=30.0))  # 20 s > every sequence
    mono = [SamplerSequence(100, 1, 50.0, name="S1/a"), SamplerSequence(100, 1, 50.0, name="S1/b")]
    with pytest.raises(ValueError, match="single camera.*single_view"):
        PairSampler(mono, SamplingConfig())
    assert (PairSampler(mono, SamplingConfig(mode="single_view")).plan(0).cam == 0).all()
    with pytest.raises(ValueError, match="rank"):
        PairSampler(sequences(), rank=2, world_size=2)
    with pytest.raises(ValueError, match="min_offset"):
        SamplingConfig(min_offset=3.0, max_offset=1.0)
    with pytest.raises(ValueError, match="mode"):
        SamplingConfig(mode="stereo")


def test_plan_arrays_have_the_documented_types():
    p = PairSampler(sequences(), SamplingConfig(batch_size=6), seed=0, rank=1, world_size=2).plan(3)
    assert (p.step, p.rank, len(p)) == (3, 1, 6)
    expected = {"seq": (np.int32, (6,)), "cam": (np.int32, (6, 2)), "frame": (np.int64, (6, 2)),
                "offset": (np.int32, (6,)), "sync": (np.int64, (6,)), "flip": (np.bool_, (6, 2)),
                "flip_label": (np.int64, (6,)), "jitter": (np.float32, (6, 2, 3)), "mirror": (np.bool_, (6,))}
    for name, (dtype, shape) in expected.items():
        a = getattr(p, name)
        assert a.dtype == dtype and a.shape == shape, name


def test_from_a_prepared_sequence():
    from types import SimpleNamespace
    prepared = SimpleNamespace(num_frames=120, cameras=["c0", "c1", "c2"], fps=30.0, subject="S7", key="S7/sit",
                               static=np.arange(120) < 20, poses3d=np.zeros((120, 17, 3), np.float32))
    s = SamplerSequence.from_sequence(prepared, labels=True)
    assert (s.num_frames, s.num_cameras, s.fps, s.name) == (120, 3, 30.0, "S7/sit")
    assert s.static.sum() == 20 and s.poses3d.shape == (120, 17, 3)
    with pytest.raises(ValueError, match="static must be"):
        SamplerSequence(10, 2, 50.0, static=np.zeros(9, bool))


def test_grouped_rows_share_sequence_and_anchor_and_keep_their_pairs():
    s = PairSampler(sequences(), SamplingConfig(batch_size=12, group_size=4), seed=5, world_size=2)
    for step in range(6):
        p = s.global_plan(step)
        lo_hi = {i: s.window(i) for i in range(2)}
        for g in range(0, 24, 4):
            assert len(set(p.seq[g:g + 4])) == 1 and len(set(p.frame[g:g + 4, 0])) == 1
        assert (p.cam[:, 0] != p.cam[:, 1]).all()  # each row is still a two-camera pair
        for row in np.flatnonzero(p.sync == 0):
            lo, hi = lo_hi[int(p.seq[row])]
            assert lo <= abs(int(p.offset[row])) <= hi
        assert (p.offset[p.sync == 1] == 0).all()
    # ranks hold whole groups
    rank1 = PairSampler(sequences(), SamplingConfig(batch_size=12, group_size=4), seed=5, rank=1, world_size=2)
    assert np.array_equal(rank1.plan(3).frame, s.global_plan(3).frame[12:])


def test_cross_pairs_take_only_pairs_the_plan_labels():
    s = PairSampler(sequences(), SamplingConfig(batch_size=32, group_size=8), seed=1)
    p = s.plan(7)
    pairs, labels = cross_pairs(p, 8)
    assert len(pairs) > 32 and 0.2 < labels.mean() < 0.9  # many more pairs than rows, both classes
    row, cam = pairs // 2, p.cam.reshape(-1)[pairs]
    frame, flipped = p.frame.reshape(-1)[pairs], p.flip.reshape(-1)[pairs]
    anchor = p.frame[row[:, 0], 0]
    assert (row[:, 0] // 8 == row[:, 1] // 8).all() and (row[:, 0] != row[:, 1]).all()
    assert (cam[:, 0] != cam[:, 1]).all() and not flipped.any()
    assert ((frame[:, 0] == anchor) | (frame[:, 1] == anchor)).all()  # one view at the anchor: the offset was filtered
    assert np.array_equal(labels, (frame[:, 0] == frame[:, 1]).astype(np.int64))
    lo, _ = s.window(int(p.seq[0]))
    assert (np.abs(frame[labels == 0, 0] - frame[labels == 0, 1]) >= 1).all()
    assert all((np.abs(frame[labels == 0, 0] - frame[labels == 0, 1])[row[labels == 0, 0] // 8 == g] >=
                s.window(int(p.seq[8 * g]))[0]).all() for g in range(4))
    assert len(cross_pairs(PairSampler(sequences(), SamplingConfig(batch_size=8), seed=1).plan(0), 1)[0]) == 0


def test_mirrored_pairs_keep_their_labels_and_leave_other_draws_alone():
    plain = PairSampler(sequences(), SamplingConfig(batch_size=32, group_size=4), seed=2).plan(3)
    s = PairSampler(sequences(), SamplingConfig(batch_size=32, group_size=4, mirror_pairs=0.5), seed=2)
    p = s.plan(3)
    assert not plain.mirror.any() and 0 < p.mirror.sum() < 32
    for f in FIELDS:  # drawn last: the rest of the plan is the unmirrored one
        if f not in ("flip", "mirror"):
            assert np.array_equal(getattr(p, f), getattr(plain, f)), f
    assert np.array_equal(p.flip ^ p.mirror[:, None], plain.flip)  # both views mirrored on top of the flip
    assert np.array_equal(p.flip[:, 0] != p.flip[:, 1], p.flip_label.astype(bool))  # one view against the other
    assert all(len(set(p.mirror[g:g + 4])) == 1 for g in range(0, 32, 4))  # a group is one rig, mirrored or not
    pairs, labels = cross_pairs(p, 4)
    relative = (p.flip ^ p.mirror[:, None]).reshape(-1)
    assert len(pairs) and not relative[pairs].any()  # cross pairs: no view mirrored against its rig
    assert np.array_equal(p.mirror[pairs[:, 0] // 2], p.mirror[pairs[:, 1] // 2])
    assert np.array_equal(pairs, cross_pairs(plain, 4)[0]) and np.array_equal(labels, cross_pairs(plain, 4)[1])
    with pytest.raises(ValueError, match="mirror_pairs"):
        SamplingConfig(mirror_pairs=1.5)


def test_group_size_must_divide_the_batch_and_fit_the_variant():
    with pytest.raises(ValueError, match="group_size must be >= 1 and divide batch_size"):
        SamplingConfig(batch_size=10, group_size=4)
    for window in (0, 2):  # cross pairs would join two cameras: multi-view pairs inside the single-view ablation
        with pytest.raises(ValueError, match="single_view mode must not see"):
            SamplingConfig(batch_size=8, group_size=4, mode="single_view", single_view_sync_window=window)
    SamplingConfig(batch_size=8, group_size=1, mode="single_view")
