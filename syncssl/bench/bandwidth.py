"""The machine's copy bandwidth, measured in the same run as the benchmark it is the yardstick for."""
from __future__ import annotations

import time

import torch


def synchronize(device: torch.device | str) -> None:
    """Wait for queued work on `device` (a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn, device: torch.device | str, repeats: int = 10, warmup: int = 1) -> float:
    """The shortest wall time of `repeats` calls of fn() in seconds (best-of: the least disturbed by other load)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def best_times(fns: dict, device: torch.device | str, repeats: int = 10, warmup: int = 1, inner: int = 1) -> dict:
    """Like :func:`best_time` for several functions, timed in interleaved rounds (one timing of each per round), so
    that a burst of load from other processes hurts all of them alike and ratios between them stay fair. Each
    timing runs fn `inner` times and reports the mean; on a GPU it is the time between CUDA events recorded
    around the calls on the stream (launch overheads amortised over `inner`, no host timer around launches)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    best = dict.fromkeys(fns, float("inf"))
    cuda = torch.device(device).type == "cuda"
    for _ in range(repeats):
        for name, fn in fns.items():
            if cuda:  # GPU time between two events on the stream: not the host's launch and wait
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(inner):
                    fn()
                end.record()
                end.synchronize()
                best[name] = min(best[name], start.elapsed_time(end) / 1e3 / inner)
                continue
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / inner)
    return best


def make_copy(nbytes: int, device: torch.device | str = "cpu"):
    """(fn, bytes moved): fn copies one `nbytes` uint8 tensor into another; bytes moved counts read + write."""
    nbytes = max(int(nbytes), 1 << 20)
    src = torch.full((nbytes,), 7, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return (lambda: dst.copy_(src)), 2 * nbytes


def copy_bandwidth(nbytes: int, device: torch.device | str = "cpu", repeats: int = 10) -> float:
    """Bytes per second of ``dst.copy_(src)`` between two `nbytes` uint8 tensors, counting read + write.

    Best of `repeats`; on CPU the copy uses all of torch's threads. A footprint beyond the last-level cache
    measures memory bandwidth; one inside it measures cache bandwidth (choose `nbytes` like the workload's).
    """
    fn, moved = make_copy(nbytes, device)
    return moved / best_time(fn, device, repeats=repeats)
