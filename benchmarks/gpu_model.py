"""What one training step of a preset should cost on a GPU, from counts made on the CPU: FLOPs per pair (forward and
backward, torch.utils.flop_counter), bytes of activations per pair, and bytes per pair of the data path (tile gather,
host-to-device copy). Divided by a device's peaks, each gives a ceiling on pairs/s; the lowest ceiling is the model's
expectation, to judge a first real run against (docs/gpu.md).

    python benchmarks/gpu_model.py [--preset gpu] [--json OUT]
"""
from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

# Peaks of an H100 SXM (H100 80GB HBM3), NVIDIA's data sheet: dense bf16 tensor cores, HBM3, PCIe Gen5 x16 (one
# direction, what a pinned host-to-device copy reaches in practice: ~50 of the 64 GB/s)
H100 = {"name": "H100 SXM", "bf16_flops": 989e12, "hbm_bytes_per_s": 3.35e12, "h2d_bytes_per_s": 50e9}


def activation_bytes(model: torch.nn.Module, images: torch.Tensor, element: int = 2) -> int:
    """Bytes written by the leaf modules of one forward pass, at ``element`` bytes per value (bf16: 2)."""
    total = 0

    def hook(_module, _inputs, output):
        nonlocal total
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                total += t.numel() * element

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(images)
    for h in handles:
        h.remove()
    return total


def gather_bytes_per_s(side: int, tiles: int = 2048, batch: int = 512, repeats: int = 5) -> float:
    """Bytes/s one thread copies random tiles out of memory into a fresh buffer (the prefetch thread's gather),
    measured here: run this on the GPU's host for its own figure."""
    import time

    import numpy as np
    bank = np.random.default_rng(0).integers(0, 255, (tiles, side, side, 3), dtype=np.uint8)
    rows = np.random.default_rng(1).integers(0, tiles, batch)
    out = np.empty((batch, side, side, 3), np.uint8)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.take(bank, rows, axis=0, out=out)
        best = min(best, time.perf_counter() - t0)
    return out.nbytes / best


def step_model(preset: str = "gpu", device: dict = H100) -> dict:
    from syncssl.data.preparation.tiles import TileSpec
    from syncssl.models.pairnet import PairNet
    from syncssl.train.config import load_config

    cfg = load_config(preset, None, [])
    model = PairNet(cfg.model).train()
    pairs, crop = 4, cfg.data.crop_size
    images = torch.randn(2 * pairs, 3, crop, crop)
    with FlopCounterMode(display=False) as counter:
        out = model(images)
        (out["sync"].float().sum() + out["flip"].float().sum()).backward()
    flops = counter.get_total_flops() / pairs
    act = activation_bytes(model, images) / pairs
    # memory traffic of a step, per pair: every activation is written once in the forward pass and read again in
    # the backward pass, whose gradients are written and read once more: ~4 passes over the activation bytes
    hbm = 4 * act
    spec = TileSpec.for_jitter(crop, *cfg.sampling.max_jitter(), backgrounds=cfg.data.tile_backgrounds)
    tile = spec.bytes_per_tile() * (2 if spec.backgrounds else 1)  # frame + its background, per view
    h2d = 2 * tile  # two views per pair
    gather = gather_bytes_per_s(spec.size)
    ceilings = {"compute": device["bf16_flops"] / flops, "hbm": device["hbm_bytes_per_s"] / hbm,
                "host_to_device": device["h2d_bytes_per_s"] / h2d, "host_gather": gather / h2d}
    return {
        "preset": preset, "device": device["name"], "model": f"ResNet-{cfg.model.depth} x{cfg.model.width:g}",
        "crop": crop, "flops_per_pair": flops, "gflops_per_pair": flops / 1e9,
        "activation_mb_per_pair": act / 1e6, "hbm_mb_per_pair": hbm / 1e6, "tile_side": spec.size,
        "h2d_kb_per_pair": h2d / 1e3, "gather_gb_per_s_one_thread": gather / 1e9,
        "ceilings_pairs_per_s": {k: round(v) for k, v in ceilings.items()},
        "bound_by": min(ceilings, key=ceilings.get), "ceiling_pairs_per_s": round(min(ceilings.values())),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="gpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    result = step_model(args.preset)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
