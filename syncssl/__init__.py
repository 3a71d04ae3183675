"""syncssl: self-supervised multi-view synchronization learning for 3D human pose."""
__version__ = "0.1.0"
from . import ops  # registers torch.ops.syncssl.assemble_pairs
