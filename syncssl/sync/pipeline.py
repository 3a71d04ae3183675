"""``syncssl-sync``: the time offsets of an unsynchronized rig from the sync classifier, the silhouettes' geometry and
the person's motion timing.

1. The dataset (or bare session) is opened as it is (an applied ``sync.toml`` included: what is measured is then
   the residual), with cameras of any lengths; every camera becomes a single-camera sequence of its whole length,
   and that is prepared like any dataset (backgrounds, person boxes, per-camera static frames, tiles) into
   ``<dataset>/sync-prepared``, where every later run reuses it. No labels are read.
2. Every frame a score needs is embedded once through the fused data path (tiles or video -> ViewAssembler ->
   ``assemble_pairs``, unflipped, no jitter, no augmentation) and the model's backbone. PairNet scores a pair as
   ``sync_head(fuse(e_a, e_b))`` of per-view embeddings, and in eval mode an embedding depends on its own view
   only, so scoring (a at t, b at t + d) for every instant and offset from cached embeddings is exactly the
   model's forward pass on those pairs, at the cost of one backbone pass per frame instead of one per pair.
3. For every camera pair, the per-instant score matrix (instants x offsets) of each cue goes to :mod:`.search`:
   the classifier's log-odds (when :mod:`.domain` finds the model inside its domain on this footage) plus the
   silhouettes' epipolar tangency (:mod:`.tangency`) plus the motion timing (:mod:`.motion`); each pair's curve
   and peak, every camera against the reference jointly, and the triplet check.
4. A camera is committed only when independent evidence agrees (:func:`confirm`): the fused estimate is stable
   under resampling, no cue significantly prefers another offset, and at least two of the classifier, the
   geometry, the motion and a consistent camera triplet confirm it. Otherwise it is "not determined", with the reason.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

import syncssl.sync.domain as domain  # the modules, not the package: its __init__ imports this one
import syncssl.sync.motion as motion
import syncssl.sync.search as search
import syncssl.sync.tangency as tangency

from ..data.preparation.manifest import safe_name
from ..data.preparation.prepare import prepare
from ..data.sources import detect_layout, open_dataset
from ..data.sources.dataset import Dataset, Sequence
from ..data.sources.layout import name_key
from ..data.sources.syncfile import write_sync_file
from ..errors import CheckpointError, DataError
from ..experiments.evaluate import resolve_checkpoint
from ..geometry import rig_focus
from ..models.pairnet import PairNet
from ..parallel import usable_cpus
from ..train import checkpoint as ckpt
from ..train.config import PretrainConfig, config_from_dict
from ..train.data import Prepared, make_assembler, make_source, mask_settings, tile_spec
from ..train.trainer import resolve_amp
from .adapt import adapt
from .epipolar import has_baseline
from .motion import MotionCue
from .tangency import TangencyCue

ANY_LENGTH = 10 ** 9  # frame tolerance: an unsynchronized rig's cameras may differ in length by anything
DEFAULT_MAX_OFFSET_S = 5.0  # without --max-offset: what the recordings allow, up to this
CUES = ("classifier", "geometry", "motion")  # what can score an offset; "geometry" and "motion" need no model


class PairScorer(Protocol):
    """What the search needs from a model: per-view embeddings, and the sync log-odds of embedded pairs."""

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(V, 3, S, S) images -> (V, E) float embeddings."""

    def log_odds(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(N, E), (N, E) -> (N,) log P(sync) - log P(not sync) of the pairs (view a, view b)."""


class PairNetScorer:
    """A pre-trained :class:`~syncssl.models.pairnet.PairNet`, split at the fusion (see the module docstring)."""

    def __init__(self, model, amp_dtype: torch.dtype | None = None):
        self.model = model.eval()
        self.amp_dtype = amp_dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _autocast(self):
        import contextlib
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.model.view_features(images).float()

    @torch.no_grad()
    def log_odds(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            logits = self.model.sync_head(self.model.fusion.fuse(a, b)).float()
        return logits[:, 1] - logits[:, 0]

    @torch.no_grad()
    def flip_log_odds(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(N,) log P(flipped) - log P(not flipped) of embedded pairs (the domain check's mirror question)."""
        with self._autocast():
            logits = self.model.flip_head(self.model.fusion.fuse(a, b)).float()
        return logits[:, 1] - logits[:, 0]


@dataclass
class LoadedModel:
    scorer: PairScorer
    cfg: object  # the PretrainConfig the model was trained with (its data settings make the crops)
    checkpoint: Path
    step: int
    input_dtype: torch.dtype = torch.float32
    reference: dict | None = None  # the domain check's numbers on the model's own data (None: domain.json, made
    #                                from the model's prepared data when it is on this machine)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """A pre-training run folder or checkpoint -> its PairNet as a scorer, on ``device``, in eval mode."""
    checkpoint = resolve_checkpoint(Path(path))
    if checkpoint is None:
        raise CheckpointError(f"{path}: no loadable checkpoint (give a pre-training run folder or a "
                                   "checkpoint folder <run>/checkpoints/step-N)")
    state = ckpt.load(checkpoint)
    arch = state.get("arch", {}).get("model")
    if arch != "PairNet":
        raise CheckpointError(f"{checkpoint}: a {arch} checkpoint; synchronizing needs the pre-trained sync "
                                   "classifier (a syncssl-train run), not a fine-tuned pose model")
    cfg = config_from_dict(PretrainConfig, state["config"])
    device = torch.device(device)
    model = PairNet(cfg.model)
    model.load_state_dict(state["model"])
    model = model.to(device, memory_format=torch.channels_last).eval()
    amp, _ = resolve_amp(cfg.train.amp, device)
    return LoadedModel(PairNetScorer(model, amp), cfg, checkpoint, int(state.get("step", 0)), amp or torch.float32)


@dataclass(frozen=True)
class SyncOptions:
    reference: str | None = None  # camera the others are measured against (default: each sequence's first)
    max_offset_s: float | None = None  # search offsets in [-max, max] seconds against the reference (None: what the
    #                recordings allow with half the shorter one and min_overlap_s in common, up to DEFAULT_MAX_OFFSET_S)
    instants: int = 512  # instants sampled per camera (evenly over its moving frames)
    replicates: int = 200  # bootstrap resamples of the instants (per pair)
    joint_replicates: int = 64  # ... for the joint estimate (a search over every camera per resample)
    min_support: float = 0.9  # share of resamples that must agree within ``tolerance_s`` for "determined"
    tolerance_s: float = 0.04  # how far an estimate may lie from another and still agree (1 frame at 25 fps)
    min_overlap_s: float = 0.5  # every searched offset must leave the recordings at least this much in common
    joint: bool = True  # every camera at once from all pairs (else: each camera from its reference pair only)
    seed: int = 0  # bootstrap resampling
    batch_size: int = 256  # views per fused-op call and backbone pass
    mirrored: bool = False  # also score every pair with both views mirrored (a mirrored rig is a rig too) and average
    #                         the two log-odds: twice the embedding work for a less noisy curve
    sequences: tuple[str, ...] = ()  # only these sequences (keys "subject/name"); empty: all
    adapt_steps: int = 300  # > 0: fine-tune a copy of the model this many steps on the pairs of the cameras a first
    #                         search determined (test-time self-training, no labels), then search again with it
    #                         (on 3 draws of the benchmark's offsets: +2, +10 and +15 points of cameras placed by
    #                         the classifier alone; -4, 0 and +12.5 points with the geometric cue)
    adapt_lr: float = 1e-4  # its peak learning rate (warm-up, then cosine to 0)
    cue: str = "fused"  # "fused": every cue there is (the classifier only with a model); or cues joined by "+",
    #                     e.g. "geometry" (the silhouettes' epipolar tangency), "motion" (when the person changes
    #                     pace), "classifier"
    tangency: TangencyCue = TangencyCue()
    motion: MotionCue = MotionCue()
    threads: int | None = None  # torch threads of the embedding (default: the CPUs this process may use)

    def __post_init__(self):
        if self.max_offset_s is not None and not self.max_offset_s > 0:
            raise ValueError(f"max_offset_s must be > 0, got {self.max_offset_s}")
        if self.cue != "fused" and not set(self.cue.split("+")) <= set(CUES):
            raise ValueError(f"cue must be 'fused' or some of {', '.join(CUES)} joined by '+', got {self.cue!r}")
        if not self.tolerance_s > 0:
            raise ValueError(f"tolerance_s must be > 0, got {self.tolerance_s}")
        if self.instants < 1 or self.replicates < 1 or self.batch_size < 2:
            raise ValueError("instants and replicates must be >= 1, batch_size >= 2")
        if not 0 < self.min_support <= 1:
            raise ValueError(f"min_support must be in (0, 1], got {self.min_support}")
        if self.adapt_steps < 0 or not self.adapt_lr > 0:
            raise ValueError(f"adapt_steps must be >= 0 and adapt_lr > 0, got {self.adapt_steps}, {self.adapt_lr}")

    @property
    def needs_model(self) -> bool:
        """Whether a cue in use is the classifier (``fused`` works without a model)."""
        return "classifier" in self.cues(with_model=False)

    def cues(self, with_model: bool = True) -> tuple[str, ...]:
        """The cues in use: ``fused`` is every cue there is (the classifier only ``with_model``)."""
        if self.cue == "fused":
            return CUES if with_model else tuple(c for c in CUES if c != "classifier")
        return tuple(c for c in CUES if c in self.cue.split("+"))


# ---------------------------------------------------------------- results


@dataclass
class CameraResult:
    camera: str
    estimate: search.Estimate  # the offset reported (joint, or the reference pair's)
    direct: search.Estimate  # from the reference pair alone
    frames: int  # frames the camera holds (after any applied offset)
    first: search.Estimate | None = None  # with --adapt: the first search's estimate (before adapting)


@dataclass
class SequenceResult:
    key: str
    folder: Path | None
    fps: float
    reference: str
    span: int  # frames searched each way against the reference
    cameras: list[CameraResult]
    pairs: dict[tuple[str, str], search.Estimate]
    curves: dict[tuple[str, str], search.Curve]
    triplets: list[search.Triplet]
    applied: dict[str, int]  # the sync.toml offsets the views already had (the measurement is on top of them)
    left_out: tuple[str, ...] = ()  # cameras that sync.toml already excluded (not measured here)
    figure: Path | None = None
    truth: dict[str, int] | None = None  # known offsets (benchmarks), drawn in the figure
    cue_curves: dict = field(default_factory=dict)  # (a, b) -> {cue name: Curve}: each cue alone
    domain: object = None  # the classifier's DomainCheck on this sequence's cameras (None: not used)

    @property
    def determined(self) -> bool:
        return all(c.estimate.determined for c in self.cameras)

    def offset(self, camera: str) -> int | None:
        return next(c.estimate.offset for c in self.cameras if c.camera == camera)


@dataclass
class SyncResult:
    dataset: Path
    checkpoint: Path | None
    options: SyncOptions
    sequences: list[SequenceResult]
    device: str
    source: str  # where the pixels came from
    seconds: float
    views_embedded: int
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    adapted: object = None  # with --adapt: the adaptation's AdaptReport (None: not adapted)


# ---------------------------------------------------------------- the run


def camera_dataset(ds: Dataset) -> Dataset:
    """Every camera of every sequence as a single-camera sequence of its whole length (cameras of an
    unsynchronized rig differ in length, and the tiles, boxes and static frames are then per camera).
    Labels are left out: nothing here reads them."""
    seqs = []
    for s in ds.sequences:
        for v in s.views:
            seqs.append(Sequence(subject=s.subject, name=f"{s.name}@{v.name}", action=s.action, fps=s.fps, views=[v],
                                 num_frames=v.num_frames - v.start, folder=s.folder,
                                 backgrounds={k: p for k, p in s.backgrounds.items() if k == v.name},
                                 focus=rig_focus(s.cameras)))  # each camera starts on the person the rig looks at
    return Dataset(root=ds.root, name=f"{ds.name} (cameras)", fps=ds.fps, skeleton=ds.skeleton, splits=ds.splits,
                   sequences=seqs, source=ds.source, notes=[])


def _reference(seq: Sequence, wanted: str | None) -> str:
    if wanted is None:
        return seq.views[0].name
    for v in seq.views:
        if v.name == wanted or name_key(v.name) == name_key(wanted):
            return v.name
    raise DataError(seq.folder or seq.key, f"--reference {wanted}: no such camera in {seq.key} "
                                           f"(cameras: {', '.join(seq.camera_names)})")


def overlap_frames(len_a: int, len_b: int, d: int) -> int:
    """Frames t with 0 <= t < len_a and 0 <= t + d < len_b."""
    return max(0, min(len_a, len_b - d) - max(0, -d))


def search_spans(seqs: list[Sequence], options: SyncOptions) -> dict[str, int]:
    """Frames searched each way per sequence. Without --max-offset: the most every pair with the reference allows
    (keeping min_overlap_s in common), up to DEFAULT_MAX_OFFSET_S. With it: refused when any pair cannot hold it,
    in one message naming every pair's limit."""
    spans, refused = {}, []
    for seq in seqs:
        ref = seq.view(_reference(seq, options.reference))
        min_overlap = _min_overlap(options, seq.fps)
        shared = {v.name: min(ref.num_frames - ref.start, v.num_frames - v.start) for v in seq.views if v is not ref}
        limits = {c: n - min_overlap for c, n in shared.items()}
        allowed = min(limits.values())
        if options.max_offset_s is None:  # every offset scored on at least half of the shorter recording
            span = min(allowed, min(shared.values()) // 2, int(round(DEFAULT_MAX_OFFSET_S * seq.fps)))
        else:
            span = max(1, int(round(options.max_offset_s * seq.fps)))
        if span < 1 or span > allowed:
            refused.append((seq, ref.name, limits, span, min_overlap))
        spans[seq.key] = span
    if refused:
        lines = []
        for seq, ref, limits, *_ in refused:
            pairs = ", ".join(f"{c} {max(0, n) / seq.fps:.2f} s ({max(0, n)} frames)" for c, n in limits.items())
            lines.append(f"{seq.key} against {ref}: {pairs}")
        asked = ("no offset leaves them" if options.max_offset_s is None else
                 f"--max-offset {options.max_offset_s:g} s is larger than the recordings' overlap allows:")
        largest = max(0, min(min(r[2].values()) / r[0].fps for r in refused))
        raise DataError(refused[0][0].folder or refused[0][0].key,
                        f"{asked} the largest --max-offset each camera allows (keeping {options.min_overlap_s:g} s in "
                        f"common) is " + "; ".join(lines)
                        + (f"; the largest --max-offset for all is {largest:.2f} s" if options.max_offset_s else ""))
    return spans


def _min_overlap(options: SyncOptions, fps: float) -> int:
    """Frames the recordings must share at every searched offset."""
    return max(2, int(round(options.min_overlap_s * fps)))


def _instants(usable: np.ndarray, n: int) -> np.ndarray:
    idx = np.flatnonzero(usable)
    if len(idx) > n:
        idx = idx[np.round(np.linspace(0, len(idx) - 1, n)).astype(np.int64)]
    return idx


@dataclass
class _Plan:
    """One sequence's search: which cameras, pairs and offset ranges, and which frames need an embedding."""

    seq: Sequence
    reference: str
    cameras: list[str]
    index: dict[str, int]  # camera -> index in the per-camera manifest
    lengths: dict[str, int]
    usable: dict[str, np.ndarray]  # (T,) bool: moving, with a person found
    instants: dict[str, np.ndarray]
    pairs: list[tuple[str, str, np.ndarray]]  # (a, b, offsets of b against a)
    span: int
    tolerance: int  # frames: options.tolerance_s at this sequence's rate
    outlines: dict[str, tangency.Outlines] | None = None  # silhouettes per camera (None: no geometric cue)


def _plan(seq: Sequence, manifest, index: dict[str, int], options: SyncOptions, span: int) -> _Plan:
    min_overlap = _min_overlap(options, seq.fps)
    lengths, usable = {}, {}
    for c in seq.camera_names:
        p = manifest.sequences[index[c]]
        lengths[c] = p.num_frames
        found = np.isfinite(p.tight).all(-1)[:, 0] if p.tight is not None else np.ones(p.num_frames, bool)
        usable[c] = ~np.asarray(p.static, bool) & found  # a static frame matches every instant of a still person
    ref = _reference(seq, options.reference)
    if options.reference is None and not usable[ref].any():  # a dark or empty camera cannot be everyone's reference
        ref = next((c for c in seq.camera_names if usable[c].any()), ref)
    cams = [ref] + [c for c in seq.camera_names if c != ref]
    pairs = [(ref, c, np.arange(-span, span + 1)) for c in cams[1:]]
    if options.max_offset_s is None:  # as the default span: half of the shorter recording in common
        min_overlap = max(min_overlap, min(lengths.values()) // 2)
    for i, a in enumerate(cams[1:]):
        for b in cams[i + 2:]:
            # two cameras each up to span from the reference lie up to 2 span apart; cut to what they share
            lo = -min(2 * span, lengths[a] - min_overlap)
            hi = min(2 * span, lengths[b] - min_overlap)
            if hi >= lo:
                pairs.append((a, b, np.arange(lo, hi + 1)))
    instants = {c: _instants(usable[c], options.instants) for c in cams}
    return _Plan(seq, ref, cams, index, lengths, usable, instants, pairs, span,
                 search.tolerance_frames(options.tolerance_s, seq.fps))


def _needed(plan: _Plan) -> dict[str, np.ndarray]:
    """(T,) bool per camera: the frames some score reads."""
    need = {c: np.zeros(plan.lengths[c], bool) for c in plan.cameras}
    for a, b, offsets in plan.pairs:
        t = plan.instants[a]
        if not len(t):
            continue
        need[a][t] = True
        u = (t[:, None] + offsets[None, :]).reshape(-1)
        u = u[(u >= 0) & (u < plan.lengths[b])]
        need[b][u] = True
    return {c: need[c] & plan.usable[c] for c in plan.cameras}


def synchronize(dataset: str | Path, model: LoadedModel | None, options: SyncOptions | None = None, *,
                out: str | Path | None = None, prepared: str | Path | None = None, device: str | torch.device = "cpu",
                source: str | None = None, workers: int | None = None, log=print, progress: bool = True,
                truth: dict[str, dict[str, int]] | None = None) -> SyncResult:
    """Measure every camera's offset against the reference in every sequence of ``dataset``; write sync.json,
    sync.csv and one figure per sequence into ``out`` (default ``<dataset>/sync``). ``model`` may be None with the
    cues that need none (fused is then geometry and motion). ``prepared``: where each camera's preparation goes
    (default ``<dataset>/sync-prepared``, kept across runs whatever ``out``: prepare reuses it while the videos and its
    settings match; ``<out>/prepared`` where the dataset folder is read-only). ``source``: "tiles" or "video"
    (default: what the model was trained on). ``truth``: known offsets per sequence key (benchmarks)."""
    t0 = time.perf_counter()
    options = options or SyncOptions()
    if model is None and options.needs_model:
        raise ValueError(f"--cue {options.cue} needs a model (--model); geometry and motion need none")
    if "classifier" not in options.cues():
        model = None  # a model given anyway would be embedded and adapted for scores that nothing reads
    dataset = Path(dataset)
    out = Path(out) if out is not None else dataset / "sync"
    prepared = Path(prepared) if prepared is not None else _prepared_folder(dataset, out)
    device = torch.device(device)
    threads = options.threads or usable_cpus()
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)  # the embedding runs in this thread; prepare's workers are single-threaded
    try:
        return _synchronize(dataset, model, options, out, prepared, device, source, workers or threads, log,
                            progress, truth, t0)
    finally:
        torch.set_num_threads(torch_threads)


def _prepared_folder(dataset: Path, out: Path) -> Path:
    import os
    return dataset / "sync-prepared" if os.access(dataset, os.W_OK) else out / "prepared"


def _synchronize(dataset, model, options, out, prepared, device, source, workers, log, progress, truth, t0):

    ds = open_dataset(dataset, frame_tolerance=ANY_LENGTH)
    notes = []
    seqs = []
    for s in ds.sequences:
        if options.sequences and s.key not in options.sequences:
            continue
        if len(s.views) < 2:
            notes.append(f"{s.key}: a single camera ({s.views[0].name}); nothing to synchronize")
            continue
        seqs.append(s)
    if options.sequences:
        missing = sorted(set(options.sequences) - {s.key for s in ds.sequences})
        if missing:
            more = " ..." if len(ds.sequences) > 8 else ""
            raise DataError(dataset, f"no sequence {', '.join(missing)}; sequences are "
                                     f"{', '.join(s.key for s in ds.sequences[:8])}{more}")
    if not seqs:
        raise DataError(dataset, "no sequence with two or more cameras to synchronize")
    # a wrong --reference or a search range the recordings cannot hold fail before the preparation
    spans = search_spans(seqs, options)
    sub = dataclasses.replace(ds, sequences=seqs)

    if model is not None:
        cfg = model.cfg
        data_cfg = dataclasses.replace(cfg.data, substitute=0.0,  # the real background, removed: no random fill
                                       **({"source": source} if source else {}))
        shift, scale = cfg.sampling.max_jitter()  # tiles cut as the model's training cut them
        kw = dict(tiles=tile_spec(data_cfg, shift, scale), mask=mask_settings(data_cfg), crop_size=data_cfg.crop_size)
    else:
        kw = {}  # geometry alone: backgrounds and masks, no tiles
    kw["workers"] = workers
    per_camera = camera_dataset(sub)
    log(f"preparing {len(per_camera.sequences)} camera recordings of {len(seqs)} sequences into {prepared}")
    if progress:  # prepare says a line per video: one status line that updates, as syncssl-data prepare shows it
        from rich.console import Console
        with Console(stderr=True).status("preparing the cameras") as status:
            report = prepare(per_camera, prepared, log=lambda m: status.update(f"preparing the cameras: {m}"), **kw)
    else:
        report = prepare(per_camera, prepared, log=log, **kw)
    log(f"prepared: {report.path} ({'up to date' if report.up_to_date else 'built'}, {report.seconds:.0f} s)")
    manifest = report.manifest
    index_of = {p.key: i for i, p in enumerate(manifest.sequences)}
    plans = []
    for s in seqs:
        index = {v.name: index_of[f"{s.subject}/{s.name}@{v.name}"] for v in s.views}
        plans.append(_plan(s, manifest, index, options, spans[s.key]))
        unusable = [c for c in plans[-1].cameras if not plans[-1].usable[c].any()]
        if unusable:
            notes.append(f"{s.key}: camera(s) {', '.join(unusable)} have no usable frame (no person found, or nobody "
                         f"moves): they cannot be synchronized; the others are measured against "
                         f"{plans[-1].reference}")
            log(notes[-1])
    if set(options.cues()) - {"classifier"}:  # the silhouettes and the motion series come from one decoding pass
        with_bg = [i for i, p in enumerate(manifest.sequences) if p.cameras[0].background_id in manifest.backgrounds]
        outlines = tangency.silhouette_outlines(manifest, with_bg, prepared / "outlines", workers, log)
        for plan in plans:
            missing = [c for c in plan.cameras if plan.index[c] not in outlines]
            if missing:
                notes.append(f"{plan.seq.key}: no geometry or motion cue (no background model, so no silhouettes, for "
                             f"{', '.join(missing)})")
                log(notes[-1])
            else:
                plan.outlines = {c: outlines[plan.index[c]] for c in plan.cameras}

    if model is None:
        results = [_search(plan, {}, None, options, np.random.default_rng(options.seed)) for plan in plans]
        for r in results:
            r.truth = (truth or {}).get(r.key)
        result = SyncResult(dataset=dataset, checkpoint=None, options=options, sequences=results, device=str(device),
                            source=f"silhouettes, no model: {'+'.join(options.cues(False))}", seconds=0.0,
                            views_embedded=0, notes=notes)
        result.seconds = round(time.perf_counter() - t0, 2)
        write_outputs(result, out)
        return result

    indices = list(range(len(manifest.sequences)))
    pipe = Prepared(manifest, report.tiles)
    src = make_source(pipe, indices, data_cfg, device, 1, log)
    assembler = make_assembler(manifest, indices, data_cfg, src, device, model.input_dtype, 0)
    where = f"tiles {report.tiles.name}" if report.tiles else f"video via {src.decoder.name} ({src.decoder.device})"

    def search_all(scorer: PairScorer, checks: dict | None, independent: bool = True
                   ) -> tuple[list[SequenceResult], int]:
        embeddings, mirrored, views = _embed(plans, assembler, scorer, options.batch_size, progress, options.mirrored)
        rng = np.random.default_rng(options.seed)  # every search resamples the same instants
        found = [_search(plan, embeddings, scorer, options, rng, mirrored, checks[plan.seq.key] if checks else None,
                         classifier_votes=independent) for plan in plans]
        for r in found:
            r.truth = (truth or {}).get(r.key)
        return found, views

    adapted = None
    try:
        checks = _domain_checks(model, plans, manifest, assembler, device, log)
        for key, check in checks.items():
            if not check.inside:
                others = [c for c in options.cues() if c != "classifier"]
                others = others if next(p for p in plans if p.seq.key == key).outlines else []
                decide = " and ".join(f"the {c}" for c in others)
                notes.append(f"{key}: {check.describe()}; " + (f"the classifier is left out, {decide} decide"
                                                               if others else "it is not used"))
                log(notes[-1])
            elif check.learnt:
                notes.append(f"{key}: {check.describe_learnt()}")
                log(notes[-1])
        results, views = search_all(model.scorer, checks)
        if options.adapt_steps > 0:
            results, more, adapted = _adapt_and_search(model, plans, results, assembler, options, search_all, checks,
                                                       log, progress)
            views += more
    finally:
        if hasattr(src, "decoder"):
            src.decoder.close()
    result = SyncResult(dataset=dataset, checkpoint=model.checkpoint, options=options, sequences=results,
                        device=str(device), source=where, seconds=0.0, views_embedded=views, notes=notes,
                        adapted=adapted)
    result.seconds = round(time.perf_counter() - t0, 2)
    write_outputs(result, out)
    return result


def _domain_checks(model: LoadedModel, plans: list[_Plan], manifest, assembler, device,
                   log) -> dict[str, domain.DomainCheck]:
    """Per sequence: is the classifier inside its domain on these cameras, and did it not learn them (see
    :mod:`.domain`)?"""
    sources = manifest.fingerprint.get("sequences", {})
    reference = model.reference if model.reference is not None else domain.make_reference(model, device, log)
    rng = np.random.default_rng(0)
    checks = {}
    for plan in plans:
        far = domain.far_frames(model.cfg, plan.seq.fps)
        images = {}
        for c in plan.cameras:
            frames = domain.sample_frames(plan.usable[c], far)
            images[c] = domain.crops(assembler, [(plan.index[c], 0, int(t)) for t in frames])
        digests = {c: sources.get(manifest.sequences[plan.index[c]].key, {}).get("videos", {}).get(c, {}).get("sha1")
                   for c in plan.cameras}
        checks[plan.seq.key] = domain.compare(domain.statistics(model.scorer, images, rng), reference,
                                              {c: d for c, d in digests.items() if d})
    return checks


def _adapt_and_search(model: LoadedModel, plans: list[_Plan], first: list[SequenceResult], assembler,
                      options: SyncOptions, search_all, checks, log, progress: bool):
    """--adapt: fine-tune a copy of the model on the pairs of the cameras the first search committed (see
    :mod:`.adapt`), search again with it, and keep the first search's estimates beside the new ones.

    The adapted model learnt the first answers, so it cannot vouch for them (see :func:`merge_adapted`)."""
    if not isinstance(model.scorer, PairNetScorer):
        raise ValueError("--adapt fine-tunes the model: it needs a PairNet scorer")
    bar = _bar(progress, "adapting to the session", options.adapt_steps)
    try:
        tuned, report = adapt(model.scorer.model, model.cfg, plans, first, assembler, steps=options.adapt_steps,
                              lr=options.adapt_lr, seed=options.seed, amp_dtype=model.scorer.amp_dtype, log=log,
                              progress=bar)
    finally:
        bar(None)
    if tuned is None:
        return first, 0, None
    log(report.describe())
    results, views = search_all(PairNetScorer(tuned, model.scorer.amp_dtype), checks, independent=False)
    for r, f in zip(results, first):
        merge_adapted(f.cameras, r.cameras, search.tolerance_frames(options.tolerance_s, r.fps))
    return results, views, report


def merge_adapted(first: list[CameraResult], second: list[CameraResult], tolerance: int) -> None:
    """The second search's cameras (``second``, in place) after adapting on the first's committed ones. The
    adapted model learnt the first answers, so it can neither vouch for them nor raise them: a camera the first
    search committed keeps the first search's estimate and support, or is no longer committed when the second
    search moves its peak; one the first search left undetermined stands as the second search committed it, where
    the adapted classifier counted in the scores but not as a confirmation (only the geometry, the motion and the
    camera loops confirm it)."""
    for fc, c in zip(first, second):
        c.first = fc.estimate
        if c.estimate.status == "reference" or not fc.estimate.determined:
            continue
        best = c.estimate.best
        if best is not None and abs(best - fc.estimate.offset) <= tolerance:
            c.estimate = fc.estimate
        else:
            c.estimate = dataclasses.replace(
                c.estimate, offset=None, status="not determined",
                reason=f"the adapted model moves it from the first search's {fc.estimate.offset:+d} frames to "
                       f"{'nowhere' if best is None else f'{best:+d}'}: the two searches disagree")


def _embed(plans: list[_Plan], assembler, scorer: PairScorer, batch: int, progress: bool, mirrored: bool = False):
    """Embeddings of every needed frame: {manifest index: (T, E) tensor, NaN rows where none was needed (or a
    decode failed)}; with ``mirrored`` the same of each frame's mirror image (the assembled crops flipped: nothing
    is decoded or assembled twice), else None; and how many views were embedded."""
    views = []
    for plan in plans:
        for c, need in _needed(plan).items():
            views += [(plan.index[c], 0, int(t)) for t in np.flatnonzero(need)]
    lengths = {plan.index[c]: plan.lengths[c] for plan in plans for c in plan.cameras}
    tables: list[dict[int, torch.Tensor]] = [{}, {}] if mirrored else [{}]
    flip = np.zeros(batch, bool)
    jitter = np.zeros((batch, 3), np.float32)
    bar = _bar(progress, "embedding frames" + (" and their mirror images" if mirrored else ""), len(views))
    try:
        for step, k in enumerate(range(0, len(views), batch)):
            chunk = views[k:k + batch]
            images, ok = assembler(chunk, flip[:len(chunk)], jitter[:len(chunk)], step)
            kept = [v for v, good in zip(chunk, ok) if good]
            for out, x in zip(tables, (images, images.flip(-1))):
                for (s, _, t), e in zip(kept, scorer.embed(x)):
                    if s not in out:
                        out[s] = torch.full((lengths[s], e.shape[0]), float("nan"), device=e.device)
                    out[s][t] = e
            bar(len(chunk))
    finally:
        bar(None)
    return tables[0], (tables[1] if mirrored else None), len(views)


def _bar(enabled: bool, label: str, total: int):
    """advance(n) / advance(None) to close: a rich progress bar on stderr, or nothing."""
    if not enabled or not total:
        return lambda n: None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    p = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                 console=Console(stderr=True))
    task = p.add_task(label, total=total)
    p.start()

    def advance(n):
        if n is None:
            p.stop()
        else:
            p.advance(task, n)
    return advance


def score_matrix(scorer: PairScorer, ea: torch.Tensor, eb: torch.Tensor, instants: np.ndarray, offsets: np.ndarray,
                 usable_b: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """(n, K) log-odds of (a at instants[i], b at instants[i] + offsets[k]); NaN where b's frame does not exist,
    is not usable or has no embedding."""
    t = instants[:, None]
    u = t + offsets[None, :]
    inside = (u >= 0) & (u < len(usable_b))
    uc = np.clip(u, 0, len(usable_b) - 1)
    have_b = torch.isfinite(eb).all(1).cpu().numpy()
    have_a = torch.isfinite(ea).all(1).cpu().numpy()
    valid = inside & usable_b[uc] & have_b[uc] & have_a[t]
    L = np.full(u.shape, np.nan, np.float32)
    ti = np.broadcast_to(t, u.shape)[valid]
    ui = u[valid]
    vals = []
    for k in range(0, len(ti), chunk):
        a = ea[torch.from_numpy(ti[k:k + chunk]).to(ea.device)]
        b = eb[torch.from_numpy(ui[k:k + chunk]).to(eb.device)]
        vals.append(scorer.log_odds(a, b).float().cpu().numpy())
    if vals:
        L[valid] = np.concatenate(vals)
    return L


def _search(plan: _Plan, embeddings: dict, scorer: PairScorer | None, options: SyncOptions, rng,
            mirrored: dict | None = None, check: domain.DomainCheck | None = None,
            classifier_votes: bool = True) -> SequenceResult:
    """Every pair's curve from the cues in use, the joint estimate, then :func:`confirm`."""
    curves, pairs, cue_curves = {}, {}, {}
    missing = torch.full((1, 1), float("nan"))
    trusted = scorer is not None and (check is None or check.inside)
    cues = options.cues()
    use_classifier = trusted and "classifier" in cues
    use_geometry = plan.outlines is not None and "geometry" in cues
    use_motion = (plan.outlines is not None and "motion" in cues
                  and all(o.motion is not None for o in plan.outlines.values()))

    def scores(table: dict, a: str, b: str, offsets) -> np.ndarray:
        ea = table.get(plan.index[a], missing.expand(plan.lengths[a], 1))
        eb = table.get(plan.index[b], missing.expand(plan.lengths[b], 1))
        return score_matrix(scorer, ea, eb, plan.instants[a], offsets, plan.usable[b])

    learnt = set(check.learnt) if check is not None else set()  # memory, not evidence (see domain.learnt_pairs)
    for a, b, offsets in plan.pairs:
        parts = {}
        if use_classifier and tuple(sorted((a, b))) not in learnt:
            L = scores(embeddings, a, b, offsets)
            if mirrored is not None:  # the same pairs with both views mirrored
                L = (L + scores(mirrored, a, b, offsets)) / 2
            parts["classifier"] = L
        cam_a, cam_b = plan.seq.view(a).camera, plan.seq.view(b).camera
        facing = use_geometry and not has_baseline(cam_a, cam_b)
        if use_geometry and not facing:
            pencil = tangency.Pencil(cam_a, cam_b)
            wa = pencil.wedges(0, plan.outlines[a])
            wb = pencil.wedges(1, plan.outlines[b])
            wb[~plan.usable[b][:len(wb)]] = np.nan
            G = tangency.cue_matrix(options.tangency, wa, wb, plan.instants[a], offsets, plan.seq.fps)
            if np.isfinite(G).any():
                parts["geometry"] = G
        if use_motion:  # no calibration needed: facing cameras see the person change pace as well
            M = motion.cue_matrix(options.motion, plan.outlines[a].motion, plan.outlines[b].motion,
                                  plan.instants[a], offsets, plan.seq.fps)
            if np.isfinite(M).any():
                parts["motion"] = M
        if parts:
            L = sum(parts.values())  # fused: NaN wherever a cue did not score, so only where every cue scored
        else:
            L = np.full((len(plan.instants[a]), len(offsets)), np.nan, np.float32)
        curve = search.Curve(a, b, offsets, L)
        curves[(a, b)] = curve
        cue_curves[(a, b)] = {k: search.Curve(a, b, offsets, v) for k, v in parts.items()}
        pairs[(a, b)] = search.analyse_curve(curve, rng=rng, replicates=options.replicates,
                                             min_support=options.min_support, tolerance=plan.tolerance,
                                             edge=a == plan.reference)
        if facing and not parts:  # say why nothing was scored, not only that
            pairs[(a, b)] = dataclasses.replace(pairs[(a, b)], reason=NO_TANGENTS)
    ref = plan.reference
    direct = {b: pairs[(ref, b)] for b in plan.cameras[1:]}
    if options.joint and len(plan.cameras) > 2:
        chosen = search.joint_offsets(plan.cameras, ref, curves, plan.span, rng=rng,
                                      replicates=options.joint_replicates, min_support=options.min_support,
                                      tolerance=plan.tolerance,
                                      start={c: e.best or 0 for c, e in direct.items()}, direct=direct)
    else:  # as joint_offsets gives it: the reference at 0 among the cameras, so its pairs can vote
        chosen = {ref: search.Estimate(0, 0, "reference"), **direct}
    in_loops = search.loop_estimates(curves, pairs, plan.tolerance)
    triplets = search.triplet_checks(plan.cameras, in_loops, plan.tolerance, sizes=(3, 4))
    voters = [c for c in CUES if c != "classifier" or classifier_votes]
    cams = [CameraResult(ref, search.Estimate(0, 0, "reference"), search.Estimate(0, 0, "reference"),
                         plan.lengths[ref])]
    cams += [CameraResult(c, confirm(c, chosen, cue_curves, triplets, in_loops, plan.tolerance, voters,
                                     None if trusted or scorer is None else check),
                          direct[c], plan.lengths[c]) for c in plan.cameras[1:]]
    return SequenceResult(key=plan.seq.key, folder=plan.seq.folder, fps=plan.seq.fps, reference=ref, span=plan.span,
                          cameras=cams, pairs=pairs, curves=curves, triplets=triplets,
                          applied={v.name: v.start for v in plan.seq.views} if plan.seq.sync_file else {},
                          left_out=plan.seq.left_out, cue_curves=cue_curves, domain=check)


CUE_COLOURS = {"classifier": "tab:grey", "geometry": "tab:olive", "motion": "tab:cyan"}
NO_TANGENTS = ("no usable tangents: the two cameras face each other, so their baseline runs through the person "
               "(its cameras are placed through their other pairs)")


def confirm(camera: str, chosen: dict[str, search.Estimate], cue_curves: dict, triplets: list[search.Triplet],
            pairs: dict[tuple[str, str], search.Estimate], tolerance: int, voters: list[str],
            outside: domain.DomainCheck | None = None) -> search.Estimate:
    """Commit ``camera``'s estimate only when independent evidence agrees: no cue significantly prefers another
    offset on any pair with this camera (at the offsets the joint hypothesis implies), and at least two of the
    classifier, the geometry, the motion and a consistent camera triplet confirm it. ``voters``: the cues that may
    confirm.
    The evidence is kept in ``extra["evidence"]``."""
    est = chosen[camera]
    hypothesis = {c: e.best for c, e in chosen.items()}
    say: dict[str, list[str]] = {"confirms": [], "contradicts": []}
    detail = {}
    for cue in voters:
        verdicts = []
        for (a, b), by_cue in cue_curves.items():
            if camera not in (a, b) or cue not in by_cue or hypothesis.get(a) is None or hypothesis.get(b) is None:
                continue
            # the geometry's per-instant scores follow the silhouettes' slow changes, and the motion's windows
            # overlap: their tests count neighbouring instants as dependent (on real footage the plain one let the
            # geometry vouch for offsets 50-170 ms wrong); the classifier's keeps the plain standard error
            # (calibrated, it silences right answers of short clips)
            v = search.vote(by_cue[cue], hypothesis[b] - hypothesis[a], tolerance, calibrated=cue != "classifier")
            verdicts.append(v.verdict)
            detail[f"{cue} {a}-{b}"] = dict(verdict=v.verdict, z=None if np.isnan(v.z) else round(v.z, 2),
                                            elsewhere=v.elsewhere)
            if v.verdict == "contradicts":
                say["contradicts"].append(f"the {cue} prefers {v.elsewhere:+d} frames for {b} against {a} "
                                          f"(z {v.z:.1f})")
        if "confirms" in verdicts:
            say["confirms"].append(cue)
    mine = [t for t in triplets if camera in t.cameras]
    def on_hypothesis(t: search.Triplet) -> bool:  # every pair of the loop where the joint estimate puts it
        edges = [tuple(sorted((t.cameras[i], t.cameras[(i + 1) % len(t.cameras)]), key=order.get))
                 for i in range(len(t.cameras))]
        return all(abs(pairs[k].offset - (hypothesis[k[1]] - hypothesis[k[0]])) <= tolerance for k in edges)

    order = {c: i for i, c in enumerate(chosen)}
    agree = [t for t in mine if t.consistent and on_hypothesis(t)]
    if agree:
        say["confirms"].append("loop " + "+".join(agree[0].cameras))
    for t in mine:
        if not t.consistent:
            say["contradicts"].append(f"the offsets of {'+'.join(t.cameras)} do not add up (off by {t.residual:+d})")
    est = dataclasses.replace(est, extra={**est.extra, "evidence": dict(confirmed_by=say["confirms"],
                                                                          contradicted_by=say["contradicts"],
                                                                          votes=detail)})
    reason = est.reason
    if est.determined and say["contradicts"]:
        reason = "the evidence disagrees: " + "; ".join(say["contradicts"])
    elif est.determined and len(say["confirms"]) < 2:
        got = say["confirms"][0] if say["confirms"] else "nothing"
        reason = (f"only one line of evidence ({got}) confirms it; a commitment needs two of the classifier, "
                  "the geometry, the motion and a consistent camera triplet")
    if outside is not None and reason:  # the classifier could have counted, had it been inside its domain
        reason += f" ({outside.describe()})"
    if reason != est.reason or est.determined and reason:
        est = dataclasses.replace(est, offset=None, status="not determined", reason=reason)
    return est


# ---------------------------------------------------------------- outputs


def _est_json(e: search.Estimate, fps: float) -> dict:
    return dict(offset_frames=e.offset, offset_s=None if e.offset is None else round(e.offset / fps, 4),
                status=e.status, reason=e.reason or None, best_frames=e.best,
                support=None if np.isnan(e.support) else round(e.support, 4),
                interval_frames=list(e.interval) if e.interval else None,
                margin=None if np.isnan(e.margin) else round(e.margin, 4),
                peak_log_odds=None if np.isnan(e.score) else round(e.score, 4),
                runner_up_frames=e.second, instants=e.instants,
                **({"from": e.extra["from"], "joint": e.extra["joint"]} if "from" in e.extra else {}),
                **({"evidence": e.extra["evidence"]} if "evidence" in e.extra else {}))


def result_json(result: SyncResult) -> dict:
    o = result.options
    seqs = []
    for s in result.sequences:
        seqs.append(dict(
            key=s.key, folder=str(s.folder) if s.folder else None, fps=s.fps, reference=s.reference,
            search_frames=[-s.span, s.span], applied_offsets=s.applied or None, truth=s.truth,
            determined=s.determined, figure=str(s.figure) if s.figure else None,
            domain=None if s.domain is None else dict(
                inside=s.domain.inside, reasons=s.domain.reasons, footage=s.domain.footage,
                reference={k: v for k, v in (s.domain.reference or {}).items() if k != "recordings"} or None,
                learnt_pairs=[list(p) for p in s.domain.learnt]),
            cameras=[dict(camera=c.camera, frames=c.frames, **_est_json(c.estimate, s.fps),
                          direct=_est_json(c.direct, s.fps),
                          **({"first_search": _est_json(c.first, s.fps)} if c.first is not None else {}))
                     for c in s.cameras],
            pairs=[dict(a=a, b=b, **_est_json(e, s.fps)) for (a, b), e in s.pairs.items()],
            triplets=[dict(cameras=list(t.cameras), residual_frames=t.residual, consistent=t.consistent)
                      for t in s.triplets]))
    return dict(
        what="offset_frames of a camera: its frame t + offset shows the reference's frame t (positive: it started "
             "recording earlier); measured on top of any applied sync.toml",
        dataset=str(result.dataset), checkpoint=str(result.checkpoint) if result.checkpoint else None,
        options=dataclasses.asdict(o), device=result.device, source=result.source, seconds=result.seconds,
        views_embedded=result.views_embedded, notes=result.notes,
        adapted=dataclasses.asdict(result.adapted) if result.adapted is not None else None, sequences=seqs)


def write_outputs(result: SyncResult, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    many = len(result.sequences) > 1
    for s in result.sequences:
        name = f"scores_{safe_name(s.key.replace('/', '__'))}.png" if many else "scores.png"
        s.figure = plot_sequence(s, out / name)
    files = {"json": out / "sync.json", "csv": out / "sync.csv"}
    files["json"].write_text(json.dumps(result_json(result), indent=2) + "\n")
    with open(files["csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sequence", "camera", "reference", "offset_frames", "offset_s", "status", "support",
                    "interval_lo", "interval_hi", "margin", "instants", "direct_offset_frames", "reason"])
        for s in result.sequences:
            for c in s.cameras:
                e = c.estimate
                w.writerow([s.key, c.camera, s.reference, "" if e.offset is None else e.offset,
                            "" if e.offset is None else f"{e.offset / s.fps:.4f}", e.status,
                            "" if np.isnan(e.support) else f"{e.support:.3f}",
                            e.interval[0] if e.interval else "", e.interval[1] if e.interval else "",
                            "" if np.isnan(e.margin) else f"{e.margin:.4f}", e.instants,
                            "" if c.direct.offset is None else c.direct.offset, e.reason])
    result.files = files
    return files


def plot_sequence(s: SequenceResult, path: Path) -> Path:
    """The mean log-odds against the offset for every camera pair, with its 95% band, the estimate and the
    runner-up peak (and the known truth, when given)."""
    from ..figures import pyplot, save_figure
    plt = pyplot()
    keys = list(s.curves)
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    offset_of = {c.camera: c.estimate.offset for c in s.cameras}
    for ax, key in zip(axes.flat, keys):
        curve, est = s.curves[key], s.pairs[key]
        x = curve.offsets / s.fps
        if est.interval is not None:  # where the peak lies over resampled instants: the estimate's uncertainty
            ax.axvspan((est.interval[0] - 0.5) / s.fps, (est.interval[1] + 0.5) / s.fps, color="tab:green", alpha=0.12,
                       lw=0)
        cues = s.cue_curves.get(key, {})
        ax.plot(x, curve.score, color="tab:blue", lw=1.2, label="+".join(cues) or None)
        if len(cues) > 1:  # what each cue says, where they were added up
            for cue, c in cues.items():
                ax.plot(x, c.score, color=CUE_COLOURS[cue], lw=0.8, alpha=0.8, label=cue)
        if cues:
            ax.legend(fontsize=6, loc="lower right")
        a, b = key
        if est.best is not None:
            ax.axvline(est.best / s.fps, color="tab:green" if est.determined else "grey", lw=1.2,
                       ls="-" if est.determined else ":")
        if est.second is not None:
            ax.plot([est.second / s.fps], [curve.at(est.second)], "v", color="tab:orange", ms=6)
        if s.truth and a in s.truth and b in s.truth:
            ax.axvline((s.truth[b] - s.truth[a]) / s.fps, color="tab:red", lw=1, ls="--")
        if a == s.reference and offset_of.get(b) is not None and offset_of[b] != est.offset:
            ax.axvline(offset_of[b] / s.fps, color="tab:purple", lw=1, ls="-.")  # the joint estimate differs
        title = (f"{b} vs {a}: {est.offset:+d} fr ({est.offset / s.fps:+.2f} s), support {est.support:.0%}"
                 if est.determined else f"{b} vs {a}: not determined")
        ax.set_title(title, fontsize=8)
        if not np.isfinite(curve.score).any():  # an empty panel says why
            ax.text(0.5, 0.5, textwrap.fill(est.reason, 40), transform=ax.transAxes, ha="center", va="center",
                    fontsize=7, color="grey")
        ax.set_xlabel("offset of the second camera (s)", fontsize=8)
        ax.set_ylabel("mean score (log-odds)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    legend = ("green: estimate (grey dotted: best peak, not determined); shaded: 95% interval of the peak over "
              "resampled instants; triangle: runner-up peak")
    if s.truth:
        legend += "; red dashed: truth"
    fig.suptitle(f"{s.key}: reference {s.reference}\n{legend}", fontsize=8)
    return save_figure(fig, path)


def render_table(result: SyncResult, console=None) -> None:
    from rich.console import Console
    from rich.table import Table
    console = console or Console()
    t = Table(title=f"syncssl-sync: offsets against the reference ({result.source}, {result.device}, "
                    f"{result.seconds:.0f} s)", title_justify="left")
    for col in ("sequence", "camera", "frames", "offset (frames)", "offset (s)", "95% interval", "support", "status"):
        t.add_column(col, justify="right" if col.startswith(("offset", "frames", "support")) else "left")
    for s in result.sequences:
        for c in s.cameras:
            e = c.estimate
            if e.status == "reference":
                t.add_row(s.key, c.camera, str(c.frames), "0", "0", "", "", "[dim]reference[/]")
                continue
            interval = f"{e.interval[0]:+d}..{e.interval[1]:+d}" if e.interval else ""
            status = "[green]ok[/]" if e.determined else "[yellow]not determined[/]"
            t.add_row("", c.camera, str(c.frames), "" if e.offset is None else f"{e.offset:+d}",
                      "" if e.offset is None else f"{e.offset / s.fps:+.3f}", interval,
                      "" if np.isnan(e.support) else f"{e.support:.0%}", status)
    console.print(t)
    for s in result.sequences:
        for c in s.cameras:
            if c.estimate.status == "not determined":
                best = "" if c.estimate.best is None else f" (best peak {c.estimate.best:+d} frames)"
                console.print(f"[yellow]{s.key} {c.camera}: not determined[/]{best}: {c.estimate.reason}",
                              highlight=False)
        bad = [tr for tr in s.triplets if not tr.consistent]
        if bad:
            console.print(f"[yellow]{s.key}: pairwise offsets do not add up[/] in " + "; ".join(
                f"{'+'.join(tr.cameras)} (off by {tr.residual:+d} frames)" for tr in bad))
        elif s.triplets:
            console.print(f"{s.key}: the pairwise offsets add up in all {len(s.triplets)} camera triplets")
    if result.adapted is not None:
        changed = sum(c.first is not None and (c.first.offset, c.first.status) != (c.estimate.offset, c.estimate.status)
                      for s in result.sequences for c in s.cameras)
        console.print(f"--adapt: {result.adapted.describe()}; {changed} camera(s) changed from the first search "
                      "(sync.json: first_search)")
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    for p in result.files.values():
        console.print(f"wrote {p}")


# ---------------------------------------------------------------- --apply


def apply_offsets(result: SyncResult, log=print, force: bool = False) -> list[Path]:
    """Write each sequence's offsets (composed with any applied ones) as its folder's sync.toml.

    A camera whose offset is not determined is *left out* of the aligned sequence (listed as ``excluded``), so
    that nothing downstream trains or evaluates on frames that may not be aligned; ``force`` applies its best
    peak instead. Cameras an earlier sync.toml excluded, and that this search did not measure, stay excluded."""
    if detect_layout(result.dataset) == "h36m":
        raise DataError(result.dataset, "--apply writes sync.toml into sequence folders; the Human3.6M layout has "
                                        "none (its cameras are synchronized in hardware)")
    written = []
    for s in result.sequences:
        if s.folder is None:
            raise DataError(result.dataset, f"{s.key}: no sequence folder to write sync.toml into")
        undetermined = [c.camera for c in s.cameras if not c.estimate.determined]
        if force and any(c.estimate.best is None for c in s.cameras if not c.estimate.determined):
            log(f"{s.key}: not applied: {', '.join(undetermined)} not determined and without any peak")
            continue
        # a peak that is not determined moves no offset already applied: --apply --force twice changes nothing
        stay = [c for c in undetermined if c in s.applied] if force else []
        if stay:
            log(f"{s.key}: {', '.join(stay)} not determined: the offset already applied stays (--force applies a "
                "best peak only to videos without a sync.toml)")
        if force and set(undetermined) - set(stay):
            log(f"{s.key}: applying the best peak of {', '.join(c for c in undetermined if c not in stay)}, which "
                "is not determined (--force)")
        left_out = [] if force else undetermined
        if left_out:
            alone = len(left_out) == len(s.cameras) - 1
            log(f"{s.key}: {', '.join(left_out)} not determined: left out of the aligned sequence"
                + (" (only the reference is left: it forms no multi-view pairs)" if alone else "")
                + f" (see {s.figure}; --force applies the best peak instead)")
        kept = [c for c in s.cameras if c.camera not in left_out]
        offset = {c.camera: c.estimate.offset if c.estimate.determined else 0 if c.camera in stay else
                  c.estimate.best for c in kept}
        # a camera's frame t + offset shows the reference's frame t: it skips that many more frames than it
        start = {c.camera: s.applied.get(c.camera, 0) + offset[c.camera] for c in kept}
        low = min(start.values())
        short = [c.camera for c in kept if start[c.camera] - low >= c.frames + s.applied.get(c.camera, 0)]
        if short:
            log(f"{s.key}: not applied: the offsets would skip all of {', '.join(short)}")
            continue

        def measured(c: CameraResult, offset=offset) -> str:
            if c.camera not in offset:
                return "not determined"
            return f"{offset[c.camera]:+d}" + ("" if c.estimate.determined else " (not determined: best peak)")

        comment = (f"measured by syncssl-sync against {s.reference} at {s.fps:g} fps: "
                   + ", ".join(f"{c.camera} {measured(c)}" for c in s.cameras[1:]))
        # an earlier file's exclusions stay: the search read the sequence without those cameras
        excluded = list(s.left_out) + left_out
        try:
            written.append(write_sync_file(s.folder, start, reference=s.reference, fps=s.fps, comment=comment,
                                           excluded=excluded))
        except OSError as e:  # a full disk, a read-only folder, a folder where the file goes...
            raise DataError(s.folder / "sync.toml", f"cannot be written ({e.strerror or e}); the offsets of {s.key} "
                            "are not applied") from None
    return written
