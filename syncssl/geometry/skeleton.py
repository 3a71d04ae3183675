"""The 17-joint Human3.6M skeleton and the one helper that mirrors images, labels and cameras."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from .camera import Camera


@dataclass(frozen=True)
class Skeleton:
    names: tuple[str, ...]
    parents: tuple[int, ...]  # -1 for the root
    left: tuple[int, ...]
    right: tuple[int, ...]

    def __post_init__(self):
        n = len(self.names)
        if len(self.parents) != n or any(p >= i for i, p in enumerate(self.parents)):
            raise ValueError("parents must precede their children")
        if len(self.left) != len(self.right) or set(self.left) & set(self.right):
            raise ValueError("left and right joints must pair up and be disjoint")

    @property
    def num_joints(self) -> int:
        return len(self.names)

    @property
    def bones(self) -> list[tuple[int, int]]:
        """(parent, child) pairs."""
        return [(p, c) for c, p in enumerate(self.parents) if p >= 0]

    @property
    def mirror_permutation(self) -> np.ndarray:
        """Joint order after a left/right swap; an involution."""
        perm = np.arange(self.num_joints)
        perm[list(self.left)] = self.right
        perm[list(self.right)] = self.left
        return perm

    def side(self, j: int) -> str:
        return "left" if j in self.left else "right" if j in self.right else "centre"


# Human3.6M's 32 joints reduced to the usual 17 (DESIGN.md conventions).
H36M_32_TO_17 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)

H36M17 = Skeleton(
    names=("hip", "r_hip", "r_knee", "r_foot", "l_hip", "l_knee", "l_foot", "spine", "thorax",
           "neck", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist"),
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15),
    left=(4, 5, 6, 11, 12, 13),
    right=(1, 2, 3, 14, 15, 16),
)
SKELETONS = {"h36m17": H36M17}


class Mirrored(NamedTuple):
    joints2d: np.ndarray | None
    joints3d_cam: np.ndarray | None
    camera: Camera | None


def mirror(width: int, *, joints2d: np.ndarray | None = None, joints3d_cam: np.ndarray | None = None,
           camera: Camera | None = None, skeleton: Skeleton = H36M17) -> Mirrored:
    """Everything that changes when an image of ``width`` pixels is mirrored left-right.

    - 2D joints (..., J, 2): u -> width - 1 - u, and left/right joints swap;
    - 3D joints in camera coordinates (..., J, 3): x -> -x, and left/right joints swap;
    - the camera: cx -> width - 1 - cx, the x-dependent tangential term p2 -> -p2, and the first row of
      the extrinsics negated, so that the mirrored camera projects world points onto the mirrored image.

    Applying it twice is the identity.
    """
    perm = skeleton.mirror_permutation
    j2 = j3 = cam = None
    if joints2d is not None:
        j2 = np.array(joints2d, np.float64, copy=True)
        if j2.shape[-2:] != (skeleton.num_joints, 2):
            raise ValueError(f"joints2d: expected (..., {skeleton.num_joints}, 2), got {j2.shape}")
        j2[..., 0] = width - 1 - j2[..., 0]
        j2 = j2[..., perm, :]
    if joints3d_cam is not None:
        j3 = np.array(joints3d_cam, np.float64, copy=True)
        if j3.shape[-2:] != (skeleton.num_joints, 3):
            raise ValueError(f"joints3d_cam: expected (..., {skeleton.num_joints}, 3), got {j3.shape}")
        j3[..., 0] = -j3[..., 0]
        j3 = j3[..., perm, :]
    if camera is not None:
        if camera.size[0] != width:
            raise ValueError(f"camera {camera.name}: width {camera.size[0]} does not match the image width {width}")
        K = camera.K.copy()
        K[0, 2] = width - 1 - K[0, 2]
        K[0, 1] = -K[0, 1]
        dist = camera.dist.copy()
        dist[3] = -dist[3]
        S = np.diag([-1.0, 1.0, 1.0])
        cam = replace(camera, K=K, dist=dist, R=S @ camera.R, t=S @ camera.t)
    return Mirrored(j2, j3, cam)


def root_relative(joints: np.ndarray, root: int = 0) -> np.ndarray:
    """(..., J, 3) -> the same joints relative to the root joint."""
    joints = np.asarray(joints)
    return joints - joints[..., root:root + 1, :]
