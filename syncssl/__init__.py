"""syncssl: self-supervised multi-view synchronization learning for 3D human pose."""
__version__ = "0.1.0"
