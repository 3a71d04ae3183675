"""A training step's memory, estimated before the first batch is built.

A batch size with a zero too many does not fail on its own: the data pipeline assembles the batch, the machine
swaps for minutes, and the kernel kills the process (a signal cannot even stop it, as no step ends). So the step's
size is checked at the door against the memory the device has free.

The estimate is a lower bound: the step's input images plus every module output the backward pass keeps, measured
by one forward pass on the ``meta`` device (shapes only: no memory, no compute). Gradients, the optimizer and the
prefetched batches come on top, so a batch refused here could never have run.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import ConfigError
from ..parallel import usable_cpus


def bytes_per_image(model: nn.Module, crop: int, dtype: torch.dtype) -> int:
    """Input plus kept activations of one image of ``crop`` x ``crop`` pixels through ``model``'s forward."""
    channels = model.backbone.in_channels  # what the data pipeline feeds (the mask channel included)
    meta = copy.deepcopy(model).to("meta")
    size = torch.empty((), dtype=dtype).element_size()
    kept = [0]

    def count(module, inputs, output):
        # only what backward needs: outputs behind a frozen part (no grad) are freed at once; in-place ops alias
        if isinstance(output, torch.Tensor) and output.requires_grad and not any(output is i for i in inputs):
            kept[0] += output.numel()

    leaves = [m for m in meta.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        images = torch.empty(2, channels, crop, crop, device="meta")  # 2: a pair model needs pairs
        meta.train()(images)
    finally:
        for h in hooks:
            h.remove()
    return (kept[0] // 2 + channels * crop * crop) * size


def available_bytes(device: torch.device) -> int | None:
    """Memory free for this process: the GPU's free memory, or the host's MemAvailable capped by a cgroup limit."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None
    try:  # a container's or a job's limit (cgroup v2)
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current").read())
        if limit != "max":
            free = min(free, int(limit) - used)
    except (OSError, ValueError):
        pass
    return free


def check_step_memory(model: nn.Module, *, images: int, crop: int, dtype: torch.dtype, device: torch.device,
                      batch_key: str, batch: int) -> None:
    """Refuses a step of ``images`` crops that cannot fit in the device's free memory, naming the batch setting."""
    free = available_bytes(device)
    if free is None:
        return
    per_image = bytes_per_image(model, crop, dtype)
    need = images * per_image
    if need > free:
        where = "this GPU has" if device.type == "cuda" else "this machine has"
        raise ConfigError(f"{batch_key}={batch} needs at least {need / 2**30:.1f} GiB for one step "
                          f"({images} crops of {crop}x{crop} px, {per_image / 2**20:.1f} MiB each) and {where} "
                          f"{free / 2**30:.1f} GiB free: lower {batch_key}")


def threads_note(threads: int) -> str | None:
    """A line when more compute threads are asked for than this process may use (they would only contend)."""
    cpus = usable_cpus()
    if threads > cpus:
        return (f"note: train.threads={threads} but this process may use {cpus} CPU{'s' * (cpus > 1)} "
                f"(affinity and cgroup quota): threads beyond that contend with each other")
    return None
