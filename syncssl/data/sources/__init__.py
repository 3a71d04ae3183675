"""Every source on disk into the one in-memory description, :class:`syncssl.data.sources.dataset.Dataset`.

Three layouts are recognised (in this order):

- ``"dataset"``: a root with ``dataset.json`` and ``<subject>/<sequence>/`` folders (the generic layout, which
  the synthetic generator writes too);
- ``"h36m"``: a Human3.6M root with ``S*/Videos/``;
- ``"session"``: one folder with ``calibration.toml`` and videos (in ``videos/`` or the folder itself).
"""
from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..decode.video import VIDEO_EXTENSIONS
from .dataset import Dataset
from .h36m import is_h36m_root, read_h36m
from .layout import VERIFY_MODES, read_layout, read_session

LAYOUTS = {
    "dataset": "dataset root (dataset.json + <subject>/<sequence>/ folders)",
    "h36m": "Human3.6M (S*/Videos/<Sequence>.<camera id>.mp4)",
    "session": "single session folder (calibration.toml + videos)",
}


def detect_layout(path: str | Path) -> str:
    """``"dataset"``, ``"h36m"`` or ``"session"``; :class:`DataError` explaining what was looked for otherwise."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "does not exist")
    if not path.is_dir():
        raise DataError(path, "is a file; expected a dataset folder")
    if (path / "dataset.json").is_file():
        return "dataset"
    if is_h36m_root(path):
        return "h36m"
    has_videos = (path / "videos").is_dir() or any(
        p.suffix.lower() in VIDEO_EXTENSIONS for p in path.iterdir() if p.is_file())
    if (path / "calibration.toml").is_file() or has_videos:
        return "session"
    raise DataError(path, "not a dataset: looked for (1) dataset.json with <subject>/<sequence>/ folders, "
                          "(2) a Human3.6M root with S*/Videos/, (3) a session folder with calibration.toml "
                          "and videos (in videos/ or the folder itself); found none")


def open_dataset(path: str | Path, *, verify: str = "ends", frame_tolerance: int | None = None,
                 skip_broken: bool = False) -> Dataset:
    """Reads any of the three layouts into a :class:`Dataset`, probing every video once.

    verify: how much of each video to decode while probing: "none", "ends" (first and last frame) or "all".
    frame_tolerance: frames by which the cameras (and labels) of one sequence may differ before it is an error;
        within it, everything is truncated to the shortest and a note says so. Default max(5, 1% of the frames).
    skip_broken: drop a sequence that cannot be read (a corrupt video, say) with a note instead of raising;
        errors of the dataset as a whole (dataset.json, a missing subject) still raise.
    """
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
    if frame_tolerance is not None and frame_tolerance < 0:
        raise ValueError(f"frame_tolerance must be >= 0, got {frame_tolerance}")
    layout = detect_layout(path)
    kw = dict(verify=verify, frame_tolerance=frame_tolerance)
    if layout == "dataset":
        return read_layout(path, skip_broken=skip_broken, **kw)
    if layout == "h36m":
        return read_h36m(path, skip_broken=skip_broken, **kw)
    return read_session(path, **kw)


__all__ = ["LAYOUTS", "detect_layout", "open_dataset"]
