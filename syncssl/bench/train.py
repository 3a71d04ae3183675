"""Training throughput, four ways in one run, on the same dataset, model size and pair plans:

- ``e2e_tiles``: the real trainer reading person tiles (the default): plans -> tile gather -> fused op on a
  prefetch thread -> AMP, channels_last step;
- ``e2e_video``: the same trainer decoding the videos per batch (``data.source = video``);
- ``compute``: the same trainer stepping on batches already in memory (no data path at all);
- ``naive``: the baseline a user would write: a ``torch.utils.data.DataLoader`` whose dataset opens the
  videos with PyAV for every pair, crops/resizes/removes the background/flips/normalises with eager
  PyTorch ops, in fp32, NCHW, stepping the same PairNet with the same optimizer.

Reported: pairs/s of each, ``e2e_tiles_over_compute`` and ``e2e_video_over_compute`` (1 - the share of time
lost to the data path), ``over_naive`` (tiles e2e / naive), the share of step time spent waiting for data, and
decoded camera-frames/s of the video path. Timed steps exclude warm-up steps.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from ..models.pairnet import PairNet
from ..optional import av
from ..parallel import usable_cpus
from ..provenance import device_name
from ..train.config import load_config
from ..train.distributed import Dist
from ..train.trainer import PretextTrainer


def _timed(step_fn, steps: int, warmup: int, pairs_per_step: int, device: torch.device) -> float:
    for _ in range(warmup):
        step_fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step_fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * pairs_per_step / (time.perf_counter() - t0)


class NaivePairs(torch.utils.data.Dataset):
    """One pair per item, decoded and transformed the obvious way (the baseline to beat)."""

    def __init__(self, manifest, indices, plans, crop: int, mean, std, threshold_scale: float):
        self.manifest, self.indices, self.crop = manifest, indices, crop
        self.rows = [(p, r) for p in plans for r in range(len(p))]
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.threshold_scale = threshold_scale

    def __len__(self):
        return len(self.rows)

    def _frame(self, path, t: int) -> np.ndarray:
        with av.open(str(path)) as c:  # opened per frame, as a simple dataset does
            s = c.streams.video[0]
            c.seek(int(t / s.average_rate / s.time_base), stream=s, backward=True)
            for f in c.decode(s):
                if round(float(f.pts * s.time_base * s.average_rate)) >= t:
                    return f.to_ndarray(format="rgb24")
        raise IndexError(f"{path}: frame {t}")

    def __getitem__(self, i):
        plan, r = self.rows[i]
        seq = self.manifest.sequences[self.indices[int(plan.seq[r])]]
        views = []
        for v in (0, 1):
            cam = seq.cameras[int(plan.cam[r, v])]
            t = int(plan.frame[r, v])
            frame = torch.from_numpy(self._frame(cam.video, t + cam.start)).permute(2, 0, 1).float()
            bg = torch.from_numpy(np.array(self.manifest.background(cam.background_id))).permute(2, 0, 1).float()
            x0, y0, x1, y1 = (int(round(float(c))) for c in seq.boxes[t, int(plan.cam[r, v])])
            h, w = frame.shape[1:]
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(max(x1, x0 + 1), w), min(max(y1, y0 + 1), h)
            crop = F.interpolate(frame[None, :, y0:y1, x0:x1], size=(self.crop, self.crop), mode="bilinear")[0]
            bgc = F.interpolate(bg[None, :, y0:y1, x0:x1], size=(self.crop, self.crop), mode="bilinear")[0]
            threshold = self.manifest.backgrounds[cam.background_id].threshold * self.threshold_scale
            fg = ((crop - bgc).pow(2).sum(0, keepdim=True).sqrt() > threshold).float()  # the op's distance
            crop = crop * fg + self.mean * 255 * (1 - fg)
            if plan.flip[r, v]:
                crop = crop.flip(-1)
            views.append((crop / 255 - self.mean) / self.std)
        return torch.stack(views), int(plan.sync[r]), int(plan.flip_label[r])


def run_train_benchmark(dataset: str = "synthetic:small", preset: str = "cpu-small", steps: int = 100,
                        warmup: int = 5, batch_size: int | None = None, device: str = "auto",
                        data_root: str = "data", naive_workers: int | None = None, overrides=()) -> dict:
    from ..data.loading.loader import normalise_device
    extra = [f"data.dataset='{dataset}'", f"data.data_root='{data_root}'", "train.resume='none'",
             f"train.device='{device}'", "train.run_dir='runs/bench-train'", *overrides]
    if batch_size:
        extra.append(f"train.batch_size={batch_size}")
    dev = normalise_device("cuda" if (device == "auto" and torch.cuda.is_available()) or device == "cuda" else "cpu")
    out = {"device": device_name(), "steps": steps}
    for source in ("tiles", "video"):
        cfg = load_config(preset, None, extra + [f"data.source='{source}'"])
        trainer = PretextTrainer(cfg, Dist(device=dev), log=lambda *a: None, progress=False)
        pairs = cfg.train.batch_size
        try:
            from ..data.loading.loader import Prefetcher
            t_start = time.perf_counter()
            prefetch = Prefetcher(trainer.batcher, trainer.plan_of, 0, warmup + steps, cfg.data.prefetch)
            for _ in range(warmup):
                trainer.train_step(prefetch.next())
            prefetch.wait_s = 0.0
            t0 = time.perf_counter()
            e2e = _timed(lambda trainer=trainer, prefetch=prefetch: trainer.train_step(prefetch.next()),
                         steps, 0, pairs, dev)
            elapsed = time.perf_counter() - t0
            out[f"e2e_{source}_pairs_per_s"] = e2e
            out[f"e2e_{source}_data_wait_share"] = prefetch.wait_s / elapsed
            prefetch.close()
            if source == "video":  # every batch of the run has been decoded by now
                out["decoded_camera_frames_per_s"] = (sum(d.stats.decoded_frames for d in trainer.decoders)
                                                      / (time.perf_counter() - t_start))
                out["decoder"] = trainer.decoders[0].name
            if source == "tiles":
                out["data"] = trainer.data_description()
                # compute only: the same steps on batches already assembled, on the device
                batches = [trainer.batcher(trainer.plan_of(s)) for s in range(4)]
                it = iter(range(10**9))
                out["compute_pairs_per_s"] = _timed(
                    lambda trainer=trainer, batches=batches, it=it: trainer.train_step(batches[next(it) % 4]),
                    steps, warmup, pairs, dev)
                # the naive baseline: DataLoader + PyAV + eager transforms, fp32, NCHW
                out["naive_pairs_per_s"] = _naive(trainer, cfg, steps, warmup, dev, naive_workers)
                out.update(pairs_per_step=pairs, crop=cfg.data.crop_size, model=trainer.model.backbone.arch,
                           amp=str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "off")
        finally:
            trainer.close()
    compute = out["compute_pairs_per_s"]
    out.update(pairs_per_s=out["e2e_tiles_pairs_per_s"],
               e2e_tiles_over_compute=out["e2e_tiles_pairs_per_s"] / compute,
               e2e_video_over_compute=out["e2e_video_pairs_per_s"] / compute,
               e2e_over_compute=out["e2e_tiles_pairs_per_s"] / compute,
               over_naive=out["e2e_tiles_pairs_per_s"] / out["naive_pairs_per_s"])
    return out


def _naive(trainer, cfg, steps: int, warmup: int, dev: torch.device, workers: int | None) -> float:
    pairs = cfg.train.batch_size
    sampler = trainer.train_data.sampler
    plans = [sampler.plan(s) for s in range(steps + warmup)]
    dataset = NaivePairs(trainer.manifest, trainer.train_data.sequences, plans, cfg.data.crop_size, cfg.data.mean,
                         cfg.data.std, cfg.data.bg_threshold_scale)
    workers = min(4, usable_cpus()) if workers is None else workers
    loader = torch.utils.data.DataLoader(dataset, batch_size=pairs, num_workers=workers, shuffle=False)
    torch.manual_seed(0)
    model = PairNet(cfg.model).to(dev)  # fp32, NCHW
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr)
    batches = iter(loader)

    def step():
        views, sync, flip = next(batches)
        images = views.flatten(0, 1).to(dev)
        out = model(images)
        loss = F.cross_entropy(out["sync"], sync.to(dev)) + F.cross_entropy(out["flip"], flip.to(dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _timed(step, steps, warmup, pairs, dev)


def print_train_table(result: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table
    console = console or Console()
    table = Table(title=f"train throughput: {result['model']}, crop {result['crop']}, {result['pairs_per_step']} "
                        f"pairs/step, amp {result['amp']}, {result['device']}")
    for col in ("pipeline", "pairs/s", "of compute-only", "waiting for data"):
        table.add_column(col, justify="right" if col != "pipeline" else "left")
    compute = result["compute_pairs_per_s"]
    table.add_row(f"end to end, tiles ({result['data']} + fused op + prefetch)",
                  f"{result['e2e_tiles_pairs_per_s']:.1f}", f"{result['e2e_tiles_over_compute']:.2f}",
                  f"{result['e2e_tiles_data_wait_share']:.1%}")
    table.add_row(f"end to end, video ({result.get('decoder', '?')} decoding "
                  f"{result.get('decoded_camera_frames_per_s', 0):.0f} camera-frames/s)",
                  f"{result['e2e_video_pairs_per_s']:.1f}", f"{result['e2e_video_over_compute']:.2f}",
                  f"{result['e2e_video_data_wait_share']:.1%}")
    table.add_row("compute only (batches in memory)", f"{compute:.1f}", "1.00", "-")
    table.add_row("naive (DataLoader + PyAV + eager, fp32, NCHW)", f"{result['naive_pairs_per_s']:.1f}",
                  f"{result['naive_pairs_per_s'] / compute:.2f}", "-")
    console.print(table)
    console.print(f"e2e tiles / compute-only = {result['e2e_tiles_over_compute']:.2f}; e2e video / compute-only = "
                  f"{result['e2e_video_over_compute']:.2f}; e2e tiles / naive = {result['over_naive']:.2f}")
