"""The camera rig: a ring of calibrated cameras around the capture area, Human3.6M-like.

Cameras stand 4.5-5.8 m from the centre of the room at 1.2-1.8 m height, spread evenly in azimuth (starting
at a room corner, as in Human3.6M) with some jitter, and look at about (0, 0, 900) mm, the height of a standing
person's pelvis. Intrinsics are pinhole with a focal length of about one image width (a ~53 degree horizontal
field of view, enough to keep the whole capture area in view), a principal point near the centre, and
optionally a small radial/tangential distortion (OpenCV model).

One rig per dataset: every subject is filmed by the same cameras (Human3.6M re-calibrated per subject, but
the differences are a few millimetres; leaving them out keeps each camera's background truly static across
the dataset, which is the shortcut the method has to defeat).
"""
from __future__ import annotations

import numpy as np

from ...geometry import Camera, look_at, matrix_to_rodrigues, rodrigues_to_matrix
from .body import stable_hash

CAPTURE_CENTRE = np.array([0.0, 0.0, 900.0])  # mm: where the cameras aim
PERSON_HEIGHT = 1800.0  # mm: what ``framing`` fits in the frame


def camera_name(index: int) -> str:
    return f"cam_{index + 1:02d}"


def make_rig(num_cameras: int, size: tuple[int, int], seed: int, distortion: bool = True,
             height: tuple[float, float] = (1200.0, 1800.0), distance: tuple[float, float] = (4500.0, 5800.0),
             focal: tuple[float, float] = (0.95, 1.05), key: str = "",
             framing: tuple[float, float] | None = None) -> list[Camera]:
    """``num_cameras`` cameras of ``size`` (width, height) pixels; same seed (and ``key``), same rig.

    height, distance: ranges (mm) of the cameras' heights and distances from the room's centre; focal: range of the
    focal length in image widths; key: another rig from the same seed (a rig per subject); framing: instead of
    ``focal``, the range of the share of the frame's height that a standing person (1.8 m) at the aim point spans
    (a camera farther away zooms in, as an operator frames a shot)."""
    if num_cameras < 2:
        raise ValueError(f"a rig needs at least 2 cameras, got {num_cameras}")
    w, h = size
    rng = np.random.default_rng([seed, stable_hash("rig"), num_cameras] + ([stable_hash(key)] if key else []))
    cameras = []
    for k in range(num_cameras):
        azimuth = np.deg2rad(45.0 + 360.0 * k / num_cameras + rng.uniform(-12, 12))
        radius = rng.uniform(*distance)
        eye = np.array([radius * np.cos(azimuth), radius * np.sin(azimuth), rng.uniform(*height)])
        target = CAPTURE_CENTRE + np.array([rng.uniform(-150, 150), rng.uniform(-150, 150), rng.uniform(-80, 80)])
        R, _ = look_at(eye, target)
        roll = np.deg2rad(rng.uniform(-2, 2))  # cameras are never mounted perfectly level
        c, s = np.cos(roll), np.sin(roll)
        R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ R
        # Round-trip through the file's Rodrigues form so that rendering uses exactly the saved rotation.
        R = rodrigues_to_matrix(matrix_to_rodrigues(R))
        f = w * rng.uniform(*focal) if framing is None else \
            rng.uniform(*framing) * h * np.linalg.norm(eye - target) / PERSON_HEIGHT
        K = np.array([[f * rng.uniform(0.998, 1.002), 0, (w - 1) / 2 + rng.uniform(-0.02, 0.02) * w],
                      [0, f, (h - 1) / 2 + rng.uniform(-0.02, 0.02) * h],
                      [0, 0, 1]])
        dist = np.zeros(5)
        if distortion:
            dist[:4] = [rng.uniform(-0.08, 0.02), rng.uniform(-0.02, 0.03),
                        rng.uniform(-5e-4, 5e-4), rng.uniform(-5e-4, 5e-4)]
        cameras.append(Camera(name=camera_name(k), size=(w, h), K=K, dist=dist, R=R, t=-R @ eye))
    return cameras
