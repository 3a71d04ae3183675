"""Measures: 3D pose errors (MPJPE, N-MPJPE, P-MPJPE, per action and DDP-reducible), the pretext accuracy as the
paper scores it, and the statistics of comparisons. Training uses them; nothing here runs training (that is
:mod:`syncssl.experiments`)."""
from .metrics import ERRORS, PoseErrors, mpjpe, n_mpjpe, p_mpjpe, procrustes_align, scale_align

__all__ = ["ERRORS", "PoseErrors", "mpjpe", "n_mpjpe", "p_mpjpe", "procrustes_align", "scale_align"]
