"""Triton kernels of ``syncssl::assemble_pairs`` (registered as the op's CUDA kernel by :mod:`syncssl.ops.assemble`).

kernels -> launcher -> op. One program computes a block of BLOCK output pixels of one view as a [BLOCK, 4] tile
(the three channels of a pixel side by side, a fourth masked-off lane so the tile is a power of two): it loads the
four bilinear taps of each image with masks, applies the semantics of :mod:`syncssl.ops.assemble` step by step in
float32 (in the reference's order of operations), and stores the tile straight into the channels_last output.
The grid is 1-D, views x blocks per view, so the number of views is not bounded by a grid axis of 65535.

The clean-up (step 3b) needs the classes of neighbouring pixels, possibly of other programs: the first kernel also
writes each pixel's class to a (V, S, S) uint8 map, and a second launch on the same stream reads the 3x3
neighbourhoods and rewrites only the pixels whose alpha the clean-up changes (their loads are masked to them).
Nothing is read back to the host, so a launch never waits for the GPU.

Every division is ``tl.div_rn`` (correctly rounded, as the reference's): ``/`` compiles to approximate division
(``div.full.f32``, 2 ulp), which breaks the float32 tolerance of the tests.

Runs under ``TRITON_INTERPRET=1`` on CPU tensors too (the tests do that). Not yet verified on a real GPU.
"""
from __future__ import annotations

import contextlib
import os

import torch
import triton
import triton.language as tl

BLOCK = 256  # output pixels per program
NUM_WARPS = 4

# Pixel classes in the clean-up's map; bit 0 is "foreground", so foreground neighbours are counted with & 1.
BACKGROUND = tl.constexpr(0)
FOREGROUND = tl.constexpr(1)
SHADOW = tl.constexpr(2)
# Clean-up: a foreground pixel with fewer than SPECK_BELOW foreground neighbours (of 8) is a speck (alpha 0); a
# shadow pixel with at least SHADOW_FILL_FROM, and a background pixel with at least HOLE_FILL_FROM, are body (1).
SPECK_BELOW = tl.constexpr(1)
SHADOW_FILL_FROM = tl.constexpr(3)
HOLE_FILL_FROM = tl.constexpr(5)


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
def _taps(frame_hw_ptr, src_ptr, boxes_ptr, flip_ptr, view, row, col, pix_ok, num_frames, height, width, size):
    """Steps 1 and 2 for a block of output pixels (row, col) of one view: the source frame, and the offsets,
    validity and weights of the four bilinear taps."""
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
    x = x0 + (col_src.to(tl.float32) + 0.5) * tl.div_rn(x1 - x0, steps) - 0.5
    y = y0 + (row.to(tl.float32) + 0.5) * tl.div_rn(y1 - y0, steps) - 0.5
    # Clamping changes nothing that matters (beyond it every tap is outside) and keeps huge or NaN boxes safe.
    x = tl.minimum(tl.maximum(x, -2.0), valid_w.to(tl.float32) + 1.0)
    y = tl.minimum(tl.maximum(y, -2.0), valid_h.to(tl.float32) + 1.0)

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
    return (src, ry0 + cx0, ry0 + cx1, ry1 + cx0, ry1 + cx1, ok_y0 & ok_x0, ok_y0 & ok_x1, ok_y1 & ok_x0,
            ok_y1 & ok_x1, (1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx)


@triton.jit
def _block(size, BLOCK: tl.constexpr):
    """This program's view and its block of output pixels: (view, pix, pix_ok, row, col)."""
    blocks = tl.cdiv(size * size, BLOCK)
    program = tl.program_id(0)
    view = (program // blocks).to(tl.int64)
    pix = (program % blocks) * BLOCK + tl.arange(0, BLOCK)
    return view, pix, pix < size * size, pix // size, pix % size


@triton.jit
def _dot(a, b, chan_ok):
    """Per-pixel dot product of two [BLOCK, 4] tiles over the three channels."""
    return tl.sum(tl.where(chan_ok[None, :], a * b, 0.0), axis=1)


@triton.jit
def _normalise(value, mean, std):
    """(value / 255 - mean) / std of a [BLOCK, 4] tile, with correctly rounded divisions as the reference's."""
    return tl.div_rn(tl.div_rn(value, tl.full(value.shape, 255.0, tl.float32)) - mean[None, :],
                     tl.broadcast_to(std[None, :], value.shape))


# Per-batch sizes (the bank's frame and background counts) are not specialised on: a value of 1 or a multiple of 16
# would otherwise compile another variant of the kernel in the middle of training.
PER_BATCH = ["num_frames", "num_backgrounds"]


@triton.jit(do_not_specialize=PER_BATCH)
def _assemble_pairs_kernel(
    frames_ptr, frame_hw_ptr, src_ptr, boxes_ptr, flip_ptr, backgrounds_ptr, bg_index_ptr, fill_index_ptr,
    fill_ptr, mean_ptr, std_ptr, bg_threshold_ptr, out_ptr, classes_ptr,
    num_frames, num_backgrounds, height, width, size, bg_softness, shadow_min, shadow_limit,
    BG_MODE: tl.constexpr, SHADOW_TEST: tl.constexpr, CLASSES: tl.constexpr, BLOCK: tl.constexpr,
):
    view, pix, pix_ok, row, col = _block(size, BLOCK)
    chan = tl.arange(0, 4)
    chan_ok = chan < 3

    # Steps 1, 2: source coordinates (align_corners=False, mirrored columns for flipped views) and the four taps.
    src, off00, off01, off10, off11, ok00, ok01, ok10, ok11, w00, w01, w10, w11 = _taps(
        frame_hw_ptr, src_ptr, boxes_ptr, flip_ptr, view, row, col, pix_ok, num_frames, height, width, size)
    image_size = height * width * 3

    fill = tl.load(fill_ptr + chan, mask=chan_ok, other=0.0)
    fillv = tl.zeros([BLOCK, 4], dtype=tl.float32) + fill[None, :]
    substitute = tl.minimum(tl.load(fill_index_ptr + view), num_backgrounds - 1)
    if substitute >= 0:
        fillv = _sample(backgrounds_ptr + substitute.to(tl.int64) * image_size, off00, off01, off10, off11,
                        ok00, ok01, ok10, ok11, w00, w01, w10, w11, chan, chan_ok, fill[None, :])
    value = _sample(frames_ptr + src * image_size, off00, off01, off10, off11, ok00, ok01, ok10, ok11,
                    w00, w01, w10, w11, chan, chan_ok, fillv)

    # Steps 3, 4: compare with the background (distance, shadow test), blend with the fill.
    if BG_MODE != 0:
        background = tl.minimum(tl.maximum(tl.load(bg_index_ptr + view), 0), num_backgrounds - 1).to(tl.int64)
        threshold = tl.load(bg_threshold_ptr + background)
        bgv = _sample(backgrounds_ptr + background * image_size, off00, off01, off10, off11, ok00, ok01, ok10, ok11,
                      w00, w01, w10, w11, chan, chan_ok, fillv)
        diff = value - bgv
        d = tl.sqrt_rn(_dot(diff, diff, chan_ok))
        candidate = d > threshold
        if SHADOW_TEST:
            pb = _dot(value, bgv, chan_ok)
            bb = tl.maximum(_dot(bgv, bgv, chan_ok), 1.0)
            pp = _dot(value, value, chan_ok)
            shadow = candidate & (pb >= shadow_min * bb) & (pb < bb) & (pp * bb < shadow_limit * (pb * pb))
        else:
            shadow = candidate & False
        foreground = candidate & ~shadow
        if CLASSES:
            classes = tl.where(foreground, FOREGROUND, tl.where(shadow, SHADOW, BACKGROUND)).to(tl.uint8)
            tl.store(classes_ptr + view * (size * size) + pix, classes, mask=pix_ok)
        if BG_MODE == 1:
            alpha = foreground.to(tl.float32)
        else:
            alpha = tl.where(shadow, 0.0, tl.minimum(tl.maximum(0.5 + tl.div_rn(d - threshold, bg_softness), 0.0), 1.0))
        value = alpha[:, None] * value + (1 - alpha[:, None]) * fillv

    mean = tl.load(mean_ptr + chan, mask=chan_ok, other=0.0)
    std = tl.load(std_ptr + chan, mask=chan_ok, other=1.0)
    normalised = _normalise(value, mean, std)
    out_offsets = view * (size * size * 3) + pix[:, None] * 3 + chan[None, :]
    tl.store(out_ptr + out_offsets, normalised.to(out_ptr.dtype.element_ty), mask=pix_ok[:, None] & chan_ok[None, :])


@triton.jit(do_not_specialize=PER_BATCH)
def _clean_kernel(
    frames_ptr, frame_hw_ptr, src_ptr, boxes_ptr, flip_ptr, backgrounds_ptr, fill_index_ptr, fill_ptr, mean_ptr,
    std_ptr, out_ptr, classes_ptr,
    num_frames, num_backgrounds, height, width, size,
    BLOCK: tl.constexpr,
):
    """Step 3b after _assemble_pairs_kernel wrote the output and the class map: overwrite the pixels whose alpha the
    clean-up changes with the fill (a speck) or the frame (a shadow or a hole inside the body)."""
    view, pix, pix_ok, row, col = _block(size, BLOCK)
    classes_ptr += view * (size * size)
    neighbours = tl.zeros([BLOCK], dtype=tl.int32)
    for k in tl.static_range(9):
        if k != 4:  # the pixel itself
            r = row + (k // 3 - 1)
            c = col + (k % 3 - 1)
            inside = pix_ok & (r >= 0) & (r < size) & (c >= 0) & (c < size)  # outside the grid: not foreground
            neighbours += tl.load(classes_ptr + r * size + c, mask=inside, other=0).to(tl.int32) & 1
    own = tl.load(classes_ptr + pix, mask=pix_ok, other=0)
    to_fill = pix_ok & (own == FOREGROUND) & (neighbours < SPECK_BELOW)
    to_frame = pix_ok & (((own == SHADOW) & (neighbours >= SHADOW_FILL_FROM))
                         | ((own == BACKGROUND) & (neighbours >= HOLE_FILL_FROM)))
    fix = to_fill | to_frame
    if tl.max(fix.to(tl.int32), axis=0) > 0:
        chan = tl.arange(0, 4)
        chan_ok = chan < 3
        src, off00, off01, off10, off11, ok00, ok01, ok10, ok11, w00, w01, w10, w11 = _taps(
            frame_hw_ptr, src_ptr, boxes_ptr, flip_ptr, view, row, col, fix, num_frames, height, width, size)
        image_size = height * width * 3
        fill = tl.load(fill_ptr + chan, mask=chan_ok, other=0.0)
        fillv = tl.zeros([BLOCK, 4], dtype=tl.float32) + fill[None, :]
        substitute = tl.minimum(tl.load(fill_index_ptr + view), num_backgrounds - 1)
        if substitute >= 0:
            fillv = _sample(backgrounds_ptr + substitute.to(tl.int64) * image_size, off00, off01, off10, off11,
                            ok00, ok01, ok10, ok11, w00, w01, w10, w11, chan, chan_ok, fill[None, :])
        value = _sample(frames_ptr + src * image_size, off00, off01, off10, off11, ok00, ok01, ok10, ok11,
                        w00, w01, w10, w11, chan, chan_ok, fillv)
        value = tl.where(to_frame[:, None], value, fillv)
        mean = tl.load(mean_ptr + chan, mask=chan_ok, other=0.0)
        std = tl.load(std_ptr + chan, mask=chan_ok, other=1.0)
        normalised = _normalise(value, mean, std)
        out_offsets = view * (size * size * 3) + pix[:, None] * 3 + chan[None, :]
        tl.store(out_ptr + out_offsets, normalised.to(out_ptr.dtype.element_ty), mask=fix[:, None] & chan_ok[None, :])


def assemble_pairs_triton(frames, frame_hw, src, boxes, flip, backgrounds, bg_index, fill_index, fill, mean, std,
                          bg_threshold, size, bg_mode, bg_softness, shadow_min, shadow_chroma, clean, out_dtype):
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
    cleaning = bool(clean) and bg_mode != 0
    frames, frame_hw, src, boxes, flip = (t.contiguous() for t in (frames, frame_hw, src, boxes, flip))
    backgrounds, fill_index, fill, mean, std = (t.contiguous() for t in (backgrounds, fill_index, fill, mean, std))
    # Without the clean-up no class map is written: frames stands in as a uint8 pointer that is never accessed.
    classes = torch.empty((views, size, size), dtype=torch.uint8, device=frames.device) if cleaning else frames
    grid = (views * triton.cdiv(size * size, BLOCK),)
    # Triton launches on the current device: make it the tensors' (a prefetch thread starts on device 0)
    with torch.cuda.device(frames.device) if frames.is_cuda else contextlib.nullcontext():
        _assemble_pairs_kernel[grid](
            frames, frame_hw, src, boxes, flip, backgrounds, bg_index.contiguous(), fill_index, fill, mean, std,
            bg_threshold.contiguous(), out, classes,
            num_frames, num_backgrounds, height, width, size, float(bg_softness), float(shadow_min),
            1.0 + float(shadow_chroma) ** 2,
            BG_MODE=int(bg_mode), SHADOW_TEST=bg_mode != 0 and shadow_chroma > 0, CLASSES=cleaning, BLOCK=BLOCK,
            num_warps=NUM_WARPS, enable_fp_fusion=True,  # a*b+c as FMA: faster, ~1 ulp
        )
        if cleaning:
            _clean_kernel[grid](
                frames, frame_hw, src, boxes, flip, backgrounds, fill_index, fill, mean, std, out, classes,
                num_frames, num_backgrounds, height, width, size,
                BLOCK=BLOCK, num_warps=NUM_WARPS, enable_fp_fusion=True,
            )
    return out
