"""The published Human3.6M camera table, shipped with the package (``h36m_cameras.json``)."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np

from .camera import Camera

H36M_CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")
H36M_FPS = 50.0


@lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(resources.files(__package__).joinpath("h36m_cameras.json").read_text())


def h36m_subjects() -> tuple[str, ...]:
    return tuple(_table()["subjects"])


def h36m_camera(subject: str, camera_id: str, size: tuple[int, int] | None = None) -> Camera:
    """The calibrated camera ``camera_id`` of ``subject`` in the dataset's own lens model.

    ``size`` (width, height) should come from the video: the table's resolution is nominal.
    """
    subjects = _table()["subjects"]
    if subject not in subjects:
        raise KeyError(f"no Human3.6M calibration for subject {subject!r}; known: {', '.join(subjects)}")
    by_id = {c["id"]: c for c in subjects[subject]}
    if camera_id not in by_id:
        raise KeyError(f"no Human3.6M camera {camera_id!r} for {subject}; known: {', '.join(by_id)}")
    c = by_id[camera_id]
    R = np.asarray(c["R_world_to_cam"], np.float64)
    T = np.asarray(c["T_cam_center_world_mm"], np.float64)
    K = np.array([[c["f"][0], 0, c["c"][0]], [0, c["f"][1], c["c"][1]], [0, 0, 1]], np.float64)
    k1, k2, k3 = c["k"]
    p1, p2 = c["p"]
    return Camera(name=camera_id, size=tuple(size) if size else (c["res_w"], c["res_h"]), K=K,
                  dist=np.array([k1, k2, p1, p2, k3]), R=R, t=-R @ T, model="h36m")
