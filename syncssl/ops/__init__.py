"""Fused data-path operators. Importing this package makes ``torch.ops.syncssl.assemble_pairs`` exist."""
from .assemble import HAS_CPP_KERNEL, HAS_TRITON_KERNEL, IMAGENET_MEAN, IMAGENET_STD, assemble_pairs
from .reference import assemble_pairs_reference

__all__ = [
    "HAS_CPP_KERNEL",
    "HAS_TRITON_KERNEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "assemble_pairs",
    "assemble_pairs_reference",
]
