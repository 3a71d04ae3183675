"""Transfer and evaluation end to end on the tiny dataset: pretrain -> fine-tune -> eval, and bad input."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from syncssl.data.loading.pose_sampling import ViewSampler, evaluation_plans, evaluation_views, label_budget
from syncssl.errors import CheckpointMismatch, ConfigError, DataError
from syncssl.experiments.evaluate import run_evaluation
from syncssl.train.config import FinetuneConfig, load_config
from syncssl.train.run import run_training


def pretrain(tiny_dataset, run_dir, *extra):
    cfg = load_config("tiny", None, [f"data.dataset='{tiny_dataset}'", f"train.run_dir='{run_dir}'",
                                     "train.eval_pairs=16", *extra])
    return run_training(cfg)


def finetune(tiny_dataset, run_dir, *extra):
    cfg = load_config("tiny", None, [f"data.dataset='{tiny_dataset}'", f"train.run_dir='{run_dir}'", *extra],
                      cls=FinetuneConfig)
    return run_training(cfg)


@pytest.fixture(scope="module")
def pretrained(tiny_dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "pretrain"
    pretrain(tiny_dataset, run)
    return run


def test_pretrain_finetune_eval_end_to_end(tiny_dataset, pretrained, tmp_path):
    run = tmp_path / "finetune"
    summary = finetune(tiny_dataset, run, "transfer.init='pretrained'", f"transfer.checkpoint='{pretrained}'",
                       "model.frozen_stages=3")
    assert "step-00000006" in summary["init"]  # the backbone came from the pre-training run
    for key in ("mpjpe", "n_mpjpe", "p_mpjpe"):
        assert math.isfinite(summary[key]) and summary[key] > 0
    assert summary["p_mpjpe"] <= summary["mpjpe"] + 1e-6  # an alignment can only lower the error
    assert set(summary["per_action"]) == {"Walking", "Waving"}
    result = run_evaluation(run, pictures=2)
    out = run / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mpjpe"] == pytest.approx(summary["mpjpe"], rel=1e-6)  # the same checkpoint, the same frames
    assert {"mpjpe", "n_mpjpe", "p_mpjpe", "per_action"} <= set(metrics)
    for picture in ("pose_overlays.png", "pose_3d.png"):
        assert (out / picture).stat().st_size > 5000
    assert result["task"] == "pose"
    # the pre-training run: sync analysis with the probability against the offset
    pre = run_evaluation(pretrained, pairs=32)
    assert 0 <= pre["unseen_sync_acc"] <= 1 and pre["sync_vs_offset"]
    assert (pretrained / "eval" / "sync_vs_offset.png").exists()
    rows = (pretrained / "eval" / "sync_vs_offset.csv").read_text().splitlines()
    assert rows[0].startswith("split,offset_frames,offset_s,p_sync,accuracy") and len(rows) > 4


def test_finetune_from_another_architecture_is_a_clear_error(tiny_dataset, pretrained, tmp_path):
    with pytest.raises(CheckpointMismatch,
                       match=r"resnet18 \(width 0.125\) but the model's is resnet18 \(width 0.25\)"):
        finetune(tiny_dataset, tmp_path / "ft", "transfer.init='pretrained'", f"transfer.checkpoint='{pretrained}'",
                 "model.width=0.25")


def test_finetune_takes_the_input_normalisation_the_backbone_was_pre_trained_with(tiny_dataset, tmp_path, capsys):
    """input_norm has no weights, so load_backbone cannot catch a mismatch: the transfer takes the pre-training's
    and records it, so that syncssl-eval rebuilds the same model from the fine-tuned checkpoint."""
    pre = tmp_path / "pre"
    pretrain(tiny_dataset, pre, "model.input_norm='person'", "train.steps=2", "train.eval_every=0")
    run = tmp_path / "ft"
    finetune(tiny_dataset, run, "transfer.init='pretrained'", f"transfer.checkpoint='{pre}'", "train.steps=2")
    assert 'input_norm = "person"' in (run / "config.toml").read_text()
    assert "model.input_norm=person, as the backbone was pre-trained" in capsys.readouterr().out


def test_finetune_takes_the_mask_channel_and_refuses_data_that_has_no_fill(tiny_dataset, tmp_path):
    """A mask-channel backbone (a 4-channel stem) fine-tunes as it was pre-trained; with backgrounds substituted
    the mask would read every pixel as the person, so that is refused, naming the checkpoint."""
    pre = tmp_path / "pre"
    pretrain(tiny_dataset, pre, "model.input_norm='mask'", "train.steps=2", "train.eval_every=0")
    run = tmp_path / "ft"
    finetune(tiny_dataset, run, "transfer.init='pretrained'", f"transfer.checkpoint='{pre}'", "train.steps=2")
    assert 'input_norm = "mask"' in (run / "config.toml").read_text()
    with pytest.raises(ConfigError,
                       match=r"step-00000002 \(pre-trained with it\): model.input_norm=mask .* substitute"):
        finetune(tiny_dataset, tmp_path / "ft2", "transfer.init='pretrained'", f"transfer.checkpoint='{pre}'",
                 "train.steps=2", "data.substitute=0.5")


def test_empty_or_unknown_evaluation_split_is_a_clear_error(tiny_dataset, tmp_path):
    with pytest.raises(DataError, match="no split 'nosuch'"):
        finetune(tiny_dataset, tmp_path / "ft", "data.eval_split='nosuch'")
    with pytest.raises(DataError, match="no sequences of the label subjects S7"):
        finetune(tiny_dataset, tmp_path / "ft2", "transfer.label_subjects=['S7']")
    with pytest.raises(DataError, match="also in the evaluation split"):
        finetune(tiny_dataset, tmp_path / "ft3", "transfer.label_subjects=['S9']")


def test_labels_follow_the_mirrored_image(tiny_dataset):
    """A flipped training view gets the mirrored 3D label: x negated, left and right swapped."""
    from syncssl.data.decode import PyAVDecoder
    from syncssl.data.loading.loader import PoseBatcher, VideoViews
    from syncssl.data.loading.pose_sampling import ViewPlan
    from syncssl.data.preparation.manifest import Manifest
    from syncssl.train.data import make_assembler
    manifest = Manifest.load(tiny_dataset / "prepared")
    cfg = load_config("tiny", None, [], cls=FinetuneConfig)
    source = VideoViews(manifest, manifest.sequences[:1], PyAVDecoder(), torch.device("cpu"), True)
    batcher = PoseBatcher(make_assembler(manifest, [0], cfg.data, source, torch.device("cpu"), torch.float32, 0))
    plan = ViewPlan(0, 0, np.zeros(2, np.int32), np.array([1, 1], np.int32), np.array([5, 5]),
                    np.array([False, True]), np.zeros((2, 3), np.float32))
    b = batcher(plan)
    plain, flipped = b.target.numpy()
    assert np.allclose(flipped[1], plain[4] * [-1, 1, 1]) and np.allclose(flipped[4], plain[1] * [-1, 1, 1])
    assert torch.allclose(b.images[1], b.images[0].flip(-1), atol=1e-5)  # the image is mirrored too
    seq, cam = manifest.sequences[0], manifest.sequences[0].cameras[1]
    expected = cam.camera.world_to_camera(seq.poses3d[5])
    assert np.allclose(plain, expected - expected[0], atol=1e-3)  # camera frame, root-relative, mm


def test_view_sampler_budget_sharding_and_evaluation_set():
    frames = label_budget([100, 40], 0.25, seed=3)
    assert [len(f) for f in frames] == [25, 10] and all(np.all(np.diff(f) == 4) for f in frames)
    assert [f.tolist() for f in label_budget([100, 40], 0.25, seed=3)] == [f.tolist() for f in frames]
    one = ViewSampler([100, 40], [4, 4], batch_size=8, seed=1, fraction=0.25)
    two = [ViewSampler([100, 40], [4, 4], batch_size=4, seed=1, fraction=0.25, rank=r, world_size=2) for r in (0, 1)]
    p = one.plan(7)
    for r in (0, 1):
        q = two[r].plan(7)
        assert np.array_equal(q.frame, p.frame[4 * r:4 * r + 4]) and np.array_equal(q.cam, p.cam[4 * r:4 * r + 4])
    budget = {(s, t) for s, f in enumerate(one.frames) for t in f.tolist()}
    for step in range(20):
        q = one.plan(step)
        assert all((int(s), int(t)) in budget for s, t in zip(q.seq, q.frame))
    views = evaluation_views([10, 5], [2, 3], stride=4)
    assert len(views) == 3 * 2 + 2 * 3
    shards = [list(evaluation_plans(views, 4, r, 2)) for r in (0, 1)]
    covered = np.concatenate([np.stack([p.seq, p.cam, p.frame], 1) for s in shards for p in s])
    assert sorted(map(tuple, covered.tolist())) == sorted(map(tuple, views.tolist()))


def test_cross_rig_evaluation_on_another_synthetic_seed(tiny_dataset, pretrained):
    """syncssl-eval RUN --dataset synthetic:tiny --data-seed 5: another rig, other people and motions, generated and
    prepared beside the training data (never over it)."""
    before = (tiny_dataset / "dataset.json").read_bytes()
    result = run_evaluation(pretrained, pairs=16, dataset="synthetic:tiny", data_seed=5,
                            data_root=str(tiny_dataset.parent))
    assert result["dataset"] == "synthetic:tiny" and result["data_seed"] == 5
    assert 0 <= result["unseen_sync_acc"] <= 1 and 0 <= result["unseen_flip_acc"] <= 1
    other = tiny_dataset.parent / "synthetic-tiny-seed5"
    assert json.loads((other / "dataset.json").read_text())["seed"] == 5
    assert (tiny_dataset / "dataset.json").read_bytes() == before  # the training data is untouched
    assert "seed5" in result["out"]


def test_backbone_lr_scale_slows_only_the_backbone(tiny_dataset, pretrained, tmp_path):
    """optim.backbone_lr_scale: the pre-trained backbone moves about that much less than at scale 1, the head alike."""
    def moved(scale):
        run = tmp_path / f"scale{scale}"
        finetune(tiny_dataset, run, "transfer.init='pretrained'", f"transfer.checkpoint='{pretrained}'",
                 "model.frozen_stages=0", f"optim.backbone_lr_scale={scale}", "optim.weight_decay=0")
        after, before = (torch.load(sorted((r / "checkpoints").glob("step-*"))[-1] / "state.pt",
                                    weights_only=False)["model"] for r in (run, pretrained))
        backbone = sum((after[k].float() - before[k].float()).abs().sum().item()
                       for k in after if k.startswith("backbone.") and k.endswith(".weight"))
        head = sum(after[k].float().abs().sum().item() for k in after if k.startswith("head."))
        return backbone, head

    backbone_full, head_full = moved(1.0)
    backbone_slow, head_slow = moved(0.01)
    assert 0 < backbone_slow < 0.05 * backbone_full  # Adam's steps scale with the lr
    assert head_slow == pytest.approx(head_full, rel=0.5)  # the head still learns at optim.lr


def test_backbone_lr_scale_must_be_positive(tiny_dataset, tmp_path):
    with pytest.raises(ConfigError, match="backbone_lr_scale"):
        finetune(tiny_dataset, tmp_path / "run", "optim.backbone_lr_scale=0")


def test_transfer_curve_fine_tunes_every_evaluated_checkpoint(tiny_dataset, tmp_path):
    """syncssl-transfer-curve: one fine-tuning per kept checkpoint with a held-out evaluation at its step, the
    pretext's accuracy beside the MPJPE; finished fine-tunings are reused."""
    from click.testing import CliRunner

    from syncssl import cli
    run = tmp_path / "pre"
    pretrain(tiny_dataset, run, "train.eval_every=3", "train.keep_checkpoints=5")
    out = tmp_path / "curve"
    args = [str(run), "--out", str(out), "--preset", "tiny", "--finetune", f"data.dataset='{tiny_dataset}'"]
    result = CliRunner().invoke(cli.transfer_curve, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("fine-tuning from") == 2
    rows = (out / "transfer_curve.csv").read_text().splitlines()
    assert rows[0] == "run,step,sync_acc,flip_acc,mpjpe,p_mpjpe,train_mpjpe" and len(rows) == 3
    heldout = (run / "metrics_heldout.csv").read_text().splitlines()[1:]
    accuracy = {int(r.split(",")[0]): r.split(",")[1] for r in heldout}
    for row, step in zip(rows[1:], (3, 6)):
        name, at, sync, *_, mpjpe = row.split(",")[:5]
        assert (name, int(at)) == ("pre", step) and float(sync) == pytest.approx(float(accuracy[step]))
        summary = json.loads((out / "pre" / f"step-{step:08d}" / "summary.json").read_text())
        assert f"step-{step:08d}" in summary["init"] and float(mpjpe) == pytest.approx(summary["mpjpe"])
    assert (out / "transfer_curve.png").stat().st_size > 5000
    again = CliRunner().invoke(cli.transfer_curve, args)  # everything finished: nothing is fine-tuned again
    assert again.exit_code == 0 and "fine-tuning from" not in again.output
    finetuned = tmp_path / "ft"
    finetune(tiny_dataset, finetuned)
    wrong = CliRunner().invoke(cli.transfer_curve, [str(finetuned), "--out", str(out), "--preset", "tiny"])
    assert wrong.exit_code != 0 and "not a pre-training run" in wrong.output
