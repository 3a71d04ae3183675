"""``syncssl-eval``: evaluate a checkpoint of either task, writing metrics.json and pictures."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import CheckpointError
from ..train import checkpoint as ckpt
from ..train import distributed, runfolder
from ..train.config import FinetuneConfig, PretrainConfig, config_from_dict
from ..train.trainer import PoseTrainer, PretextTrainer
from .analysis import evaluate_pose, evaluate_pretext


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint folder, or a run directory (its newest loadable checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run directory")
    found, _ = ckpt.resolve_resume(str(path), path / "checkpoints")
    return found


def run_evaluation(path: Path, out: Path | None = None, split: str | None = None, pairs: int = 1024,
                   stride: int | None = None, pictures: int = 6, device: str = "auto",
                   data_root: str | None = None, dataset: str | None = None, data_seed: int | None = None,
                   force: bool = False) -> dict:
    """Evaluate the checkpoint at ``path`` (a pose model: 3D errors; a pretext model: sync analysis).

    dataset, data_seed: evaluate on another dataset than the one trained on (cross-rig evaluation): a dataset
    folder, or ``synthetic:<preset>`` with ``data_seed`` (another seed: another rig, other people and motions).
    It is prepared (tiles included) with the run's own data settings.

    ``out`` is an evaluation's own folder: a training run's folder is refused, and one holding the evaluation of
    another run, split or dataset unless ``force``."""
    checkpoint = resolve_checkpoint(path)
    state = ckpt.load(checkpoint)
    pose = state.get("arch", {}).get("model") == "PoseNet"
    cfg = config_from_dict(FinetuneConfig if pose else PretrainConfig, state["config"])
    out = Path(out) if out else checkpoint.parent.parent / ("eval" if not (dataset or data_seed is not None)
                                                           else f"eval-{_slug(dataset or cfg.data.dataset, data_seed)}")
    train = dataclasses.replace(cfg.train, run_dir=str(out), resume=str(checkpoint), device=device, eval_every=0,
                                compile=False)
    data = dataclasses.replace(cfg.data, data_root=data_root) if data_root else cfg.data
    if dataset or data_seed is not None:  # another dataset or rig: its own splits (a run tuned on "val" may meet
        #                                   a dataset without one), the one asked for evaluated
        data = dataclasses.replace(data, dataset=dataset or data.dataset, prepared="",
                                   synthetic_seed=data.synthetic_seed if data_seed is None else data_seed,
                                   train_split="auto", eval_split=split or "test")
    if pose:
        # the weights come from the checkpoint: do not look for the pre-training run it started from
        transfer = dataclasses.replace(cfg.transfer, init="random",
                                       eval_stride=stride or cfg.transfer.eval_stride)
        cfg = dataclasses.replace(cfg, train=train, data=data, transfer=transfer)
    else:
        cfg = dataclasses.replace(cfg, train=train, data=data)
    # one evaluation folder per run and data: a newer checkpoint of the same run replaces its evaluation
    identity = {"run": str(checkpoint.absolute().parent.parent), "split": split or "", "dataset": data.dataset,
                "data_seed": data.synthetic_seed}
    with runfolder.claimed(out, "eval", identity, "syncssl-eval", force, "--force", checkpoint=str(checkpoint)):
        return _evaluate(checkpoint, cfg, out, pose, split, pairs, pictures, device, data)


def _evaluate(checkpoint: Path, cfg, out: Path, pose: bool, split, pairs, pictures, device, data) -> dict:
    d = distributed.setup(device)
    trainer = None
    try:
        # the config is the checkpoint's, changed on purpose (where to write, what to read): not a resume to check
        trainer = (PoseTrainer if pose else PretextTrainer)(cfg, d, progress=False, allow_changes=None)
        trainer.log(f"evaluating {checkpoint} (step {trainer.step}) -> {out}")
        if pose:
            result = evaluate_pose(trainer, out, split or cfg.data.eval_split, pictures)
        else:
            result = evaluate_pretext(trainer, out, (trainer.train_split, split or trainer.eval_split), pairs)
        return {"checkpoint": str(checkpoint), "task": "pose" if pose else "pretext", "out": str(out),
                "dataset": data.dataset, "data_seed": data.synthetic_seed, **result}
    finally:
        if trainer is not None:
            trainer.close()
        distributed.teardown()


def _slug(dataset: str, seed: int | None) -> str:
    import re
    name = re.sub(r"[^A-Za-z0-9]+", "-", str(dataset)).strip("-")[-40:]
    return name + (f"-seed{seed}" if seed is not None else "")
