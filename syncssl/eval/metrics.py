"""3D pose errors in millimetres: MPJPE, N-MPJPE, P-MPJPE; functional forms and a DDP-reducible metric.

All functions take poses (B, J, 3) in millimetres and return the per-sample mean joint error (B,).
They compute in float64 (Procrustes' SVD is ill-conditioned in half precision) and return float64.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

_EPS = 1e-12  # guards the scale of an all-zero (collapsed) prediction


def _check_poses(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    if pred.dim() != 3 or pred.shape[-1] != 3 or pred.shape != target.shape:
        raise ValueError(f"poses must both be (B, J, 3); got pred {tuple(pred.shape)}, target {tuple(target.shape)}")
    if not (pred.is_floating_point() and target.is_floating_point()):
        raise TypeError(f"poses must be floating point; got {pred.dtype}, {target.dtype}")
    return pred.detach().double(), target.detach().double()


def _mean_joint_error(pred: Tensor, target: Tensor) -> Tensor:
    return (pred - target).norm(dim=-1).mean(dim=-1)


def mpjpe(pred: Tensor, target: Tensor) -> Tensor:
    """Mean per-joint position error (B,), no alignment: the poses are compared as given (both root-relative
    by convention)."""
    pred, target = _check_poses(pred, target)
    return _mean_joint_error(pred, target)


def scale_align(pred: Tensor, target: Tensor, root: int | None = 0) -> tuple[Tensor, Tensor]:
    """Scale alignment of N-MPJPE (Rhodin et al., CVPR 2018): both poses made root-relative (unless
    ``root`` is None), then pred scaled by the least-squares s = <p, g> / <p, p>, one s per sample.
    Returns (aligned pred, target), both root-relative."""
    pred, target = _check_poses(pred, target)
    if root is not None:
        pred, target = pred - pred[:, root:root + 1], target - target[:, root:root + 1]
    scale = (pred * target).sum(dim=(1, 2)) / (pred * pred).sum(dim=(1, 2)).clamp_min(_EPS)
    return pred * scale[:, None, None], target


def n_mpjpe(pred: Tensor, target: Tensor, root: int | None = 0) -> Tensor:
    """Scale-normalised MPJPE (B,): MPJPE after the least-squares *scale* alignment of ``scale_align``
    (no rotation, no translation beyond making both poses root-relative)."""
    return _mean_joint_error(*scale_align(pred, target, root))


def procrustes_align(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Procrustes (similarity) alignment of P-MPJPE: pred -> s * pred @ R + t minimising the squared joint
    distances to target, per sample, over scale s > 0, a *proper* rotation R (det +1) and translation t.

    Reflection fix: when the best orthogonal map is a reflection (det < 0), the sign of the last singular
    vector is flipped, so that a mirrored pose is not "explained away" by a mirror. Returns (aligned pred, target).
    """
    pred, target = _check_poses(pred, target)
    mu_p, mu_g = pred.mean(dim=1, keepdim=True), target.mean(dim=1, keepdim=True)
    p, g = pred - mu_p, target - mu_g
    # max_R tr(R^T M) with M = p^T g = U S V^T  is reached at R = U D V^T, D = diag(1, 1, sign det(U V^T)).
    u, s, vt = torch.linalg.svd(p.transpose(1, 2) @ g)
    d = torch.sign(torch.linalg.det(u @ vt))
    d = torch.where(d == 0, torch.ones_like(d), d)
    u = torch.cat([u[..., :2], u[..., 2:] * d[:, None, None]], dim=-1)
    rotation = u @ vt
    trace = s[:, 0] + s[:, 1] + d * s[:, 2]
    scale = trace / (p * p).sum(dim=(1, 2)).clamp_min(_EPS)
    return scale[:, None, None] * (p @ rotation) + mu_g, target


def p_mpjpe(pred: Tensor, target: Tensor) -> Tensor:
    """Procrustes-aligned MPJPE (B,): MPJPE after the similarity alignment (scale, rotation, translation)
    of ``procrustes_align``, reflections excluded."""
    return _mean_joint_error(*procrustes_align(pred, target))


ERRORS = {"mpjpe": mpjpe, "n_mpjpe": n_mpjpe, "p_mpjpe": p_mpjpe}  # the column order of the metric's state


class PoseErrors(Metric):
    """MPJPE, N-MPJPE and P-MPJPE (mm), over all frames and per action; reducible across DDP ranks.

    States are per-action sums of the per-frame errors and per-action frame counts, summed over ranks.

    ``compute()`` returns::

        {"mpjpe": ..., "n_mpjpe": ..., "p_mpjpe": ...,       # headline: = mean_over_actions
         "mean_over_actions": {...},  # per-action means, then their plain mean over the actions seen
                                      # (the Human3.6M / paper protocol; actions without frames are skipped)
         "frame_weighted": {...},     # every frame counts once (the mean over all frames)
         "per_action": {action: {"mpjpe": ..., "n_mpjpe": ..., "p_mpjpe": ..., "count": n}},
         "count": N}

    Without action names there is one action, "all", and the two means coincide.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, actions: Sequence[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.actions = list(actions) if actions else ["all"]
        if len(set(self.actions)) != len(self.actions):
            raise ValueError(f"action names must be unique, got {self.actions}")
        n = len(self.actions)
        self.add_state("error_sum", torch.zeros(n, len(ERRORS), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(n, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, action_idx: Tensor | int | None = None) -> None:
        """pred, target (B, J, 3) mm; action_idx: (B,) indices into ``actions`` (or one int for the whole
        batch; None only when the metric was built without actions)."""
        errors = torch.stack([fn(pred, target) for fn in ERRORS.values()], dim=1)  # (B, 3)
        b = errors.shape[0]
        if action_idx is None:
            if len(self.actions) > 1:
                raise ValueError(f"update() needs action_idx: the metric breaks errors down by {self.actions}")
            action_idx = 0
        idx = torch.as_tensor(action_idx, device=self.count.device)
        idx = idx.expand(b) if idx.dim() == 0 else idx
        if idx.shape != (b,) or idx.is_floating_point():
            raise ValueError(f"action_idx must be an int or integer tensor of shape ({b},), got {tuple(idx.shape)}")
        if b and (idx.min() < 0 or idx.max() >= len(self.actions)):
            raise ValueError(f"action_idx out of range [0, {len(self.actions)}): "
                             f"{idx.min().item()}..{idx.max().item()}")
        self.error_sum.index_add_(0, idx.long(), errors.to(self.error_sum.device))
        self.count.index_add_(0, idx.long(), torch.ones(b, dtype=self.count.dtype, device=self.count.device))

    def compute(self) -> dict:
        sums, counts = self.error_sum.cpu(), self.count.cpu()
        total = counts.sum()
        names = list(ERRORS)
        per_action, action_means = {}, []
        for a, action in enumerate(self.actions):
            if counts[a] > 0:
                means = sums[a] / counts[a]
                action_means.append(means)
                per_action[action] = {**dict(zip(names, means.tolist())), "count": int(counts[a])}
        nan = [float("nan")] * len(names)
        frame = (sums.sum(0) / total).tolist() if total > 0 else nan
        over_actions = torch.stack(action_means).mean(0).tolist() if action_means else nan
        return {**dict(zip(names, over_actions)),
                "mean_over_actions": dict(zip(names, over_actions)),
                "frame_weighted": dict(zip(names, frame)),
                "per_action": per_action,
                "count": int(total)}
