"""Throughput of ``syncssl::assemble_pairs`` against the machine's copy bandwidth and an eager PyTorch chain.

Providers (each run on the same realistic batch, in the same process, best of `repeats`):

- ``cpp``: the C++ CPU kernel (CPU only, when ``syncssl._C`` is built);
- ``triton``: the Triton kernel (CUDA only);
- ``reference``: the vectorised PyTorch reference (:mod:`syncssl.ops.reference`);
- ``eager``: what a user would write without the fused op: per view, slice the crop, ``F.interpolate`` it,
  compare with the interpolated background crop (distance, shadow test, clean-up), blend, flip, normalise, cast,
  then one ``contiguous(channels_last)`` (:func:`eager_assemble`);
- ``compiled``: ``torch.compile`` of the PyTorch reference (inductor; compiled once per case, outside the timing);
- ``opencv``: the OpenCV chain a vision engineer would write (:func:`opencv_assemble`): per view ``warpAffine``
  (crop + bilinear resize, constant border) of the frame and of the background, ``absdiff``, the squared distance
  against the camera's threshold, ``flip``, then normalise and cast; without the shadow test and the clean-up
  (OpenCV has no such step), so it does less work than the op.

Byte count (GB/s = counted bytes / best time): output bytes (V * 3 * S * S * itemsize) plus, per view, the input
bytes touched: the number of source pixels inside the crop box clipped to the frame's valid region, capped at
4 * S * S (bilinear reads at most 4 taps per output pixel), times 3 bytes, times the number of images read
(frame, + background in bg modes 1/2, + substitute background when fill_index >= 0).

Copy bandwidth is measured in the same run with ``dst.copy_(src)`` of a footprint equal to the op's working set
(frame bank + backgrounds + output), so both see the same level of the memory hierarchy. The copy and the providers
are timed in interleaved rounds (best of `repeats` each), so that load from other processes hits all alike; on a
GPU each timing averages 20 back-to-back calls so that launch overheads do not hide the kernels. Ratios:
``assemble_cpp_over_copy`` = cpp GB/s / copy GB/s, ``assemble_cpp_over_eager`` = eager time / cpp time,
``assemble_triton_over_copy`` = triton GB/s / copy GB/s (None without CUDA), ``assemble_cpp_over_compiled`` =
compiled time / cpp time, ``assemble_cpp_over_opencv`` = opencv time / cpp time (None without OpenCV); per case,
and their geometric mean over the cases at the top level.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..ops import assemble as assemble_mod
from ..ops.assemble import IMAGENET_MEAN, IMAGENET_STD
from ..ops.reference import HOLE_FILL_FROM, SHADOW_FILL_FROM, SPECK_BELOW, assemble_pairs_reference
from .bandwidth import best_times, make_copy


@dataclass(frozen=True)
class BenchCase:
    """One benchmark configuration."""

    frame_w: int  # valid width of the frames (the bank is padded to the widest)
    frame_h: int  # valid height; frames alternate between frame_h and frame_h + pad_h rows, like Human3.6M's cameras
    size: int  # output S
    out_dtype: torch.dtype
    pad_h: int = 0

    @property
    def name(self) -> str:
        return f"{self.frame_w}x{self.frame_h} S{self.size} {str(self.out_dtype).removeprefix('torch.')}"


DEFAULT_CASES = (
    BenchCase(320, 240, 128, torch.float16),
    BenchCase(320, 240, 224, torch.bfloat16),
    BenchCase(1000, 1000, 128, torch.float16, pad_h=2),
    BenchCase(1000, 1000, 224, torch.bfloat16, pad_h=2),
)


def make_batch(case: BenchCase, pairs: int = 32, cameras: int = 4, device="cpu", seed: int = 0) -> dict:
    """A realistic op input: 2N distinct frames, each its camera's (smooth) background with sensor noise, a textured
    person ellipse and its darker floor shadow; person boxes of ~1/2 frame height around them (some past the frame
    edge), random flips, soft background removal with per-camera thresholds, the shadow test and the clean-up, half
    the views with a substituted background of another camera."""
    g = torch.Generator().manual_seed(seed)
    views = 2 * pairs
    height, width = case.frame_h + case.pad_h, case.frame_w

    def smooth(cells: int) -> torch.Tensor:  # a smooth random colour field (height, width, 3), float 0..255
        coarse = torch.rand(1, 3, cells, cells, generator=g) * 255
        return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)

    backgrounds = torch.stack([smooth(8) for _ in range(cameras)]).round().to(torch.uint8)
    camera = torch.stack([torch.randperm(cameras, generator=g)[:2] for _ in range(pairs)]).flatten()
    frame_hw = torch.tensor([[case.frame_h + (case.pad_h if c % 2 else 0), case.frame_w] for c in camera.tolist()],
                            dtype=torch.int32)
    box_h = 0.5 * frame_hw[:, 0].float() * (0.8 + 0.4 * torch.rand(views, generator=g))
    box_w = box_h * (0.9 + 0.2 * torch.rand(views, generator=g))
    cx = frame_hw[:, 1].float() * (0.1 + 0.8 * torch.rand(views, generator=g))
    cy = frame_hw[:, 0].float() * (0.2 + 0.6 * torch.rand(views, generator=g))
    boxes = torch.stack([cx - box_w / 2, cy - box_h / 2, cx + box_w / 2, cy + box_h / 2], dim=1)
    ys, xs = torch.arange(height).float()[:, None], torch.arange(width).float()[None, :]
    frames = torch.empty(views, height, width, 3, dtype=torch.uint8)
    for v in range(views):
        x, y, rx, ry = cx[v].item(), cy[v].item(), box_w[v].item() / 4, box_h[v].item() / 2
        body = ((xs - x) / rx) ** 2 + ((ys - y) / ry) ** 2 <= 1
        shade = (((xs - x - rx) / (2 * rx)) ** 2 + ((ys - y - ry) / (ry / 6)) ** 2 <= 1) & ~body
        frame = backgrounds[camera[v]].float() + 3 * torch.randn(height, width, 3, generator=g)
        frame[shade] *= 0.6
        frame[body] = smooth(4)[body] + 10 * torch.randn(int(body.sum()), 3, generator=g)
        frames[v] = frame.clamp(0, 255).round().to(torch.uint8)
    substitute = torch.rand(views, generator=g) < 0.5
    other = (camera + 1 + torch.randint(0, cameras - 1, (views,), generator=g)) % cameras
    batch = dict(
        frames=frames, frame_hw=frame_hw, src=torch.arange(views), boxes=boxes,
        flip=torch.rand(views, generator=g) < 0.5, backgrounds=backgrounds, bg_index=camera,
        fill_index=torch.where(substitute, other, torch.full_like(other, -1)),
        fill=torch.tensor(IMAGENET_MEAN) * 255, mean=torch.tensor(IMAGENET_MEAN), std=torch.tensor(IMAGENET_STD),
        bg_threshold=22.0 + 4.0 * torch.arange(cameras, dtype=torch.float32), size=case.size, bg_mode=2,
        bg_softness=10.0, shadow_min=0.5, shadow_chroma=0.05, clean=True, out_dtype=case.out_dtype,
    )
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def op_args(batch: dict) -> tuple:
    """The batch as the op's positional arguments, in schema order."""
    keys = ("frames", "frame_hw", "src", "boxes", "flip", "backgrounds", "bg_index", "fill_index", "fill", "mean",
            "std", "bg_threshold", "size", "bg_mode", "bg_softness", "shadow_min", "shadow_chroma", "clean",
            "out_dtype")
    return tuple(batch[k] for k in keys)


def counted_bytes(batch: dict) -> int:
    """Output bytes + input bytes touched, as defined in the module docstring."""
    size, boxes = batch["size"], batch["boxes"].cpu().double()
    hw = batch["frame_hw"].cpu()[batch["src"].cpu()].double()
    inside_w = (torch.minimum(boxes[:, 2], hw[:, 1]) - boxes[:, 0].clamp(min=0)).clamp(min=0)
    inside_h = (torch.minimum(boxes[:, 3], hw[:, 0]) - boxes[:, 1].clamp(min=0)).clamp(min=0)
    pixels = (inside_w * inside_h).clamp(max=4 * size * size)
    images = 1 + (batch["bg_mode"] != 0) + (batch["fill_index"].cpu() >= 0).double()
    views = boxes.shape[0]
    out_bytes = views * 3 * size * size * torch.empty((), dtype=batch["out_dtype"]).element_size()
    return int(out_bytes + (pixels * 3 * images).sum().item())


def eager_assemble(frames, frame_hw, src, boxes, flip, backgrounds, bg_index, fill_index, fill, mean, std,
                   bg_threshold, size, bg_mode, bg_softness, shadow_min, shadow_chroma, clean, out_dtype):
    """The op written the obvious way, one view at a time (the baseline the fused op must beat).

    The box is rounded out to whole pixels and clipped to the frame (as a user slicing the frame would), so it agrees
    with the op exactly only for integer boxes inside the frame that do not upsample; it does the same work: the
    Euclidean distance against the view's camera threshold, the shadow test and the 3x3 clean-up included.
    """
    mean_, std_ = mean.view(1, 3, 1, 1), std.view(1, 3, 1, 1)
    fill_ = fill.view(1, 3, 1, 1)
    neighbours = torch.ones(1, 1, 3, 3, device=frames.device)
    neighbours[0, 0, 1, 1] = 0
    hw = frame_hw.tolist()
    outs = []
    for _v, (s, (x0, y0, x1, y1), flipped, b, fi) in enumerate(
        zip(src.tolist(), boxes.tolist(), flip.tolist(), bg_index.tolist(), fill_index.tolist())
    ):
        h, w = hw[s]
        xa, ya = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
        xb, yb = min(int(math.ceil(x1)), w), min(int(math.ceil(y1)), h)

        def crop(image, rows=slice(ya, yb), cols=slice(xa, xb)):  # this view's box, bound now
            patch = image[rows, cols].permute(2, 0, 1)[None].float()
            return F.interpolate(patch, size=(size, size), mode="bilinear", align_corners=False)

        pix = crop(frames[s])
        fillv = crop(backgrounds[fi]) if fi >= 0 else fill_
        value = pix
        if bg_mode != 0:
            bgv = crop(backgrounds[b])
            thr = bg_threshold[b]
            d = (pix - bgv).pow(2).sum(1, keepdim=True).sqrt()
            candidate = d > thr
            shadow = torch.zeros_like(candidate)
            if shadow_chroma > 0:
                pb = (pix * bgv).sum(1, keepdim=True)
                bb = (bgv * bgv).sum(1, keepdim=True).clamp(min=1)
                pp = (pix * pix).sum(1, keepdim=True)
                shadow = (candidate & (pb >= shadow_min * bb) & (pb < bb)
                          & (pp * bb < (1 + shadow_chroma ** 2) * pb * pb))
            fg = candidate & ~shadow
            ramp = (0.5 + (d - thr) / bg_softness).clamp(0, 1)
            alpha = fg.float() if bg_mode == 1 else torch.where(shadow, 0.0, ramp)
            if clean:  # the neighbourhood is symmetric: cleaning before the flip is cleaning after it
                n = F.conv2d(fg.float(), neighbours, padding=1)
                alpha = torch.where(fg & (n < SPECK_BELOW), 0.0, alpha)
                alpha = torch.where((shadow & (n >= SHADOW_FILL_FROM)) | (~candidate & (n >= HOLE_FILL_FROM)), 1.0,
                                    alpha)
            value = alpha * pix + (1 - alpha) * fillv
        if flipped:
            value = value.flip(-1)
        outs.append(((value / 255 - mean_) / std_).to(out_dtype))
    return torch.cat(outs).contiguous(memory_format=torch.channels_last)


def opencv_assemble(frames, frame_hw, src, boxes, flip, backgrounds, bg_index, fill_index, fill, mean, std,
                    bg_threshold, size, bg_mode, bg_softness, shadow_min, shadow_chroma, clean, out_dtype):
    """The data path with OpenCV, per view on numpy arrays (see the module docstring for what it leaves out)."""
    import cv2
    import numpy as np
    frames_np, bgs_np = frames.numpy(), backgrounds.numpy()
    mean_np, std_np = mean.numpy() * 255, std.numpy() * 255
    thr2 = (bg_threshold.numpy().astype(np.float32)) ** 2
    fill_np = fill.numpy().astype(np.float32)
    out = np.empty((len(src), size, size, 3), np.float32)
    for v, (s, (x0, y0, x1, y1), flipped, b, fi) in enumerate(
            zip(src.tolist(), boxes.tolist(), flip.tolist(), bg_index.tolist(), fill_index.tolist())):
        h, w = frame_hw[s].tolist()
        sx, sy = (x1 - x0) / size, (y1 - y0) / size  # output pixel (j, i) <- source (x0 + (j + .5) sx - .5, ...)
        m = np.float32([[sx, 0, x0 + 0.5 * sx - 0.5], [0, sy, y0 + 0.5 * sy - 0.5]])
        warp = dict(dsize=(size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
        crop = cv2.warpAffine(frames_np[s, :h, :w], m, **warp).astype(np.float32)
        if bg_mode != 0:
            bgc = cv2.warpAffine(bgs_np[b, :h, :w], m, **warp)
            d = cv2.absdiff(crop, bgc.astype(np.float32))
            keep = (d * d).sum(-1) > thr2[b]
            fillv = cv2.warpAffine(bgs_np[fi, :h, :w], m, **warp).astype(np.float32) if fi >= 0 else fill_np
            crop = np.where(keep[..., None], crop, fillv)
        if flipped:
            crop = cv2.flip(crop, 1)
        out[v] = (crop - mean_np) / std_np
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(out_dtype)  # channels_last underneath, as the op's


def providers(device: torch.device) -> dict:
    """name -> kernel taking the op's positional arguments, for the providers available on `device`."""
    found = {}
    if device.type == "cpu" and assemble_mod.HAS_CPP_KERNEL:
        found["cpp"] = torch.ops.syncssl.assemble_pairs
    if device.type == "cuda" and assemble_mod.HAS_TRITON_KERNEL:
        from ..ops.triton_assemble import assemble_pairs_triton

        found["triton"] = assemble_pairs_triton
    found["reference"] = assemble_pairs_reference
    found["compiled"] = torch.compile(assemble_pairs_reference, dynamic=False)
    found["eager"] = eager_assemble
    if device.type == "cpu" and opencv_available():
        found["opencv"] = opencv_assemble
    return found


def opencv_available() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def _geomean(values):
    values = [v for v in values if v is not None]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def run_assemble_benchmark(device="cpu", sizes=DEFAULT_CASES, repeats: int = 5, pairs: int = 32,
                           providers_wanted: tuple[str, ...] | None = None) -> dict:
    """Time every provider on every case; see the module docstring for what is counted. Returns a plain dict."""
    device = torch.device(device)
    kernels = providers(device)
    if providers_wanted is not None:
        kernels = {k: v for k, v in kernels.items() if k in providers_wanted}
    cases = []
    for case in sizes:
        n = pairs
        if device.type == "cuda":  # a working set several times the L2 (H100/H200: 50-60 MB), else it measures cache
            l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 60 << 20)
            per_pair = 2 * (case.frame_h + case.pad_h) * case.frame_w * 3
            n = max(pairs, -(-4 * l2 // per_pair))
        batch = make_batch(case, pairs=n, device=device)
        args = op_args(batch)
        nbytes = counted_bytes(batch)
        footprint = sum(batch[k].numel() for k in ("frames", "backgrounds")) + nbytes
        copy, copied = make_copy(footprint // 2, device)
        fns = {"copy": copy,
               **{name: (lambda kernel=kernel, args=args: kernel(*args)) for name, kernel in kernels.items()}}
        seconds = best_times(fns, device, repeats=repeats, inner=20 if device.type == "cuda" else 1)
        copy_bps = copied / seconds.pop("copy")
        results = {name: {"time_ms": t * 1e3, "gbps": nbytes / t / 1e9} for name, t in seconds.items()}
        cpp, triton, eager = results.get("cpp"), results.get("triton"), results.get("eager")
        compiled, opencv = results.get("compiled"), results.get("opencv")
        cases.append({
            "case": case.name, "views": 2 * n, "size": case.size, "out_dtype": str(case.out_dtype),
            "bytes": nbytes, "copy_gbps": copy_bps / 1e9, "providers": results,
            "assemble_cpp_over_copy": cpp["gbps"] * 1e9 / copy_bps if cpp else None,
            "assemble_cpp_over_eager": eager["time_ms"] / cpp["time_ms"] if cpp and eager else None,
            "assemble_triton_over_copy": triton["gbps"] * 1e9 / copy_bps if triton else None,
            "assemble_cpp_over_compiled": compiled["time_ms"] / cpp["time_ms"] if cpp and compiled else None,
            "assemble_cpp_over_opencv": opencv["time_ms"] / cpp["time_ms"] if cpp and opencv else None,
        })
    return {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cases": cases,
        "opencv": opencv_available(),
        **{key: _geomean([c[key] for c in cases])
           for key in ("assemble_cpp_over_copy", "assemble_cpp_over_eager", "assemble_triton_over_copy",
                       "assemble_cpp_over_compiled", "assemble_cpp_over_opencv")},
    }


def print_assemble_table(result: dict, console=None) -> None:
    """A rich table: rows = cases, columns = copy and each provider in GB/s (time), then the ratios."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=max(Console().width, 150))  # all columns, also when piped
    names = list(dict.fromkeys(n for c in result["cases"] for n in c["providers"]))
    table = Table(title=f"assemble_pairs on {result['device']} ({result['threads']} threads): GB/s (ms)")
    for column in ["case", "MB", "copy", *names, "cpp/copy", "eager/cpp", "compiled/cpp", "opencv/cpp", "triton/copy"]:
        table.add_column(column, justify="left" if column == "case" else "right")

    def ratio(x):
        return "-" if x is None else f"{x:.2f}"

    for c in result["cases"]:
        cells = [c["case"], f"{c['bytes'] / 1e6:.1f}", f"{c['copy_gbps']:.1f}"]
        for n in names:
            p = c["providers"].get(n)
            cells.append("-" if p is None else f"{p['gbps']:.2f} ({p['time_ms']:.1f})")
        cells += [ratio(c["assemble_cpp_over_copy"]), ratio(c["assemble_cpp_over_eager"]),
                  ratio(c["assemble_cpp_over_compiled"]), ratio(c["assemble_cpp_over_opencv"]),
                  ratio(c["assemble_triton_over_copy"])]
        table.add_row(*cells)
    console.print(table)
    console.print(
        "geometric means: cpp/copy {}, eager/cpp {}, compiled/cpp {}, opencv/cpp {}, triton/copy {}".format(
            ratio(result["assemble_cpp_over_copy"]), ratio(result["assemble_cpp_over_eager"]),
            ratio(result["assemble_cpp_over_compiled"]), ratio(result["assemble_cpp_over_opencv"]),
            ratio(result["assemble_triton_over_copy"]))
    )
