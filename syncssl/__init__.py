"""syncssl: self-supervised multi-view synchronization learning for 3D human pose.

Importing the package is cheap (no torch): the fused op ``torch.ops.syncssl.assemble_pairs`` is registered by
:mod:`syncssl.ops`, which the modules that call it import.
"""
__version__ = "0.1.0"
