"""The plain PyTorch reference of ``syncssl::assemble_pairs``: readable, vectorised, exact.

The semantics are written out in :mod:`syncssl.ops.assemble`; this file is their executable form, and the C++
and Triton kernels are tested against it. It gathers the four bilinear taps explicitly (no ``grid_sample``) so
that the rule for taps outside a frame's valid region is applied exactly. Works on CPU and CUDA tensors.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# Clean-up (step 3b): a foreground pixel with fewer than SPECK_BELOW foreground neighbours (of 8) is a speck; a
# shadow pixel with at least SHADOW_FILL_FROM of them, and a background pixel with at least HOLE_FILL_FROM, are body.
SPECK_BELOW = 1
SHADOW_FILL_FROM = 3
HOLE_FILL_FROM = 5


@dataclass
class ViewSamples:
    """The per-pixel quantities of the op before blending, each (V, S, S, 3) float32 in 0..255 units."""

    pix: Tensor  # bilinear sample of the view's frame (outside taps take ``fillv``)
    bgv: Tensor  # bilinear sample of the view's camera background (outside taps take ``fillv``); zeros in mode 0
    fillv: Tensor  # the fill value F: the constant fill, or the sample of the substitute background

    def difference(self) -> Tensor:
        """d: the Euclidean RGB distance between frame and background, (V, S, S)."""
        diff = self.pix - self.bgv
        return _dot(diff, diff).sqrt()

    def classes(self, threshold: Tensor, shadow_min: float, shadow_chroma: float) -> tuple[Tensor, Tensor]:
        """(candidate, shadow), (V, S, S) bool each: d above the view's threshold (V,), and which of those pixels
        are the background in shadow (none when ``shadow_chroma`` is 0). Foreground is candidate and not shadow."""
        candidate = self.difference() > threshold[:, None, None]
        if shadow_chroma <= 0:
            return candidate, torch.zeros_like(candidate)
        pb = _dot(self.pix, self.bgv)
        bb = _dot(self.bgv, self.bgv).clamp(min=1)
        pp = _dot(self.pix, self.pix)
        shadow = (candidate & (pb >= shadow_min * bb) & (pb < bb)
                  & (pp * bb < (1 + shadow_chroma * shadow_chroma) * (pb * pb)))
        return candidate, shadow


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-pixel dot product over the channels, summed R, G, B in that order (the kernels' order)."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _source_coordinates(boxes: Tensor, flip: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """x (V, S) per output column and y (V, S) per output row, align_corners=False, pixel centres at integers."""
    x0, y0, x1, y1 = boxes.float().unbind(-1)
    steps = torch.arange(size, device=boxes.device, dtype=torch.float32)
    cols = torch.where(flip.bool()[:, None], size - 1 - steps, steps)  # jj: the mirrored column when flipped
    x = x0[:, None] + (cols + 0.5) * ((x1 - x0) / size)[:, None] - 0.5
    y = y0[:, None] + (steps + 0.5) * ((y1 - y0) / size)[:, None] - 0.5
    return x, y


def _bilinear(images: Tensor, index: Tensor, x: Tensor, y: Tensor, hw: Tensor, outside: Tensor) -> Tensor:
    """sum_k w_k * (tap k inside the valid region ? images[index][tap k] : outside), as (V, S, S, 3) float32.

    images (B, H, W, 3) uint8; index (V,) which image each view samples; x, y (V, S) source coordinates of the
    output columns and rows; hw (V, 2) the valid height and width; outside (V, S, S, 3) or broadcastable.
    """
    _, height, width, _ = images.shape
    x_floor, y_floor = x.floor(), y.floor()
    fx, fy = x - x_floor, y - y_floor
    ix, iy = x_floor.long(), y_floor.long()
    valid_h, valid_w = hw[:, 0, None], hw[:, 1, None]
    result = torch.zeros(x.shape[0], y.shape[1], x.shape[1], 3, dtype=torch.float32, device=images.device)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        rows = iy + dy  # (V, S)
        rows_ok = (rows >= 0) & (rows < valid_h)
        for dx, wx in ((0, 1 - fx), (1, fx)):
            cols = ix + dx
            cols_ok = (cols >= 0) & (cols < valid_w)
            tap = images[
                index[:, None, None],
                rows.clamp(0, height - 1)[:, :, None],
                cols.clamp(0, width - 1)[:, None, :],
            ].float()  # (V, S, S, 3)
            ok = (rows_ok[:, :, None] & cols_ok[:, None, :])[..., None]
            weight = (wy[:, :, None] * wx[:, None, :])[..., None]
            result = result + weight * torch.where(ok, tap, outside)
    return result


def sample_views(frames, frame_hw, src, boxes, flip, backgrounds, bg_index, fill_index, fill, size,
                 bg_mode) -> ViewSamples:
    """The bilinear samples of every view (steps 1 and 2 of the semantics)."""
    x, y = _source_coordinates(boxes, flip, size)
    hw = frame_hw.long()[src]
    constant = fill.float().view(1, 1, 1, 3)
    substitute = fill_index >= 0
    if bool(substitute.any()):
        sampled = _bilinear(backgrounds, fill_index.clamp(min=0), x, y, hw, constant)
        fillv = torch.where(substitute[:, None, None, None], sampled, constant)
    else:
        fillv = constant.expand(src.shape[0], size, size, 3)
    pix = _bilinear(frames, src, x, y, hw, fillv)
    bgv = _bilinear(backgrounds, bg_index, x, y, hw, fillv) if bg_mode != 0 else torch.zeros_like(pix)
    return ViewSamples(pix, bgv, fillv)


def fg_neighbours(fg: Tensor) -> Tensor:
    """How many of each pixel's 8 neighbours in its view's S x S grid are foreground; (V, S, S) bool -> float32
    counts. Neighbours outside the grid count as not foreground."""
    kernel = torch.ones(1, 1, 3, 3, dtype=torch.float32, device=fg.device)
    kernel[0, 0, 1, 1] = 0
    return F.conv2d(fg.float()[:, None], kernel, padding=1)[:, 0]


def foreground_alpha(s: ViewSamples, bg_mode: int, threshold: Tensor | None, bg_softness: float, shadow_min: float,
                     shadow_chroma: float, clean: bool) -> Tensor:
    """alpha (V, S, S): 1 keeps the frame's pixel, 0 replaces it with the fill (steps 3 and 3b of the semantics).
    ``threshold`` (V,) is each view's: bg_threshold[bg_index] (None in mode 0)."""
    if bg_mode == 0:
        return torch.ones(s.pix.shape[:-1], dtype=torch.float32, device=s.pix.device)
    candidate, shadow = s.classes(threshold, shadow_min, shadow_chroma)
    fg = candidate & ~shadow
    if bg_mode == 1:
        alpha = fg.float()
    else:
        ramp = (0.5 + (s.difference() - threshold[:, None, None]) / bg_softness).clamp(0, 1)
        alpha = torch.where(shadow, 0.0, ramp)
    if clean:
        n = fg_neighbours(fg)
        alpha = torch.where(fg & (n < SPECK_BELOW), 0.0, alpha)
        alpha = torch.where((shadow & (n >= SHADOW_FILL_FROM)) | (~candidate & (n >= HOLE_FILL_FROM)), 1.0, alpha)
    return alpha


def assemble_pairs_reference(
    frames: Tensor, frame_hw: Tensor, src: Tensor, boxes: Tensor, flip: Tensor, backgrounds: Tensor,
    bg_index: Tensor, fill_index: Tensor, fill: Tensor, mean: Tensor, std: Tensor, bg_threshold: Tensor, size: int,
    bg_mode: int, bg_softness: float, shadow_min: float, shadow_chroma: float, clean: bool, out_dtype: torch.dtype,
) -> Tensor:
    """The op's kernel in plain PyTorch; arguments as the schema. Returns (V, 3, S, S), channels_last."""
    s = sample_views(frames, frame_hw, src, boxes, flip, backgrounds, bg_index, fill_index, fill, size, bg_mode)
    threshold = bg_threshold.float()[bg_index] if bg_mode != 0 else None
    alpha = foreground_alpha(s, bg_mode, threshold, bg_softness, shadow_min, shadow_chroma, clean)[..., None]
    value = alpha * s.pix + (1 - alpha) * s.fillv
    normalised = (value / 255 - mean.float()) / std.float()  # (V, S, S, 3): already the channels_last layout
    out = torch.empty(
        (src.shape[0], 3, size, size), dtype=out_dtype, device=frames.device, memory_format=torch.channels_last
    )
    out.copy_(normalised.permute(0, 3, 1, 2))
    return out
