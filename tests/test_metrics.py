"""syncssl.eval.metrics: MPJPE, N-MPJPE, P-MPJPE and the DDP-reducible PoseErrors metric."""
import json
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from syncssl.eval.metrics import PoseErrors, mpjpe, n_mpjpe, p_mpjpe, procrustes_align, scale_align

ACTIONS = ["walk", "sit", "eat", "phone"]


def random_poses(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    poses = torch.randn(b, 17, 3, generator=g, dtype=torch.float64) * 300
    return poses - poses[:, :1]  # root-relative, mm


def random_rotations(b, seed=1):
    q, r = torch.linalg.qr(torch.randn(b, 3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]
    return q * torch.linalg.det(q)[:, None, None]  # proper rotations: det +1


def test_mpjpe_hand_computed():
    target = torch.zeros(2, 2, 3)
    pred = torch.tensor([[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    assert mpjpe(pred, target).tolist() == [3.0, 0.0]  # (5 + 1) / 2 and 0


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\(B, J, 3\)"):
        mpjpe(torch.zeros(2, 17, 3), torch.zeros(2, 16, 3))
    with pytest.raises(ValueError, match=r"\(B, J, 3\)"):
        p_mpjpe(torch.zeros(17, 3), torch.zeros(17, 3))
    with pytest.raises(TypeError, match="floating point"):
        n_mpjpe(torch.zeros(1, 17, 3, dtype=torch.long), torch.zeros(1, 17, 3, dtype=torch.long))


def test_p_mpjpe_of_a_similar_copy_is_zero():
    target = random_poses(8)
    scale = torch.linspace(0.5, 2.0, 8, dtype=torch.float64)[:, None, None]
    pred = scale * target @ random_rotations(8) + torch.tensor([100.0, -50.0, 3000.0], dtype=torch.float64)
    assert mpjpe(pred, target).min() > 100
    assert p_mpjpe(pred, target).max() < 1e-6
    assert p_mpjpe(pred.float(), target.float()).max() < 1e-2  # float32 inputs too


def test_p_mpjpe_does_not_explain_away_a_mirror():
    target = random_poses(8)
    mirrored = target * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    errors = p_mpjpe(mirrored, target)
    assert errors.min() > 10
    # without the reflection fix an orthogonal Procrustes would match the mirror exactly
    p, g = mirrored - mirrored.mean(1, keepdim=True), target - target.mean(1, keepdim=True)
    u, s, vt = torch.linalg.svd(p.transpose(1, 2) @ g)
    unfixed = (s.sum(1) / (p * p).sum((1, 2)))[:, None, None] * p @ (u @ vt)
    assert mpjpe(unfixed, g).max() < 1e-6
    # and the fixed alignment uses a proper rotation: a rotated copy of the mirror scores as the mirror
    torch.testing.assert_close(p_mpjpe(mirrored @ random_rotations(8, seed=5), target), errors)


def test_procrustes_is_optimal():
    target = random_poses(4)
    pred = target @ random_rotations(4) * 0.8 + torch.randn(4, 17, 3, dtype=torch.float64) * 40
    aligned, _ = procrustes_align(pred, target)
    best = ((aligned - target) ** 2).sum((1, 2))
    for rot in random_rotations(4, seed=7):  # perturbing the aligned pose only makes it worse
        for s in (0.95, 1.05):
            mu = aligned.mean(1, keepdim=True)
            small = torch.linalg.matrix_exp(0.05 * (rot - rot.T))  # a small proper rotation
            other = s * (aligned - mu) @ small + mu
            assert torch.all(((other - target) ** 2).sum((1, 2)) > best)


def test_n_mpjpe_aligns_scale_only():
    target = random_poses(6)
    assert n_mpjpe(target * 0.7, target).max() < 1e-6
    assert n_mpjpe(target * 1.3 + 250.0, target).max() < 1e-6  # root-relative first: a translation is ignored
    rotated = target @ random_rotations(6)
    assert n_mpjpe(rotated, target).min() > 10
    assert p_mpjpe(rotated, target).max() < 1e-6


def test_n_mpjpe_scale_is_least_squares():
    target, pred = random_poses(3), random_poses(3, seed=4) * 0.5
    aligned, _ = scale_align(pred, target)
    sse = ((aligned - target) ** 2).sum((1, 2))
    for factor in (0.97, 1.03):
        assert torch.all(((aligned * factor - target) ** 2).sum((1, 2)) > sse)
    s = (pred * target).sum((1, 2)) / (pred * pred).sum((1, 2))
    torch.testing.assert_close(n_mpjpe(pred, target), mpjpe(pred * s[:, None, None], target))


def offset_poses(errors_mm, seed=0):
    """Pose pairs whose MPJPE is exactly errors_mm: pred = target shifted by e along x."""
    target = random_poses(len(errors_mm), seed)
    pred = target + torch.tensor(errors_mm, dtype=torch.float64)[:, None, None] * torch.tensor([1.0, 0, 0],
                                                                                                dtype=torch.float64)
    return pred, target


def test_per_action_breakdown():
    metric = PoseErrors(ACTIONS)
    pred, target = offset_poses([1.0, 3.0, 10.0])
    metric.update(pred[:1], target[:1], torch.tensor([0]))
    metric.update(pred[1:], target[1:], torch.tensor([0, 1]))
    out = metric.compute()
    assert out["count"] == 3
    assert set(out["per_action"]) == {"walk", "sit"}  # actions without frames are left out
    assert out["per_action"]["walk"]["mpjpe"] == pytest.approx(2.0) and out["per_action"]["walk"]["count"] == 2
    assert out["per_action"]["sit"]["mpjpe"] == pytest.approx(10.0)
    assert out["frame_weighted"]["mpjpe"] == pytest.approx(14.0 / 3)
    assert out["mean_over_actions"]["mpjpe"] == pytest.approx(6.0)
    assert out["mpjpe"] == out["mean_over_actions"]["mpjpe"]  # the headline is the paper's mean over actions
    # a pure translation is removed by both alignments
    assert out["p_mpjpe"] == pytest.approx(0.0, abs=1e-6)
    assert out["frame_weighted"]["n_mpjpe"] == pytest.approx(0, abs=1e-6)
    walk_n = n_mpjpe(pred[:2], target[:2]).mean().item()
    assert out["per_action"]["walk"]["n_mpjpe"] == pytest.approx(walk_n)


def test_metric_without_actions_and_bad_indices():
    metric = PoseErrors()
    pred, target = offset_poses([2.0, 4.0])
    metric.update(pred, target)
    out = metric.compute()
    assert out["mpjpe"] == out["frame_weighted"]["mpjpe"] == pytest.approx(3.0) and list(out["per_action"]) == ["all"]
    with pytest.raises(ValueError, match="needs action_idx"):
        PoseErrors(ACTIONS).update(pred, target)
    with pytest.raises(ValueError, match="out of range"):
        PoseErrors(ACTIONS).update(pred, target, torch.tensor([0, 4]))
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(PoseErrors(ACTIONS).compute()["mpjpe"])


def _data():
    pred, target = random_poses(20, seed=11), random_poses(20, seed=12)
    actions = torch.tensor([0, 1, 1, 3, 0, 0, 3, 1, 0, 0, 3, 3, 3, 1, 0, 0, 1, 3, 0, 0])  # "eat" never occurs
    return pred, target, actions


def _ddp_worker(rank, world_size, init_file, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        pred, target, actions = _data()
        part = slice(0, 7) if rank == 0 else slice(7, 20)  # unequal halves: each rank updates in two calls
        metric = PoseErrors(ACTIONS)
        for chunk in torch.arange(20)[part].tensor_split(2):
            metric.update(pred[chunk], target[chunk], actions[chunk])
        result = metric.compute()
        if rank == 0:
            with open(result_file, "w") as f:
                json.dump(result, f)
    finally:
        dist.destroy_process_group()


def test_ddp_reduction_equals_single_process(tmp_path):
    init_file, result_file = tmp_path / "init", tmp_path / "result.json"
    mp.spawn(_ddp_worker, args=(2, str(init_file), str(result_file)), nprocs=2, join=True)
    reduced = json.loads(result_file.read_text())
    metric = PoseErrors(ACTIONS)
    metric.update(*_data())
    single = metric.compute()
    assert reduced["count"] == single["count"] == 20
    _assert_close(reduced, single)
    assert reduced["per_action"]["sit"]["count"] == 5


def _assert_close(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_close(a[key], b[key])
    else:
        assert a == pytest.approx(b, rel=1e-12), (a, b)
