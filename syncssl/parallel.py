"""Worker processes for the CPU-heavy data work (rendering the synthetic data, prepare's decoding pass)."""
from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed

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


def _context():
    """Where workers come from: forked from a clean server process that imported the package once (Linux, macOS;
    not from this process, whose threads and locks a fork would copy mid-use), else spawned."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


def start_early(*modules: str) -> None:
    """Start the server that workers are forked from now, importing ``modules`` there while this process does its
    own imports: the first pool then starts in milliseconds, where spawned workers each spent ~1.8 s importing
    torch (on 2 cores, 1.8 s of a 12 s prepare of a 400-frame recording). Call it first thing in a command."""
    ctx = _context()
    if ctx.get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver
    ctx.set_forkserver_preload(list(modules))
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

    def __enter__(self):
        if self.n > 1:
            ctx = _context()
            if self.preload and ctx.get_start_method() == "forkserver":
                ctx.set_forkserver_preload(list(self.preload))  # imported once by the server, if it starts here
            with _single_threaded_env():  # inherited by the children (and by the fork server if it starts here)
                self.pool = ProcessPoolExecutor(self.n, mp_context=ctx)
                for f in [self.pool.submit(int) for _ in range(self.n)]:  # start every process under these settings
                    f.result()
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

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
