"""``syncssl-data inspect``: what a dataset holds, which decoders can read it, and every note or problem.

:func:`inspect_dataset` builds a structured :class:`Report` (testable); :func:`render_report` prints it with rich.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .dataset import Dataset

# Which decoder reads which codec (FFmpeg codec names). PyAV (FFmpeg) reads them all.
DALI_CPU_CODECS = frozenset({"mjpeg", "vp8", "vp9"})
DALI_GPU_CODECS = frozenset({"h264", "hevc", "av1", "vp9", "mpeg4", "mjpeg"})  # NVDEC


def decoders_for(codec: str) -> list[str]:
    """Decoders that can read ``codec``, fastest first."""
    out = []
    if codec in DALI_GPU_CODECS:
        out.append("DALI GPU (NVDEC)")
    if codec in DALI_CPU_CODECS:
        out.append("DALI CPU")
    return out + ["PyAV"]


@dataclass
class CameraSummary:
    """One camera name across the sequences that have it."""

    name: str
    sequences: int  # how many sequences have this camera
    codecs: list[str]  # distinct codecs of its videos
    sizes: list[tuple[int, int]]  # distinct (width, height) of its videos
    lens_model: str


@dataclass
class SequenceSummary:
    key: str  # "<subject>/<sequence>"
    action: str
    fps: float
    num_frames: int  # usable frames after truncation
    cameras: int
    codecs: list[str]
    sizes: list[tuple[int, int]]
    poses: bool  # 3D poses present
    boxes: bool
    masks: bool
    offsets: dict[str, int] | None = None  # camera -> frames skipped at its start, from an applied sync.toml
    left_out: tuple[str, ...] = ()  # cameras that sync.toml excludes (offset not known)


@dataclass
class Report:
    path: Path
    layout: str  # "dataset" | "h36m" | "session"
    layout_description: str
    name: str
    source: str
    fps: float
    skeleton: str
    splits: dict[str, list[str]]
    subjects: list[str]
    sequences: list[SequenceSummary]
    cameras: list[CameraSummary]
    codecs: dict[str, tuple[int, list[str]]]  # codec -> (number of videos, decoders that read it)
    num_frames: int  # usable frames over all sequences (per camera)
    num_videos: int
    deep: bool  # every frame was decoded
    notes: list[str] = field(default_factory=list)

    @property
    def labelled_sequences(self) -> int:
        return sum(s.poses for s in self.sequences)

    @property
    def synced_sequences(self) -> int:
        return sum(s.offsets is not None for s in self.sequences)


def summarize(dataset: Dataset, layout: str, *, deep: bool = False) -> Report:
    from . import LAYOUTS
    seqs = []
    for s in dataset.sequences:
        seqs.append(SequenceSummary(
            key=s.key, action=s.action, fps=s.fps, num_frames=s.num_frames, cameras=len(s.views),
            codecs=sorted({v.codec for v in s.views}), sizes=sorted({v.camera.size for v in s.views}),
            poses=s.poses3d is not None, boxes=s.boxes is not None, masks=bool(s.masks),
            offsets={v.name: v.start for v in s.views} if s.sync_file is not None else None, left_out=s.left_out))
    cams: dict[str, list] = {}
    for s in dataset.sequences:
        for v in s.views:
            cams.setdefault(v.name, []).append(v)
    cameras = [CameraSummary(name=n, sequences=len(vs), codecs=sorted({v.codec for v in vs}),
                             sizes=sorted({v.camera.size for v in vs}), lens_model=vs[0].camera.model)
               for n, vs in cams.items()]
    videos = Counter(v.codec for s in dataset.sequences for v in s.views)
    codecs = {c: (n, decoders_for(c)) for c, n in sorted(videos.items())}
    return Report(path=dataset.root, layout=layout, layout_description=LAYOUTS[layout], name=dataset.name,
                  source=dataset.source, fps=dataset.fps, skeleton=dataset.skeleton, splits=dataset.splits,
                  subjects=dataset.subjects, sequences=seqs, cameras=cameras, codecs=codecs,
                  num_frames=dataset.num_frames, num_videos=sum(videos.values()), deep=deep,
                  notes=list(dataset.notes))


def inspect_dataset(path: str | Path, *, deep: bool = False, frame_tolerance: int | None = None,
                    skip_broken: bool = False) -> Report:
    """Opens ``path`` (any layout) and summarises it; ``deep`` decodes every frame of every video."""
    from . import detect_layout, open_dataset
    layout = detect_layout(path)
    ds = open_dataset(path, verify="all" if deep else "ends", frame_tolerance=frame_tolerance,
                      skip_broken=skip_broken)
    return summarize(ds, layout, deep=deep)


def _sizes(sizes) -> str:
    return ", ".join(f"{w}x{h}" for w, h in sizes)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def render_report(report: Report, console=None) -> None:
    from rich.console import Console
    from rich.table import Table
    console = console or Console()

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("path", str(report.path))
    head.add_row("layout", report.layout_description)
    head.add_row("name", f"{report.name} (source: {report.source}, skeleton: {report.skeleton})")
    head.add_row("content", f"{_count(len(report.subjects), 'subject')}, {_count(len(report.sequences), 'sequence')}, "
                            f"{_count(report.num_videos, 'video')}, {report.num_frames} frames per camera, "
                            f"{report.fps:g} fps")
    head.add_row("splits", "; ".join(f"{k}: {', '.join(v)}" for k, v in report.splits.items()) or "none")
    head.add_row("labels", f"3D poses in {report.labelled_sequences} of {len(report.sequences)} sequences")
    if report.synced_sequences:
        head.add_row("sync", f"camera offsets applied from sync.toml in {report.synced_sequences} of "
                             f"{len(report.sequences)} sequences (frames skipped at each video's start)")
    head.add_row("checked", "every frame decoded (--deep)" if report.deep
                 else "packets counted, first and last frame decoded (--deep decodes every frame)")
    console.print(head)

    t = Table(title="cameras", title_justify="left")
    for c in ("camera", "sequences", "codecs", "sizes", "lens"):
        t.add_column(c)
    for c in report.cameras:
        t.add_row(c.name, str(c.sequences), ", ".join(c.codecs), _sizes(c.sizes), c.lens_model)
    console.print(t)

    t = Table(title="codecs and the decoders that read them", title_justify="left")
    for c in ("codec", "videos", "decoders"):
        t.add_column(c)
    for codec, (n, decs) in report.codecs.items():
        t.add_row(codec, str(n), ", ".join(decs))
    console.print(t)
    cpu_slow = [c for c, (_, d) in report.codecs.items() if "DALI CPU" not in d]
    if cpu_slow:
        console.print(f"[yellow]without a GPU only PyAV reads {', '.join(cpu_slow)}; transcoded to MJPEG, "
                      f"DALI's CPU decoder would read {'it' if len(cpu_slow) == 1 else 'them'}[/]")

    t = Table(title="sequences", title_justify="left")
    t.add_column("sequence", no_wrap=True)
    for c in ("action", "frames", "fps", "cams", "codecs", "sizes", "labels"):
        t.add_column(c)
    if report.synced_sequences:
        t.add_column("sync offsets (frames)")
    for s in report.sequences:
        labels = [name for name, present in (("poses", s.poses), ("boxes", s.boxes), ("masks", s.masks)) if present]
        row = [s.key, s.action, str(s.num_frames), f"{s.fps:g}", str(s.cameras), ", ".join(s.codecs),
               _sizes(s.sizes), ", ".join(labels) or "[dim]none[/]"]
        if report.synced_sequences:
            row.append(", ".join([f"{k} {v}" for k, v in s.offsets.items()] + [f"{c} left out" for c in s.left_out])
                       if s.offsets is not None else "[dim]-[/]")
        t.add_row(*row)
    console.print(t)

    if report.notes:
        console.print(f"[bold]notes[/] ({len(report.notes)}): what was fixed up on the way in")
        for n in report.notes:
            console.print(f"  - {n}", markup=False, highlight=False)
    else:
        console.print("[bold]notes[/]: none, everything matched exactly")
    console.print("[green]valid[/]")
