"""The transfer model: a (pre-trained) backbone and a head regressing root-relative 3D joints in millimetres."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .pairnet import PairNet
from .resnet import POOLS, Backbone, resnet


@dataclass
class PoseNetConfig:
    """Architecture of the pose model (its backbone must match the pre-trained one to load it)."""

    depth: int = 18  # ResNet depth: 18, 34 or 50
    width: float = 1.0  # channel multiplier of every ResNet stage
    num_joints: int = 17  # J: the 17-joint Human3.6M skeleton (syncssl.geometry.H36M17)
    root: int = 0  # index of the root joint (the pelvis), whose output is forced to 0
    hidden: int = 1024  # hidden units of the pose MLP
    dropout: float = 0.0  # dropout before the last Linear of the head
    scale_mm: float = 1000.0  # the head predicts in units of scale_mm (metres by default) so initial outputs are sane
    norm: str = "batch"  # normalisation layers of the backbone: "batch" or "group" (must match the pre-trained one)
    input_norm: str = "none"  # the backbone's input normalisation (resnet.INPUT_NORMS; must match the pre-trained one)
    pool: str = "avg"  # how the last feature map becomes the head's input: resnet.POOLS ("avg": global average,
    #                   "grid": 2x2 cells flattened, which keep where in the crop a feature lies)
    frozen_stages: int | None = None  # Backbone.freeze(n): stem + first n stages frozen (the paper's transfer: 3);
    #                                   None: all trainable


class PoseNet(nn.Module):
    """image (B, 3, S, S) -> root-relative 3D joints (B, J, 3) in millimetres, camera coordinates.

    head: pooled backbone features (``pool``: resnet.POOLS) -> Linear -> ReLU -> Dropout -> Linear(J * 3); the raw
    output u is mapped to ``mean_mm + u * scale_mm`` (``scale_mm`` a float, or a (J, 3) per-coordinate std from the
    dataset; ``mean_mm`` 0 or a (J, 3) mean pose), and the root joint is set to exactly 0. The last layer
    starts small, so an untrained model predicts about the mean pose.
    """

    def __init__(self, backbone: Backbone, num_joints: int = 17, root: int = 0, hidden: int = 1024,
                 dropout: float = 0.0, scale_mm: float | Tensor = 1000.0, mean_mm: Tensor | None = None,
                 pool: str = "avg"):
        super().__init__()
        if not 0 <= root < num_joints:
            raise ValueError(f"root joint {root} is not one of the {num_joints} joints")
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; choose one of: {', '.join(POOLS)}")
        self.backbone, self.num_joints, self.root, self.pool = backbone, num_joints, root, pool
        self.head = nn.Sequential(nn.Linear(backbone.out_features * POOLS[pool], hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(hidden, num_joints * 3))
        nn.init.normal_(self.head[-1].weight, std=1e-3)
        nn.init.zeros_(self.head[-1].bias)
        self.register_buffer("scale_mm", self._joint_tensor(scale_mm, "scale_mm"))
        self.register_buffer("mean_mm", self._joint_tensor(0.0 if mean_mm is None else mean_mm, "mean_mm"))
        root_mask = torch.ones(num_joints, 3)
        root_mask[root] = 0
        self.register_buffer("root_mask", root_mask, persistent=False)

    def _joint_tensor(self, value: float | Tensor, name: str) -> Tensor:
        t = torch.as_tensor(value, dtype=torch.float32)
        if t.shape not in ((), (self.num_joints, 3)):
            raise ValueError(f"{name} must be a number or ({self.num_joints}, 3), got shape {tuple(t.shape)}")
        return t.expand(self.num_joints, 3).clone()

    @classmethod
    def from_config(cls, config: PoseNetConfig) -> PoseNet:
        """A PoseNet with a fresh backbone (load pre-trained weights with ``load_backbone``: freezing survives it)."""
        backbone = resnet(config.depth, config.width, norm=config.norm, input_norm=config.input_norm)
        model = cls(backbone, config.num_joints, config.root, config.hidden, config.dropout, config.scale_mm,
                    pool=config.pool)
        if config.frozen_stages is not None:
            model.backbone.freeze(config.frozen_stages)
        return model

    @classmethod
    def from_pairnet(cls, pairnet: PairNet, **head_kwargs) -> PoseNet:
        """A PoseNet on a copy of a (pre-trained) PairNet's backbone; ``head_kwargs`` as in the constructor."""
        return cls(copy.deepcopy(pairnet.backbone), **head_kwargs)

    def forward(self, images: Tensor) -> Tensor:
        raw = self.head(self.backbone.embed(images, self.pool)).view(-1, self.num_joints, 3)
        return (self.mean_mm + raw * self.scale_mm) * self.root_mask
