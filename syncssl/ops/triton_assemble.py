"""Triton kernel of ``syncssl::assemble_pairs`` (registered as the op's CUDA kernel by :mod:`syncssl.ops.assemble`).

kernel -> launcher -> op. One program computes a block of BLOCK output pixels of one view as a [BLOCK, 4] tile
(the three channels of a pixel side by side, a fourth masked-off lane so the tile is a power of two): it loads the
four bilinear taps of each image with masks, applies the semantics of :mod:`syncssl.ops.assemble` step by step in
float32 (in the reference's order of operations), and stores the tile straight into the channels_last output.
Nothing is read back to the host, so a launch never waits for the GPU.

Runs under ``TRITON_INTERPRET=1`` on CPU tensors too (the tests do that). Not yet verified on a real GPU.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

BLOCK = 256  # output pixels per program
NUM_WARPS = 4


@triton.jit
def _sample(image_ptr, off00, off01, off10, off11, ok00, ok01, ok10, ok11, w00, w01, w10, w11, chan, chan_ok,
            outside):
    """sum_k w_k * (tap k valid ? image[tap k] : outside), as a [BLOCK, 4] float32 tile."""
    acc = w00[:, None] * tl.where(
        ok00[:, None], tl.load(image_ptr + off00[:, None] + chan[None, :], mask=ok00[:, None] & chan_ok[None, :],
                               other=0).to(tl.float32), outside)
    acc += w01[:, None] * tl.where(
        ok01[:, None], tl.load(image_ptr + off01[:, None] + chan[None, :], mask=ok01[:, None] & chan_ok[None, :],
                               other=0).to(tl.float32), outside)
    acc += w10[:, None] * tl.where(
        ok10[:, None], tl.load(image_ptr + off10[:, None] + chan[None, :], mask=ok10[:, None] & chan_ok[None, :],
                               other=0).to(tl.float32), outside)
    acc += w11[:, None] * tl.where(
        ok11[:, None], tl.load(image_ptr + off11[:, None] + chan[None, :], mask=ok11[:, None] & chan_ok[None, :],
                               other=0).to(tl.float32), outside)
    return acc


@triton.jit
def _assemble_pairs_kernel(
    frames_ptr, frame_hw_ptr, src_ptr, boxes_ptr, flip_ptr, backgrounds_ptr, bg_index_ptr, fill_index_ptr,
    fill_ptr, mean_ptr, std_ptr, out_ptr,
    num_frames, num_backgrounds, height, width, size, bg_threshold, bg_softness,
    BG_MODE: tl.constexpr, BLOCK: tl.constexpr,
):
    view = tl.program_id(1).to(tl.int64)
    pix = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    pix_ok = pix < size * size
    row = pix // size
    col = pix % size
    chan = tl.arange(0, 4)
    chan_ok = chan < 3

    # Step 1: source coordinates (align_corners=False), mirrored columns for flipped views.
    # Indices and sizes are clamped into range so that no input can make the kernel read out of bounds (the
    # Python API checks them where that is free; on a GPU it would stall the stream).
    src = tl.minimum(tl.maximum(tl.load(src_ptr + view), 0), num_frames - 1).to(tl.int64)
    valid_h = tl.minimum(tl.maximum(tl.load(frame_hw_ptr + src * 2).to(tl.int32), 1), height)
    valid_w = tl.minimum(tl.maximum(tl.load(frame_hw_ptr + src * 2 + 1).to(tl.int32), 1), width)
    x0 = tl.load(boxes_ptr + view * 4)
    y0 = tl.load(boxes_ptr + view * 4 + 1)
    x1 = tl.load(boxes_ptr + view * 4 + 2)
    y1 = tl.load(boxes_ptr + view * 4 + 3)
    flipped = tl.load(flip_ptr + view) != 0
    steps = size * 1.0  # float; no method calls on int arguments (Triton turns an argument equal to 1 into a constant)
    col_src = tl.where(flipped, size - 1 - col, col)
    x = x0 + (col_src.to(tl.float32) + 0.5) * ((x1 - x0) / steps) - 0.5
    y = y0 + (row.to(tl.float32) + 0.5) * ((y1 - y0) / steps) - 0.5
    # Clamping changes nothing that matters (beyond it every tap is outside) and keeps huge or NaN boxes safe.
    x = tl.minimum(tl.maximum(x, -2.0), valid_w.to(tl.float32) + 1.0)
    y = tl.minimum(tl.maximum(y, -2.0), valid_h.to(tl.float32) + 1.0)

    # Step 2: the four taps, their validity, clamped (always readable) offsets and weights.
    x_floor = tl.floor(x)
    y_floor = tl.floor(y)
    fx = x - x_floor
    fy = y - y_floor
    ix = x_floor.to(tl.int32)
    iy = y_floor.to(tl.int32)
    ok_x0 = (ix >= 0) & (ix < valid_w)
    ok_x1 = (ix + 1 >= 0) & (ix + 1 < valid_w)
    ok_y0 = (iy >= 0) & (iy < valid_h) & pix_ok
    ok_y1 = (iy + 1 >= 0) & (iy + 1 < valid_h) & pix_ok
    row_bytes = width * 3
    cx0 = tl.minimum(tl.maximum(ix, 0), valid_w - 1) * 3
    cx1 = tl.minimum(tl.maximum(ix + 1, 0), valid_w - 1) * 3
    ry0 = tl.minimum(tl.maximum(iy, 0), valid_h - 1) * row_bytes
    ry1 = tl.minimum(tl.maximum(iy + 1, 0), valid_h - 1) * row_bytes
    off00 = ry0 + cx0
    off01 = ry0 + cx1
    off10 = ry1 + cx0
    off11 = ry1 + cx1
    ok00 = ok_y0 & ok_x0
    ok01 = ok_y0 & ok_x1
    ok10 = ok_y1 & ok_x0
    ok11 = ok_y1 & ok_x1
    w00 = (1 - fy) * (1 - fx)
    w01 = (1 - fy) * fx
    w10 = fy * (1 - fx)
    w11 = fy * fx
    image_size = height * width * 3

    fill = tl.load(fill_ptr + chan, mask=chan_ok, other=0.0)
    fillv = tl.zeros([BLOCK, 4], dtype=tl.float32) + fill[None, :]
    substitute = tl.minimum(tl.load(fill_index_ptr + view), num_backgrounds - 1)
    if substitute >= 0:
        fillv = _sample(backgrounds_ptr + substitute.to(tl.int64) * image_size, off00, off01, off10, off11,
                        ok00, ok01, ok10, ok11, w00, w01, w10, w11, chan, chan_ok, fill[None, :])
    value = _sample(frames_ptr + src * image_size, off00, off01, off10, off11, ok00, ok01, ok10, ok11,
                    w00, w01, w10, w11, chan, chan_ok, fillv)

    # Steps 3, 4: compare with the background, blend with the fill.
    if BG_MODE != 0:
        background = tl.minimum(tl.maximum(tl.load(bg_index_ptr + view), 0), num_backgrounds - 1).to(tl.int64)
        bgv = _sample(backgrounds_ptr + background * image_size, off00, off01, off10, off11, ok00, ok01, ok10, ok11,
                      w00, w01, w10, w11, chan, chan_ok, fillv)
        d = tl.sum(tl.where(chan_ok[None, :], tl.abs(value - bgv), 0.0), axis=1) / 3.0
        if BG_MODE == 1:
            alpha = (d > bg_threshold).to(tl.float32)
        else:
            alpha = tl.minimum(tl.maximum((d - bg_threshold) / bg_softness, 0.0), 1.0)
        value = alpha[:, None] * value + (1 - alpha[:, None]) * fillv

    mean = tl.load(mean_ptr + chan, mask=chan_ok, other=0.0)
    std = tl.load(std_ptr + chan, mask=chan_ok, other=1.0)
    normalised = (value / 255.0 - mean[None, :]) / std[None, :]
    out_offsets = view * (size * size * 3) + pix[:, None] * 3 + chan[None, :]
    tl.store(out_ptr + out_offsets, normalised.to(out_ptr.dtype.element_ty), mask=pix_ok[:, None] & chan_ok[None, :])


def assemble_pairs_triton(frames, frame_hw, src, boxes, flip, backgrounds, bg_index, fill_index, fill, mean, std,
                          size, bg_mode, bg_threshold, bg_softness, out_dtype):
    """Launcher: the op's arguments in schema order -> (V, 3, S, S) channels_last. Inputs are trusted (see the API)."""
    views = src.shape[0]
    out = torch.empty((views, 3, size, size), dtype=out_dtype, device=frames.device,
                      memory_format=torch.channels_last)
    if os.environ.get("SYNCSSL_DEBUG_POISON") == "1":
        out.fill_(float("nan"))
    if views == 0:
        return out
    num_frames, height, width, _ = frames.shape
    num_backgrounds = backgrounds.shape[0]
    if num_frames == 0:
        raise ValueError("assemble_pairs: frames is empty but views were asked for")
    if bg_mode != 0 and num_backgrounds == 0:
        raise ValueError(f"assemble_pairs: bg_mode {bg_mode} needs backgrounds")
    if flip.dtype == torch.bool:
        flip = flip.view(torch.uint8)
    grid = (triton.cdiv(size * size, BLOCK), views)
    _assemble_pairs_kernel[grid](
        frames.contiguous(), frame_hw.contiguous(), src.contiguous(), boxes.contiguous(), flip.contiguous(),
        backgrounds.contiguous(), bg_index.contiguous(), fill_index.contiguous(), fill.contiguous(),
        mean.contiguous(), std.contiguous(), out,
        num_frames, num_backgrounds, height, width, size, float(bg_threshold), float(bg_softness),
        BG_MODE=int(bg_mode), BLOCK=BLOCK, num_warps=NUM_WARPS, enable_fp_fusion=True,  # a*b+c as FMA: faster, ~1 ulp
    )
    return out
