"""Worker processes for the CPU-heavy data work (rendering the synthetic data, prepare's decoding pass)."""
from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cpus(cgroup: str = "/sys/fs/cgroup") -> int:
    """The CPUs this process may use: its affinity mask (taskset, SLURM's binding) capped by the cgroup's CPU quota
    (a container's or a job's ``cpu.max``, v2; ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, v1), rounded up.
    ``os.cpu_count()`` counts the machine's cores: on a cluster node shared by eight jobs, eight times too many.

    Size thread pools with this; processes sharing a node divide it further (:func:`threads_per_process`)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup)
    return max(1, min(cpus, math.ceil(quota)) if quota else cpus)


def _cgroup_quota(root: str) -> float | None:
    """CPUs allowed by the cgroup's quota, or None when unlimited or unknown."""
    try:
        text = open(os.path.join(root, "cpu.max")).read().split()  # "max 100000" or "200000 100000"
        quota, period = text[0], text[1]
    except (OSError, IndexError):
        try:
            quota = open(os.path.join(root, "cpu", "cpu.cfs_quota_us")).read().strip()  # -1: unlimited
            period = open(os.path.join(root, "cpu", "cpu.cfs_period_us")).read().strip()
        except OSError:
            return None
    try:
        q, p = float(quota), float(period)
    except ValueError:  # "max"
        return None
    return q / p if q > 0 and p > 0 else None


def threads_per_process(local_processes: int | None = None) -> int:
    """An equal share of :func:`usable_cpus` for each of the ``local_processes`` on this node (default: torchrun's
    LOCAL_WORLD_SIZE, else 1)."""
    local = local_processes or int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(1, usable_cpus() // max(1, local))


@contextlib.contextmanager
def _single_threaded_env():
    """The thread variables at 1 while processes start (they inherit this environment)."""
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: "1" for k in THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _context(preload: tuple[str, ...] = ()):
    """Where workers come from: forked from a clean server process that imported the package once (Linux, macOS;
    not from this process, whose threads and locks a fork would copy mid-use), else spawned. ``preload``: the
    modules that server imports, if it is not running yet."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    if preload:
        ctx.set_forkserver_preload(list(preload))
    return ctx


def start_early(*modules: str) -> None:
    """Start the server that workers are forked from now, importing ``modules`` there while this process does its
    own imports: the first pool then starts in milliseconds, where spawned workers each spent ~1.8 s importing
    torch (on 2 cores, 1.8 s of a 12 s prepare of a 400-frame recording). Call it first thing in a command."""
    if _context(modules).get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver
    with _single_threaded_env():
        forkserver.ensure_running()  # returns at once; the server imports in the background


class Workers:
    """``n`` processes, each single-threaded: the work is parallel over files, and numeric libraries spreading
    each worker over every core only oversubscribe them (measured in prepare: 2 workers x 2 threads on 2 cores ran
    each video 2x slower). They are forked from one server process that imported the package once
    (:func:`start_early`; spawned where there is none). ``n == 1``: everything runs here.

        with Workers(4) as pool:
            for result in pool.map(fn, items, log, "video"):  # completion order
                ...
    """

    def __init__(self, n: int, preload: tuple[str, ...] = ()):
        self.n, self.pool, self.preload = max(1, int(n)), None, preload  # preload: the modules of the functions run
        self._saved_term = None  # the SIGTERM handler to restore

    def __enter__(self):
        if self.n > 1:
            ctx = _context(self.preload)
            self._saved_term = _stop_on_sigterm()
            try:
                with _single_threaded_env():  # inherited by the children (and the fork server if it starts here)
                    self.pool = ProcessPoolExecutor(self.n, mp_context=ctx, initializer=_worker_start,
                                                    initargs=(os.getpid(),))
                    for f in [self.pool.submit(int) for _ in range(self.n)]:  # start every process now
                        f.result()
            except BaseException:  # Ctrl-C while they start: none may be left starting as this process exits
                self.__exit__(*sys.exc_info())
                raise
        return self

    def __exit__(self, exc_type, *exc):
        if self.pool is not None:
            if exc_type is None:
                self.pool.shutdown()
            else:
                self._stop()  # an error, Ctrl-C or SIGTERM: the jobs still running are not wanted
        if self._saved_term is not None:
            signal.signal(signal.SIGTERM, self._saved_term)
            self._saved_term = None

    def _stop(self):
        """End the workers now and wait until they are gone (their jobs write only what the caller discards or
        rebuilds): a Ctrl-C returns in a moment, with no worker's traceback or leaked semaphore behind it."""
        if self.pool is None:
            return
        processes = list((getattr(self.pool, "_processes", None) or {}).values())  # the executor's own handles
        for p in processes:
            p.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)
        for p in processes:
            p.join(timeout=10)

    def submit(self, fn, *args) -> Future:
        """fn(*args) in a worker; with ``n == 1`` here and now (its Future is done when this returns)."""
        if self.pool is not None:
            return self.pool.submit(fn, *args)
        future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as e:  # a worker's error surfaces at result(), here too
            future.set_exception(e)
        return future

    def map(self, fn, items: list, log=None, what: str = "item"):
        """fn(item) for every item, yielded in completion order (``log(f"{what} k/n")`` as each one ends)."""
        log = log or (lambda msg: None)
        if self.pool is None or len(items) <= 1:
            for k, item in enumerate(items):
                yield fn(item)
                log(f"{what} {k + 1}/{len(items)}")
            return
        for k, f in enumerate(as_completed([self.pool.submit(fn, item) for item in items])):
            log(f"{what} {k + 1}/{len(items)}")
            yield f.result()


def _stop_on_sigterm():
    """While workers run: SIGTERM (what a scheduler sends before it kills a job) exits through the code that ends
    the workers, with 128 + 15, instead of leaving them behind. Only where nobody else handles SIGTERM (training
    does, to checkpoint); returns the handler to restore, or None."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        return None

    def stop(signum, frame):
        print("stopped by SIGTERM", file=sys.stderr)
        raise SystemExit(128 + signum)
    return signal.signal(signal.SIGTERM, stop)


def _worker_start(parent: int):
    """In each worker: a Ctrl-C reaches every process of the terminal's group, and the parent alone handles it (it
    ends the workers) instead of each worker printing a traceback; a parent killed outright (SIGKILL, the OOM
    killer) takes its workers with it within a second instead of leaving them waiting forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_end_with, args=(parent,), daemon=True, name="end-with-parent").start()


def _end_with(parent: int):
    while not _gone(parent):
        time.sleep(1.0)
    os._exit(1)


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended: no such process, or a zombie (dead, not yet reaped by its own parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, and another user's
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):  # no /proc (macOS): alive as far as one can tell
        return False
