"""Models: ResNet backbones, the siamese pair model of the pretext task, and the pose model for transfer."""
from .pairnet import FUSIONS, Fusion, PairNet, PairNetConfig, get_fusion, mlp_head
from .pose import PoseNet, PoseNetConfig
from .resnet import (
    ARCHITECTURES,
    Backbone,
    BasicBlock,
    Bottleneck,
    backbone_state_dict,
    describe_backbone_state,
    load_backbone,
    resnet,
)

__all__ = [
    "FUSIONS", "Fusion", "PairNet", "PairNetConfig", "get_fusion", "mlp_head", "PoseNet", "PoseNetConfig",
    "ARCHITECTURES", "Backbone", "BasicBlock", "Bottleneck", "backbone_state_dict",
    "describe_backbone_state", "load_backbone", "resnet",
]
