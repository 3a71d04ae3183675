"""Decode throughput of training pairs: the project's decoders (PyAV; DALI on CPU, and on GPU when CUDA is present)
against the decoders a user would reach for instead (OpenCV's ``VideoCapture``, torchcodec where it loads), in one
run, on the same random pairs.

The workload is the trainer's: the pair sampler plans random pairs (two cameras of one sequence, t and t + d),
each pair is two single-frame requests, and a batch of requests goes to the decoder at once. Every backend
decodes the same plans; each is warmed up once over them (files indexed, containers opened, pipeline built),
then timed best-of-``repeats`` over ``batches`` batches (best-of: the pass least disturbed by other load), the
backends' passes interleaved round-robin so that load from other processes shifts all of them alike.

Both CPU backends are measured with 1 thread and with one thread per core (PyAV's thread pool decodes files in
parallel, DALI's worker threads samples); all are reported, and the ratios compare the faster of each. The peers
seek to each frame and read it, as a user's dataset class does (``VideoCapture.set(CAP_PROP_POS_FRAMES)`` +
``read``, torchcodec's ``VideoDecoder[i]``), with the files kept open and one thread per core over the files.
``decode_pyav_over_opencv`` = the project's PyAV decoder's pairs/s over OpenCV's; ``decode_pyav_over_torchcodec``
likewise (None where torchcodec does not load: ``skipped`` says why).

Without a dataset, a fixture is written: ``cameras`` x ``sequences`` MJPEG .avi files, 320x240, textured
content moving every frame (JPEG sizes of a high-quality camera stream: about 30 kB a frame).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from ..data.decode import FrameRequest, dali_available, index_video, make_decoder
from ..data.decode.video import VIDEO_EXTENSIONS, write_video
from ..data.loading.sampling import PairSampler, SamplerSequence, SamplingConfig


def write_fixture(root: Path, cameras: int = 4, sequences: int = 3, size: tuple[int, int] = (320, 240),
                  frames: int = 120, fps: float = 50.0, codec: str = "mjpeg", seed: int = 0) -> Path:
    """``root/S1/seq<j>/videos/cam<c>.<ext>``: smooth random texture scrolling under a moving bright blob."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    for j in range(sequences):
        for c in range(cameras):
            coarse = rng.integers(0, 256, (h // 8 + 4, w // 8 + 4, 3)).astype(np.float32)
            texture = np.kron(coarse, np.ones((8, 8, 1), np.float32))  # blocky at 8 px, then smoothed
            texture = (texture + np.roll(texture, 3, 0) + np.roll(texture, 3, 1) + np.roll(texture, (3, 3), (0, 1))) / 4
            fine = rng.normal(0, 3, texture.shape).astype(np.float32)  # sensor-like grain
            out = []
            for t in range(frames):
                dx, dy = (2 * t) % 32, t % 32
                img = texture[dy:dy + h, dx:dx + w] + fine[dy:dy + h, dx:dx + w]
                cx = w / 2 + w / 4 * np.sin(2 * np.pi * (t / frames + c / cameras))
                cy = h / 2 + h / 6 * np.cos(2 * np.pi * t / frames)
                blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (h / 8) ** 2))[..., None]
                out.append(np.clip(img * (1 - blob) + 230 * blob, 0, 255).astype(np.uint8))
            folder = root / "S1" / f"seq{j}" / "videos"
            folder.mkdir(parents=True, exist_ok=True)
            ext = {"mjpeg": ".avi", "vp9": ".webm", "h264": ".mp4"}[codec]
            write_video(folder / f"cam{c}{ext}", out, fps, codec)
    return root


def find_sequences(root: Path) -> list[dict]:
    """Every ``<...>/videos/`` folder under root with at least one video: one synchronized sequence each."""
    found = []
    for folder in sorted({p.parent for p in Path(root).rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS
                          and p.parent.name == "videos"}):
        videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
        infos = [index_video(p) for p in videos]
        found.append({"key": str(folder.parent.relative_to(root)), "videos": videos,
                      "codecs": [i.codec for i in infos], "sizes": [i.size for i in infos],
                      "num_frames": min(i.num_frames for i in infos), "fps": infos[0].fps or 50.0})
    if not found:
        raise FileNotFoundError(f"{root}: no videos/<camera>.<ext> files found")
    return found


def plan_requests(plan, sequences: list[dict]) -> list[FrameRequest]:
    """Two single-frame requests per pair: view a (camera cam[:,0], frame t), view b (cam[:,1], t + d)."""
    requests = []
    for i in range(len(plan)):
        s = sequences[int(plan.seq[i])]
        for v in range(2):
            c = int(plan.cam[i, v])
            requests.append(FrameRequest(s["videos"][c], plan.frame[i, v:v + 1], s["codecs"][c], s["sizes"][c]))
    return requests


def _timed_pass(decoder, batches: list[list[FrameRequest]], device: str) -> float:
    start = time.perf_counter()
    for requests in batches:
        out = decoder.decode(requests)
        if any(o is None for o in out):
            raise RuntimeError(f"{decoder!r} skipped requests: {decoder.stats.failures}")
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _measure_all(decoders: dict, batches: list[list[FrameRequest]], repeats: int) -> dict:
    """Best-of-``repeats`` per decoder, the passes interleaved (round robin) so that changing load from other
    processes hits every backend alike."""
    for decoder, device in decoders.values():
        _timed_pass(decoder, batches, device)  # warm-up: index files, open containers, build the pipeline
    before = {name: d.stats.as_dict() for name, (d, _) in decoders.items()}
    times = {name: [] for name in decoders}
    for _ in range(repeats):
        for name, (decoder, device) in decoders.items():
            times[name].append(_timed_pass(decoder, batches, device))
    pairs = sum(len(b) for b in batches) // 2
    results = {}
    for name, (decoder, _) in decoders.items():
        after = decoder.stats.as_dict()
        used = after["used_frames"] - before[name]["used_frames"]
        decoded = after["decoded_frames"] - before[name]["decoded_frames"]
        best = min(times[name])
        results[name] = {"threads": decoder.num_threads, "pairs_per_s": pairs / best,
                         "frames_per_s": 2 * pairs / best, "best_s": best, "median_s": float(np.median(times[name])),
                         "decoded_per_used": decoded / used if used else 0.0}
    return results


class _Peer:
    """A decoder a user would reach for, behind the project's ``decode(requests)`` contract (for timing only):
    files kept open, the requests of one file read in order by one thread, files spread over ``num_threads``."""

    name = "peer"

    def __init__(self, num_threads: int):
        from concurrent.futures import ThreadPoolExecutor

        from ..data.decode import DecodeStats
        self.num_threads, self.stats, self._open = num_threads, DecodeStats(), {}
        self._pool = ThreadPoolExecutor(num_threads) if num_threads > 1 else None

    def decode(self, requests: list[FrameRequest]) -> list[torch.Tensor]:
        by_file: dict = {}
        for k, r in enumerate(requests):
            by_file.setdefault(r.path, []).append(k)
        out: list = [None] * len(requests)

        def run(path):
            reader = self._open.get(path) or self._open.setdefault(path, self.open(path))
            for k in by_file[path]:
                out[k] = torch.from_numpy(np.stack([self.read(reader, int(i)) for i in requests[k].frames]))

        list(self._pool.map(run, by_file) if self._pool else map(run, by_file))
        n = sum(len(r.frames) for r in requests)
        self.stats.used_frames += n
        self.stats.decoded_frames += n  # what the library decodes to seek is not visible
        return out

    def close(self):
        if self._pool:
            self._pool.shutdown()


class OpenCVPeer(_Peer):
    name = "opencv"

    def open(self, path):
        import cv2
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise RuntimeError(f"{path}: OpenCV cannot open it")
        return cap

    def read(self, cap, i: int) -> np.ndarray:
        import cv2
        cap.set(cv2.CAP_PROP_POS_FRAMES, i)
        ok, bgr = cap.read()
        if not ok:
            raise RuntimeError(f"OpenCV could not read frame {i}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self):
        super().close()
        for cap in self._open.values():
            cap.release()


class TorchcodecPeer(_Peer):
    name = "torchcodec"

    def __init__(self, num_threads: int):
        from torchcodec.decoders import VideoDecoder  # noqa: F401  (fails here if it does not load)
        super().__init__(num_threads)

    def open(self, path):
        from torchcodec.decoders import VideoDecoder
        return VideoDecoder(str(path), dimension_order="NHWC")

    def read(self, decoder, i: int) -> np.ndarray:
        return decoder[i].numpy()


def make_peer(kind: str, threads: int):
    """A peer decoder, or the reason it cannot run here (ImportError and load failures are reasons, not crashes)."""
    try:
        return {"opencv": OpenCVPeer, "torchcodec": TorchcodecPeer}[kind](threads), None
    except Exception as e:  # noqa: BLE001 - e.g. torchcodec's libraries failing to load next to this torch
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


def _name(kind: str, threads: int) -> str:
    return f"{kind}_{threads}_thread{'s' if threads > 1 else ''}"


def run_decode_benchmark(root: Path | str | None = None, pairs: int = 32, batches: int = 20, seed: int = 0,
                         repeats: int = 3, workdir: Path | str | None = None, progress=None) -> dict:
    """pairs/s, frames/s and decoded frames per used frame of each backend on the same random pairs.

    root: a dataset (any folder of ``videos/<camera>.<ext>`` sequences) or None for a fixture written to
    ``workdir`` (default: a temporary folder). Each CPU backend runs with 1 thread and with one per core.
    ``decode_dali_over_pyav`` = the faster DALI CPU configuration's pairs/s over the faster PyAV configuration's
    (None where DALI cannot run); ``decode_dali_gpu_over_pyav`` likewise for DALI on GPU (with CUDA).
    """
    say = progress or (lambda _msg: None)
    cleanup = None
    if root is None:
        import tempfile
        if workdir is None:
            cleanup = tempfile.TemporaryDirectory(prefix="syncssl-bench-decode-")
            workdir = cleanup.name
        say("writing the fixture videos")
        root = write_fixture(Path(workdir) / "fixture")
        source = "fixture: 4 cameras x 3 sequences, 320x240, 120 frames, MJPEG .avi"
    else:
        source = str(root)
    try:
        sequences = find_sequences(Path(root))
        sampler = PairSampler([SamplerSequence(s["num_frames"], len(s["videos"]), s["fps"], name=s["key"])
                               for s in sequences], SamplingConfig(batch_size=pairs), seed=seed)
        plans = [sampler.plan(step) for step in range(batches)]
        work = [plan_requests(p, sequences) for p in plans]
        codecs = {c for s in sequences for c in s["codecs"]}
        cores = os.cpu_count() or 1
        thread_counts = [1, cores] if cores > 1 else [1]
        configs = [(_name(kind, n), kind, "cpu", n) for kind in ("pyav", "dali_cpu") for n in thread_counts
                   if kind == "pyav" or dali_available()]
        if dali_available() and torch.cuda.is_available():
            configs.append(("dali_gpu", "dali", "cuda", cores))
        decoders, skipped = {}, {}
        try:
            for name, kind, device, threads in configs:
                try:
                    decoders[name] = make_decoder(kind.split("_")[0], device, codecs, num_threads=threads), device
                except (ValueError, RuntimeError) as e:
                    skipped[name] = str(e)
            for kind in ("opencv", "torchcodec"):
                peer, why = make_peer(kind, cores)
                if peer is None:
                    skipped[kind] = why
                else:
                    decoders[kind] = peer, "cpu"
            say(f"measuring {', '.join(decoders)} (interleaved, best of {repeats})")
            results = _measure_all(decoders, work, repeats)
        finally:
            for decoder, _ in decoders.values():
                decoder.close()
    finally:
        if cleanup is not None:
            cleanup.cleanup()

    def best(prefix):
        return max((r["pairs_per_s"] for n, r in results.items() if n.startswith(prefix)), default=None)

    def ratio(prefix):
        return best(prefix) / best("pyav") if best(prefix) and best("pyav") else None

    return {
        "source": source,
        "codecs": sorted(codecs),
        "pairs_per_batch": pairs,
        "batches": batches,
        "repeats": repeats,
        "cpus": cores,
        "cuda": torch.cuda.is_available(),
        "backends": results,
        "skipped": skipped,
        "decode_dali_over_pyav": ratio("dali_cpu"),
        "decode_dali_gpu_over_pyav": ratio("dali_gpu"),
        "decode_pyav_over_opencv": best("pyav") / best("opencv") if best("opencv") else None,
        "decode_pyav_over_torchcodec": best("pyav") / best("torchcodec") if best("torchcodec") else None,
    }


def print_decode_table(result: dict, console=None) -> None:
    """The result as a rich table."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"decode: {result['source']} ({result['pairs_per_batch']} pairs x {result['batches']} "
                        f"batches, best of {result['repeats']}, {result['cpus']} CPUs)")
    for col in ("backend", "threads", "pairs/s", "frames/s", "decoded/used"):
        table.add_column(col, justify="right" if col != "backend" else "left")
    for name, r in result["backends"].items():
        table.add_row(name, str(r["threads"]), f"{r['pairs_per_s']:.0f}", f"{r['frames_per_s']:.0f}",
                      f"{r['decoded_per_used']:.2f}")
    console.print(table)
    for key in ("decode_pyav_over_opencv", "decode_pyav_over_torchcodec", "decode_dali_over_pyav",
                "decode_dali_gpu_over_pyav"):
        if result[key] is not None:
            console.print(f"{key} = {result[key]:.2f}")
    for name, why in result["skipped"].items():
        console.print(f"{name}: skipped ({why})")
