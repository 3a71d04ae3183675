"""Step-N checkpoint folders, written atomically, newest-loadable resume.

Layout: ``<run>/checkpoints/step-00001000/{state.pt, meta.json}``. A checkpoint is written into a hidden
temporary folder next to its final place, flushed to disk, then renamed: a process killed at any moment
leaves either the complete new checkpoint or none, and the previous one stays loadable. ``meta.json`` is
written last and holds the size and a checksum of ``state.pt``, so a damaged folder is recognised and
skipped by ``--resume auto``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import torch

from ..errors import CheckpointError, DiskError
from ..storage import translate_disk_errors

_STEP_DIR = re.compile(r"^step-(\d+)$")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(folder: Path, step: int, state: dict, keep: int = 3, extra_meta: dict | None = None) -> Path:
    """Write ``state`` as checkpoint ``step`` atomically; keep the newest ``keep`` checkpoints.

    A write that fails (a full disk, say) removes the partial folder, keeps every earlier checkpoint, and
    raises :class:`~syncssl.errors.DiskError`: "no space left on <folder> while writing checkpoint step N ...".
    """
    folder = Path(folder)
    final = folder / f"step-{step:08d}"
    tmp = folder / f".step-{step:08d}.tmp-{os.getpid()}"
    try:
        with translate_disk_errors(folder, f"checkpoint step {step}"):
            folder.mkdir(parents=True, exist_ok=True)
            try:
                _write(tmp, step, state, extra_meta)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)  # no half-written folder left behind, and its space back
                raise
    except DiskError as e:
        last = list_checkpoints(folder)
        kept = f"; the last good checkpoint, {last[-1][1].name}, is kept" if last else ""
        raise DiskError(e.path, f"{e}{kept}") from None
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it, never half-way
        old = folder / f".step-{step:08d}.old-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(folder)
    prune(folder, keep)
    return final


def _write(tmp: Path, step: int, state: dict, extra_meta: dict | None):
    """state.pt, then meta.json with its checksum, each flushed to disk, into the temporary folder ``tmp``."""
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    state_path = tmp / "state.pt"
    with open(state_path, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    meta = dict(step=step, time=time.time(), bytes=state_path.stat().st_size, sha256=_sha256(state_path),
                **(extra_meta or {}))
    with open(tmp / "meta.json", "w") as f:
        json.dump(meta, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)


def prune(folder: Path, keep: int):
    """Delete all but the newest ``keep`` checkpoints, and stale temporary folders of dead writers."""
    steps = list_checkpoints(folder)
    for _, path in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)
    for p in Path(folder).glob(".step-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """Finished checkpoint folders, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


def verify(path: Path) -> dict:
    """The checkpoint's meta if its files are complete and match their checksum, else CheckpointError."""
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError) as e:  # missing, not a folder, not UTF-8, not JSON
        raise CheckpointError(f"{path}: no valid meta.json ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: no valid meta.json (not a JSON object)")
    state = path / "state.pt"
    if not state.is_file() or state.stat().st_size != meta.get("bytes"):
        raise CheckpointError(f"{path}: state.pt is missing or has the wrong size")
    if _sha256(state) != meta.get("sha256"):
        raise CheckpointError(f"{path}: state.pt does not match its checksum")
    return meta


def load(path: Path, map_location="cpu") -> dict:
    verify(path)
    return torch.load(Path(path) / "state.pt", map_location=map_location, weights_only=False)


def latest_loadable(folder: Path) -> tuple[Path, list[str]] | tuple[None, list[str]]:
    """The newest checkpoint that verifies, and a note for each newer one that was skipped."""
    skipped = []
    for _step, path in reversed(list_checkpoints(folder)):
        try:
            verify(path)
            return path, skipped
        except CheckpointError as e:
            skipped.append(str(e))
    return None, skipped


def resolve_resume(resume: str, folder: Path) -> tuple[Path | None, list[str]]:
    """``--resume``: "none", "auto" (newest loadable, or a fresh start), or a path: a checkpoint folder
    (``step-N/``), a file in it (``step-N/state.pt``), a run folder or its ``checkpoints/`` (their newest
    loadable checkpoint). Anything else is a :class:`CheckpointError` saying what was expected."""
    if resume in ("", "none", None):
        return None, []
    if resume == "auto":
        return latest_loadable(folder)
    path = Path(resume)
    expected = "give a checkpoint folder (<run>/checkpoints/step-N), its state.pt, or a run folder"
    if not path.exists():
        raise CheckpointError(f"{path}: does not exist; {expected}")
    if path.is_file():
        if path.name not in ("state.pt", "meta.json") or not (path.parent / "meta.json").is_file():
            raise CheckpointError(f"{path}: is a file but not the state.pt of a checkpoint folder; {expected}")
        path = path.parent  # step-N/state.pt: the checkpoint is its folder
    elif not (path / "meta.json").exists():  # a run dir or a checkpoints folder
        sub = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        found, skipped = latest_loadable(sub)
        if found is None:
            raise CheckpointError(f"{path}: no loadable checkpoint found" + (f" ({'; '.join(skipped)})" if skipped
                                                                             else f"; {expected}"))
        return found, skipped
    verify(path)
    return path, []
