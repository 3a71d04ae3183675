"""Calibrated cameras: pure, batched, shape-checked functions in NumPy.

Conventions (DESIGN.md): 3D in millimetres, 2D in pixels with pixel centres at integer coordinates
(OpenCV). A world point X maps to the camera as ``R @ X + t``. Two lens models:

- ``"opencv"``: OpenCV's radial + tangential model, ``dist = [k1, k2, p1, p2, k3]``;
- ``"h36m"``: the model Human3.6M's own code uses, ``dist = [k1, k2, p1, p2, k3]`` as well but with
  ``tan = p1*y + p2*x``, ``xd = x*(radial + tan) + p2*r2``, ``yd = y*(radial + tan) + p1*r2``.
  It is not expressible exactly in OpenCV's model, so it is kept as its own model.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

LENS_MODELS = ("opencv", "h36m")


def _check(name: str, a: np.ndarray, tail: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.shape[a.ndim - len(tail):] != tail or a.ndim < len(tail):
        raise ValueError(f"{name}: expected shape (..., {', '.join(map(str, tail))}), got {a.shape}")
    return a


# ---------------------------------------------------------------- rotations


def rodrigues_to_matrix(rvec: np.ndarray) -> np.ndarray:
    """Rodrigues vectors (..., 3) (axis * angle, radians) -> rotation matrices (..., 3, 3)."""
    r = _check("rvec", rvec, (3,))
    theta = np.linalg.norm(r, axis=-1)[..., None, None]
    k = r / np.maximum(theta[..., 0], 1e-300)
    K = np.zeros(r.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    K = K - np.swapaxes(K, -1, -2)
    eye = np.broadcast_to(np.eye(3), K.shape)
    return eye + np.sin(theta) * K + (1 - np.cos(theta)) * (K @ K)


def matrix_to_rodrigues(R: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> Rodrigues vectors (..., 3); exact near 0 and near pi."""
    R = _check("R", R, (3, 3))
    return quaternion_to_rodrigues(matrix_to_quaternion(R))


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4) as (w, x, y, z) -> rotation matrices (..., 3, 3)."""
    q = _check("q", q, (4,))
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4), (w, x, y, z) with w >= 0."""
    R = _check("R", R, (3, 3))
    m = R
    # Shepperd's method: pick the largest of the four candidate denominators for stability.
    diag = np.stack([m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2],
                     m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], -1)
    i = np.argmax(np.stack([diag[..., 0], diag[..., 1] - diag[..., 2] - diag[..., 3],
                            diag[..., 2] - diag[..., 1] - diag[..., 3],
                            diag[..., 3] - diag[..., 1] - diag[..., 2]], -1), -1)
    q = np.empty(R.shape[:-2] + (4,))
    t0 = 1 + diag[..., 0]
    t1 = 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2]
    t2 = 1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2]
    t3 = 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]
    cands = [
        np.stack([t0, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        np.stack([m[..., 2, 1] - m[..., 1, 2], t1, m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], t2, m[..., 1, 2] + m[..., 2, 1]], -1),
        np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], t3], -1),
    ]
    for k in range(4):
        sel = i == k
        q[sel] = cands[k][sel]
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return q * np.where(q[..., :1] < 0, -1.0, 1.0)


def quaternion_to_rodrigues(q: np.ndarray) -> np.ndarray:
    q = _check("q", q, (4,))
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    q = q * np.where(q[..., :1] < 0, -1.0, 1.0)
    s = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2 * np.arctan2(s, q[..., :1])
    return q[..., 1:] * np.where(s > 1e-12, angle / np.maximum(s, 1e-300), 2.0)


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """World->camera (R, t) of a camera at ``eye`` looking at ``target`` (OpenCV axes: x right, y down, z forward)."""
    eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return R, -R @ eye


# ---------------------------------------------------------------- the camera


@dataclass(frozen=True, eq=False)
class Camera:
    """One calibrated camera. ``t`` is in millimetres (the TOML file stores metres)."""

    name: str
    size: tuple[int, int]  # (width, height) in pixels
    K: np.ndarray  # (3, 3) intrinsics
    dist: np.ndarray = field(default_factory=lambda: np.zeros(5))  # (5,) k1 k2 p1 p2 k3
    R: np.ndarray = field(default_factory=lambda: np.eye(3))  # (3, 3) world -> camera
    t: np.ndarray = field(default_factory=lambda: np.zeros(3))  # (3,) world -> camera, mm
    model: str = "opencv"

    def __post_init__(self):
        K = _check(f"camera {self.name}: K", self.K, (3, 3))
        d = np.asarray(self.dist, np.float64).reshape(-1)
        if d.size not in (4, 5):
            raise ValueError(f"camera {self.name}: distortion needs 4 or 5 values (k1 k2 p1 p2 [k3]), got {d.size}")
        d = np.concatenate([d, np.zeros(5 - d.size)])
        R = _check(f"camera {self.name}: R", self.R, (3, 3))
        t = _check(f"camera {self.name}: t", self.t, (3,)).reshape(3)
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or abs(abs(np.linalg.det(R)) - 1) > 1e-6:
            raise ValueError(f"camera {self.name}: R is not a rotation (or reflection) matrix")
        if self.model not in LENS_MODELS:
            raise ValueError(f"camera {self.name}: unknown lens model {self.model!r}; choose one of {LENS_MODELS}")
        w, h = (int(v) for v in self.size)
        if w <= 0 or h <= 0:
            raise ValueError(f"camera {self.name}: size must be positive (width, height), got {self.size}")
        for k, v in dict(K=K, dist=d, R=R, t=t, size=(w, h)).items():
            object.__setattr__(self, k, v)

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates (mm)."""
        return -self.R.T @ self.t

    def world_to_camera(self, X: np.ndarray) -> np.ndarray:
        return world_to_camera(X, self.R, self.t)

    def camera_to_world(self, Xc: np.ndarray) -> np.ndarray:
        return camera_to_world(Xc, self.R, self.t)

    def project(self, X_world: np.ndarray) -> np.ndarray:
        """World points (..., 3) mm -> pixels (..., 2)."""
        return project(self.world_to_camera(X_world), self.K, self.dist, self.model)

    def project_camera(self, Xc: np.ndarray) -> np.ndarray:
        """Camera-frame points (..., 3) -> pixels (..., 2)."""
        return project(Xc, self.K, self.dist, self.model)

    def with_size(self, size: tuple[int, int]) -> Camera:
        return replace(self, size=tuple(size))


def world_to_camera(X: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(..., 3) world -> (..., 3) camera: R X + t."""
    X = _check("X", X, (3,))
    return X @ _check("R", R, (3, 3)).T + _check("t", t, (3,))


def camera_to_world(Xc: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(..., 3) camera -> (..., 3) world: R^T (Xc - t)."""
    Xc = _check("Xc", Xc, (3,))
    return (Xc - _check("t", t, (3,))) @ _check("R", R, (3, 3))


def distort(xy: np.ndarray, dist: np.ndarray, model: str = "opencv") -> np.ndarray:
    """Normalised image coordinates (..., 2) -> distorted normalised coordinates (..., 2)."""
    xy = _check("xy", xy, (2,))
    k1, k2, p1, p2, k3 = np.asarray(dist, np.float64).reshape(5)
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
    if model == "opencv":
        xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    elif model == "h36m":
        tan = p1 * y + p2 * x
        xd = x * (radial + tan) + p2 * r2
        yd = y * (radial + tan) + p1 * r2
    else:
        raise ValueError(f"unknown lens model {model!r}; choose one of {LENS_MODELS}")
    return np.stack([xd, yd], -1)


def project(Xc: np.ndarray, K: np.ndarray, dist: np.ndarray | None = None, model: str = "opencv") -> np.ndarray:
    """Camera-frame points (..., 3) -> pixels (..., 2) with the lens model's distortion."""
    Xc = _check("Xc", Xc, (3,))
    K = _check("K", K, (3, 3))
    xy = Xc[..., :2] / Xc[..., 2:3]
    if dist is not None:
        xy = distort(xy, np.concatenate([np.asarray(dist, np.float64).reshape(-1), np.zeros(5)])[:5], model)
    u = K[0, 0] * xy[..., 0] + K[0, 1] * xy[..., 1] + K[0, 2]
    v = K[1, 1] * xy[..., 1] + K[1, 2]
    return np.stack([u, v], -1)


def undistort(xy_d: np.ndarray, dist: np.ndarray, model: str = "opencv", iterations: int = 20) -> np.ndarray:
    """Inverse of :func:`distort` by fixed-point iteration (as OpenCV's undistortPoints does)."""
    xy_d = _check("xy_d", xy_d, (2,))
    xy = xy_d.copy()
    for _ in range(iterations):
        xy = xy - (distort(xy, dist, model) - xy_d)
    return xy


def unproject(uv: np.ndarray, depth: np.ndarray, K: np.ndarray, dist: np.ndarray | None = None,
              model: str = "opencv") -> np.ndarray:
    """Pixels (..., 2) and depths (...) -> camera-frame points (..., 3); inverse of :func:`project`."""
    uv = _check("uv", uv, (2,))
    K = _check("K", K, (3, 3))
    y = (uv[..., 1] - K[1, 2]) / K[1, 1]
    x = (uv[..., 0] - K[0, 2] - K[0, 1] * y) / K[0, 0]
    xy = np.stack([x, y], -1)
    if dist is not None:
        xy = undistort(xy, np.concatenate([np.asarray(dist, np.float64).reshape(-1), np.zeros(5)])[:5], model)
    z = np.asarray(depth, np.float64)[..., None]
    return np.concatenate([xy * z, z], -1)


# ---------------------------------------------------------------- a rig's cameras


def rig_focus(cameras: list[Camera]) -> np.ndarray | None:
    """Where a rig looks: the world point (mm) nearest every camera's optical axis in the least-squares sense, or
    None when it is not defined (fewer than two cameras, parallel axes, or a point behind a camera)."""
    if len(cameras) < 2:
        return None
    A, b = np.zeros((3, 3)), np.zeros(3)
    for cam in cameras:
        d = cam.R[2]  # the optical axis in world coordinates (the camera's +z)
        P = np.eye(3) - np.outer(d, d)  # projects onto the plane normal to the axis
        A += P
        b += P @ cam.center
    if np.linalg.cond(A) > 1e8:
        return None
    point = np.linalg.solve(A, b)
    if any(cam.world_to_camera(point)[2] <= 0 for cam in cameras):
        return None
    return point


def ray_distance(camera: Camera, uv: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Distances (...) in mm from the world ``point`` (3,) to the viewing rays of pixels ``uv`` (..., 2)."""
    d = camera.R.T @ unproject(uv, np.ones(np.shape(uv)[:-1]), camera.K, camera.dist, camera.model)[..., None]
    d = d[..., 0] / np.linalg.norm(d[..., 0], axis=-1, keepdims=True)
    v = _check("point", point, (3,)) - camera.center
    return np.linalg.norm(v - (d @ v)[..., None] * d, axis=-1)
