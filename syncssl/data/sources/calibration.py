"""``calibration.toml``: the camera format of aniposelib / Pose2Sim / caliscope.

One table per camera (name, size [w, h], matrix, distortions, rotation (Rodrigues, world -> camera),
translation (metres), fisheye) plus an optional ``[metadata]`` table. syncssl keeps millimetres inside,
so translations are converted at this boundary. A non-OpenCV lens model (Human3.6M's) is stored in an
extra ``lens_model`` key that the other tools ignore.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...geometry import Camera, matrix_to_rodrigues, rodrigues_to_matrix
from .dataset import read_utf8

_REQUIRED = ("size", "matrix", "distortions", "rotation", "translation")
# the shape each key must have (None: any length); every value must be a finite number
_SHAPES = {"size": (2,), "matrix": (3, 3), "distortions": None, "rotation": (3,), "translation": (3,)}


def _numbers(path: Path, camera: str, key: str, value, shape) -> np.ndarray:
    """``value`` as float64 of ``shape``; DataError naming the file, the camera and the key otherwise.

    NaN and inf are refused here: TOML spells them ``nan`` and ``inf``, and nothing downstream would notice
    them before the projections (and so the crops) come out NaN.
    """
    try:
        a = np.asarray(value, np.float64)
    except (ValueError, TypeError):
        raise DataError(path, f"camera [{camera}]: {key} must hold numbers, got {value!r}") from None
    if shape == (3,) and a.size == 3:
        a = a.reshape(3)  # a column vector [[x], [y], [z]] is the same vector
    if (shape is not None and a.shape != shape) or (shape is None and a.ndim != 1):
        want = "x".join(map(str, shape)) if shape else "a list of"
        raise DataError(path, f"camera [{camera}]: {key} must be {want} numbers, got {value!r}")
    if not np.isfinite(a).all():
        raise DataError(path, f"camera [{camera}]: {key} holds NaN or infinite values: {value!r}")
    return a


def read_calibration(path: Path) -> list[Camera]:
    """Cameras in file order. Raises :class:`DataError` naming the file and the table at fault."""
    path = Path(path)
    try:
        doc = tomllib.loads(read_utf8(path))
    except FileNotFoundError:
        raise DataError(path, "calibration file is missing") from None
    except tomllib.TOMLDecodeError as e:
        raise DataError(path, f"cannot parse calibration TOML: {e}") from None
    cameras = []
    for key, table in doc.items():
        if key == "metadata" or not isinstance(table, dict):
            continue
        missing = [k for k in _REQUIRED if k not in table]
        if missing:
            raise DataError(path, f"camera table [{key}] lacks {', '.join(missing)}")
        if table.get("fisheye", False):
            raise DataError(path, f"camera [{key}] is a fisheye camera, which syncssl does not support")
        rotation = _rotation(path, key, table["rotation"])
        values = {k: _numbers(path, key, k, table[k], shape) for k, shape in _SHAPES.items() if k != "rotation"}
        w, h = values["size"]
        if w != int(w) or h != int(h) or w <= 0 or h <= 0:
            raise DataError(path, f"camera [{key}]: size {table['size']} is not a positive whole number of pixels")
        _check_intrinsics(path, key, values["matrix"])
        try:
            cam = Camera(
                name=str(table.get("name", key)), size=(int(w), int(h)), K=values["matrix"],
                dist=values["distortions"], R=rotation,
                t=values["translation"] * 1000.0, model=str(table.get("lens_model", "opencv")),
            )
        except (ValueError, TypeError) as e:
            raise DataError(path, f"camera [{key}]: {e}") from None
        cameras.append(cam)
    if not cameras:
        raise DataError(path, "no camera tables found")
    names = [c.name for c in cameras]
    if len(set(names)) != len(names):
        raise DataError(path, f"camera names repeat: {names}")
    _check_distances(path, cameras)
    return cameras


MAX_RIG_METRES = 500.0  # a capture rig's cameras stand closer than this to each other and to the world origin


def _rotation(path: Path, camera: str, value) -> np.ndarray:
    """The world -> camera rotation: a Rodrigues vector (the format's own), or a 3x3 matrix that must be a rotation."""
    try:
        a = np.asarray(value, np.float64)
    except (ValueError, TypeError):
        a = None
    if a is not None and a.shape == (3, 3) and np.isfinite(a).all():
        if np.abs(a @ a.T - np.eye(3)).max() > 1e-3 or np.linalg.det(a) < 0:
            raise DataError(path, f"camera [{camera}]: rotation is a 3x3 matrix that is not a rotation (not "
                                  f"orthonormal with determinant +1: det {np.linalg.det(a):.3g})")
        return a
    return rodrigues_to_matrix(_numbers(path, camera, "rotation", value, (3,)))


def _check_intrinsics(path: Path, camera: str, K: np.ndarray) -> None:
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise DataError(path, f"camera [{camera}]: focal lengths must be positive pixels, got fx {K[0, 0]:g}, "
                              f"fy {K[1, 1]:g} (matrix = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])")
    if not np.allclose(K[2], [0, 0, 1]) or K[1, 0] != 0:
        raise DataError(path, f"camera [{camera}]: matrix is not a camera matrix "
                              f"[[fx, s, cx], [0, fy, cy], [0, 0, 1]]: got {K.tolist()}")


def _check_distances(path: Path, cameras: list[Camera]) -> None:
    """Translations are metres: a rig whose cameras stand kilometres apart is in millimetres."""
    centres = {c.name: -c.R.T @ c.t / 1000.0 for c in cameras}  # metres (Camera keeps millimetres)
    far = max(centres, key=lambda n: np.linalg.norm(centres[n]))
    spread = max((np.linalg.norm(centres[a] - centres[b]) for a in centres for b in centres), default=0.0)
    if np.linalg.norm(centres[far]) > MAX_RIG_METRES or spread > MAX_RIG_METRES:
        raise DataError(path, f"translations look like millimetres: camera {far} stands "
                              f"{np.linalg.norm(centres[far]):.0f} m from the world origin "
                              f"(cameras up to {spread:.0f} m apart); calibration.toml holds metres: "
                              "divide every translation by 1000")


def _fmt(v) -> str:
    if isinstance(v, (list, tuple, np.ndarray)):
        return "[ " + ", ".join(_fmt(x) for x in v) + "]"
    return repr(float(v))


def write_calibration(path: Path, cameras: list[Camera], error: float = 0.0) -> Path:
    lines = []
    for cam in cameras:
        lines += [
            f"[{cam.name}]",
            f'name = "{cam.name}"',
            f"size = {_fmt(cam.size)}",
            f"matrix = {_fmt(cam.K)}",
            f"distortions = {_fmt(cam.dist if cam.dist[4] != 0 else cam.dist[:4])}",
            f"rotation = {_fmt(matrix_to_rodrigues(cam.R))}",
            f"translation = {_fmt(cam.t / 1000.0)}",
            "fisheye = false",
        ]
        if cam.model != "opencv":
            lines.append(f'lens_model = "{cam.model}"')
        lines.append("")
    lines += ["[metadata]", "adjusted = false", f"error = {float(error)!r}", ""]
    Path(path).write_text("\n".join(lines))
    return Path(path)


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def match_cameras(camera_names: list[str], video_paths: list[Path]) -> tuple[dict[str, Path], str]:
    """Pairs camera tables with video files: by name (``cam_01`` <-> ``cam01.mp4``), else by sorted order.

    Returns the mapping and one sentence saying how the match was made, for the user to check.
    """
    videos = sorted(video_paths, key=lambda p: p.name)
    if len(videos) != len(camera_names):
        raise ValueError(f"{len(camera_names)} cameras in the calibration ({', '.join(camera_names)}) but "
                         f"{len(videos)} videos ({', '.join(p.name for p in videos)})")
    by_stem = {_norm(p.stem): p for p in videos}
    if all(_norm(n) in by_stem for n in camera_names) and len(by_stem) == len(videos):
        return {n: by_stem[_norm(n)] for n in camera_names}, "cameras matched to videos by name"
    pairs = dict(zip(sorted(camera_names), videos))
    desc = ", ".join(f"{n} <- {p.name}" for n, p in pairs.items())
    return ({n: pairs[n] for n in camera_names},
            f"camera names do not match video names; matched by sorted order: {desc}")
