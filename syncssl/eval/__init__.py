"""Evaluation: 3D pose errors (MPJPE, N-MPJPE, P-MPJPE), per action and DDP-reducible."""
from .metrics import ERRORS, PoseErrors, mpjpe, n_mpjpe, p_mpjpe, procrustes_align, scale_align

__all__ = ["ERRORS", "PoseErrors", "mpjpe", "n_mpjpe", "p_mpjpe", "procrustes_align", "scale_align"]
