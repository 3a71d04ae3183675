"""Throughput of the synthetic data generator, and how fast PyAV decodes what it wrote: baselines to improve on.

Measured in one run, on one preset:

- **generate**: the whole dataset written by :func:`syncssl.data.synthetic.generate_report` (animate, render,
  encode, labels, masks; ``workers`` processes): camera-frames per second of wall time;
- **render only** and **encode only**, on the first sequence: the frames rendered into memory (no video), then
  the same frames encoded with the dataset's codec (no rendering), each as camera-frames per second of one
  core. The renderers are built (background ray-cast) before timing;
- **decode**: every video of the dataset decoded sequentially with PyAV into RGB arrays (what the CPU fallback
  of the training decoder does), frames per second of one core.

Timings on a shared machine are noisy: compare the ratios of one run, not absolute numbers across runs.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from ..data.decode.video import CODECS, VideoWriter
from ..data.synthetic import generate_report, get_preset, plan_sequences, render_sequence
from ..optional import av


def _decode_all(path: Path) -> int:
    n = 0
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            frame.to_ndarray(format="rgb24")
            n += 1
    return n


def run_synth_benchmark(preset: str = "tiny", seed: int = 0, codec: str = "mjpeg", workers: int = 1,
                        out_dir: Path | None = None, progress: bool = False) -> dict:
    """Generation, render-only, encode-only and decode throughput; see the module docstring."""
    p = get_preset(preset)
    with tempfile.TemporaryDirectory(prefix="syncssl-bench-synth-") as tmp:
        root = Path(out_dir or tmp) / f"synthetic-{p.name}"
        report = generate_report(root, p, seed, codec, workers, progress=progress, force=True)
        camera_frames = report.frames * report.cameras

        # split on one sequence, in this process: renderers already built by a warm-up frame
        spec = plan_sequences(p)[0]
        _, cameras, frames = render_sequence(spec, p, seed)
        t0 = time.perf_counter()
        rendered = [[image for image, _ in views] for views in frames]
        render_s = time.perf_counter() - t0
        n_split = len(rendered) * len(cameras)
        ext = CODECS[codec][0]
        t0 = time.perf_counter()
        for c, cam in enumerate(cameras):
            with VideoWriter(Path(tmp) / f"encode-only-{cam.name}{ext}", p.fps, codec, quality=p.quality) as w:
                for views in rendered:
                    w.write(views[c])
        encode_s = time.perf_counter() - t0

        videos = sorted(root.rglob(f"videos/*{ext}"))
        t0 = time.perf_counter()
        decoded = sum(_decode_all(v) for v in videos)
        decode_s = time.perf_counter() - t0
        if decoded != camera_frames:
            raise RuntimeError(f"decoded {decoded} frames but the dataset holds {camera_frames}")

    return {
        "benchmark": "synth", "preset": p.name, "codec": codec, "workers": report.workers, "cpus": os.cpu_count(),
        "frame_size": list(p.size), "sequences": report.sequences, "cameras": report.cameras,
        "camera_frames": camera_frames, "bytes": report.bytes, "bytes_per_camera_frame": report.bytes / camera_frames,
        "generate_s": report.seconds, "generate_camera_frames_per_s": camera_frames / report.seconds,
        "generate_render_share": report.render_s / max(report.render_s + report.encode_s, 1e-9),
        "split_camera_frames": n_split,
        "render_only_camera_frames_per_s": n_split / render_s,
        "encode_only_camera_frames_per_s": n_split / encode_s,
        "decode_frames_per_s": decoded / decode_s,
        "still_frames": report.still_frames,
    }


def print_synth_table(result: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    w, h = result["frame_size"]
    table = Table(title=f"synthetic generator: preset {result['preset']} ({result['sequences']} sequences x "
                        f"{result['cameras']} cameras, {w}x{h}, {result['codec']}, {result['workers']} workers, "
                        f"{result['cpus']} CPUs)")
    table.add_column("stage")
    table.add_column("camera-frames/s", justify="right")
    table.add_column("note")
    table.add_row("generate (all)", f"{result['generate_camera_frames_per_s']:.1f}",
                  f"{result['camera_frames']} camera-frames in {result['generate_s']:.1f} s; "
                  f"{100 * result['generate_render_share']:.0f}% of worker time rendering")
    table.add_row("render only", f"{result['render_only_camera_frames_per_s']:.1f}", "1 core, first sequence")
    table.add_row("encode only", f"{result['encode_only_camera_frames_per_s']:.1f}", "1 core, the same frames")
    table.add_row("decode (PyAV)", f"{result['decode_frames_per_s']:.1f}", "1 core, every video, to RGB arrays")
    console.print(table)
    console.print(f"size on disk: {result['bytes'] / 1e6:.1f} MB ({result['bytes_per_camera_frame'] / 1e3:.1f} kB "
                  f"per camera-frame, labels and masks included)")
