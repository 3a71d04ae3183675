"""A run folder holds one run: whose it is, what a command may do with it, and a lock while a process writes it.

Every command that writes a folder of results (syncssl-train, -finetune, -eval, -reproduce, -transfer-curve) claims
it before it writes or deletes anything:

- a new or empty folder becomes the command's: it writes its marker, ``run.json`` (which command, and what
  identifies its output: the task of a training run, the checkpoint of an evaluation, the preset of a grid);
- a folder with the command's own marker (or, for folders of older versions without one, the files it writes) is
  its own: a training run continues only when its configuration matches (:func:`config_changes`), an evaluation or
  a grid only when what identifies it matches, unless the user says otherwise (``--allow-changes``, ``--force``);
- anything else (another command's output, the user's own files) is refused with one line naming the folder.

``.lock`` in the folder is locked (``flock``) while a process writes it: a second writer stops at once with the
first one's process id instead of interleaving checkpoints and log rows. The kernel releases the lock when its
process dies, so a killed run never leaves a stale lock behind.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path

from .. import config as cfglib
from ..errors import ConfigError, RunFolderError
from ..storage import temporary_path, write_text_atomic
from .config import config_from_dict, saved_base

MARKER = "run.json"
LOCK = ".lock"
# files of a folder that do not make it hold anything: the marker, its temporary file while rank 0 writes it (other
# ranks check the folder meanwhile) and the lock
_OWN = {MARKER, temporary_path(MARKER).name, LOCK}

# keys a continued run may change (each is listed in the note that the run continues with changes): where it runs
# and how often it logs, evaluates and saves, not what it learns. train.steps is one: a finished run trains longer.
CONTINUE_KEYS = frozenset({"train.steps", "train.max_steps_this_run", "train.threads", "train.device", "train.compile",
                           "train.log_every", "train.eval_every", "train.eval_pairs", "train.ckpt_every",
                           "train.keep_checkpoints", "data.prefetch", "data.workers"})
# keys that say where this command's own run is and how it starts, never what it is
_WHERE_KEYS = ("train.run_dir", "train.resume")
# what a training run writes in its folder: what --force removes to replace it
_RUN_OUTPUTS = ("checkpoints", "summary.json", "config.toml", "metrics_*.csv", "curves.png", "tensorboard")

TASKS = {"pretrain": "a pre-training run (syncssl-train)", "finetune": "a fine-tuning run (syncssl-finetune)",
         "eval": "an evaluation (syncssl-eval)", "reproduce": "a reproduction grid (syncssl-reproduce)",
         "transfer-curve": "a transfer curve (syncssl-transfer-curve)",
         "protocol": "a validation/test protocol grid (syncssl-reproduce --grid)"}


# ---------------------------------------------------------------- configurations


def changes_between(then, now) -> list[str]:
    """``"key: <then> there, <now> now"`` for every key whose value differs (config.describe's rows), this command's
    own run folder and resume choice aside."""
    was = {key: value for key, value, _ in cfglib.describe(type(now), obj=then)}
    return [f"{key}: {was[key]} there, {value} now" for key, value, _ in cfglib.describe(type(now), obj=now)
            if key not in _WHERE_KEYS and was[key] != value]


def config_changes(run_dir: Path, cfg) -> list[str]:
    """How ``cfg`` differs from the config the run in ``run_dir`` was trained with. The saved config.toml is read as
    a saved config (an option it lacks was added since: the run had the behaviour from before it, ``saved_base``)."""
    try:
        saved = cfglib.load(type(cfg), Path(run_dir) / "config.toml", base=saved_base(type(cfg)))
    except ConfigError:
        return ["its config.toml is missing or unreadable"]
    return changes_between(saved, cfg)


def checkpoint_changes(state: dict, cfg) -> list[str]:
    """How ``cfg`` differs from the config saved in a checkpoint's state."""
    try:
        then = config_from_dict(type(cfg), state.get("config") or {})
    except ConfigError as e:
        return [f"its config does not read as this command's ({e})"]
    return changes_between(then, cfg)


def blocking(changes: list[str]) -> list[str]:
    """The changes a continued run may not make without being told to (not in :data:`CONTINUE_KEYS`)."""
    return [c for c in changes if c.split(":", 1)[0] not in CONTINUE_KEYS]


def listed(changes: list[str], most: int = 4) -> str:
    return "; ".join(changes[:most]) + ("; ..." if len(changes) > most else "")


def finished_summary(run_dir: Path) -> dict | None:
    """The summary of a run that finished (its summary.json says complete); None: absent, damaged or unfinished."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, or damaged (not UTF-8, not JSON): run it again
        return None
    return summary if isinstance(summary, dict) and summary.get("complete") else None


def reuse_finished(run_dir: Path, cfg) -> dict | None:
    """The summary of the finished run in ``run_dir`` if it was trained with ``cfg`` (runs found by name, as in a
    grid), None when there is none to reuse; a finished run with another configuration is refused."""
    summary = finished_summary(run_dir)
    if summary is None:
        return None
    changes = config_changes(run_dir, cfg)
    if changes:
        raise RunFolderError(f"{run_dir} finished with another configuration than asked for now ({listed(changes)}): "
                             "give another --out, or remove that run to train it again")
    return summary


# ---------------------------------------------------------------- ownership


def read_marker(folder: Path) -> dict | None:
    try:
        marker = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def write_marker(folder: Path, task: str, **identity) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(folder) / MARKER, json.dumps({"task": task, **identity}, indent=2) + "\n",
                      f"the marker of {TASKS[task]}")


def contents(folder: Path) -> list[str]:
    """What the folder holds besides the marker and the lock (sorted names); empty for a new folder."""
    folder = Path(folder)
    return sorted(p.name for p in folder.iterdir() if p.name not in _OWN) if folder.is_dir() else []


def _legacy_task(folder: Path) -> str | None:
    """The task of a folder written before markers existed, from the files each command writes."""
    folder = Path(folder)
    if (folder / "checkpoints").is_dir() or (folder / "summary.json").is_file():
        config = folder / "config.toml"
        text = config.read_text(encoding="utf-8", errors="replace") if config.is_file() else ""
        return "finetune" if "[transfer]" in text else "pretrain"
    if (folder / "metrics.json").is_file():
        return "eval"
    if (folder / "results.csv").is_file():
        return "reproduce"
    if (folder / "transfer_curve.csv").is_file():
        return "transfer-curve"
    return None


def owner(folder: Path) -> tuple[str | None, dict]:
    """(the task whose output the folder holds, its marker) ; (None, {}) for a new or empty folder. A folder with
    other files is refused: it is not a syncssl command's."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"{folder} is a file, not a folder; choose another folder")
    marker = read_marker(folder)
    if marker and marker.get("task") in TASKS:
        return marker["task"], marker
    held = contents(folder)
    if not held:
        return None, {}
    task = _legacy_task(folder)
    if task is None:
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise RunFolderError(f"{folder} holds files that are not a syncssl run ({shown}); nothing is written there: "
                             "choose a new or empty folder")
    return task, {}


def check_task(folder: Path, task: str, option: str) -> dict:
    """The folder's marker if it is new or holds ``task``'s output; else RunFolderError naming what it holds."""
    held, marker = owner(folder)
    if held not in (None, task):
        raise RunFolderError(f"{folder} holds {TASKS[held]}, not {TASKS[task]}; nothing is written there: choose "
                             f"another {option}")
    return marker


def check_identity(folder: Path, task: str, identity: dict, option: str, force: bool = False,
                   force_flag: str | None = "--force") -> list[str]:
    """For outputs identified by a few values (an evaluation's checkpoint, a grid's preset): the folder is new, or
    holds ``task``'s output made with the same ``identity``, or ``force``. Returns the differences."""
    marker = check_task(folder, task, option)
    changes = [f"{key}: {marker[key] or 'none'} there, {value or 'none'} now" for key, value in identity.items()
               if key in marker and marker[key] != value]
    if changes and not force:
        instead = f", or pass {force_flag} to replace it" if force_flag else ""
        raise RunFolderError(f"{folder} holds {TASKS[task]} made with another configuration ({listed(changes)}); "
                             f"nothing is written there: choose another {option}{instead}")
    return changes


def check_training(folder: Path, cfg, task: str, replace: bool = False, allow_changes: bool = False) -> str:
    """May a training of ``cfg`` write the run folder ``folder``? Read-only. Returns what it will do: "new" (nothing
    there yet), "replace" (``replace``: the run there is removed first) or "continue"; raises RunFolderError for a
    folder it must not write: another command's or the user's, a run that ``train.resume=none`` would mix with
    this one, a run trained with another configuration (the keys named)."""
    check_task(folder, task, "--run-dir (train.run_dir)")
    from .checkpoint import list_checkpoints
    steps = [s for s, _ in list_checkpoints(Path(folder) / "checkpoints")]
    finished = finished_summary(folder)
    if not steps and not finished:
        return "new"
    if replace:
        return "replace"
    held = f"a run ({'finished, ' if finished else ''}checkpoints up to step {steps[-1]})" if steps else \
        "a finished run"
    resume = cfg.train.resume
    if resume in ("", "none"):
        raise RunFolderError(f"{folder} already holds {held}; train.resume=none would start a second run in it and "
                             "mix their checkpoints: choose another --run-dir, leave --resume at auto to continue "
                             "it, or pass --force to replace it")
    given, here = Path(resume).absolute(), Path(folder).absolute()
    if resume != "auto" and here != given and here not in given.parents:
        raise RunFolderError(f"{folder} already holds {held}; resuming {resume} there would mix two runs' "
                             "checkpoints: choose another --run-dir, or pass --force to replace it")
    changes = config_changes(folder, cfg)
    if blocking(changes) and not allow_changes:
        raise RunFolderError(f"{folder} holds {held} with another configuration ({listed(blocking(changes))}): "
                             "choose another --run-dir, pass --allow-changes to continue it with these settings, "
                             "or --force to replace it")
    return "continue"


def remove_run(folder: Path) -> list[str]:
    """Delete what a training wrote in ``folder`` (:data:`_RUN_OUTPUTS`), nothing else; returns the names."""
    gone = []
    for pattern in _RUN_OUTPUTS:
        for path in sorted(Path(folder).glob(pattern)):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            gone.append(path.name)
    return gone


# ---------------------------------------------------------------- the lock


@contextlib.contextmanager
def claimed(folder: Path, task: str, identity: dict, command: str, force: bool = False,
            force_flag: str | None = None, **marker):
    """The block owns ``folder``: checked to be new or ``task``'s with the same ``identity`` (before the lock creates
    the folder), locked, checked again under the lock (what another holder did meanwhile counts), then marked."""
    check_identity(folder, task, identity, "--out", force, force_flag)
    with locked(folder, command):
        check_identity(folder, task, identity, "--out", force, force_flag)
        write_marker(folder, task, command=command, **marker, **identity)
        yield


@contextlib.contextmanager
def locked(folder: Path, what: str):
    """Hold ``folder/.lock`` while the block writes the folder; another holder: RunFolderError at once."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def refuse(holder: str):
        raise RunFolderError(f"{folder} is being written by {holder}; wait for it to finish or choose another folder")
    with _flocked(folder / LOCK, what, refuse):
        yield


@contextlib.contextmanager
def waiting(path: Path, what: str, log=print):
    """Hold the lock file ``path`` while the block runs, waiting for another holder (said once). Where the file
    cannot be created (a read-only folder) the block runs unlocked: nothing else can write there either."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        open(path, "a").close()
    except OSError:
        yield
        return

    def wait(holder: str):
        log(f"waiting for {holder} ({path})")
        return fcntl.LOCK_EX
    with _flocked(path, what, wait):
        yield


@contextlib.contextmanager
def _flocked(path: Path, what: str, when_held):
    """An exclusive ``flock`` on ``path``, which names its holder; held by another process: ``when_held(holder)``
    raises, or returns the flags to wait with. The kernel releases it when its process ends, however it ends."""
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = False
        except BlockingIOError:
            held = True
        if held:  # outside the except: a refusal carries no BlockingIOError as its context
            f.seek(0)
            fcntl.flock(f, when_held(f.read().strip() or "another process"))
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} ({what})\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
