"""``sync.toml``: the per-camera frame offsets of an unsynchronized rig, next to a sequence's calibration.

::

    # frames to skip at the start of each camera's video, so that frame t of every camera shows one instant
    reference = "cam_01"   # the camera the offsets were measured against (labels follow its frames)
    fps = 25.0
    excluded = ["cam_03"]  # offset not determined: left out of the aligned sequence (optional)
    [offsets]
    cam_01 = 12
    cam_02 = 0

``syncssl-sync --apply`` writes it (normalised: the smallest offset is 0); the generic layout reads it, so that
frame t of a sequence is file frame ``t + start`` of each camera's video and the sequence is the cameras'
overlap. Cameras listed in ``excluded`` (whose offset ``syncssl-sync`` could not determine) are left out of
the sequence: training on frames that may not be aligned would be silently wrong data. Labels: ``poses3d.npy``
is indexed by the reference camera's file frames (shifted by its start), ``boxes.npy`` and
``masks/<camera>.npz`` by each camera's own file frames. A folder without the file behaves as if every offset
were 0.
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ...errors import DataError
from .dataset import read_utf8

SYNC_NAME = "sync.toml"


@dataclass(frozen=True)
class SyncFile:
    path: Path
    start: dict[str, int]  # camera name (as the file spells it) -> frames to skip at the start of its video
    reference: str | None = None  # the camera the offsets were measured against
    fps: float | None = None  # the rate the offsets were measured at (informative)
    excluded: tuple[str, ...] = ()  # cameras left out of the sequence (their offset is not known)


def read_sync_file(folder: Path) -> SyncFile | None:
    """The folder's sync.toml, or None when there is none; DataError naming the file when it is malformed."""
    path = Path(folder) / SYNC_NAME
    if not path.is_file():
        return None
    try:
        doc = tomllib.loads(read_utf8(path))
    except tomllib.TOMLDecodeError as e:
        raise DataError(path, f"not valid TOML ({e})") from None
    offsets = doc.get("offsets")
    if not isinstance(offsets, dict) or not offsets:
        raise DataError(path, "expected an [offsets] table of camera = frames to skip (integers >= 0)")
    start = {}
    for cam, n in offsets.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise DataError(path, f"offset of camera {cam!r} must be a whole number of frames >= 0, got {n!r}")
        start[str(cam)] = int(n)
    reference = doc.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise DataError(path, f"reference must be a camera name, got {reference!r}")
    fps = doc.get("fps")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0):
        raise DataError(path, f"fps must be a positive number, got {fps!r}")
    excluded = doc.get("excluded", [])
    if not isinstance(excluded, list) or not all(isinstance(c, str) for c in excluded):
        raise DataError(path, f"excluded must be a list of camera names, got {excluded!r}")
    both = sorted(set(excluded) & set(start))
    if both:
        raise DataError(path, f"camera(s) {', '.join(both)} both excluded and given an offset")
    if reference is not None and reference in excluded:
        raise DataError(path, f"the reference camera {reference!r} cannot be excluded")
    return SyncFile(path, start, reference, None if fps is None else float(fps), tuple(excluded))


def normalised(start: dict[str, int]) -> dict[str, int]:
    """Offsets shifted so that the smallest is 0 (only differences matter)."""
    low = min(start.values())
    return {k: int(v) - low for k, v in start.items()}


def write_sync_file(folder: Path, start: dict[str, int], *, reference: str | None = None, fps: float | None = None,
                    comment: str = "", excluded: tuple[str, ...] | list[str] = ()) -> Path:
    """Write ``folder/sync.toml`` (atomically) with the offsets normalised to a smallest of 0, and the cameras to
    leave out of the sequence."""
    start = normalised(start)
    lines = ["# frames to skip at the start of each camera's video, so that frame t of every camera shows one",
             "# instant (written by syncssl-sync; delete this file to read the videos as they are)"]
    lines += [f"# {line}" for line in comment.splitlines() if line.strip()]
    if reference is not None:
        lines.append(f"reference = {json.dumps(reference)}  # the offsets were measured against this camera")
    if fps is not None:
        lines.append(f"fps = {float(fps)!r}")
    if excluded:
        lines.append(f"excluded = {json.dumps(list(excluded))}  # offset not determined: left out of the sequence")
    lines.append("[offsets]")
    lines += [f"{json.dumps(cam)} = {n}  # frames" for cam, n in start.items()]
    from ...storage import write_text_atomic  # (storage imports the data package)
    return write_text_atomic(Path(folder) / SYNC_NAME, "\n".join(lines) + "\n", "the cameras' offsets")
