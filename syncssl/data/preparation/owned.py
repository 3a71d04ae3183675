"""What ``syncssl-data prepare`` owns in its output folder, so that it never deletes or replaces a user's files.

Prepare records every path it is about to write in ``.syncssl-prepare.json`` *before* writing it (a killed run
leaves a record that still covers its partial files), and removes only paths that record names. A folder
without the record that already holds files is not prepare's: it is refused unless the user passes ``--force``,
and even then prepare only writes its own paths and deletes nothing it did not write. A file of someone else's
where prepare wants to write stops it likewise.

A folder prepared before the record existed (a ``manifest.json`` of prepare's format, no record) is adopted:
the files that manifest names, the fixed report files and the tile sets are taken as prepare's.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ...errors import DataError
from ...storage import write_text_atomic

RECORD = ".syncssl-prepare.json"
WRITER = "syncssl-data prepare"
FORCE_HINT = "choose an empty or new --out, or pass --force to prepare here anyway (files prepare does not write " \
             "are kept)"


def _rel(path: Path, folder: Path) -> str:
    """A path under ``folder`` as the record stores it; folders (whole tile sets) end in "/"."""
    rel = Path(os.path.relpath(Path(path).absolute(), folder.absolute())).as_posix()
    if rel.startswith("../"):
        raise ValueError(f"{path} is not under {folder}")
    return rel


class OwnedFolder:
    """``owned = OwnedFolder.open(out, force)``; ``owned.claim(paths)`` before writing them;
    ``owned.keep_only(paths)`` after a build to remove what an earlier build wrote and this one did not."""

    def __init__(self, folder: Path, paths: set[str], force: bool):
        self.folder, self.paths, self.force = Path(folder), paths, force

    @classmethod
    def open(cls, folder: Path, force: bool = False) -> OwnedFolder:
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise DataError(folder, "is a file, not a folder; choose another --out")
        record = folder / RECORD
        if record.is_file():
            try:
                doc = json.loads(record.read_text())
                paths = set(doc["paths"]) if doc.get("written_by") == WRITER else None
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                paths = None
            if paths is None:
                raise DataError(record, f"is not a record written by {WRITER} (damaged?); {FORCE_HINT}")
            return cls(folder, paths, force)
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        if not present:
            return cls(folder, set(), force)
        adopted = _adopt_legacy(folder)
        if adopted is not None:
            return cls(folder, adopted, force)
        if not force:
            shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
            raise DataError(folder, f"already holds files that {WRITER} did not write ({shown}); {FORCE_HINT}")
        return cls(folder, set(), force)

    def claim(self, paths) -> None:
        """Record ``paths`` (files, or folders for whole tile sets) as prepare's before they are written.
        A path that exists but is not prepare's stops it, unless ``force``."""
        new = {_rel(p, self.folder) + ("/" if str(p).endswith("/") else "") for p in paths}
        for rel in sorted(new - self.paths):
            path = self.folder / rel
            if path.exists() and not self.force:
                raise DataError(path, f"exists but was not written by {WRITER}, which never replaces files it did "
                                      "not write; move it, choose another --out, or pass --force to replace it")
        self.paths |= new
        self._save()

    def keep_only(self, paths) -> list[str]:
        """Remove the recorded paths that are not in ``paths`` (what an earlier build wrote and this one did not);
        returns what was removed. Files prepare did not write are never touched."""
        keep = {_rel(p, self.folder) + ("/" if str(p).endswith("/") else "") for p in paths}
        removed = []
        for rel in sorted(self.paths - keep):
            path = self.folder / rel
            if rel.endswith("/") and path.is_dir():
                shutil.rmtree(path)
            elif path.is_file():
                path.unlink()
            else:
                continue
            removed.append(rel)
        self.paths = keep
        self._save()
        return removed

    def _save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        doc = dict(written_by=WRITER, what="every path prepare wrote here; it removes or replaces only these",
                   paths=sorted(self.paths))
        write_text_atomic(self.folder / RECORD, json.dumps(doc, indent=1) + "\n", "prepare's record of its files")


def as_folder(path: Path) -> str:
    """How a whole folder (a tile set) is claimed: its path with a trailing "/"."""
    return str(path).rstrip("/") + "/"


def _adopt_legacy(folder: Path) -> set[str] | None:
    """The paths of a folder prepared before the record existed, or None when it is not such a folder."""
    from .manifest import FORMAT, MANIFEST_NAME
    try:
        doc = json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return None
    named = [MANIFEST_NAME, "report.json", "masks_preview.png"]
    try:
        for s in doc.get("sequences", []):
            named.append(s["arrays"])
            named += [c["video"] for c in s.get("cameras", [])]
        named += [b["path"] for b in doc.get("backgrounds", {}).values()]
    except (KeyError, TypeError):
        return None
    paths = set()
    for p in named:
        full = Path(os.path.normpath(folder.absolute() / p))
        if full.is_file() and full.is_relative_to(folder.absolute()):
            paths.add(_rel(full, folder))
    for d in (folder / "tiles").glob("*"):
        if d.is_dir() and any((d / n).exists() for n in ("meta.json", "frames.u8", "frames.jpg", "rects.npy")):
            paths.add(_rel(d, folder) + "/")
    return paths
