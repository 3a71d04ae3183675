"""Reliability of runs, as a table: each row is an input or a fault a user meets with the training, evaluation and
grid commands, and the class of answer expected:

- ``ERROR``: a clear error, one line naming the key or the file (the ``says`` strings), a non-zero exit status,
  no traceback, and *nothing written anywhere*;
- ``OK``: handled correctly (the row's ``check``), with no file changed outside the command's own output.

Every row hashes the files of its folder, of the shared finished run and of the dataset before and after. Most rows
fail at the door (config values, run folders): they cost milliseconds; a few train for real (tiny preset).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from test_faults import first_line

from syncssl import cli
from syncssl.train import checkpoint as ckpt
from syncssl.train import runfolder
from syncssl.train.config import FinetuneConfig, load_config

ERROR, OK = "error", "ok"


@dataclass
class Outcome:
    code: int
    line: str = ""  # the first line a user reads (the CLI's, or the exception's message)
    output: str = ""


@dataclass
class Row:
    name: str
    act: Callable  # ctx -> Outcome: the command
    expect: str = ERROR
    says: tuple[str, ...] = ()  # in the first line; "{pre}", "{tmp}"... are the context's paths
    check: Callable | None = None  # (ctx, outcome) -> None, for OK rows
    own: Callable = field(default=lambda ctx: ())  # ctx -> the paths that are the command's own output
    setup: Callable | None = None  # ctx -> None: what the user's folders hold before the command
    code: int = 0  # OK rows: the exit status expected (a run stopped by a signal: 128 + its number)


# ---------------------------------------------------------------- the world every row starts from


@pytest.fixture(scope="module")
def world(tiny_dataset, tmp_path_factory):
    """A finished tiny pre-training run, a fine-tuned checkpoint's folder, and the dataset they read."""
    from syncssl.train.run import run_training
    root = tmp_path_factory.mktemp("world")
    run_training(load_config("tiny", None, [f"data.dataset='{tiny_dataset}'", f"train.run_dir='{root / 'pre'}'",
                                            "train.eval_pairs=16"]))
    # what syncssl-finetune leaves: its marker, and checkpoints whose meta.json names the task
    ckpt.save(root / "ft" / "checkpoints", 6, {"arch": {"model": "PoseNet"}}, extra_meta={"task": "finetune"})
    runfolder.write_marker(root / "ft", "finetune")
    return SimpleNamespace(root=root, pre=root / "pre", ft=root / "ft", dataset=tiny_dataset)


class Ctx:
    """A row's context: its folder, copies of the world's runs (the user's runs, the row's to break), patches."""

    def __init__(self, world, tmp: Path, monkeypatch):
        self.world, self.tmp, self.dataset, self.monkeypatch = world, tmp, world.dataset, monkeypatch
        self.pre, self.ft = tmp / "pre", tmp / "ft"
        shutil.copytree(world.pre, self.pre)
        shutil.copytree(world.ft, self.ft)

    def mp(self, act):
        return act(self.monkeypatch)

    def fmt(self, text: str) -> str:
        return text.format(pre=self.pre, ft=self.ft, tmp=self.tmp, world=self.world.root)


_HASHES: dict = {}  # (path, size, mtime, inode) -> sha1: unchanged files are read once


def snapshot(*roots: Path) -> dict[str, str]:
    hashes = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file():
                st = path.stat()
                key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
                if key not in _HASHES:
                    _HASHES[key] = hashlib.sha1(path.read_bytes()).hexdigest()
                hashes[str(path)] = _HASHES[key]
    return hashes


def invoke(command, *args) -> Outcome:
    """The command's exit status and the line it fails with (its first line, or after a training's log lines)."""
    result = CliRunner().invoke(command, [str(a) for a in args])
    line = first_line(result) if result.output.strip() else ""
    line = next((x for x in result.output.splitlines() if x.startswith("Error: ")), line)
    return Outcome(result.exit_code, line, result.output)


def call(fn) -> Outcome:
    """A direct call: its user error as the CLI would show it; 0 if it returns."""
    from syncssl.errors import SyncsslError
    try:
        fn()
    except SyncsslError as e:
        return Outcome(getattr(e, "exit_code", 1), f"Error: {e}")
    return Outcome(0)


def train(ctx, *args, command=None) -> Outcome:
    return invoke(command or cli.train, "--preset", "tiny", f"data.dataset='{ctx.dataset}'", "train.eval_pairs=16",
                  *args)


def finetune(ctx, *args) -> Outcome:
    return train(ctx, *args, command=cli.finetune)


def new_run(ctx) -> Path:
    return ctx.tmp / "run"


# ---------------------------------------------------------------- 1. every numeric config value at the door


def door(override: str, *says: str, command: str = "train") -> Row:
    """A config value out of range: refused before anything is written (the run folder is not even created)."""
    def act(ctx):
        run = (finetune if command == "finetune" else train)(ctx, "--run-dir", new_run(ctx), *override.split())
        assert not new_run(ctx).exists()
        return run
    return Row(f"{command}: {override}", act, says=says or (override.split("=")[0],))


DOOR = [
    door("train.log_every=0", "invalid config: train.log_every must be >= 1, got 0"),
    door("train.ckpt_every=0", "train.ckpt_every must be >= 1, got 0"),
    door("train.threads=-1", "train.threads must be >= 0, got -1"),
    door("optim.lr=inf", "optim.lr must be a finite number > 0, got inf"),
    door("optim.lr=nan", "optim.lr must be a finite number > 0, got nan"),
    door("optim.lr=0", "optim.lr must be > 0, got 0.0"),
    door("optim.lr=-0.001", "optim.lr must be > 0, got -0.001"),
    # the batch in use is train.batch_size (8 in the tiny preset), not sampling.batch_size (16)
    door("sampling.group_size=3", "sampling.group_size 3 must divide the batch in use, train.batch_size 8"),
    door("sampling.group_size=16", "sampling.group_size 16 must divide the batch in use, train.batch_size 8"),
    door("sampling.group_size=0", "sampling: group_size must be >= 1, got 0"),
    door("train.eval_every=-1", "train.eval_every must be >= 0, got -1"),
    door("train.eval_pairs=0", "train.eval_pairs must be >= 1, got 0"),
    door("train.keep_checkpoints=0", "train.keep_checkpoints must be >= 1, got 0"),
    door("train.max_nonfinite=0", "train.max_nonfinite must be >= 1, got 0"),
    door("train.max_steps_this_run=-1", "train.max_steps_this_run must be >= 0, got -1"),
    door("train.steps=0", "train.steps must be >= 1, got 0"),
    door("train.batch_size=0", "train.batch_size must be >= 1, got 0"),
    door("train.seed=-1", "train.seed must be >= 0, got -1"),
    door("optim.min_lr=-1e-6", "optim.min_lr must be >= 0, got -1e-06"),
    door("optim.min_lr=0.5", "need optim.min_lr <= optim.lr, got 0.5, 0.001"),
    door("optim.weight_decay=-0.1", "optim.weight_decay must be >= 0, got -0.1"),
    door("optim.momentum=1", "optim.momentum must be in [0, 1), got 1.0"),
    door("optim.grad_clip=inf", "optim.grad_clip must be a finite number >= 0, got inf"),
    door("optim.warmup_steps=-5", "optim.warmup_steps must be >= 0, got -5"),
    door("optim.backbone_lr_scale=0", "optim.backbone_lr_scale must be > 0, got 0.0"),
    door("data.crop_size=8", "data.crop_size must be >= 16, got 8"),
    door("data.prefetch=0", "data.prefetch must be >= 1, got 0"),
    door("data.workers=0", "data.workers must be >= 1, got 0"),
    door("data.max_decode_failures=1.5", "data.max_decode_failures must be in [0, 1], got 1.5"),
    door("data.substitute=-0.1", "data.substitute must be in [0, 1], got -0.1"),
    door("data.bg_softness=nan", "data.bg_softness must be a finite number > 0, got nan"),
    door("data.aug_hue_deg=400", "data.aug_hue_deg must be in [0, 180], got 400.0"),
    door("data.shadow_min=2", "data.shadow_min must be in [0, 1], got 2.0"),
    door("data.synthetic_seed=-3", "data.synthetic_seed must be >= 0, got -3"),
    door("pretext.sync_weight=-1", "pretext.sync_weight must be >= 0, got -1.0"),
    door("pretext.sync_weight=0 pretext.flip_weight=0",
         "pretext.sync_weight and pretext.flip_weight must not both be 0"),
    door("sampling.max_offset=inf", "sampling.max_offset must be a finite number > 0, got inf"),
    door("sampling.min_offset=0", "min_offset"),
    door("sampling.sync_fraction=1.5", "sync_fraction must be in [0, 1], got 1.5"),
    door("sampling.jitter_shift=nan", "sampling.jitter_shift must be a finite number >= 0, got nan"),
    door("model.width=0", "model: width must be positive, got 0.0"),
    door("model.dropout=1", "model: need head_hidden >= 0 and 0 <= dropout < 1"),
    door("train.amp=fp8", "train.amp: 'fp8' is not a valid choice"),
    door("train.stepz=3", "unknown config key 'train.stepz'"),
    door("transfer.label_fraction=0", "transfer.label_fraction must be in (0, 1], got 0.0", command="finetune"),
    door("transfer.eval_stride=0", "transfer.eval_stride must be >= 1, got 0", command="finetune"),
    door("model.frozen_stages=5", "model.frozen_stages must be in [0, 4], got 5", command="finetune"),
    door("transfer.flip=2", "transfer.flip must be in [0, 1], got 2.0", command="finetune"),
    door("model.scale_mm=0", "model.scale_mm must be > 0, got 0.0", command="finetune"),
    door("train.log_every=0", "train.log_every must be >= 1, got 0", command="finetune"),
    door("optim.lr=inf", "optim.lr must be a finite number > 0, got inf", command="finetune"),
]


def _every_numeric_key_has_a_range(ctx):
    from syncssl.config import describe
    from syncssl.train.config import RANGES, PretrainConfig
    for cls in (PretrainConfig, FinetuneConfig):
        cfg = cls()
        for key, _, _ in describe(cls):
            section, name = key.split(".")
            value = getattr(getattr(cfg, section), name)
            if (isinstance(value, (int, float)) and not isinstance(value, bool)) or key == "model.embed_dim":
                assert key in RANGES, key
    return Outcome(0)


def _processes_share_the_batch(ctx):
    launched = []
    ctx.monkeypatch.setattr(cli, "_launch_workers", lambda n, args, module: launched.append(n) or 0)
    out = train(ctx, "--run-dir", new_run(ctx), "--nproc", "2", "sampling.group_size=8")
    assert not launched
    return out


def _gpus_without_cuda(ctx):
    ctx.monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    return train(ctx, "--run-dir", new_run(ctx), "--gpus", "1")


DOOR += [
    Row("every numeric key has a range", _every_numeric_key_has_a_range, OK),
    Row("--nproc 2: the group size must divide each process's share", _processes_share_the_batch,
        says=("sampling.group_size 8 does not divide the 4 pairs each of the 2 processes of --nproc 2",)),
    Row("--gpus 1 without CUDA", _gpus_without_cuda, says=("--gpus 1: only 0 CUDA devices visible; use --nproc N",)),
]


# ---------------------------------------------------------------- 2. run folders: one run each, never mixed


def plant(folder: Path, *names: str) -> Path:
    """The user's own files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text("the user's own file\n")
    return folder


def eval_folder(folder: Path, run: Path, dataset) -> Path:
    """What syncssl-eval leaves in its --out: its marker (naming the run evaluated) and metrics.json."""
    runfolder.write_marker(folder, "eval", run=str(run), split="", dataset=str(dataset), data_seed=0)
    (folder / "metrics.json").write_text("{}\n")
    return folder


def _nothing_to_do(ctx, out):
    assert "already trained 6 of 6 steps; nothing to do (its summary.json is kept)" in out.output


def _held_lock(ctx):
    with runfolder.locked(ctx.pre, "syncssl-pretrain"):
        return train(ctx, "--run-dir", ctx.pre)


def _replaced(ctx, out):
    assert f"replacing the run in {ctx.pre} (--force)" in out.output
    assert [s for s, _ in ckpt.list_checkpoints(ctx.pre / "checkpoints")] == [3]  # the old run's are gone
    assert load_config(None, ctx.pre / "config.toml").optim.lr == 0.002
    assert json.loads((ctx.pre / "summary.json").read_text())["steps"] == 3
    assert (ctx.pre / "notes.md").read_text() == "the user's own file\n"  # not the run's: kept


def _resume_other_config(ctx, *extra):
    return train(ctx, "--run-dir", new_run(ctx), "--resume", ctx.world.pre / "checkpoints" / "step-00000006",
                 "optim.lr=0.002", "train.steps=7", *extra)


def _continued_with_changes(ctx, out):
    assert "note: the run continues with changed settings: optim.lr: 0.001 there, 0.002 now" in out.output
    assert json.loads((new_run(ctx) / "summary.json").read_text())["steps"] == 7


def _cfg(ctx, run: Path, *extra):
    return load_config("tiny", None, [f"data.dataset='{ctx.dataset}'", f"train.run_dir='{run}'", "train.eval_pairs=16",
                                      *extra])


def _legacy_run_continues(ctx):
    cfg = _cfg(ctx, ctx.pre, "train.steps=8")
    assert runfolder.check_training(ctx.pre, cfg, "pretrain") == "continue"  # train.steps may grow: noted only
    assert runfolder.check_training(ctx.pre, cfg, "pretrain", replace=True) == "replace"


def _crashed_start(ctx):
    runfolder.write_marker(new_run(ctx), "pretrain")
    (new_run(ctx) / "config.toml").write_text("[optim]\nlr = 0.5\n")


def _no_checkpoint_yet(ctx):
    assert runfolder.check_training(new_run(ctx), _cfg(ctx, new_run(ctx), "train.resume='none'"), "pretrain") == "new"


def direct(fn) -> Callable:
    return lambda ctx: call(lambda: fn(ctx))


RUN_FOLDERS = [
    Row("--resume none into a finished run", lambda ctx: train(ctx, "--run-dir", ctx.pre, "--resume", "none"),
        says=("{pre} already holds a run (finished, checkpoints up to step 6); train.resume=none would start a "
              "second run in it", "--force")),
    Row("other overrides into a finished run",
        lambda ctx: train(ctx, "--run-dir", ctx.pre, "optim.lr=0.05", "train.seed=3"),
        says=("{pre} holds a run", "optim.lr: 0.001 there, 0.05 now; train.seed: 0 there, 3 now", "--allow-changes",
              "--force")),
    Row("another fusion into a finished run", lambda ctx: train(ctx, "--run-dir", ctx.pre, "model.fusion='diff'"),
        says=('model.fusion: "prod" there, "diff" now',)),
    Row("the same command again, after a killed process's stale lock",
        lambda ctx: train(ctx, "--run-dir", ctx.pre), OK, check=_nothing_to_do,
        setup=lambda ctx: (ctx.pre / runfolder.LOCK).write_text("process 999999 (syncssl-pretrain)\n"),
        own=lambda ctx: (ctx.pre / "tensorboard", ctx.pre / runfolder.LOCK)),
    Row("a second writer while the first holds the lock", _held_lock, own=lambda ctx: (ctx.pre / runfolder.LOCK,),
        says=("{pre} is being written by process", "wait for it to finish or choose another folder")),
    Row("syncssl-finetune into a pre-training run", lambda ctx: finetune(ctx, "--run-dir", ctx.pre),
        says=("{pre} holds a pre-training run (syncssl-train), not a fine-tuning run", "--run-dir")),
    Row("syncssl-train into a fine-tuning run", lambda ctx: train(ctx, "--run-dir", ctx.ft),
        says=("{ft} holds a fine-tuning run (syncssl-finetune), not a pre-training run",)),
    Row("syncssl-train into a folder of the user's", lambda ctx: train(ctx, "--run-dir", ctx.tmp / "mine"),
        setup=lambda ctx: plant(ctx.tmp / "mine", "a.txt", "b.csv"),
        says=("{tmp}/mine holds files that are not a syncssl run (a.txt, b.csv); nothing is written there",)),
    Row("--force into a folder of the user's", lambda ctx: train(ctx, "--run-dir", ctx.tmp / "mine", "--force"),
        setup=lambda ctx: plant(ctx.tmp / "mine", "a.txt"),
        says=("{tmp}/mine holds files that are not a syncssl run",)),
    Row("syncssl-train into an evaluation's folder", lambda ctx: train(ctx, "--run-dir", ctx.tmp / "ev"),
        setup=lambda ctx: eval_folder(ctx.tmp / "ev", ctx.pre, ctx.dataset),
        says=("{tmp}/ev holds an evaluation (syncssl-eval), not a pre-training run",)),
    Row("a run folder that is a file", lambda ctx: train(ctx, "--run-dir", ctx.tmp / "f"),
        setup=lambda ctx: plant(ctx.tmp, "f"), says=("train.run_dir: {tmp}/f is a file, not a folder",)),
    Row("--resume another run's checkpoint into a folder holding a run",
        lambda ctx: train(ctx, "--run-dir", ctx.pre, "--resume", ctx.world.pre / "checkpoints" / "step-00000006"),
        says=("{pre} already holds a run", "would mix two runs' checkpoints")),
    Row("--resume a checkpoint trained with another configuration", _resume_other_config,
        says=("step-00000006 was trained with another configuration (optim.lr: 0.001 there, 0.002 now)",
              "--allow-changes"), own=lambda ctx: (new_run(ctx),)),
    Row("--resume it with --allow-changes: it continues, the changes noted",
        lambda ctx: _resume_other_config(ctx, "--allow-changes"), OK, check=_continued_with_changes,
        own=lambda ctx: (new_run(ctx),)),
    Row("--force replaces a finished run, the user's files kept",
        lambda ctx: train(ctx, "--run-dir", ctx.pre, "--force", "optim.lr=0.002", "train.steps=3"), OK,
        setup=lambda ctx: plant(ctx.pre, "notes.md"), check=_replaced, own=lambda ctx: (ctx.pre,)),
    Row("fine-tuning from a fine-tuned run",
        lambda ctx: finetune(ctx, "--run-dir", new_run(ctx), "transfer.init='pretrained'",
                             f"transfer.checkpoint='{ctx.ft}'"),
        says=("transfer.checkpoint: {ft}/checkpoints/step-00000006 is a fine-tuned pose model, not a pre-training "
              "one",)),
    Row("a run of an older version (no marker) continues; train.steps may grow", direct(_legacy_run_continues), OK,
        setup=lambda ctx: (ctx.pre / runfolder.MARKER).unlink()),
    Row("--resume none where a start crashed before its first checkpoint", direct(_no_checkpoint_yet), OK,
        setup=_crashed_start),
    Row("a run whose config.toml is gone", direct(lambda ctx: runfolder.check_training(ctx.pre, _cfg(ctx, ctx.pre),
                                                                                      "pretrain")),
        setup=lambda ctx: (ctx.pre / "config.toml").unlink(),
        says=("{pre} holds a run", "its config.toml is missing or unreadable")),
    Row("a grid reusing a finished run of another configuration",
        direct(lambda ctx: runfolder.reuse_finished(ctx.pre, _cfg(ctx, ctx.pre, "model.fusion='diff'"))),
        says=("{pre} finished with another configuration than asked for now (model.fusion",)),
    Row("a grid reusing a finished run of the same configuration",
        direct(lambda ctx: runfolder.reuse_finished(ctx.pre, _cfg(ctx, ctx.pre))), OK),
    Row("syncssl-eval RUN --out RUN", lambda ctx: invoke(cli.evaluate, ctx.pre, "--out", ctx.pre),
        says=("{pre} holds a pre-training run (syncssl-train), not an evaluation (syncssl-eval)", "--out")),
    Row("syncssl-eval --out a folder of the user's", lambda ctx: invoke(cli.evaluate, ctx.pre, "--out", ctx.tmp / "m"),
        setup=lambda ctx: plant(ctx.tmp / "m", "x.png"),
        says=("{tmp}/m holds files that are not a syncssl run (x.png)",)),
    Row("syncssl-eval --out another run's evaluation",
        lambda ctx: invoke(cli.evaluate, ctx.pre, "--out", ctx.tmp / "ev"),
        setup=lambda ctx: eval_folder(ctx.tmp / "ev", ctx.world.root / "other", ctx.dataset),
        says=("{tmp}/ev holds an evaluation (syncssl-eval) made with another configuration (run: {world}/other "
              "there, {pre} now)", "--force")),
]


# ---------------------------------------------------------------- 3. grids: their own folder, tables that only grow


def _fake_run(self, kind, run_dir, overrides):
    return {"mpjpe": 100.0 + len(run_dir.name), "n_mpjpe": 90.0, "p_mpjpe": 80.0, "heldout_sync_acc": 0.9,
            "heldout_flip_acc": 0.8, "train_mpjpe": 50.0}


def grid(ctx, *args) -> Outcome:
    """syncssl-reproduce into ``<tmp>/grid`` with its runs stood in for: this is about the folder and its tables."""
    from syncssl.experiments.reproduce import Reproduction
    ctx.monkeypatch.setattr(Reproduction, "_run", _fake_run)
    ctx.monkeypatch.setattr(Reproduction, "plot", lambda self: None)
    return invoke(cli.reproduce, "--preset", "tiny", "--out", ctx.tmp / "grid", *args)


def _grid_rows(*names):
    def check(ctx, out):
        import csv
        rows = list(csv.DictReader(open(ctx.tmp / "grid" / "results.csv")))
        assert [r["name"] for r in rows] == list(names)
        md = (ctx.tmp / "grid" / "results.md").read_text()
        assert all(f"| {n} |" in md for n in names)
    return check


def _first_grid(ctx):
    assert grid(ctx, "--only", "fusion: difference").code == 0


def curve(ctx, out, *extra) -> Outcome:
    return invoke(cli.transfer_curve, ctx.world.pre, "--out", out, "--preset", "tiny", *extra)


def _curve_folder(ctx):
    runfolder.write_marker(ctx.tmp / "curve", "transfer-curve", preset="tiny", finetune="")
    (ctx.tmp / "curve" / "transfer_curve.csv").write_text("run,step,sync_acc,flip_acc,mpjpe,p_mpjpe,train_mpjpe\n")


GRIDS = [
    Row("reproduce --only A, then --only B: both rows stay", lambda ctx: grid(ctx, "--only", "fusion: addition"), OK,
        setup=_first_grid, check=_grid_rows("fusion: addition", "fusion: difference"),
        own=lambda ctx: (ctx.tmp / "grid",)),
    Row("reproduce --only A twice: one row, not two", lambda ctx: grid(ctx, "--only", "fusion: difference"), OK,
        setup=_first_grid, check=_grid_rows("fusion: difference"), own=lambda ctx: (ctx.tmp / "grid",)),
    Row("reproduce into a grid made with other overrides",
        lambda ctx: grid(ctx, "--only", "fusion: addition", "--pretrain", "optim.lr=0.01"), setup=_first_grid,
        says=("{tmp}/grid holds a reproduction grid (syncssl-reproduce) made with another configuration (pretrain: "
              "none there, optim.lr=0.01 now)", "choose another --out")),
    Row("reproduce into a folder holding someone else's results.csv", lambda ctx: grid(ctx, "--only", "difference"),
        setup=lambda ctx: plant(ctx.tmp / "grid", "results.csv"),
        says=("{tmp}/grid/results.csv: not a table of syncssl-reproduce (its columns: the user's own file)",)),
    Row("reproduce into a training run", lambda ctx: invoke(cli.reproduce, "--preset", "tiny", "--out", ctx.pre),
        says=("{pre} holds a pre-training run (syncssl-train), not a reproduction grid",)),
    Row("reproduce into a folder of the user's", lambda ctx: invoke(cli.reproduce, "--preset", "tiny", "--out",
                                                                    ctx.tmp / "mine"),
        setup=lambda ctx: plant(ctx.tmp / "mine", "paper.pdf"),
        says=("{tmp}/mine holds files that are not a syncssl run (paper.pdf)",)),
    Row("transfer-curve into a training run", lambda ctx: curve(ctx, ctx.pre),
        says=("{pre} holds a pre-training run (syncssl-train), not a transfer curve",)),
    Row("transfer-curve into a curve made with other overrides",
        lambda ctx: curve(ctx, ctx.tmp / "curve", "--finetune", "optim.lr=0.01"), setup=_curve_folder,
        says=("{tmp}/curve holds a transfer curve (syncssl-transfer-curve) made with another configuration "
              "(finetune: none there, optim.lr=0.01 now)",)),
    Row("transfer-curve from a folder that is not a pre-training run",
        lambda ctx: invoke(cli.transfer_curve, ctx.ft, "--out", ctx.tmp / "curve", "--preset", "tiny"),
        says=("{ft}: not a pre-training run",)),
]


# ---------------------------------------------------------------- 4. faults: signals, non-finite steps, full disks


def signal_at_step(signum, at: int, *args) -> Callable:
    """A training that receives ``signum`` during step ``at`` (from this process: the main thread gets it, as it
    gets a scheduler's)."""
    def act(ctx):
        from syncssl.train.trainer import Trainer
        real = Trainer.train_step

        def step(self, batch):
            if self.step == at:
                os.kill(os.getpid(), signum)
            return real(self, batch)
        ctx.monkeypatch.setattr(Trainer, "train_step", step)
        return train(ctx, "--run-dir", new_run(ctx), *args)
    return act


def _stopped_then_resumed(ctx, out):
    run = new_run(ctx)
    assert out.line == (f"Error: stopped by SIGTERM at step 3 of 6; checkpoint {run}/checkpoints/step-00000003 "
                        "written: the same command resumes it")
    assert [s for s, _ in ckpt.list_checkpoints(run / "checkpoints")] == [3] and not (run / "summary.json").exists()
    ctx.monkeypatch.undo()
    again = train(ctx, "--run-dir", run)  # train.ckpt_every differs: a setting a continued run may change
    assert again.code == 0, again.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["complete"] and summary["resumed_from"].endswith("step-00000003")


def _mostly_nonfinite(ctx):
    from syncssl.train.trainer import PretextTrainer
    real = PretextTrainer.losses

    def losses(self, out, batch):  # two steps in three: a NaN loss
        loss, sums = real(self, out, batch)
        return (loss * float("nan") if self.step % 3 else loss), sums
    ctx.monkeypatch.setattr(PretextTrainer, "losses", losses)
    out = train(ctx, "--run-dir", new_run(ctx), "train.max_nonfinite=100")
    assert not (new_run(ctx) / "summary.json").exists()
    return out


def to_dev_full(path: Path) -> None:
    """The temporary file a write goes through is /dev/full: the kernel answers every write with ENOSPC."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    path.symlink_to("/dev/full")


def _summary_on_a_full_disk(ctx):
    from syncssl.storage import write_text_atomic
    out = call(lambda: write_text_atomic(ctx.tmp / "summary.json", '{"steps": 7}\n', "the run's summary"))
    assert (ctx.tmp / "summary.json").read_text() == '{"steps": 6}\n'  # the old one stays whole
    return out


def _sync_session(ctx) -> Path:
    folder = ctx.tmp / "rig"
    folder.mkdir(exist_ok=True)
    (folder / "calibration.toml").write_text("")
    return folder


def sync_result(folder: Path, best: int, applied: dict, b: int = 3):
    """syncssl-sync's answer for a rig of cam_a (the reference), cam_b (``b`` frames) and cam_c (not determined, its
    flat curve's best peak at ``best``), measured on top of the offsets ``applied``."""
    from syncssl.sync import SyncOptions
    from syncssl.sync.pipeline import CameraResult, SequenceResult, SyncResult
    from syncssl.sync.search import Estimate
    ref, b, c = Estimate(0, 0, "reference"), Estimate(b, b, "ok"), Estimate(None, best, "not determined", "flat")
    cams = [CameraResult("cam_a", ref, ref, 100), CameraResult("cam_b", b, b, 100), CameraResult("cam_c", c, c, 100)]
    seq = SequenceResult("S1/take", folder, 25.0, "cam_a", 50, cams, {}, {}, [], applied)
    return SyncResult(folder, None, SyncOptions(), [seq], "cpu", "video", 0.0, 0)


def _apply(ctx, best=7, applied=None, force=False, said=None, b=3):
    from syncssl.sync import apply_offsets
    said = [] if said is None else said
    apply_offsets(sync_result(_sync_session(ctx), best, applied or {}, b), log=said.append, force=force)


def _force_twice(ctx):
    from syncssl.data.sources.syncfile import read_sync_file
    first = read_sync_file(ctx.tmp / "rig").start
    said = []
    # the second search reads the aligned videos: cam_b is where it belongs (+0), cam_c's flat curve peaks elsewhere
    out = call(lambda: _apply(ctx, -4, first, force=True, said=said, b=0))
    assert read_sync_file(ctx.tmp / "rig").start == first == {"cam_a": 0, "cam_b": 3, "cam_c": 7}
    assert any("cam_c not determined: the offset already applied stays" in s for s in said), said
    return out


def _sync_toml_is_a_folder(ctx):
    plant(_sync_session(ctx) / "sync.toml", "keep.txt")


FAULTS = [
    Row("SIGTERM during training: a checkpoint, exit 143; the same command resumes",
        signal_at_step(signal.SIGTERM, 2, "train.ckpt_every=100"), OK, check=_stopped_then_resumed,
        own=lambda ctx: (new_run(ctx),), code=128 + signal.SIGTERM),
    Row("Ctrl-C (SIGINT) during training", signal_at_step(signal.SIGINT, 3),
        says=("stopped by SIGINT at step 4 of 6; checkpoint {tmp}/run/checkpoints/step-00000004 written: the same "
              "command resumes it",), own=lambda ctx: (new_run(ctx),)),
    Row("most steps non-finite: the run fails", _mostly_nonfinite,
        says=("4 of 6 steps were skipped as non-finite: the run did not train; lower optim.lr (now 0.001)",),
        own=lambda ctx: (new_run(ctx),)),
    Row("a full disk while writing summary.json", _summary_on_a_full_disk,
        setup=lambda ctx: ((ctx.tmp / "summary.json").write_text('{"steps": 6}\n'),
                           to_dev_full(ctx.tmp / ".summary.json.tmp")),
        says=("no space left on {tmp}/summary.json while writing the run's summary",)),
    Row("syncssl-sync --apply --force twice moves no offset", _force_twice, OK,
        setup=lambda ctx: _apply(ctx, force=True), own=lambda ctx: (ctx.tmp / "rig" / "sync.toml",)),
    Row("--apply where sync.toml is a folder", direct(_apply), setup=_sync_toml_is_a_folder,
        says=("{tmp}/rig/sync.toml: cannot be written (Is a directory); the offsets of S1/take are not applied",)),
    Row("--apply on a full disk", direct(_apply), setup=lambda ctx: to_dev_full(_sync_session(ctx) / ".sync.toml.tmp"),
        says=("no space left on {tmp}/rig/sync.toml while writing the cameras' offsets",)),
]

ROWS = DOOR + RUN_FOLDERS + GRIDS + FAULTS


def test_the_table_has_its_rows():
    assert len(ROWS) >= 75 and len({r.name for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_reliability(row: Row, world, tmp_path, monkeypatch):
    ctx = Ctx(world, tmp_path, monkeypatch)
    if row.setup:
        row.setup(ctx)
    watched = (tmp_path, world.root, world.dataset)
    before = snapshot(*watched)
    out = row.act(ctx)
    after = snapshot(*watched)
    own = [Path(p) for p in row.own(ctx)]
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p)
                     and not any(Path(p) == o or o in Path(p).parents for o in own))
    assert not changed, f"files changed outside the command's own output: {changed}"
    if row.expect == ERROR:
        assert out.code != 0 and out.line.startswith("Error: ") and "\n" not in out.line, out
        for text in row.says:
            assert ctx.fmt(text) in out.line, f"{ctx.fmt(text)!r} not in {out.line!r}"
    else:
        assert out.code == row.code, out
        if row.check:
            row.check(ctx, out)


def test_preparation_waits_for_another_process_preparing_the_same_dataset(tmp_path):
    """Two trainings started together on a fresh dataset: the second waits for the first's generation and
    preparation (and says whom it waits for) instead of writing the same files at the same time."""
    import threading
    lock, events = tmp_path / ".ds.prepare.lock", []
    entered = threading.Event()

    def second():
        with runfolder.waiting(lock, "preparing ds (second)", log=events.append):
            events.append("second in")
            entered.set()
    with runfolder.waiting(lock, "preparing ds (first)", log=events.append):
        waiter = threading.Thread(target=second)
        waiter.start()
        for _ in range(1000):  # until the second has met the lock
            if events:
                break
            waiter.join(0.01)
        assert not entered.is_set()
        events.append("first out")
    waiter.join(10)
    assert events == [f"waiting for process {os.getpid()} (preparing ds (first)) ({lock})", "first out", "second in"]
    with runfolder.waiting(Path("/proc/no-such-folder/x.lock"), "preparing where nothing can be written",
                           log=events.append):
        events.append("unlocked")  # a lock file that cannot be created: the block runs, unlocked
    assert events[-1] == "unlocked"


def test_a_rank_that_checks_the_folder_while_rank_0_writes_its_marker_sees_a_new_folder(tmp_path):
    """Under torchrun every rank checks the run folder while rank 0 may be writing run.json through its temporary
    file: that file is the marker's, not the user's, and the folder still counts as new (or as the run it marks)."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / runfolder.LOCK).touch()
    (folder / f".{runfolder.MARKER}.tmp").write_text('{"task": "pre', encoding="utf-8")  # caught half-written
    assert runfolder.owner(folder) == (None, {})
    (folder / "notes.txt").write_text("mine", encoding="utf-8")  # anything else is still the user's
    with pytest.raises(runfolder.RunFolderError, match="not a syncssl run \\(notes.txt\\)"):
        runfolder.owner(folder)
