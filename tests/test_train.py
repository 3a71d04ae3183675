"""Trainer: DDP equivalence, exact resume, checkpoints surviving a kill, the CLI launcher, clear errors."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from click.testing import CliRunner

from syncssl import cli
from syncssl.errors import CheckpointError, ConfigError, NonFiniteLoss
from syncssl.train import checkpoint as ckpt
from syncssl.train.config import PretrainConfig, load_config
from syncssl.train.distributed import Dist
from syncssl.train.trainer import PretextTrainer


def tiny_config(dataset: Path, run_dir: Path, *extra: str) -> PretrainConfig:
    return load_config("tiny", None, [f"data.dataset='{dataset}'", f"train.run_dir='{run_dir}'", *extra])


# exact arithmetic for equivalence tests: fp32, batch-independent norms, plain SGD, no decode-order effects, and
# the CPU even where a GPU is present (GPU kernels are not bit-reproducible run to run)
EXACT = ("train.amp='off'", "model.norm='group'", "optim.name='sgd'", "optim.warmup_steps=0",
         "train.threads=1", "train.eval_every=0", "train.device='cpu'")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, dataset: str, run_dir: str, steps: int, out: str):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from syncssl.train import distributed
    d = distributed.setup("cpu")
    torch.set_num_threads(1)
    cfg = tiny_config(Path(dataset), Path(run_dir), *EXACT, "train.batch_size=8", "train.resume='none'")
    trainer = PretextTrainer(cfg, d, progress=False)
    grads = []
    for step in range(steps):
        trainer.train_step(trainer.train_data.batch(step))
        grads.append(torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]))
    torch.save({"grads": grads, "weights": trainer.model.state_dict()}, f"{out}/rank{rank}.pt")
    trainer.close()
    distributed.teardown()


def test_ddp_two_processes_match_one_process_with_the_global_batch(tiny_dataset, tmp_path):
    steps = 3
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tiny_dataset), str(tmp_path / "ddp"), steps, str(tmp_path)),
             nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for g0, g1 in zip(r0["grads"], r1["grads"]):
        assert torch.equal(g0, g1)  # DDP all-reduced: bit-identical gradients on both ranks
    # one process, the same global batch of 8 pairs (the sampler gives rank r rows [4r, 4r + 4))
    torch.set_num_threads(1)
    cfg = tiny_config(tiny_dataset, tmp_path / "single", *EXACT, "train.batch_size=8", "train.resume='none'")
    single = PretextTrainer(cfg, Dist(), progress=False)
    for step in range(steps):
        single.train_step(single.train_data.batch(step))
    g = torch.cat([p.grad.flatten() for p in single.model.parameters() if p.grad is not None])
    assert torch.allclose(g, r0["grads"][-1], atol=1e-6, rtol=1e-4)  # the last step's gradients
    for k, v in single.model.state_dict().items():
        assert torch.allclose(v, r0["weights"][k], atol=1e-6, rtol=1e-4), k
    # and the control: a different global batch would not match
    assert not torch.allclose(r0["grads"][0], r0["grads"][1])
    single.close()


def _train(dataset, run_dir, *extra):
    from syncssl.train.run import run_training
    return run_training(tiny_config(dataset, run_dir, *extra))


def test_resume_continues_exactly(tiny_dataset, tmp_path):
    common = ("train.steps=6", "train.ckpt_every=100", "train.eval_pairs=16")
    _train(tiny_dataset, tmp_path / "a", *common)
    first = _train(tiny_dataset, tmp_path / "b", *common, "train.max_steps_this_run=4")
    assert first["steps"] == 4 and not first["complete"]
    second = _train(tiny_dataset, tmp_path / "b", *common)  # resume=auto by default
    assert second["resumed_from"].endswith("step-00000004") and second["steps"] == 6
    wa = ckpt.load(ckpt.latest_loadable(tmp_path / "a" / "checkpoints")[0])
    wb = ckpt.load(ckpt.latest_loadable(tmp_path / "b" / "checkpoints")[0])
    assert wa["step"] == wb["step"] == 6
    for k in wa["model"]:
        assert torch.equal(wa["model"][k], wb["model"][k]), k
    for (_ka, a), (_kb, b) in zip(wa["optimizer"]["state"].items(), wb["optimizer"]["state"].items()):
        assert torch.equal(a["exp_avg"], b["exp_avg"])


KILLER = textwrap.dedent("""
    import os, signal, sys, torch
    from syncssl.train import checkpoint as ckpt
    folder = sys.argv[1]
    ckpt.save(folder, 1, {"w": torch.ones(3)})
    real_save = torch.save
    def dying_save(obj, f, *a, **k):   # write half the bytes, then die like a killed process
        import io
        buf = io.BytesIO(); real_save(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2]); f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    torch.save = dying_save
    ckpt.save(folder, 2, {"w": torch.full((100000,), 2.0)})
""")


def test_kill_while_writing_a_checkpoint_keeps_the_previous_one(tiny_dataset, tmp_path):
    folder = tmp_path / "checkpoints"
    proc = subprocess.run([sys.executable, "-c", KILLER, str(folder)], capture_output=True)
    assert proc.returncode == -9
    assert [s for s, _ in ckpt.list_checkpoints(folder)] == [1]
    assert any(p.name.startswith(".step-00000002") for p in folder.iterdir())  # the dead writer's leftovers
    path, skipped = ckpt.latest_loadable(folder)
    assert path.name == "step-00000001" and torch.equal(ckpt.load(path)["w"], torch.ones(3))
    # a damaged checkpoint folder (here: truncated state.pt) is skipped by --resume auto
    ckpt.save(folder, 3, {"w": torch.zeros(1000)})
    state = folder / "step-00000003" / "state.pt"
    state.write_bytes(state.read_bytes()[:100])
    path, skipped = ckpt.latest_loadable(folder)
    assert path.name == "step-00000001" and "step-00000003" in skipped[0]


def test_trainer_resume_auto_uses_the_last_good_checkpoint(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    _train(tiny_dataset, run, "train.steps=6", "train.ckpt_every=3", "train.eval_pairs=16",
           "train.max_steps_this_run=5")
    steps = [s for s, _ in ckpt.list_checkpoints(run / "checkpoints")]
    assert steps == [3, 5]
    state = run / "checkpoints" / "step-00000005" / "state.pt"
    state.write_bytes(state.read_bytes()[:-10])  # the newest is damaged
    summary = _train(tiny_dataset, run, "train.steps=6", "train.ckpt_every=3", "train.eval_pairs=16")
    assert summary["resumed_from"].endswith("step-00000003") and summary["steps"] == 6


def test_run_directory_holds_summary_logs_and_curves(tiny_dataset, tmp_path):
    summary = _train(tiny_dataset, tmp_path / "run", "train.eval_pairs=16")
    run = tmp_path / "run"
    saved = json.loads((run / "summary.json").read_text())
    for key in ("steps", "wall_s", "heldout_sync_acc", "heldout_flip_acc", "world_size", "final_loss"):
        assert saved[key] is not None, key
    assert saved == summary
    assert 0 <= saved["heldout_sync_acc"] <= 1 and saved["world_size"] == 1
    # the memory a job's limit sees, with its anonymous part: the tile set is mapped once, so it counts once
    assert 0 < saved["rss_anon_gb"] < saved["peak_rss_gb"] and saved["rss_file_gb"] >= 0
    # per subject: the split's subjects only, and their pair-weighted accuracies make up the split's
    held, seen = saved["heldout_by_subject"], saved["seen_by_subject"]
    assert held and seen and not set(held) & set(seen)
    for by, prefix in ((held, "heldout"), (seen, "seen")):
        for head in ("sync", "flip"):
            pairs = sum(m[f"{head}_pairs"] for m in by.values())
            mean = sum(m[f"{head}_acc"] * m[f"{head}_pairs"] for m in by.values() if m[f"{head}_pairs"]) / pairs
            assert mean == pytest.approx(saved[f"{prefix}_{head}_acc"]), (prefix, head)
    assert (run / "curves.png").stat().st_size > 1000 and (run / "metrics_train.csv").exists()
    assert "[train]" in (run / "config.toml").read_text()


def test_evaluation_averages_each_pair_with_its_mirror_image(tiny_dataset, tmp_path, monkeypatch):
    cfg = tiny_config(tiny_dataset, tmp_path / "m", "train.resume='none'", "train.amp='off'")
    trainer = PretextTrainer(cfg, Dist(), progress=False)
    seen = []  # the images each forward pass got
    forward = trainer.model.forward
    monkeypatch.setattr(trainer.model, "forward", lambda images: seen.append(images.clone()) or forward(images))
    both = trainer.predict(cfg.data.eval_split, 16)
    assert len(seen) % 2 == 0 and all(torch.equal(m, a.flip(-1)) for a, m in zip(seen[::2], seen[1::2]))
    trainer.model.eval()
    with torch.no_grad():
        mirrored = torch.cat([forward(m)["sync"].softmax(1)[:, 1] for m in seen[1::2]]).numpy()
    np.testing.assert_allclose(both["p_sync"], (both["p_sync_single"] + mirrored) / 2, atol=1e-6)
    trainer.cfg.pretext.mirror_average = False
    single = trainer.predict(cfg.data.eval_split, 16)
    np.testing.assert_allclose(single["p_sync"], both["p_sync_single"], atol=1e-6)  # the same pairs, one pass
    assert "p_sync_single" not in single and np.abs(single["p_sync"] - both["p_sync"]).max() > 1e-6
    trainer.cfg.pretext.mirror_average = True
    result = trainer.evaluate(cfg.data.eval_split, 16)
    assert 0 <= result["sync_acc_single"] <= 1 and 0 <= result["flip_acc_single"] <= 1
    trainer.close()


def test_nonfinite_losses_are_skipped_then_stop_the_run(tiny_dataset, tmp_path, monkeypatch):
    cfg = tiny_config(tiny_dataset, tmp_path / "nan", "train.max_nonfinite=3", "train.resume='none'")
    trainer = PretextTrainer(cfg, Dist(), progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    real = trainer.losses

    def poisoned(out, batch):
        loss, sums = real(out, batch)
        return loss * float("nan"), sums
    monkeypatch.setattr(trainer, "losses", poisoned)
    for step in range(2):
        m = trainer.train_step(trainer.train_data.batch(step))
        assert m["skipped"]
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, before[k]), k  # skipped steps change nothing
    with pytest.raises(NonFiniteLoss, match="3 non-finite losses in a row"):
        trainer.train_step(trainer.train_data.batch(2))
    trainer.close()


def test_a_fused_optimizer_skips_non_finite_steps_on_the_device(tiny_dataset, tmp_path, monkeypatch):
    # the GPU path (fused AdamW): no per-step host sync; the skip is decided on the device and read at log time
    from syncssl.train.trainer import param_groups
    cfg = tiny_config(tiny_dataset, tmp_path / "nan", "train.max_nonfinite=2", "train.resume='none'",
                      "train.amp='off'")
    trainer = PretextTrainer(cfg, Dist(), progress=False)
    trainer.optimizer = torch.optim.AdamW(param_groups(trainer.model, 1e-4), lr=1e-3, fused=True)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    real = trainer.losses
    monkeypatch.setattr(trainer, "losses", lambda out, batch: (real(out, batch)[0] * float("nan"),
                                                               real(out, batch)[1]))
    from syncssl.train.trainer import _Window
    window = _Window(trainer.device)
    m = trainer.train_step(trainer.train_data.batch(0))
    assert isinstance(m["skipped"], torch.Tensor) and bool(m["skipped"])
    window.add(m, trainer.train_data.batch(0))  # weighed out of the log window, not read
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, before[k]), k  # no update, batch-norm statistics restored
    trainer.train_step(trainer.train_data.batch(1))
    with pytest.raises(NonFiniteLoss, match="2 non-finite losses in a row"):
        trainer.check_nonfinite()  # what the training loop does at each log line
    monkeypatch.setattr(trainer, "losses", real)
    m = trainer.train_step(trainer.train_data.batch(2))
    assert not bool(m["skipped"]) and int(trainer.nonfinite_streak) == 0 and int(trainer.nonfinite_total) == 2
    window.add(m, trainer.train_data.batch(2))
    stats = window.flush(type("Prefetch", (), {"wait_s": 0.0})(), Dist())
    assert stats["loss"] == pytest.approx(float(m["loss"]))  # the finite step's loss alone, no NaN
    assert any(not torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items())
    trainer.close()


def test_cli_nproc_launches_two_workers_through_torchrun(tiny_dataset, tmp_path):
    run = tmp_path / "ddp-cli"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "syncssl-train"), "--preset", "tiny", "--nproc", "2",
         f"data.dataset='{tiny_dataset}'", f"train.run_dir='{run}'", "train.eval_pairs=16"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch.distributed.run" in proc.stderr
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2


@pytest.mark.parametrize("override, message", [
    ("train.amp='fp8'", "choose one of auto, bf16, fp16, off"),
    ("model.fusion='mul'", "choose one of: concat, diff, absdiff, prod, sum, all"),
    ("train.stepz=3", "unknown config key 'train.stepz'; valid keys here:"),
    ("nosection.x=1", "unknown config key 'nosection'"),
    ("train.steps=abc", "train.steps: expected int"),
    ("data.substitute=2", "data.substitute must be in [0, 1], got 2.0"),
    ("train", "not of the form section.key=value"),
])
def test_bad_config_values_get_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        load_config("cpu-small", None, [override])


def test_bad_finetune_pool_gets_a_clear_error():
    from syncssl.train.config import FinetuneConfig
    with pytest.raises(ConfigError, match="model.pool must be one of avg, grid, got 'max'"):
        load_config("cpu-small", None, ["model.pool='max'"], cls=FinetuneConfig)


def test_overrides_are_checked_together_in_any_order():
    """A section's checks see all overrides at once: single-view mode needs ungrouped batches, and which of the two
    overrides comes first does not matter; the later of two values of one key wins."""
    for order in (["sampling.mode='single_view'", "sampling.group_size=1"],
                  ["sampling.group_size=1", "sampling.mode='single_view'"]):
        cfg = load_config("cpu-small", None, order)
        assert (cfg.sampling.mode, cfg.sampling.group_size) == ("single_view", 1)
    with pytest.raises(ConfigError, match="single_view mode must not see"):
        load_config("cpu-small", None, ["sampling.mode='single_view'"])  # the preset groups by 4
    assert load_config("cpu-small", None, ["optim.lr=1e-3", "optim.lr=2e-4"]).optim.lr == 2e-4


def test_cli_reports_config_errors_cleanly():
    result = CliRunner().invoke(cli.train, ["train.amp=fp8"])
    assert result.exit_code != 0 and "choose one of" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli.train, ["--preset", "nope"])
    assert "unknown preset 'nope'; choose one of" in result.output
    result = CliRunner().invoke(cli.train, ["--help-config"])
    assert result.exit_code == 0 and "optim.lr" in result.output


def test_config_round_trips_through_toml(tmp_path):
    from syncssl.config import to_toml
    cfg = load_config("cpu-small", None, ["optim.lr=3e-4", "model.depth=34", "data.mean=[0.5, 0.5, 0.5]"])
    path = tmp_path / "c.toml"
    path.write_text(to_toml(cfg))
    again = load_config(None, path)
    assert again == cfg and again.optim.lr == 3e-4 and again.model.depth == 34


def test_config_defaults_are_the_main_jobs_and_saved_configs_keep_the_behaviour_before_an_option():
    """The dataclass defaults are what `syncssl-train` / `syncssl-finetune` run with no preset file values; a saved
    config lacking an option added since reads as the behaviour before it (not the main job's newer default)."""
    import dataclasses

    from syncssl.train.config import FinetuneConfig, PretrainConfig, config_from_dict
    assert load_config("cpu-small") == PretrainConfig()
    assert load_config("cpu-small", cls=FinetuneConfig) == FinetuneConfig()
    saved = dataclasses.asdict(PretrainConfig())
    for section, key in (("model", "center"), ("model", "pool"), ("model", "input_norm"), ("sampling", "group_size")):
        del saved[section][key]
    old = config_from_dict(PretrainConfig, saved)
    before = (old.model.center, old.model.pool, old.model.input_norm, old.sampling.group_size)
    assert before == (False, "avg", "none", 1)
    assert old.train == PretrainConfig().train


def test_sampling_batch_size_is_not_a_second_batch_setting():
    with pytest.raises(ConfigError, match=r"sampling.batch_size=64 is not a setting .* set train.batch_size"):
        load_config("cpu-small", None, ["sampling.batch_size=64"])


def test_every_config_key_says_what_it_is():
    """--help-config and the saved config.toml explain every key, whether the field is documented by a docstring
    (train/config.py) or by a trailing comment continued on aligned comment lines (sampling, models)."""
    from syncssl.config import describe, field_docs, to_toml
    from syncssl.data.loading.sampling import SamplingConfig
    from syncssl.train.config import FinetuneConfig, PretrainConfig
    for cls in (PretrainConfig, FinetuneConfig):
        undocumented = [key for key, _, doc in describe(cls) if not doc.strip()]
        assert not undocumented, undocumented
    doc = field_docs(SamplingConfig)["single_view_share"]
    assert doc.startswith("multiview mode: share of pairs") and doc.endswith("0: the paper's")  # 3 lines joined
    assert "#" not in doc and "  " not in doc
    assert "# pairs per rank per step" in to_toml(load_config("cpu-small"))


def test_prefetcher_keeps_step_order_raises_producer_errors_and_uses_one_intra_op_thread():
    """The prefetch thread hands batches over in step order, re-raises what failed in it, and runs its ops on
    one intra-op thread (a second OpenMP team fights the step's on a small CPU) without changing the caller's."""
    from types import SimpleNamespace

    from syncssl.data.loading.loader import Prefetcher

    class Batcher:
        device = torch.device("cpu")

        def __call__(self, step):
            if step == 7:
                raise ValueError("step 7 is broken")
            return SimpleNamespace(step=step, threads=torch.get_num_threads(), wait=lambda: None)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        pf = Prefetcher(Batcher(), lambda s: s, 3, 9, depth=2)
        got = [pf.next() for _ in range(4)]
        assert [b.step for b in got] == [3, 4, 5, 6]
        assert {b.threads for b in got} == {1}
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="step 7 is broken"):
            pf.next()
        pf.close()
    finally:
        torch.set_num_threads(before)


def test_heldout_accuracy_is_measured_on_the_papers_pairs_whatever_training_mixed_in(tiny_dataset, tmp_path,
                                                                                     monkeypatch):
    """Single-view training (or single-view pairs mixed in) is scored on two-camera pairs without jitter:
    a same-frame single-view pair without jitter would be two identical images."""
    from syncssl.train import trainer as trainer_module
    seen = []

    def spy(prepared, split, data_cfg, sampling, **kw):
        seen.append((split, sampling))
        return build(prepared, split, data_cfg, sampling, **kw)

    build = trainer_module.build_pipeline
    monkeypatch.setattr(trainer_module, "build_pipeline", spy)
    _train(tiny_dataset, tmp_path / "run", "train.steps=2", "train.eval_pairs=8", "sampling.mode='single_view'")
    training = [s for split, s in seen if s.mode == "single_view" and s.jitter_shift > 0]
    measured = [s for split, s in seen if s.jitter_shift == 0]
    assert training and measured
    assert all(s.mode == "multiview" and s.single_view_share == 0 and s.jitter_scale == 0 for s in measured)


def test_grouped_batches_train_the_sync_head_on_their_cross_pairs_too(tiny_dataset, tmp_path):
    def step_grads(cross_weight, sync_weight=1.0):
        torch.manual_seed(0)
        cfg = tiny_config(tiny_dataset, tmp_path / f"w{cross_weight}-{sync_weight}", *EXACT, "train.batch_size=8",
                          "sampling.group_size=4", f"pretext.cross_weight={cross_weight}",
                          f"pretext.sync_weight={sync_weight}", "train.resume='none'")
        trainer = PretextTrainer(cfg, Dist(), progress=False)
        batch = trainer.train_data.batch(0)
        assert batch.cross is not None and len(batch.cross) > 8  # more pairs than the batch's rows
        assert 0 < batch.cross_sync.float().mean() < 1
        m = trainer.train_step(batch)
        grads = torch.cat([p.grad.flatten() for p in trainer.model.sync_head.parameters()])
        trainer.close()
        return m, grads

    m1, g1 = step_grads(1.0)
    m0, g0 = step_grads(0.0)
    assert "cross_acc" in m1["sums"] and "cross_loss" in m1["sums"]
    assert not torch.allclose(g0, g1)  # the cross pairs reach the sync head's gradient
    assert m1["loss"] > m0["loss"]
    # the flip-only ablation: sync_weight=0 switches the cross pairs off too (the sync head learns nothing)
    _, g_flip_only = step_grads(1.0, sync_weight=0.0)
    assert torch.count_nonzero(g_flip_only) == 0


def test_batcher_maps_cross_pairs_onto_the_views_that_decoded():
    """A pair lost to a decode failure takes its views out of the batch: the cross pairs that used them go, the
    others are renumbered onto the images that remain."""
    from syncssl.data.loading.loader import PairBatcher
    from syncssl.data.loading.sampling import PairSampler, SamplerSequence, SamplingConfig, cross_pairs

    plan = PairSampler([SamplerSequence(200, 4, 25.0)], SamplingConfig(batch_size=8, group_size=4), seed=0).plan(0)

    class FailingAssembler:  # view v's image is the number v; views of pair 1 fail to decode
        device, manifest = torch.device("cpu"), None

        def __call__(self, views, flips, jitter, step, rank):
            ok = np.ones(len(views), bool)
            ok[2:4] = False
            return torch.arange(len(views), dtype=torch.float32)[torch.from_numpy(ok)], ok

    batch = PairBatcher(FailingAssembler(), 4)(plan)
    pairs, labels = cross_pairs(plan, 4)
    kept = ~np.isin(pairs, [2, 3]).any(1)
    assert batch.dropped == 1 and len(batch.cross) == kept.sum() > 0
    assert torch.equal(batch.images[batch.cross], torch.from_numpy(pairs[kept]).float())  # the same views
    assert torch.equal(batch.cross_sync, torch.from_numpy(labels[kept]))


def test_appearance_augmentation_keeps_a_pair_one_scene_and_starts_on_schedule():
    """One colour transform per pair (the two views still show one scene), the removed background stays the fill
    colour, and with data.aug_start the transform begins at that share of the run's steps."""
    import dataclasses

    from syncssl.data.loading.loader import Appearance
    from syncssl.train.data import appearance
    mean, std, fill = (0.45,) * 3, (0.25,) * 3, (0.45 * 255,) * 3
    rng = np.random.default_rng(0)
    person = torch.rand(3, 8, 8)
    person[:, :2] = 0.0  # normalised fill: the background removed
    images = person.repeat(4, 1, 1, 1)  # two pairs of identical views
    aug = Appearance(jitter=0.3, hue_deg=180, permute=0.5, grey=0.2)
    out = aug.apply(images, 2, mean, std, fill, rng)
    torch.testing.assert_close(out[0], out[1])
    torch.testing.assert_close(out[2], out[3])
    assert not torch.allclose(out[0], out[2])  # two pairs, two transforms
    torch.testing.assert_close(out[:, :, :2], images[:, :, :2])  # the fill stays the fill
    cfg = load_config("cpu-small")
    data = dataclasses.replace(cfg.data, aug_jitter=0.3, aug_start=0.5)
    assert appearance(data, 5500).start_step == 2750 and appearance(cfg.data, 5500).start_step == 0
    assert not appearance(cfg.data).active
    with pytest.raises(ConfigError, match="aug_start"):
        load_config("cpu-small", overrides=["data.aug_start=1.5"])


def test_mask_channel_needs_the_background_fill():
    assert load_config("cpu-small").model.input_norm == "mask"
    for override in ("data.substitute=0.5", "data.background='off'"):
        with pytest.raises(ConfigError, match="model.input_norm=mask finds the person by the fill"):
            load_config("cpu-small", overrides=[override])
    load_config("cpu-small", overrides=["data.substitute=0.5", "model.input_norm='person'"])  # no mask: fine


def test_pretext_loss_trains_each_head_on_its_own_pairs_over_their_nominal_count():
    import dataclasses

    import torch.nn.functional as F

    from syncssl.train.trainer import pretext_loss
    cfg = PretrainConfig()
    torch.manual_seed(0)
    out = {"sync": torch.randn(6, 2), "flip": torch.randn(6, 2)}
    sync = torch.tensor([1, 1, 1, 0, 0, 1])
    flip = torch.tensor([0, 1, 1, 0, 0, 0])  # flipped pairs are synchronized
    loss, sums = pretext_loss(out, sync, flip, cfg.pretext, cfg.sampling)
    s, f = cfg.sampling.sync_fraction, cfg.sampling.flip_fraction
    sync_rows, flip_rows = flip == 0, sync == 1  # sync head: unflipped pairs; flip head: synchronized ones
    want = (cfg.pretext.sync_weight * F.cross_entropy(out["sync"][sync_rows], sync[sync_rows], reduction="sum")
            / (6 * (1 - s * f))
            + cfg.pretext.flip_weight * F.cross_entropy(out["flip"][flip_rows], flip[flip_rows], reduction="sum")
            / (6 * s))
    torch.testing.assert_close(loss, want)
    assert sums["sync_acc"][1] == 4 and sums["flip_acc"][1] == 4
    assert sums["sync_acc"][0] == (out["sync"].argmax(1) == sync)[sync_rows].sum()
    # the flip head's logits do not move the sync head's loss and vice versa on the rows the other one owns
    other = {"sync": out["sync"].clone(), "flip": out["flip"].clone()}
    other["sync"][~sync_rows] += 5.0
    other["flip"][~flip_rows] -= 5.0
    torch.testing.assert_close(pretext_loss(other, sync, flip, cfg.pretext, cfg.sampling)[0], loss)
    # the ablation with independent labels trains both heads on every pair
    ind = dataclasses.replace(cfg.sampling, flip_unsync=True)
    assert pretext_loss(out, sync, flip, cfg.pretext, ind)[1]["sync_acc"][1] == 6


def test_summary_pools_people_scored_on_few_pairs():
    from syncssl.train.run import by_subject_text
    by = {"S1": {"sync_acc": 0.8, "flip_acc": 0.6, "sync_pairs": 200, "flip_pairs": 100},
          "P01": {"sync_acc": 1.0, "flip_acc": 0.5, "sync_pairs": 10, "flip_pairs": 4},
          "P02": {"sync_acc": 0.5, "flip_acc": None, "sync_pairs": 30, "flip_pairs": 0}}
    assert by_subject_text(by) == "S1 0.800 / 0.600, 2 others 0.625 / 0.500 (40 sync pairs)"
    assert by_subject_text({k: by[k] for k in ("S1", "P01")}) == "S1 0.800 / 0.600, P01 1.000 / 0.500"


def test_checkpoint_without_an_option_added_since_loads_at_its_default(tiny_dataset, tmp_path):
    trainer = PretextTrainer(tiny_config(tiny_dataset, tmp_path / "a", "train.resume='none'"), Dist(), progress=False)
    state = trainer.state_dict()
    del state["arch"]["pool"]  # a checkpoint from before `model.pool` existed: it pooled by average, the default
    trainer.load_state_dict(state)
    state["arch"]["pool"], state["arch"]["width"] = "avg", 0.5
    with pytest.raises(CheckpointError, match="does not match the config"):
        trainer.load_state_dict(state)
    trainer.close()
