"""The assemble op as the data layer uses it outside training batches: cutting tiles out of frames, and reading
back the mask it applies (to measure what the network sees).

:class:`MaskSettings` is the op's background removal as training configures it; prepare measures the op's mask at
exactly these settings, so ``report.json``'s ``op_mask`` is the mask the network is trained on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...ops import assemble_pairs

BG_MODES = {"off": 0, "hard": 1, "soft": 2}


@dataclass(frozen=True)
class MaskSettings:
    """Background removal in the assemble op (see ``syncssl.ops.assemble`` for the rule)."""

    mode: str = "soft"  # "off" | "hard" | "soft"
    threshold_scale: float = 1.2  # the op's threshold = this x the camera's noise threshold found by prepare
    softness: float = 8.0  # soft mode: width of the alpha ramp centred on the threshold (0..255 RGB distance)
    shadow_min: float = 0.5  # shadow test: a shadow keeps at least this share of the background's brightness
    shadow_chroma: float = 0.05  # ... and changes its colour by less than this share of its length (0: no test)
    clean: bool = True  # 3x3 clean-up: specks removed, holes and "shadows" inside the body filled

    def __post_init__(self):
        if self.mode not in BG_MODES:
            raise ValueError(f"background must be one of {', '.join(BG_MODES)}, got {self.mode!r}")
        if not self.threshold_scale > 0 or not self.softness > 0 or self.shadow_chroma < 0 \
                or not 0 <= self.shadow_min <= 1:
            raise ValueError("need threshold_scale > 0, softness > 0, shadow_chroma >= 0 and 0 <= shadow_min <= 1")

    def op_kwargs(self, thresholds: torch.Tensor) -> dict:
        """The op's keyword arguments for backgrounds whose prepare thresholds are ``thresholds`` (B,)."""
        return dict(bg_mode=BG_MODES[self.mode], bg_threshold=thresholds.float() * self.threshold_scale,
                    bg_softness=self.softness, shadow_min=self.shadow_min, shadow_chroma=self.shadow_chroma,
                    clean=self.clean)


def _pairs(n: int) -> int:
    return n + (n % 2)  # the op takes view pairs: an odd count is padded by one view


def cut(images: torch.Tensor, rects: torch.Tensor, size: int, index: torch.Tensor | None = None) -> torch.Tensor:
    """Resample the regions ``rects`` (n, 4; pixel edges) of uint8 images (M, H, W, 3) to uint8 (n, size, size, 3)
    with the op's bilinear sampling (taps outside an image count as 0: callers keep their rects inside it).
    ``index`` (n,): which image each rect samples (default: image i for rect i)."""
    n = len(rects)
    if n == 0:
        return torch.zeros((0, size, size, 3), dtype=torch.uint8)
    m = _pairs(n)
    src = torch.arange(n) if index is None else torch.as_tensor(index, dtype=torch.int64)
    src = torch.cat([src, src[-1:]]) if m > n else src
    boxes = torch.as_tensor(rects, dtype=torch.float32).reshape(n, 4)
    boxes = torch.cat([boxes, boxes[-1:]]) if m > n else boxes
    hw = torch.tensor([[images.shape[1], images.shape[2]]], dtype=torch.int32).expand(len(images), 2).contiguous()
    out = assemble_pairs(images, hw, src, boxes.contiguous(), torch.zeros(m, dtype=torch.bool), size=size,
                         fill=(0.0, 0.0, 0.0), mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255),
                         out_dtype=torch.float32).flatten(0, 1)[:n]
    return out.permute(0, 2, 3, 1).round_().clamp_(0, 255).to(torch.uint8)


def op_alpha(frames: torch.Tensor, backgrounds: torch.Tensor, thresholds: torch.Tensor, boxes: torch.Tensor,
             size: int, settings: MaskSettings, frame_hw: torch.Tensor | None = None) -> torch.Tensor:
    """The alpha (n, size, size) float32 in [0, 1] that the op applies to view i = (frames[i], backgrounds[i],
    boxes[i]) at ``settings``: read back from two runs with different constant fills (value = alpha pix +
    (1 - alpha) fill), so it is the op's own mask, whatever implementation runs. Pixels outside the frame count
    as removed (alpha 0)."""
    n = len(frames)
    m = _pairs(n)
    pad = (lambda t: torch.cat([t, t[-1:]])) if m > n else (lambda t: t)
    hw = frame_hw if frame_hw is not None else torch.tensor([[frames.shape[1], frames.shape[2]]],
                                                            dtype=torch.int32).expand(n, 2).contiguous()
    common = dict(size=size, backgrounds=backgrounds, bg_index=pad(torch.arange(n)), mean=(0.0, 0.0, 0.0),
                  std=(1 / 255, 1 / 255, 1 / 255), out_dtype=torch.float32, **settings.op_kwargs(thresholds))
    args = (frames, hw.contiguous(), pad(torch.arange(n)), pad(boxes.float()).contiguous(),
            torch.zeros(m, dtype=torch.bool))
    dark = assemble_pairs(*args, fill=(0.0, 0.0, 0.0), **common).flatten(0, 1)[:n]
    light = assemble_pairs(*args, fill=(255.0, 255.0, 255.0), **common).flatten(0, 1)[:n]
    return (1 - (light - dark).mean(1) / 255).clamp_(0, 1)


def mask_scores(alpha: torch.Tensor, truth: torch.Tensor) -> tuple[float, float, float, float]:
    """(intersection, union, body pixels, body weight removed) of alphas (n, S, S) against true masks (n, S, S):
    IoU = intersection / union of alpha >= 0.5 and the truth; body lost = weight removed / body pixels, the
    share of the person's pixels the op blends away (1 - alpha summed over the true body)."""
    a, t = alpha >= 0.5, truth.bool()
    return (float((a & t).sum()), float((a | t).sum()), float(t.sum()), float(((1 - alpha) * t).sum()))


def truth_at_crops(masks: np.ndarray, boxes: torch.Tensor, size: int, rects: torch.Tensor | None = None,
                   tile_size: int | None = None) -> torch.Tensor:
    """Ground-truth masks (n, H, W) bool seen at crop resolution (n, size, size) bool: the masks resampled exactly
    as the frames are (through the tile when ``rects`` are given), kept where more than half covered."""
    images = torch.from_numpy(np.repeat(masks[..., None].astype(np.uint8) * 255, 3, -1))
    if rects is not None:
        images = cut(images, rects, tile_size)
    return cut(images, boxes, size)[..., 0] > 127
