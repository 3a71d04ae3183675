"""From ``cfg.data`` to batches: resolve the dataset (generating the embedded one), prepare it once (manifest and
person tiles), and build the sampler -> view source -> fused-op pipeline of each split.

Only one process generates and prepares (global rank 0; on a node that cannot see its files afterwards,
that node's local rank 0 does it again): the others wait for its word on the job's key-value store (not in a
collective: NCCL's timeout would end a long generation with an opaque error), then read the same manifest.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.decode import FailurePolicy, make_decoder
from ..data.loading.loader import Appearance, PairBatcher, TileViews, VideoViews, ViewAssembler
from ..data.loading.sampling import PairSampler, SamplerSequence, SamplingConfig
from ..data.preparation.crops import MaskSettings
from ..data.preparation.manifest import MANIFEST_NAME, Manifest
from ..data.preparation.prepare import prepare, resolve_spec
from ..data.preparation.tiles import TileSpec, TileStore, tile_folder
from ..data.sources import open_dataset
from ..data.synthetic import ensure_synthetic
from ..errors import DataError
from ..parallel import threads_per_process
from . import runfolder
from .distributed import Dist, announce, await_announcement, node_rank

SYNTHETIC = "synthetic:"


def dataset_root(data_cfg) -> Path:
    """Where the dataset lives: the folder given, or data_root/synthetic-<preset> (-seed<N> for another seed than
    0, so that another rig never overwrites the one trained on)."""
    if data_cfg.dataset.startswith(SYNTHETIC):
        preset = data_cfg.dataset[len(SYNTHETIC):] or "small"
        seed = f"-seed{data_cfg.synthetic_seed}" if data_cfg.synthetic_seed else ""
        return Path(data_cfg.data_root) / f"synthetic-{preset}{seed}"
    return Path(data_cfg.dataset)


def prepared_folder(data_cfg) -> Path:
    return Path(data_cfg.prepared) if data_cfg.prepared else dataset_root(data_cfg) / "prepared"


def mask_settings(data_cfg) -> MaskSettings:
    """The op's background removal as ``cfg.data`` configures it."""
    return MaskSettings(mode=data_cfg.background, threshold_scale=data_cfg.bg_threshold_scale,
                        softness=data_cfg.bg_softness, shadow_min=data_cfg.shadow_min,
                        shadow_chroma=data_cfg.shadow_chroma, clean=data_cfg.bg_clean)


def tile_spec(data_cfg, shift: float, log_scale: float) -> TileSpec | None:
    """The tiles that hold every crop of ``data_cfg.crop_size`` jittered by up to (shift, log_scale); None when
    training reads the videos (``data.source = video``)."""
    if data_cfg.source == "video":
        return None
    return TileSpec.for_jitter(data_cfg.crop_size, shift, log_scale, format=data_cfg.tile_format,
                               backgrounds=data_cfg.tile_backgrounds)


@dataclass
class Prepared:
    manifest: Manifest
    tiles: Path | None  # the tile set's folder (None: the videos are read)


def _materialise(data_cfg, spec: TileSpec | None, log) -> None:
    """Generate (embedded data only) and prepare; both reuse what is already there and up to date. One process at a
    time per dataset: two trainings started together on a fresh machine (or a grid's parallel runs) would otherwise
    both generate and prepare it, each over the other's files; the second waits, then finds it up to date."""
    root = dataset_root(data_cfg)
    with runfolder.waiting(root.parent / f".{root.name}.prepare.lock", f"preparing {root}", log):
        _materialise_unlocked(data_cfg, spec, log, root)


def _materialise_unlocked(data_cfg, spec: TileSpec | None, log, root: Path) -> None:
    if data_cfg.dataset.startswith(SYNTHETIC):
        preset = data_cfg.dataset[len(SYNTHETIC):] or "small"
        log(f"embedded dataset: synthetic preset {preset!r} (seed {data_cfg.synthetic_seed}) at {root}")
        ensure_synthetic(root, preset=preset, seed=data_cfg.synthetic_seed, progress=True)
    elif not root.exists():
        raise DataError(root, "dataset folder not found (set data.dataset to a folder or synthetic:<preset>)")
    from rich.console import Console
    with Console(stderr=True).status("preparing the dataset (backgrounds, boxes, motion, tiles)") as status:
        report = prepare(open_dataset(root), prepared_folder(data_cfg), tiles=spec, mask=mask_settings(data_cfg),
                         crop_size=data_cfg.crop_size, log=lambda msg: status.update(msg))
    log(f"prepared manifest: {report.path} ({'up to date' if report.up_to_date else 'built'}"
        f"{', static frames ' + format(report.static_share, '.0%') if report.stats.get('frames') else ''})"
        + (f"; tiles {report.tiles.name}: {report.tiles_note}" if report.tiles else ""))
    if report.manifest.source == "session" and not (root / "sync.toml").is_file():
        log(f"note: {root} has no sync.toml and is taken as synchronized (frame t of every camera is one instant): "
            "if its cameras were not started together, its pairs are wrong and a model pre-trained on it learns "
            "their offsets as the truth (syncssl sync leaves such a model out on these recordings); `syncssl sync "
            "--apply` writes the offsets first")
    op = report.report.get("op_mask") or {}
    if op:
        log("op mask at these settings (IoU / body lost): " + ", ".join(
            f"{k} {v['iou']:.2f}/{v['body_lost']:.0%}" for k, v in op.items()))


def load_manifest(data_cfg, dist: Dist, spec: TileSpec | None = None, log=print, wait_s: float = 7200.0) -> Prepared:
    """The prepared manifest (and tile set), made by one process per filesystem while the others wait for it (at
    most ``wait_s`` seconds) on the job's key-value store."""
    path = prepared_folder(data_cfg) / MANIFEST_NAME
    what = f"rank 0 to generate and prepare the dataset {dataset_root(data_cfg)}"
    _prepare_once("data", dist.is_main, data_cfg, spec, log, dist, what, wait_s)
    if not path.exists():  # this node does not share rank 0's filesystem: its first process prepares a copy
        _prepare_once(f"data-node{node_rank()}", dist.local_rank == 0, data_cfg, spec, log, dist,
                      f"this node's first process to prepare its copy of {dataset_root(data_cfg)}", wait_s)
    manifest = Manifest.load(path)
    folder = None
    if spec is not None:
        folder = tile_folder(prepared_folder(data_cfg), resolve_spec(spec, manifest))
    return Prepared(manifest, folder)


_rounds: Counter = Counter()  # announcements of each key so far: every process counts alike, so a second trainer
# in the same job waits for its own round, not the first one's


def _prepare_once(key: str, mine: bool, data_cfg, spec, log, dist: Dist, what: str, wait_s: float) -> None:
    """One process prepares (``mine``) and announces the outcome; the others wait for it and share a failure."""
    _rounds[key] += 1
    key = f"{key}-{_rounds[key]}"
    if mine:
        try:
            _materialise(data_cfg, spec, log)
        except BaseException as e:
            announce(key, f"{type(e).__name__}: {e}", dist)
            raise
        announce(key, "ok", dist)
        return
    outcome = await_announcement(key, dist, what, wait_s, "train.data_wait_s")
    if outcome != "ok":
        raise DataError(dataset_root(data_cfg), f"not prepared: the process preparing it failed ({outcome})")


@dataclass
class SplitPipeline:
    """The pieces that turn a step number into a batch for one split."""

    sequences: list[int]  # manifest indices, in the sampler's order
    sampler: PairSampler
    batcher: PairBatcher

    def batch(self, step: int):
        return self.batcher(self.sampler.plan(step))


def sampler_sequences(manifest: Manifest, indices: list[int], sampling: SamplingConfig) -> list[SamplerSequence]:
    """The sampler's view of the sequences: no labels, unless the label pose-change filter is opted into."""
    labels = sampling.label_min_pose_change_mm > 0
    return [SamplerSequence.from_sequence(manifest.sequences[i], labels=labels) for i in indices]


def build_pipeline(prepared: Prepared, split: str, data_cfg, sampling: SamplingConfig, *, seed: int, rank: int,
                   world_size: int, device: torch.device, out_dtype: torch.dtype, source=None, augment: bool = False,
                   steps: int = 0, log=print) -> SplitPipeline:
    manifest = prepared.manifest
    indices = manifest.split(split)
    sampler = PairSampler(sampler_sequences(manifest, indices, sampling), sampling, seed=seed, rank=rank,
                          world_size=world_size)
    source = source or make_source(prepared, indices, data_cfg, device, world_size, log)
    # a grouped plan's cross pairs join views of different rows: the whole group shares one colour transform
    batcher = PairBatcher(make_assembler(manifest, indices, data_cfg, source, device, out_dtype, seed, augment,
                                         group=2 * sampling.group_size, steps=steps), sampling.group_size)
    return SplitPipeline(indices, sampler, batcher)


def appearance(data_cfg, steps: int = 0) -> Appearance:
    """Training's appearance augmentation, starting at ``data.aug_start`` of a run of ``steps`` steps."""
    return Appearance(data_cfg.aug_jitter, data_cfg.aug_hue_deg, data_cfg.aug_permute, data_cfg.aug_grey,
                      start_step=int(round(data_cfg.aug_start * steps)))


def make_assembler(manifest: Manifest, indices: list[int], data_cfg, source, device: torch.device,
                   out_dtype: torch.dtype, seed: int, augment: bool = False, group: int = 2,
                   steps: int = 0) -> ViewAssembler:
    """The view assembler of a pipeline; ``augment``: training's appearance augmentation, one colour transform
    per ``group`` views (a pair: 2; pose views: 1), in a run of ``steps`` steps."""
    return ViewAssembler(manifest, indices, source, crop_size=data_cfg.crop_size, mask=mask_settings(data_cfg),
                         substitute=data_cfg.substitute, mean=data_cfg.mean, std=data_cfg.std, device=device,
                         out_dtype=out_dtype, seed=seed, appearance=appearance(data_cfg, steps) if augment else None,
                         group=group)


def make_source(prepared: Prepared, indices: list[int], data_cfg, device: torch.device, world_size: int, log=print,
                decoder=None):
    """Where a pipeline's pixels come from: the tile set (one store per pipeline: stores are cheap to open), or
    the videos through a decoder (pass one to share it; decoders are not thread-safe, so never across threads)."""
    manifest = prepared.manifest
    if prepared.tiles is not None:
        return TileViews(manifest, indices, TileStore(prepared.tiles), device)
    decoder = decoder or make_pipeline_decoder(manifest, data_cfg, device, world_size, log)
    background = data_cfg.background != "off" or data_cfg.substitute > 0
    return VideoViews(manifest, [manifest.sequences[i] for i in indices], decoder, device, background)


def make_pipeline_decoder(manifest: Manifest, data_cfg, device: torch.device, world_size: int, log=print):
    samples = {c.codec: c.video for s in manifest.sequences for c in s.cameras}  # one file per codec, for the probe
    codecs = set(samples)
    # processes on one node share its cores: give each an equal part for decoding threads
    threads = threads_per_process(int(os.environ.get("LOCAL_WORLD_SIZE", world_size)))
    decoder = make_decoder(data_cfg.decoder, "cuda" if device.type == "cuda" else "cpu", codecs,
                           policy=FailurePolicy(max_failure_share=data_cfg.max_decode_failures),
                           num_threads=threads, samples=samples)
    log(f"decoder: {decoder.name} on {decoder.device} ({getattr(decoder, 'reason', '')})")
    return decoder
