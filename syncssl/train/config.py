"""The pretraining config: one dataclass per section, a docstring per field, presets in ``presets/*.toml``.

Resolution order: the dataclass defaults < the preset (``--preset``, default ``cpu-small``) < a TOML file
(``--config``) < dotted overrides on the command line (``optim.lr=3e-4 model.depth=34``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .. import config as cfglib
from ..config import ConfigError, choices
from ..data.sampling import SamplingConfig
from ..models.pairnet import PairNetConfig

PRESETS_PACKAGE = "syncssl.train.presets"


@dataclass
class DataConfig:
    dataset: str = "synthetic:small"
    """A dataset folder (generic layout with dataset.json, one session folder, or a Human3.6M root), or
    "synthetic:<preset>" for the embedded synthetic data, generated under data_root when absent."""
    data_root: str = "data"
    """Where the embedded synthetic datasets are generated (data/synthetic-<preset>)."""
    synthetic_seed: int = 0
    """Seed of the embedded synthetic dataset."""
    prepared: str = ""
    """Folder of the prepared manifest (backgrounds, boxes, motion); empty: <dataset>/prepared."""
    train_split: str = "train"
    """Split whose subjects are pre-trained on (labels are never read for pre-training)."""
    eval_split: str = "test"
    """Held-out split for the sync / flip accuracy reported at the end (unseen subjects)."""
    decoder: str = choices("auto", "auto", "dali", "pyav")
    """Video decoder: DALI (GPU NVDEC, or CPU for MJPEG/VP9), PyAV (any codec, CPU), or auto."""
    crop_size: int = 64
    """S: side of the square person-centred crop fed to the network, in pixels."""
    background: str = choices("soft", "off", "hard", "soft")
    """Background removal in the fused op: off, hard mask, or soft mask (alpha ramp)."""
    bg_threshold: float = 20.0
    """Colour distance (0..255, mean over RGB) to the background model below which a pixel is background."""
    bg_softness: float = 16.0
    """Width of the soft mask's ramp above bg_threshold (0..255 units)."""
    substitute: float = 0.0
    """Share of views whose removed background is replaced by another camera's background instead of a
    constant (the paper's final models: 0.5)."""
    prefetch: int = 3
    """Batches decoded and assembled ahead of the training step, on background threads."""
    workers: int = 1
    """Threads assembling batches ahead (each decodes a whole batch); 1 keeps decode order simple."""
    max_decode_failures: float = 0.01
    """Share of decode requests that may fail (those pairs are dropped) before the run stops."""
    mean: tuple[float, ...] = (0.45, 0.45, 0.45)
    """Per-channel normalisation mean (0..1 units)."""
    std: tuple[float, ...] = (0.25, 0.25, 0.25)
    """Per-channel normalisation std (0..1 units)."""


@dataclass
class OptimConfig:
    name: str = choices("adamw", "adamw", "sgd")
    """Optimizer: AdamW (the paper's) or SGD with Nesterov momentum."""
    lr: float = 1e-3
    """Peak learning rate, reached after the warm-up (the paper: 1e-4 at batch 16)."""
    min_lr: float = 1e-6
    """Learning rate at the end of the cosine schedule (the paper: 1e-7)."""
    warmup_steps: int = 100
    """Linear warm-up from 0 to lr."""
    weight_decay: float = 1e-4
    """Decoupled weight decay (AdamW) or L2 (SGD); not applied to norms and biases."""
    momentum: float = 0.9
    """SGD momentum (ignored by AdamW)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0: off)."""


@dataclass
class TrainConfig:
    steps: int = 1500
    """Optimizer steps."""
    batch_size: int = 32
    """Global batch: pairs per step summed over all ranks (each rank takes batch_size / world_size)."""
    seed: int = 0
    """Seed of the sampler, the model init and dropout; the same seed gives the same run."""
    sync_weight: float = 1.0
    """Weight of the synchronization cross-entropy (0 switches the task off: the flip-only ablation)."""
    flip_weight: float = 1.0
    """Weight of the flip cross-entropy (0 switches the task off: the sync-only ablation)."""
    amp: str = choices("auto", "auto", "bf16", "fp16", "off")
    """Mixed precision: auto = bf16 where supported (recent GPUs, CPUs with AVX512-BF16/AMX), fp16 with a
    GradScaler on older GPUs, else fp32."""
    channels_last: bool = True
    """Keep the model and its activations channels_last (NHWC): faster convolutions on GPUs and CPUs."""
    compile: bool = False
    """torch.compile the model (slower start, faster steps on GPU)."""
    sync_bn: bool = False
    """Convert BatchNorm to SyncBatchNorm under DDP on GPU."""
    device: str = choices("auto", "auto", "cpu", "cuda")
    """Where to train."""
    threads: int = 0
    """torch intra-op threads per process (0: torch's default)."""
    run_dir: str = "runs/pretrain"
    """Run directory: config, logs, checkpoints, curves, summary."""
    resume: str = "auto"
    """auto (newest loadable checkpoint of run_dir, else a fresh start), none, or a checkpoint path."""
    log_every: int = 25
    """Steps between log lines (each costs one host-device sync)."""
    eval_every: int = 500
    """Steps between held-out evaluations (0: only at the end)."""
    eval_pairs: int = 1024
    """Pairs in each held-out evaluation (a fixed, seeded set)."""
    ckpt_every: int = 250
    """Steps between checkpoints (and one at the end)."""
    keep_checkpoints: int = 3
    """Newest step-N checkpoints kept."""
    max_nonfinite: int = 5
    """Consecutive non-finite losses (each step skipped) before the run stops with an error."""
    max_steps_this_run: int = 0
    """Stop (with a checkpoint) after this many steps of this process, e.g. to test resume (0: no limit)."""


@dataclass
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    model: PairNetConfig = field(default_factory=lambda: PairNetConfig(depth=18, width=0.25))
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self):
        t, d, o = self.train, self.data, self.optim
        problems = []
        if t.steps < 1 or t.batch_size < 1:
            problems.append("train.steps and train.batch_size must be >= 1")
        if t.sync_weight < 0 or t.flip_weight < 0 or t.sync_weight + t.flip_weight == 0:
            problems.append("train.sync_weight and train.flip_weight must be >= 0 and not both 0")
        if d.crop_size < 16:
            problems.append(f"data.crop_size must be >= 16, got {d.crop_size}")
        if not 0 <= d.substitute <= 1:
            problems.append(f"data.substitute is a share in [0, 1], got {d.substitute}")
        if d.background == "soft" and d.bg_softness <= 0:
            problems.append("data.bg_softness must be > 0 with data.background = soft")
        if len(d.mean) != 3 or len(d.std) != 3 or min(d.std) <= 0:
            problems.append("data.mean and data.std need 3 values, std > 0")
        if not 0 <= o.min_lr <= o.lr:
            problems.append(f"need 0 <= optim.min_lr <= optim.lr, got {o.min_lr}, {o.lr}")
        if o.warmup_steps < 0 or o.grad_clip < 0:
            problems.append("optim.warmup_steps and optim.grad_clip must be >= 0")
        for section in (self.model, self.sampling):  # their own checks live in __post_init__
            try:
                section.__post_init__()
            except ValueError as e:
                problems.append(str(e))
        if problems:
            raise ConfigError("invalid config: " + "; ".join(problems))


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files(PRESETS_PACKAGE).iterdir()
                  if p.name.endswith(".toml"))


def preset_path(name: str) -> Path:
    path = resources.files(PRESETS_PACKAGE).joinpath(f"{name}.toml")
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(preset_names())}")
    return Path(str(path))


def load_config(preset: str | None = "cpu-small", path: Path | None = None, overrides=(), cls=PretrainConfig):
    """Defaults, then the preset, then the TOML file, then the overrides; validated."""
    cfg = cls()
    if preset:
        cfg = cfglib.load(cls, preset_path(preset), base=cfg)
    return cfglib.load(cls, path, list(overrides), base=cfg)


def replace_section(cfg, **sections):
    return dataclasses.replace(cfg, **sections)
