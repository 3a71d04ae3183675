"""torch.distributed from torchrun's environment: one place that knows RANK, LOCAL_RANK and WORLD_SIZE.

The sampler shards by the *global* rank (RANK); the device is chosen by LOCAL_RANK. NCCL on GPU, gloo on CPU.
"""
from __future__ import annotations

import datetime
import os
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import PeerLost, WaitedTooLong


@dataclass(frozen=True)
class Dist:
    rank: int = 0  # global rank: shards the data
    local_rank: int = 0  # rank on this node: picks the GPU
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto", timeout_s: float = 1800.0) -> Dist:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1), pick the device."""
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but CUDA is not available; use train.device=cpu or auto")
    if use_cuda:  # modulo: a launcher that shows each process only its own GPU (CUDA_VISIBLE_DEVICES) makes it 0
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s),
                                **({"device_id": dev} if use_cuda else {}))
    return Dist(rank, local_rank, world, dev)


def teardown():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_rank(flag: bool, d: Dist) -> bool:
    """True on every rank if it is true on any rank: ranks must agree on when to stop and save."""
    if not d.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_object(obj, d: Dist, src: int = 0):
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj, d: Dist) -> list:
    if not d.enabled:
        return [obj]
    out = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(d: Dist):
    if d.enabled:
        dist.barrier()


# what gloo and NCCL say when a peer process is gone (the connection closed, or a collective timed out)
_PEER_SIGNS = ("connection closed by peer", "connection reset by peer", "broken pipe", "timed out", "timeout",
               "socket closed", "nccl communicator was aborted", "connection refused")


def peer_lost(error: BaseException, d: Dist) -> PeerLost | None:
    """A clear error for ``error`` when it says that another process of a multi-process job is gone, else None."""
    text = str(error).lower()
    if not d.enabled or not (isinstance(error, getattr(dist, "DistError", ())) or
                             any(sign in text for sign in _PEER_SIGNS)):
        return None
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return PeerLost(f"rank {d.rank}: another process of the job stopped or cannot be reached (a node failed or was "
                    f"killed), so this one stops too ({first}). Rerun the same command to resume from the last "
                    "checkpoint (train.resume=auto)")


def node_rank() -> int:
    """This node's index in the job (torchrun's GROUP_RANK)."""
    if "GROUP_RANK" in os.environ:
        return int(os.environ["GROUP_RANK"])
    return int(os.environ.get("RANK", 0)) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))


def announce(key: str, value: str, d: Dist) -> None:
    """Tell every process of the job that ``key`` is done (``value``: "ok" or an error message)."""
    if d.enabled:
        dist.distributed_c10d._get_default_store().set(f"syncssl/{key}", value)


def await_announcement(key: str, d: Dist, what: str, timeout_s: float, setting: str, say=None) -> str:
    """Wait for :func:`announce` of ``key`` in the job's key-value store (not in a collective, whose NCCL timeout
    would end a long wait with an opaque error), saying what this process waits for every few minutes; returns the
    announced value. ``setting`` names the option that sets ``timeout_s``."""
    if not d.enabled:
        return "ok"
    say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
    store = dist.distributed_c10d._get_default_store()
    t0 = next_note = time.monotonic()
    while True:
        try:
            if store.check([f"syncssl/{key}"]):
                return store.get(f"syncssl/{key}").decode()
        except Exception as e:  # noqa: BLE001 - the store went away with the process that hosts it
            raise PeerLost(f"rank {d.rank}: lost the job's store while waiting for {what} ({e})") from None
        waited = time.monotonic() - t0
        if waited > timeout_s:
            raise WaitedTooLong(f"rank {d.rank}: gave up after {waited / 60:.0f} min waiting for {what} ({setting}="
                               f"{timeout_s:g}); raise it, or do that step once beforehand")
        if time.monotonic() >= next_note and d.local_rank == 0:
            say(f"rank {d.rank}: waiting for {what} ({waited / 60:.0f} of at most {timeout_s / 60:.0f} min)")
            next_note += 300
        time.sleep(0.5)
