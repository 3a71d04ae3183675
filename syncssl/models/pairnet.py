"""The siamese pair model of the pretext task: shared backbone, fusion of the two views, sync and flip heads."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .resnet import ARCHITECTURES, POOLS, Backbone, input_norm_layer, norm_layer, resnet


@dataclass(frozen=True)
class Fusion:
    """How the embeddings a, b (N, E) of the two views of a pair become one feature (N, factor * E)."""

    fuse: Callable[[Tensor, Tensor], Tensor]
    factor: int  # fused size / E
    symmetric: bool  # fuse(a, b) == fuse(b, a): the heads cannot tell which view is which


# The paper's fusion ablation: multiplication is best, difference close, concatenation and addition much worse.
FUSIONS: dict[str, Fusion] = {
    "concat": Fusion(lambda a, b: torch.cat([a, b], dim=1), 2, False),
    "diff": Fusion(lambda a, b: a - b, 1, False),
    "absdiff": Fusion(lambda a, b: (a - b).abs(), 1, True),
    "prod": Fusion(lambda a, b: a * b, 1, True),
    "sum": Fusion(lambda a, b: a + b, 1, True),
    "all": Fusion(lambda a, b: torch.cat([a, b, a - b, (a - b).abs(), a * b], dim=1), 5, False),
}


def get_fusion(name: str) -> Fusion:
    """The fusion registered as ``name``; a ValueError listing the valid names otherwise."""
    try:
        return FUSIONS[name]
    except KeyError:
        raise ValueError(f"unknown fusion {name!r}; choose one of: {', '.join(FUSIONS)}") from None


@dataclass
class PairNetConfig:
    """Architecture of the pretext model (the trainer builds it from a preset)."""

    depth: int = 18  # ResNet depth: 18 (the paper's), 34 or 50
    width: float = 1.0  # channel multiplier of every ResNet stage (e.g. 0.25 for small CPU runs)
    embed_dim: int | None = None  # per-view embedding size E after a Linear/BN/ReLU projection;
    #                               None: no projection, E = backbone.out_features
    fusion: str = "prod"  # how the two embeddings are combined: one of FUSIONS ("prod" is the paper's best)
    center: bool = False  # standardise each embedding dimension over the batch (BatchNorm1d, no affine, no ReLU)
    #                       before fusion: pooled ReLU features are all >= 0, so their product measures magnitude
    #                       more than agreement; centred, a_i * b_i > 0 exactly where the two views agree
    pool: str = "avg"  # how the last feature map becomes a view's embedding: "avg" (global average, the paper's) or
    #                   "grid" (averaged over a 2x2 grid and flattened: 4x the features, and they keep which side
    #                   of the person a feature lies on, which a mirrored view swaps)
    head_hidden: int = 256  # hidden units of the sync and flip MLP heads; 0: each head is a single Linear layer
    dropout: float = 0.0  # dropout before the last Linear of each head
    zero_init_residual: bool = False  # zero the last BN gamma of each residual block (each starts as the identity)
    norm: str = "batch"  # normalisation layers: "batch" (the paper's) or "group" (independent of the batch)
    input_norm: str = "none"  # before the stem: "none", "person" (each view's channels standardised over its
    #                          person pixels: a contrast stretch and white balance per view; see PersonStandardise),
    #                          "mask" (the person mask as a fourth input channel), "person+mask" (both) or
    #                          "silhouette" (the person mask alone: nothing of colour, texture or light)

    def __post_init__(self):
        if self.depth not in ARCHITECTURES:
            raise ValueError(f"unsupported ResNet depth {self.depth}; choose one of {sorted(ARCHITECTURES)}")
        get_fusion(self.fusion)
        norm_layer(self.norm)
        input_norm_layer(self.input_norm)
        if not self.width > 0:
            raise ValueError(f"width must be positive, got {self.width}")
        if self.embed_dim is not None and self.embed_dim <= 0:
            raise ValueError(f"embed_dim must be positive or None, got {self.embed_dim}")
        if self.pool not in POOLS:
            raise ValueError(f"unknown pool {self.pool!r}; choose one of: {', '.join(POOLS)}")
        if self.head_hidden < 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"need head_hidden >= 0 and 0 <= dropout < 1, got {self.head_hidden}, {self.dropout}")


def mlp_head(in_features: int, hidden: int, out_features: int, dropout: float = 0.0) -> nn.Sequential:
    """Linear -> ReLU -> Dropout -> Linear (or Dropout -> Linear when ``hidden`` is 0). No BN, so that
    a batch of one pair works."""
    if hidden == 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, out_features))
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(hidden, out_features))


class PairNet(nn.Module):
    """Siamese pair classifier: images (2N, 3, S, S), views 2n and 2n+1 forming pair n ->
    ``{"sync": (N, 2), "flip": (N, 2), "embedding": (2N, E)}`` (logits; class 1 = synchronized / flipped).

    Both views go through the same backbone in one call. With an order-symmetric fusion (prod, sum,
    absdiff) the flip head can tell only *whether* one view is mirrored, not which: that is the paper's
    flip label.
    """

    def __init__(self, config: PairNetConfig | None = None, backbone: Backbone | None = None):
        super().__init__()
        self.config = config = config or PairNetConfig()
        self.backbone = backbone or resnet(config.depth, config.width, zero_init_residual=config.zero_init_residual,
                                            norm=config.norm, input_norm=config.input_norm)
        features = self.backbone.out_features * POOLS[config.pool]
        if config.embed_dim is None:
            self.project, self.embed_dim = nn.Identity(), features
        else:
            self.project = nn.Sequential(nn.Linear(features, config.embed_dim, bias=False),
                                         nn.BatchNorm1d(config.embed_dim), nn.ReLU(inplace=True))
            self.embed_dim = config.embed_dim
        self.center = nn.BatchNorm1d(self.embed_dim, affine=False) if config.center else nn.Identity()
        self.fusion_name = config.fusion
        self.fusion = get_fusion(config.fusion)
        fused = self.fusion.factor * self.embed_dim
        self.sync_head = mlp_head(fused, config.head_hidden, 2, config.dropout)
        self.flip_head = mlp_head(fused, config.head_hidden, 2, config.dropout)

    def embed(self, images: Tensor) -> Tensor:
        """images (V, C, S, S) -> per-view embeddings (V, E): the pooled backbone features, projected if configured."""
        return self.project(self.backbone.embed(images, self.config.pool))

    def view_features(self, images: Tensor) -> Tensor:
        """images (V, C, S, S) -> what the fusion combines, per view (V, E): the embedding, centred if configured
        (in eval mode each view's own, so per-view features can be cached and paired later, as syncssl-sync does)."""
        return self.center(self.embed(images))

    def forward(self, images: Tensor, cross: Tensor | None = None) -> dict[str, Tensor]:
        """``cross`` (K, 2), optional: more pairs of views (indices into ``images``), scored by the sync head
        alone as ``"cross_sync"`` (K, 2): a grouped batch's extra pairs, at no extra backbone cost."""
        if images.dim() != 4 or images.shape[0] % 2:
            raise ValueError(f"PairNet expects an even batch of images (2N, C, H, W), got {tuple(images.shape)}")
        embedding = self.embed(images)
        views = self.center(embedding)
        pairs = views.view(-1, 2, embedding.shape[1])
        fused = self.fusion.fuse(pairs[:, 0], pairs[:, 1])
        out = {"sync": self.sync_head(fused), "flip": self.flip_head(fused), "embedding": embedding}
        if cross is not None:
            out["cross_sync"] = self.sync_head(self.fusion.fuse(views[cross[:, 0]], views[cross[:, 1]]))
        return out

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())
