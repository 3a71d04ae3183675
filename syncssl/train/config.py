"""The pretraining config: one dataclass per section, a docstring per field, presets in ``presets/*.toml``.

Resolution order: the dataclass defaults < the preset (``--preset``, default ``cpu-small``) < a TOML file
(``--config``) < dotted overrides on the command line (``optim.lr=3e-4 model.depth=34``). The defaults of
PretrainConfig and FinetuneConfig are the main job's (``cpu-small``, ``finetune-cpu-small``): the other presets
say what differs from it; why each default is what it is, measured, is in docs/history.md.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .. import config as cfglib
from ..config import choices
from ..data.loading.sampling import SamplingConfig
from ..errors import ConfigError
from ..models.pairnet import PairNetConfig
from ..models.pose import PoseNetConfig
from ..models.resnet import MASK_INPUTS, POOLS

PRESETS_PACKAGE = "syncssl.train.presets"


@dataclass
class DataConfig:
    dataset: str = "synthetic:small-pool"
    """A dataset folder (generic layout with dataset.json, one session folder, or a Human3.6M root), or
    "synthetic:<preset>" for the embedded synthetic data, generated under data_root when absent."""
    data_root: str = "data"
    """Where the embedded synthetic datasets are generated (data/synthetic-<preset>)."""
    synthetic_seed: int = 0
    """Seed of the embedded synthetic dataset."""
    prepared: str = ""
    """Folder of the prepared manifest (backgrounds, boxes, motion); empty: <dataset>/prepared."""
    train_split: str = "auto"
    """Split whose subjects are pre-trained on (labels are never read for pre-training); auto: the dataset's
    "pretrain" split when it has one (the embedded data: the training subjects and the unlabelled pool), else
    "train"."""
    eval_split: str = "test"
    """Held-out split for the sync / flip accuracy reported at the end (unseen subjects)."""
    source: str = choices("tiles", "tiles", "video")
    """Where training reads pixels: person tiles cut once by prepare (random access, no video decoding while
    training), or the videos themselves (decoded per batch)."""
    tile_format: str = choices("auto", "auto", "raw", "jpeg")
    """Tiles on disk: raw uint8 (memory-mapped), JPEG records (a tenth of the size, decoded per batch by DALI or
    Pillow), or auto (raw when they fit half of this machine's memory)."""
    tile_backgrounds: bool = True
    """Raw tiles: store each tile's background beside it (else it is cut from the camera's model per batch)."""
    decoder: str = choices("auto", "auto", "dali", "pyav")
    """Video decoder (data.source = video, and prepare's pass): DALI (GPU NVDEC, or CPU for MJPEG/VP9), PyAV
    (any codec, CPU), or auto."""
    crop_size: int = 64
    """S: side of the square person-centred crop fed to the network, in pixels."""
    background: str = choices("soft", "off", "hard", "soft")
    """Background removal in the fused op: off, hard mask, or soft mask (alpha ramp)."""
    bg_threshold_scale: float = 1.2
    """The op's threshold on the RGB distance to the background = this x the camera's noise threshold that
    prepare measured (per camera)."""
    bg_softness: float = 8.0
    """Width of the soft mask's ramp, centred on the threshold (0..255 RGB distance)."""
    shadow_min: float = 0.5
    """Shadow test: a pixel darker than the background, keeping at least this share of its brightness..."""
    shadow_chroma: float = 0.05
    """... and its colour (within this share of the colour's length) is the background in shadow (0: no test)."""
    bg_clean: bool = True
    """3x3 clean-up of the op's mask: specks removed, holes and "shadows" surrounded by the body filled."""
    substitute: float = 0.0
    """Share of views whose removed background is replaced by another camera's background instead of a
    constant (the paper's final models: 0.5)."""
    aug_jitter: float = 0.0
    """Appearance augmentation in training: brightness and saturation scaled by U(1 - this, 1 + this), one draw
    per pair (pre-training) or per view (fine-tuning); 0: off."""
    aug_hue_deg: float = 0.0
    """... hue rotated by up to this many degrees (0: off)."""
    aug_permute: float = 0.0
    """... probability of a random permutation of the colour channels."""
    aug_grey: float = 0.0
    """... probability of greyscale."""
    aug_start: float = 0.0
    """Share of the training steps before the appearance augmentation starts (a curriculum: the task is learnt
    on clean views first, invariance to clothing and light after; 0: from the first step)."""
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
    backbone_lr_scale: float = 1.0
    """The backbone's trainable parameters learn at this multiple of lr, the heads at lr (fine-tuning: < 1 adapts
    pre-trained stages without overwriting them)."""


@dataclass
class TrainConfig:
    steps: int = 1500
    """Optimizer steps."""
    batch_size: int = 32
    """Global batch: pairs per step summed over all ranks (each rank takes batch_size / world_size)."""
    seed: int = 0
    """Seed of the sampler, the model init and dropout; the same seed gives the same run."""
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
    data_wait_s: float = 7200.0
    """Multi-process runs: how long the other processes wait for rank 0 to generate and prepare the dataset."""


@dataclass
class PretextConfig:
    sync_weight: float = 1.0
    """Weight of the synchronization cross-entropy (0 switches the task off, a grouped batch's extra pairs included:
    the flip-only ablation)."""
    flip_weight: float = 1.0
    """Weight of the flip cross-entropy (0 switches the task off: the sync-only ablation)."""
    cross_weight: float = 1.0
    """Weight of the sync cross-entropy on a grouped batch's extra pairs (``sampling.group_size`` > 1), averaged
    over those pairs, relative to ``sync_weight`` (the extra pairs are the sync task too); no effect when the
    batch is not grouped."""
    mirror_average: bool = True
    """Evaluation scores each pair twice, as filmed and with both views mirrored (a mirrored rig films the same
    instants, so the labels hold), and averages the probabilities; summary.json keeps the single-pass accuracies
    beside (``*_single``). Measured on five models of 2026-12-05/06: held-out sync +0.009 on average (-0.003 to
    +0.025), flip +0.007; it doubles the cost of evaluation only."""


@dataclass(frozen=True)
class TrainSampling(SamplingConfig):
    """Pre-training's sampling: each step draws train.batch_size / processes pairs, whatever batch_size says here,
    so group_size is checked against that batch (PretrainConfig.validate, run.check_world_size)."""

    checks_batch = False


@dataclass
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    pretext: PretextConfig = field(default_factory=PretextConfig)
    # The main job's values where they differ from the section's own defaults (the paper's); why, measured:
    # docs/history.md.
    sampling: TrainSampling = field(default_factory=lambda: TrainSampling(
        group_size=4,  # the sync head also scores a group's cross pairs: ~3x the labelled pairs per step
        min_offset=0.3,  # seconds: the paper's lower end (4 frames at 50 fps), made clearer
        min_silhouette_change=0.1))  # periodic actions repeat poses: "unsynchronized" pairs must differ
    model: PairNetConfig = field(default_factory=lambda: PairNetConfig(
        depth=18, width=0.25,  # a quarter-width ResNet-18 (0.7M parameters) fits a 2-core CPU
        center=True,  # standardised embeddings before the product: every training seed takes off
        pool="grid",  # 2x2 cells keep which side of the person a feature lies on, which a mirror swaps
        input_norm="mask"))  # the person mask as a 4th channel: pale clothes no longer melt into the grey fill
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        lr=6e-4, warmup_steps=200))  # 1e-3 and above stall the sync task at chance on this model
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=12000,  # with the mask channel the held-out curve still rises past 6000 steps
        log_every=50, eval_every=1000, ckpt_every=1000))

    def validate(self):
        p = self.pretext
        problems = common_problems(self)
        if p.sync_weight + p.flip_weight == 0:
            problems.append("pretext.sync_weight and pretext.flip_weight must not both be 0")
        for section in (self.model, self.sampling):  # their own checks live in __post_init__
            try:
                section.__post_init__()
            except ValueError as e:
                problems.append(str(e))
        if self.sampling.group_size >= 1 and self.train.batch_size % self.sampling.group_size:
            problems.append(f"sampling.group_size {self.sampling.group_size} must divide the batch in use, "
                            f"train.batch_size {self.train.batch_size}")
        if problems:
            raise ConfigError("invalid config: " + "; ".join(problems))


@dataclass
class TransferConfig:
    init: str = choices("pretrained", "pretrained", "random")
    """Backbone initialisation: the pre-trained checkpoint, or random weights (the baseline)."""
    checkpoint: str = "runs/pretrain"
    """init = pretrained: a pre-training run directory (its newest checkpoint) or a checkpoint folder."""
    label_subjects: list[str] = field(default_factory=lambda: ["S1"])
    """Subjects whose 3D labels are used (the paper: S1 only, or all training subjects)."""
    label_fraction: float = 1.0
    """Share of those subjects' frames that carry labels (every k-th frame, seeded): the label budget."""
    protocol: str = choices("finetune", "finetune", "frozen")
    """finetune: the backbone trains except its first model.frozen_stages stages (the paper freezes 3);
    frozen: the whole backbone is frozen and only the pose head trains (a linear-probe style read-out)."""
    eval_stride: int = 4
    """Evaluate every k-th frame of the held-out subjects, every camera (the paper: every 64th at 50 fps)."""
    flip: float = 0.5
    """Probability of mirroring a training image together with its 3D label (augmentation)."""
    jitter_shift: float = 0.05
    """Crop box shift, uniform in +-this fraction of the box side (augmentation)."""
    jitter_scale: float = 0.1
    """Log of the crop box scale, uniform in +-this (augmentation)."""
    pictures: int = 6
    """Test frames drawn with predicted and true skeletons at the end (pose overlays and 3D plots)."""


@dataclass
class FinetuneConfig:
    data: DataConfig = field(default_factory=lambda: DataConfig(
        dataset="synthetic:small", train_split="train", eval_split="test",
        # one labelled subject's clothes must not be all the colours the pose head sees (random init memorises them)
        aug_jitter=0.3, aug_hue_deg=180.0, aug_permute=0.5, aug_grey=0.2))
    transfer: TransferConfig = field(default_factory=TransferConfig)
    model: PoseNetConfig = field(default_factory=lambda: PoseNetConfig(depth=18, width=0.25, hidden=512,
                                                                       frozen_stages=3))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, warmup_steps=50))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(run_dir="runs/finetune", batch_size=64,
                                                                   log_every=50, eval_every=500, ckpt_every=500))

    def validate(self):
        x = self.transfer
        problems = common_problems(self)
        if not x.label_subjects:
            problems.append("transfer.label_subjects is empty: name at least one labelled subject")
        if self.model.pool not in POOLS:
            problems.append(f"model.pool must be one of {', '.join(POOLS)}, got {self.model.pool!r}")
        if problems:
            raise ConfigError("invalid config: " + "; ".join(problems))


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric config key: finite, and within [low, high] (an open end excludes it)."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, v) -> bool:
        return math.isfinite(v) and (v > self.low if self.low_open else v >= self.low) and \
            (v < self.high if self.high_open else v <= self.high)

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


AT_LEAST_0, AT_LEAST_1, POSITIVE, SHARE = Range(0), Range(1), Range(0, low_open=True), Range(0, 1)
BELOW_1 = Range(0, 1, high_open=True)
# every numeric config key (a test checks that none is missing), checked at the door: one line naming the key and
# the value in use, instead of a traceback (or a silent run) later
RANGES = {
    "data.synthetic_seed": AT_LEAST_0, "data.crop_size": Range(16), "data.bg_threshold_scale": POSITIVE,
    "data.bg_softness": POSITIVE, "data.shadow_min": SHARE, "data.shadow_chroma": AT_LEAST_0, "data.substitute": SHARE,
    "data.aug_jitter": BELOW_1, "data.aug_hue_deg": Range(0, 180), "data.aug_permute": SHARE, "data.aug_grey": SHARE,
    "data.aug_start": BELOW_1, "data.prefetch": AT_LEAST_1, "data.workers": AT_LEAST_1,
    "data.max_decode_failures": SHARE,
    "pretext.sync_weight": AT_LEAST_0, "pretext.flip_weight": AT_LEAST_0, "pretext.cross_weight": AT_LEAST_0,
    "sampling.batch_size": AT_LEAST_1, "sampling.sync_fraction": SHARE, "sampling.flip_fraction": SHARE,
    "sampling.single_view_share": SHARE, "sampling.min_offset": POSITIVE, "sampling.max_offset": POSITIVE,
    "sampling.min_silhouette_change": BELOW_1, "sampling.label_min_pose_change_mm": AT_LEAST_0,
    "sampling.jitter_shift": AT_LEAST_0, "sampling.jitter_scale": AT_LEAST_0,
    "sampling.single_view_jitter_shift": AT_LEAST_0, "sampling.single_view_jitter_scale": AT_LEAST_0,
    "sampling.single_view_sync_window": AT_LEAST_0, "sampling.group_size": AT_LEAST_1,
    "sampling.mirror_pairs": SHARE, "sampling.max_redraws": AT_LEAST_0,
    "model.depth": Range(18, 50), "model.width": POSITIVE, "model.embed_dim": AT_LEAST_1,
    "model.head_hidden": AT_LEAST_0, "model.dropout": BELOW_1, "model.num_joints": AT_LEAST_1,
    "model.root": AT_LEAST_0, "model.hidden": AT_LEAST_1, "model.scale_mm": POSITIVE,
    "model.frozen_stages": Range(0, 4),
    "transfer.label_fraction": Range(0, 1, low_open=True), "transfer.eval_stride": AT_LEAST_1, "transfer.flip": SHARE,
    "transfer.jitter_shift": AT_LEAST_0, "transfer.jitter_scale": AT_LEAST_0, "transfer.pictures": AT_LEAST_0,
    "optim.lr": POSITIVE, "optim.min_lr": AT_LEAST_0, "optim.warmup_steps": AT_LEAST_0,
    "optim.weight_decay": AT_LEAST_0, "optim.momentum": BELOW_1, "optim.grad_clip": AT_LEAST_0,
    "optim.backbone_lr_scale": POSITIVE,
    "train.steps": AT_LEAST_1, "train.batch_size": AT_LEAST_1, "train.seed": AT_LEAST_0, "train.threads": AT_LEAST_0,
    "train.log_every": AT_LEAST_1, "train.eval_every": AT_LEAST_0, "train.eval_pairs": AT_LEAST_1,
    "train.ckpt_every": AT_LEAST_1, "train.keep_checkpoints": AT_LEAST_1, "train.max_nonfinite": AT_LEAST_1,
    "train.max_steps_this_run": AT_LEAST_0, "train.data_wait_s": POSITIVE,
}


def range_problems(cfg) -> list[str]:
    """"<key> must be <range>, got <value>" for every numeric value outside its range (None: an optional key unset)."""
    problems = []
    for section in dataclasses.fields(cfg):
        for f in dataclasses.fields(getattr(cfg, section.name)):
            key, value = f"{section.name}.{f.name}", getattr(getattr(cfg, section.name), f.name)
            if key in RANGES and value is not None and value not in RANGES[key]:
                finite = "" if math.isfinite(value) else "a finite number "
                problems.append(f"{key} must be {finite}{RANGES[key]}, got {value!r}")
    return problems


def common_problems(cfg) -> list[str]:
    """Checks shared by the pre-training and the transfer configs: each numeric value's range, then the keys that
    must agree with each other."""
    d, o = cfg.data, cfg.optim
    checks = [
        (len(d.mean) == 3 and len(d.std) == 3 and min(d.std) > 0, "data.mean and data.std need 3 values, std > 0"),
        (o.min_lr <= o.lr, f"need optim.min_lr <= optim.lr, got {o.min_lr}, {o.lr}"),
    ]
    if cfg.model.input_norm in MASK_INPUTS:  # the mask is read off the background fill: it needs one, in every view
        checks.append((d.background != "off" and d.substitute == 0,
                       f"model.input_norm={cfg.model.input_norm} finds the person by the fill the fused op puts where "
                       f"it removed the background: it needs data.background on (got {d.background!r}) and "
                       f"data.substitute=0 (got {d.substitute:g}; substituted backgrounds would read as person)"))
    return range_problems(cfg) or [problem for ok, problem in checks if not ok]


PRESET_PREFIX = {PretrainConfig: "", FinetuneConfig: "finetune-"}


def preset_names(cls=PretrainConfig) -> list[str]:
    prefix = PRESET_PREFIX[cls]
    names = [p.name.removesuffix(".toml") for p in resources.files(PRESETS_PACKAGE).iterdir()
             if p.name.endswith(".toml")]
    return sorted(n.removeprefix(prefix) for n in names
                  if n.startswith(prefix) and (prefix or not any(n.startswith(q) for q in PRESET_PREFIX.values() if q)))


def preset_path(name: str, cls=PretrainConfig) -> Path:
    path = resources.files(PRESETS_PACKAGE).joinpath(f"{PRESET_PREFIX[cls]}{name}.toml")
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(preset_names(cls))}")
    return Path(str(path))


def load_config(preset: str | None = "cpu-small", path: Path | None = None, overrides=(), cls=PretrainConfig):
    """Defaults, then the preset, then the TOML file, then the overrides; validated."""
    cfg = cls()
    if preset:
        cfg = cfglib.load(cls, preset_path(preset, cls), base=cfg)
    cfg = cfglib.load(cls, path, list(overrides), base=cfg)
    if hasattr(cfg, "sampling") and cfg.sampling.batch_size != cls().sampling.batch_size:
        raise ConfigError(f"sampling.batch_size={cfg.sampling.batch_size} is not a setting (the trainer sets it to "
                          "each process's share of train.batch_size): set train.batch_size, the global batch")
    return cfg


# What a saved config (a checkpoint's, a run's config.toml) means by a key it lacks: the behaviour from before the
# option was added, which the main job's defaults no longer are.
BEFORE_THE_OPTION = {
    PretrainConfig: {"model": {"center": False, "pool": "avg", "input_norm": "none"},
                     "sampling": {"group_size": 1, "min_silhouette_change": 0.0}},
    FinetuneConfig: {"data": {"aug_jitter": 0.0, "aug_hue_deg": 0.0, "aug_permute": 0.0, "aug_grey": 0.0}},
}


def saved_base(cls):
    """The config that a saved one (which may predate some options) is read on top of."""
    return cfglib.update(cls(), BEFORE_THE_OPTION[cls])


def config_from_dict(cls, values: dict):
    """A config saved with a checkpoint (``dataclasses.asdict``) back as ``cls``."""
    return cfglib.update(saved_base(cls), values)

