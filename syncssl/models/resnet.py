"""ResNet-18/34/50 backbones written here (no torchvision), channels_last friendly, with a width multiplier.

Layout of the parameters (and so of the state_dict keys)::

    stem.0 conv 7x7/2, stem.1 BN, (ReLU, max-pool 3x3/2)
    stages.0 .. stages.3    the four residual stages (He et al.'s conv2_x .. conv5_x, torchvision's
                            layer1 .. layer4), strides 1, 2, 2, 2; each a Sequential of residual blocks
    global average pooling  -> the embedding of size ``out_features``

Bottlenecks put their stride on the 3x3 convolution ("ResNet v1.5"), as torchvision does.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import CheckpointMismatch

# Normalisation layers by name. "batch" is the paper's; "group" does not depend on the batch, so a DDP
# run equals a single process with the same global batch exactly (BatchNorm's statistics are per rank,
# and SyncBatchNorm needs a GPU).
NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm2d,
    "group": lambda channels: nn.GroupNorm(math.gcd(channels, 8), channels),
}
_NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm)

# How the last feature map becomes an embedding -> the embedding's size / out_features. "avg": the global average
# (the paper's); "grid": the averages over a 2x2 grid, flattened, which keep which side of the person a feature
# lies on (a mirrored view swaps them; a left arm is told from a right one by where it is)
POOLS = {"avg": 1, "grid": 4}


class PersonStandardise(nn.Module):
    """Each image's channels standardised over its person pixels: the pixels the fused op did not replace by
    the background fill (which it normalises to 0); every pixel when the background is kept.

    A contrast stretch and a grey-world white balance per view, without parameters: a person dressed in pale,
    low-contrast colours (whose arms, torso and legs barely separate) looks to the network like one dressed in
    strong colours, and the two views of one instant agree more when the cameras expose differently.
    """

    EMPTY = 1e-3  # |x| summed over the channels below this: background fill (about 0.1 grey level)
    FLOOR = 0.1  # the smallest std divided by, in normalised units (~6 grey levels): flat crops stay flat

    @classmethod
    def person_pixels(cls, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, 1, H, W) bool: the pixels the fused op did not replace by the background fill."""
        return x.abs().sum(1, keepdim=True) > cls.EMPTY

    def forward(self, x: Tensor) -> Tensor:
        person = self.person_pixels(x).to(x.dtype)  # (B, 1, H, W)
        count = person.sum((2, 3), keepdim=True).clamp(min=1)
        mean = (x * person).sum((2, 3), keepdim=True) / count
        centred = (x - mean) * person
        var = centred.square().sum((2, 3), keepdim=True) / count
        return centred / var.sqrt().clamp(min=self.FLOOR)


class WithPersonMask(nn.Module):
    """``inner``'s output and one more channel, the person mask (+1 person, -1 background fill): the outline stays
    explicit where a person's colours are close to the fill (pale clothes on the grey the background becomes)."""

    extra_channels = 1

    def __init__(self, inner: nn.Module | None = None):
        super().__init__()
        self.inner = inner or nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        person = PersonStandardise.person_pixels(x)
        return torch.cat([self.inner(x), person.to(x.dtype) * 2 - 1], 1)


class Silhouette(nn.Module):
    """The person mask alone (+1 person, -1 background fill), one channel: no colour, texture or light reaches the
    network, so what it learns on rendered people holds on filmed ones as far as their outlines look alike."""

    extra_channels = -2  # three colour channels in, one out

    def forward(self, x: Tensor) -> Tensor:
        return PersonStandardise.person_pixels(x).to(x.dtype) * 2 - 1


# What a backbone does to its input before the stem: "none", "person" (PersonStandardise), "mask" (the image and
# its person mask as a fourth channel), "person+mask" (both) or "silhouette" (the mask alone).
INPUT_NORMS: dict[str, Callable[[], nn.Module]] = {
    "none": nn.Identity, "person": PersonStandardise, "mask": WithPersonMask,
    "person+mask": lambda: WithPersonMask(PersonStandardise()), "silhouette": Silhouette}
MASK_INPUTS = ("mask", "person+mask", "silhouette")  # need the person's outline: the op's background fill


def input_norm_layer(name: str) -> Callable[[], nn.Module]:
    """The input normalisation registered as ``name``; a ValueError listing the valid names otherwise."""
    try:
        return INPUT_NORMS[name]
    except KeyError:
        raise ValueError(f"unknown input normalisation {name!r}; choose one of: {', '.join(INPUT_NORMS)}") from None


def norm_layer(name: str) -> Callable[[int], nn.Module]:
    try:
        return NORMS[name]
    except KeyError:
        raise ValueError(f"unknown normalisation {name!r}; choose one of: {', '.join(NORMS)}") from None


BASE_CHANNELS = (64, 128, 256, 512)  # per-stage channels of a width-1 ResNet (before a bottleneck's expansion)
MIN_CHANNELS = 8


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, norm=nn.BatchNorm2d):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, 1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, out_channels, 3, 1, 1, bias=False)
        self.bn2 = norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride, norm)

    @property
    def last_bn(self) -> nn.Module:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, and a shortcut (ResNet-50)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, norm=nn.BatchNorm2d):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = norm(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride, norm)

    @property
    def last_bn(self) -> nn.Module:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _shortcut(in_channels: int, out_channels: int, stride: int, norm=nn.BatchNorm2d) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), norm(out_channels))


# depth -> (block type, blocks per stage)
ARCHITECTURES: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


def scaled_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded to an integer, at least MIN_CHANNELS."""
    return max(MIN_CHANNELS, int(round(channels * width)))


class Backbone(nn.Module):
    """A ResNet without its classifier: image (B, 3, H, W), any H, W >= 32 -> embedding (B, out_features).

    Convert with ``.to(memory_format=torch.channels_last)``: every activation then stays channels_last
    (inputs are converted on entry when the stem's weights are channels_last).
    """

    def __init__(self, depth: int = 18, width: float = 1.0, in_channels: int = 3, zero_init_residual: bool = False,
                 norm: str = "batch", input_norm: str = "none"):
        super().__init__()
        make_norm = norm_layer(norm)
        self.input_norm = input_norm_layer(input_norm)()  # no parameters (a mask channel widens the stem)
        if depth not in ARCHITECTURES:
            raise ValueError(f"unsupported ResNet depth {depth}; choose one of {sorted(ARCHITECTURES)}")
        if not width > 0:
            raise ValueError(f"ResNet width multiplier must be positive, got {width}")
        block, layers = ARCHITECTURES[depth]
        self.depth, self.width, self.in_channels, self.norm = depth, float(width), in_channels, norm
        stem_channels = scaled_channels(64, width)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels + getattr(self.input_norm, "extra_channels", 0), stem_channels, 7, 2, 3, bias=False),
            make_norm(stem_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages, channels = [], stem_channels
        for i, (base, num_blocks) in enumerate(zip(BASE_CHANNELS, layers)):
            planes, stride = scaled_channels(base, width), 1 if i == 0 else 2
            blocks = []
            for b in range(num_blocks):
                blocks.append(block(channels, planes, stride if b == 0 else 1, make_norm))
                channels = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.out_features = channels
        self._frozen: tuple[int, str] | None = None  # (up_to, unit) of the last freeze()
        self.reset_parameters(zero_init_residual)

    @property
    def arch(self) -> str:
        """A short description, e.g. "resnet18 (width 0.25)"."""
        return f"resnet{self.depth} (width {self.width:g})"

    @property
    def blocks(self) -> list[nn.Module]:
        """All residual blocks in forward order (8 for ResNet-18, 16 for ResNet-34/50)."""
        return [b for stage in self.stages for b in stage]

    def reset_parameters(self, zero_init_residual: bool = False) -> None:
        """Kaiming-normal convolutions, BN weight 1 and bias 0.

        ``zero_init_residual`` also zeroes the last BN gamma of every residual block, so that each block
        starts as the identity (Goyal et al. 2017): helps large-batch training from scratch.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, _NORM_TYPES):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for block in self.blocks:
                nn.init.zeros_(block.last_bn.weight)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> the last stage's feature map (B, out_features, ~H/32, ~W/32)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self.arch} expects images (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if self.stem[0].weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)  # a no-op for channels_last inputs
        x = self.stem(self.input_norm(x))
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> globally average-pooled embedding (B, out_features)."""
        return self.forward_features(x).mean(dim=(2, 3))

    def embed(self, x: Tensor, pool: str = "avg") -> Tensor:
        """(B, in_channels, H, W) -> embedding (B, POOLS[pool] * out_features), pooled as ``pool`` says."""
        if pool == "grid":
            return F.adaptive_avg_pool2d(self.forward_features(x), 2).flatten(1)
        if pool == "avg":
            return self(x)
        raise ValueError(f"unknown pool {pool!r}; choose one of: {', '.join(POOLS)}")

    # ------------------------------------------------------------------ freezing for transfer

    def freeze(self, up_to: int, unit: Literal["stage", "block"] = "stage") -> None:
        """Freeze the stem and the first ``up_to`` stages (``unit="stage"``) or residual blocks (``"block"``).

        Frozen means: no gradients (``requires_grad=False``) *and* BatchNorm kept in eval mode, so that
        its running statistics stay those of pre-training even while the model trains.

        The paper fine-tunes "with the first 3 residual blocks frozen". We read "residual block" as a
        residual *stage* (conv2_x, conv3_x, conv4_x of He et al.; torchvision's layer1..layer3): so
        ``freeze(3)`` freezes the stem and stages 0-2 and leaves stage 3 (conv5_x) plus the head trainable.
        The other reading, the first 3 individual blocks (for ResNet-18: all of stage 0 and the first
        block of stage 1), is ``freeze(3, unit="block")``. ``up_to=0`` freezes the stem only; to train
        everything, do not call freeze (or call ``unfreeze()``).
        """
        limit = len(self.stages) if unit == "stage" else len(self.blocks) if unit == "block" else None
        if limit is None:
            raise ValueError(f"freeze unit must be 'stage' or 'block', got {unit!r}")
        if not 0 <= up_to <= limit:
            raise ValueError(f"{self.arch} has {limit} {unit}s; cannot freeze the first {up_to}")
        self.unfreeze()
        self._frozen = (up_to, unit)
        for module in self.frozen_modules():
            for p in module.parameters():
                p.requires_grad_(False)
        self.train(self.training)

    def unfreeze(self) -> None:
        """Undo freeze(): every parameter trainable again, BN following the model's train/eval mode."""
        self._frozen = None
        for p in self.parameters():
            p.requires_grad_(True)
        self.train(self.training)

    def frozen_modules(self) -> list[nn.Module]:
        """The stem and the stages or blocks that freeze() froze (empty when not frozen)."""
        if self._frozen is None:
            return []
        up_to, unit = self._frozen
        parts = list(self.stages) if unit == "stage" else self.blocks
        return [self.stem, *parts[:up_to]]

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()  # frozen BN keeps its pre-trained running statistics
        return self


def resnet(depth: int = 18, width: float = 1.0, in_channels: int = 3, zero_init_residual: bool = False,
           norm: str = "batch", input_norm: str = "none") -> Backbone:
    """A ResNet-``depth`` backbone (18 and 34: BasicBlock; 50: Bottleneck) with every stage's channels
    (the stem's too) multiplied by ``width``, rounded, and at least 8. ``resnet(18)`` has 512 output features,
    ``resnet(50)`` 2048, ``resnet(18, 0.25)`` 128."""
    return Backbone(depth, width, in_channels, zero_init_residual, norm, input_norm)


# ---------------------------------------------------------------------------- checkpoints


_PREFIXES = ("module.", "_orig_mod.")  # DDP and torch.compile wrappers


def backbone_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The backbone's entries of a state_dict from a Backbone, a PairNet or a PoseNet (also when saved
    from a DDP- or torch.compile-wrapped model), keyed as in ``Backbone.state_dict()``.

    A training checkpoint holding the state_dict under "model" or "state_dict" is unwrapped too.
    """
    for key in ("model", "state_dict"):
        if isinstance(state_dict.get(key), Mapping):
            state_dict = state_dict[key]
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        if key.startswith("backbone."):
            out[key[len("backbone."):]] = value
        elif key.startswith(("stem.", "stages.")):
            out[key] = value
    return out


def describe_backbone_state(state_dict: Mapping[str, Tensor]) -> str:
    """Name the ResNet a backbone state_dict comes from, e.g. "resnet18 (width 0.25)", from its keys and
    shapes alone; an unusual layout is described by its block counts."""
    stem = state_dict.get("stem.0.weight")
    if stem is None:
        return "not a syncssl ResNet (no stem.0.weight)"
    width = stem.shape[0] / 64
    counts = []
    for s in range(len(BASE_CHANNELS)):
        blocks = {k.split(".")[2] for k in state_dict if k.startswith(f"stages.{s}.")}
        counts.append(len(blocks))
    bottleneck = any(".conv3." in k for k in state_dict)
    for depth, (block, layers) in ARCHITECTURES.items():
        if tuple(counts) == layers and (block is Bottleneck) == bottleneck:
            return f"resnet{depth} (width {width:g})"
    kind = "Bottleneck" if bottleneck else "BasicBlock"
    return f"a ResNet of {kind}s with {'-'.join(map(str, counts))} blocks per stage (width {width:g})"


def load_backbone(state_dict: Mapping[str, Tensor], model: nn.Module, source: str | Path = "checkpoint") -> None:
    """Load a backbone's weights into ``model`` (a Backbone, or a model with a ``.backbone``: PairNet, PoseNet).

    ``state_dict`` may be the full state_dict of a PairNet or PoseNet (see ``backbone_state_dict``).
    Raises CheckpointMismatch naming ``source``, both architectures and the first mismatching key/shape
    when the checkpoint holds another architecture (rather than PyTorch's size-mismatch trace).
    """
    backbone = model if isinstance(model, Backbone) else getattr(model, "backbone", None)
    if not isinstance(backbone, Backbone):
        raise TypeError(f"load_backbone needs a Backbone or a model with a .backbone, got {type(model).__name__}")
    loaded = backbone_state_dict(state_dict)
    if not loaded:
        raise CheckpointMismatch(f"{source}: holds no backbone weights (no 'stem.'/'stages.'/'backbone.' keys)")
    expected = backbone.state_dict()
    problem = None
    for key, value in expected.items():
        if key not in loaded:
            problem = f"{key!r} is missing from the checkpoint"
        elif tuple(loaded[key].shape) != tuple(value.shape):
            problem = (f"{key!r} has shape {tuple(loaded[key].shape)} in the checkpoint, "
                       f"{tuple(value.shape)} in the model")
        if problem:
            break
    if problem is None:
        extra = sorted(set(loaded) - set(expected))
        if extra:
            problem = f"{extra[0]!r} is in the checkpoint but not in the model"
    if problem:
        raise CheckpointMismatch(
            f"{source}: the checkpoint's backbone is {describe_backbone_state(loaded)} but the model's is "
            f"{backbone.arch}; first mismatch: {problem}")
    backbone.load_state_dict(loaded)
