"""From ``cfg.data`` to batches: resolve the dataset (generating the embedded one), prepare it once, and build
the sampler -> decoder -> fused-op pipeline of each split.

Only one process generates and prepares (global rank 0; on a node that cannot see its files afterwards,
that node's local rank 0 does it again): the others wait at a barrier, then read the same manifest.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.dataset import DataError
from ..data.decode import FailurePolicy, make_decoder
from ..data.loader import PairBatcher, ViewAssembler
from ..data.manifest import MANIFEST_NAME, Manifest
from ..data.sampling import PairSampler, SamplerSequence, SamplingConfig
from .distributed import Dist, any_rank, barrier

SYNTHETIC = "synthetic:"


def dataset_root(data_cfg) -> Path:
    if data_cfg.dataset.startswith(SYNTHETIC):
        preset = data_cfg.dataset[len(SYNTHETIC):] or "small"
        return Path(data_cfg.data_root) / f"synthetic-{preset}"
    return Path(data_cfg.dataset)


def prepared_folder(data_cfg) -> Path:
    return Path(data_cfg.prepared) if data_cfg.prepared else dataset_root(data_cfg) / "prepared"


def _materialise(data_cfg, log) -> Manifest:
    """Generate (embedded data only) and prepare; both reuse what is already there and up to date."""
    from ..data.prepare import prepare
    from ..data.sources import open_dataset

    root = dataset_root(data_cfg)
    if data_cfg.dataset.startswith(SYNTHETIC):
        from ..data.synthetic import ensure_synthetic
        preset = data_cfg.dataset[len(SYNTHETIC):] or "small"
        log(f"embedded dataset: synthetic preset {preset!r} (seed {data_cfg.synthetic_seed}) at {root}")
        ensure_synthetic(root, preset=preset, seed=data_cfg.synthetic_seed, progress=True)
    elif not root.exists():
        raise DataError(root, "dataset folder not found (set data.dataset to a folder or synthetic:<preset>)")
    from rich.console import Console
    with Console(stderr=True).status("preparing the dataset (backgrounds, boxes, motion)") as status:
        report = prepare(open_dataset(root), prepared_folder(data_cfg), log=lambda msg: status.update(msg))
    log(f"prepared manifest: {report.path} ({'up to date' if report.up_to_date else 'built'}"
        f"{', static frames ' + format(report.static_share, '.0%') if report.stats.get('frames') else ''})")
    return report.manifest


def load_manifest(data_cfg, dist: Dist, log=print) -> Manifest:
    """The prepared manifest, made by one process per filesystem while the others wait."""
    path = prepared_folder(data_cfg) / MANIFEST_NAME
    error = None
    if dist.is_main:
        try:
            _materialise(data_cfg, log)
        except Exception as e:  # noqa: BLE001 - re-raised below, once every rank knows
            error = e
    if any_rank(error is not None, dist):  # a collective: no rank waits forever for a failed rank 0
        raise error if error is not None else RuntimeError("rank 0 failed to prepare the dataset (see its error)")
    barrier(dist)
    if not path.exists() and dist.local_rank == 0:  # this node does not share rank 0's filesystem
        _materialise(data_cfg, log)
    barrier(dist)
    return Manifest.load(path)


@dataclass
class SplitPipeline:
    """The pieces that turn a step number into a batch for one split."""

    sequences: list[int]  # manifest indices, in the sampler's order
    sampler: PairSampler
    batcher: PairBatcher

    def batch(self, step: int):
        return self.batcher(self.sampler.plan(step))


def sampler_sequences(manifest: Manifest, indices: list[int]) -> list[SamplerSequence]:
    return [SamplerSequence.from_sequence(manifest.sequences[i]) for i in indices]


def build_pipeline(manifest: Manifest, split: str, data_cfg, sampling: SamplingConfig, *, seed: int, rank: int,
                   world_size: int, device: torch.device, out_dtype: torch.dtype, decoder=None,
                   log=print) -> SplitPipeline:
    indices = manifest.split(split)
    sampler = PairSampler(sampler_sequences(manifest, indices), sampling, seed=seed, rank=rank, world_size=world_size)
    if decoder is None:
        decoder = make_pipeline_decoder(manifest, data_cfg, device, world_size, log)
    batcher = PairBatcher(make_assembler(manifest, indices, data_cfg, decoder, device, out_dtype, seed))
    return SplitPipeline(indices, sampler, batcher)


def make_assembler(manifest: Manifest, indices: list[int], data_cfg, decoder, device: torch.device,
                   out_dtype: torch.dtype, seed: int) -> ViewAssembler:
    return ViewAssembler(
        manifest, indices, decoder, crop_size=data_cfg.crop_size, background=data_cfg.background,
        bg_threshold=data_cfg.bg_threshold, bg_softness=data_cfg.bg_softness, substitute=data_cfg.substitute,
        mean=data_cfg.mean, std=data_cfg.std, device=device, out_dtype=out_dtype, seed=seed)


def make_pipeline_decoder(manifest: Manifest, data_cfg, device: torch.device, world_size: int, log=print):
    codecs = {c.codec for s in manifest.sequences for c in s.cameras}
    # processes on one node share its cores: give each an equal part for decoding threads
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    threads = max(1, (os.cpu_count() or 1) // max(1, local))
    decoder = make_decoder(data_cfg.decoder, "cuda" if device.type == "cuda" else "cpu", codecs,
                           policy=FailurePolicy(max_failure_share=data_cfg.max_decode_failures),
                           num_threads=threads)
    log(f"decoder: {decoder.name} on {decoder.device} ({getattr(decoder, 'reason', '')})")
    return decoder
