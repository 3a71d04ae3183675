"""Writing to disk: a full disk (or a quota, a read-only mount...) said in one line naming the place.

A failed write often surfaces as something else: torch.save reports ``[enforce fail at inline_container.cc]
unexpected pos`` with the real ``OSError(ENOSPC)`` only in the exception's context, and a buffered file
raises at close. :func:`translate_disk_errors` finds the cause and raises :class:`DiskError`::

    with translate_disk_errors(out, "the prepared manifest"):
        write_everything(out)

DiskError is a DataError, so every command shows it as ``Error: no space left on <path> ...`` (no traceback).
"""
from __future__ import annotations

import csv
import errno
import io
import os
import shutil
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

from .errors import DiskError

# errno -> how the message starts; each is followed by " <path>"
DISK_ERRNOS = {
    errno.ENOSPC: "no space left on",
    errno.EDQUOT: "disk quota exceeded on",
    errno.EROFS: "read-only file system at",
    errno.EFBIG: "file too large for the file system at",
    errno.EIO: "input/output error (a failing disk or network share?) on",
    errno.EACCES: "permission denied on",
    errno.EPERM: "operation not permitted on",
}


def disk_error_of(exc: BaseException | None, depth: int = 8) -> OSError | None:
    """The OSError with a disk errno in ``exc`` or its causes / contexts (torch hides it there), or None."""
    while exc is not None and depth > 0:
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            return exc
        inner = disk_error_of(exc.__cause__, depth - 1) if exc.__cause__ is not None else None
        if inner is not None:
            return inner
        exc, depth = exc.__context__, depth - 1
    return None


def free_bytes(path: str | Path) -> int | None:
    """Free space of the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


# torch's own writer (torch.save to a path) loses the errno: only these words and a nearly full disk remain
_TORCH_WRITE_FAILED = ("inline_container", "file write failed", "iostream error")
_NEARLY_FULL = 64 << 20


@contextmanager
def translate_disk_errors(path: str | Path, what: str):
    """Inside: a write that fails for lack of space (quota, read-only, I/O error, permission) raises
    ``DiskError(path, "no space left on <path> while writing <what> (<free> free)")``; other errors pass."""
    try:
        yield
    except DiskError:
        raise
    except (OSError, RuntimeError) as e:
        cause = disk_error_of(e)
        free = free_bytes(path)
        # torch's writer loses the errno; a worker process writing memory-mapped files is killed (SIGBUS) by a
        # full disk and the pool only says it broke: in both, a nearly full disk is the cause
        died = isinstance(e, BrokenProcessPool)
        if cause is None and isinstance(e, RuntimeError) and (died or any(w in str(e) for w in _TORCH_WRITE_FAILED)) \
                and free is not None and free < _NEARLY_FULL:
            cause = OSError(errno.ENOSPC, "No space left on device")
        if cause is None:
            raise
        where = Path(cause.filename) if isinstance(cause.filename, str) and cause.errno != errno.ENOSPC else Path(path)
        left = f" ({_size(free)} free{'; a worker process died writing' if died else ''})" \
            if free is not None and cause.errno == errno.ENOSPC else ""
        raise DiskError(where, f"{DISK_ERRNOS[cause.errno]} {where} while writing {what}{left}") from None


def write_csv_atomic(path: str | Path, rows: list[dict], columns, what: str) -> Path:
    """A table of ``rows`` under the header ``columns`` (keys outside it are left out), written atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, text.getvalue(), what)


def temporary_path(path: str | Path) -> Path:
    """Where :func:`write_text_atomic` writes ``path`` before renaming it: a hidden file beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp")


def write_text_atomic(path: str | Path, text: str, what: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename: a reader sees the old file or the new one,
    never half of one; a full disk is a :class:`DiskError` naming ``path``, and the old file stays."""
    path = Path(path)
    tmp = temporary_path(path)
    with translate_disk_errors(path, what):
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return path
