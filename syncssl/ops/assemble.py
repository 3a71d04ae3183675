"""``syncssl::assemble_pairs``: decoded frames -> the model's input batch of view pairs, in one pass over memory.

One schema, three implementations: a C++ CPU kernel (``csrc/assemble_pairs.cpp``, in ``syncssl._C``), a Triton
kernel registered as the CUDA kernel (:mod:`syncssl.ops.triton_assemble`), and the plain PyTorch reference
(:mod:`syncssl.ops.reference`) that the other two are tested against. Without the C++ extension the schema is
defined from Python and the reference serves CPU tensors (a warning says so, once).

Semantics (all three implementations agree on them)
---------------------------------------------------
Inputs (V = 2N views; views 2n and 2n+1 are the two views of pair n):

- ``frames`` uint8 (M, H, W, 3): the frame bank, frames padded to a common H, W.
- ``frame_hw`` int32 (M, 2): valid (height, width) of each bank frame; pixels outside it do not exist.
- ``src`` int64 (V,): the bank frame each view samples.
- ``boxes`` float32 (V, 4): crop box x0, y0, x1, y1 in continuous pixel coordinates of the source frame, in which
  the pixel with index k covers [k, k + 1] (the convention of ``F.interpolate`` and ``roi_align(aligned=True)``):
  the whole w x h frame is the box (0, 0, w, h), and step 1's "- 0.5" turns coordinates into pixel indices. Boxes
  may extend past the frame and need not be square.
- ``flip`` bool/uint8 (V,): mirror the view horizontally.
- ``backgrounds`` uint8 (B, H, W, 3): per-camera background images in the geometry of ``frames``.
- ``bg_index`` int64 (V,): the background of each view's camera (ignored in mode 0).
- ``fill_index`` int64 (V,): -1 fills removed / outside pixels with the constant ``fill``; otherwise the index of
  the background image sampled as the fill (background substitution).
- ``fill`` float32 (3,): constant fill in 0..255 units; ``mean``, ``std`` float32 (3,) in 0..1 units.
- ``bg_threshold`` float32 (B,): per background image, the RGB distance (Euclidean, 0..255 units, so at most ~441)
  above which a pixel differs from it (B may be 0 in mode 0).
- ``size`` S (output S x S), ``bg_mode`` (0 off, 1 hard, 2 soft), ``bg_softness`` (0..255 units), ``shadow_min``,
  ``shadow_chroma`` (the shadow test; 0 turns it off), ``clean`` (the 3x3 clean-up), ``out_dtype`` (float32,
  float16, bfloat16).

For output pixel (view v, row i, column j) and channel c, with (h, w) = frame_hw[src[v]]:

1. jj = S-1-j if flip[v] else j; x = x0 + (jj + 0.5) * ((x1 - x0) / S) - 0.5, y = y0 + (i + 0.5) * ((y1 - y0) / S)
   - 0.5 (align_corners=False).
2. Bilinear taps at floor(x) + {0, 1}, floor(y) + {0, 1} with the usual weights w_k. A tap is *valid* when it lies
   in [0, w-1] x [0, h-1]. Every image sampled for view v uses these taps and this validity (the substitute
   background too: it is sampled inside the source frame's valid region). The sample of image I is
   ``sample(I, O) = sum_k w_k * (valid_k ? I[tap_k][c] : O)``: invalid taps take the value O.
   - fill value F = fill[c] when fill_index[v] = -1, else sample(backgrounds[fill_index[v]], fill[c]);
   - pix = sample(frames[src[v]], F); bgv = sample(backgrounds[bg_index[v]], F) (modes 1 and 2).
   So a pixel whose taps are all outside the frame is exactly F, and d (below) sees only valid taps.
3. Mode 0: alpha = 1 (bg_threshold, the shadow test and the clean-up are ignored). Modes 1 and 2, with
   thr = bg_threshold[bg_index[v]] and <a, b> = a_r b_r + a_g b_g + a_b b_b:
   - d = sqrt(<pix - bgv, pix - bgv>) (Euclidean distance); candidate = d > thr;
   - shadow (only when shadow_chroma > 0; else never), with pb = <pix, bgv>, bb = max(<bgv, bgv>, 1),
     pp = <pix, pix>: candidate and pb >= shadow_min * bb and pb < bb and pp * bb < (1 + shadow_chroma^2) * pb * pb.
     That is a darker pixel of the background's own colour: brightness a = pb / bb in [shadow_min, 1) and colour
     distortion |pix - a bgv| below shadow_chroma * a * |bgv| (Horprasert et al. 1999, as prepare's masks);
   - class of the pixel: fg = candidate and not shadow; shadow; background = not candidate;
   - alpha = [fg] (mode 1); 0 if shadow else clamp(0.5 + (d - thr) / bg_softness, 0, 1) (mode 2: a ramp centred
     on the threshold).
3b. Clean-up (``clean``, modes 1 and 2): n = the number of the pixel's 8 neighbours in the view's S x S output grid
   (output coordinates, after the flip; neighbours outside the grid count as not fg) whose class (step 3) is fg.
   Then alpha = 0 if fg and n < SPECK_BELOW = 1 (a speck); alpha = 1 if shadow and n >= SHADOW_FILL_FROM = 3 (a
   "shadow" surrounded by body is body) or if background and n >= HOLE_FILL_FROM = 5 (a hole in the body);
   otherwise alpha of step 3. One round: the neighbours' classes are those of step 3, not cleaned ones.
4. value = alpha * pix + (1 - alpha) * F; out[v, c, i, j] = (value / 255 - mean[c]) / std[c], cast to out_dtype.

The op returns (V, 3, S, S) in channels_last memory format (physically (V, S, S, 3)). :func:`assemble_pairs`
returns it as (N, 2, 3, S, S), a view; ``.flatten(0, 1)`` is the channels_last (2N, 3, S, S) model batch.

Arithmetic is float32 throughout; the kernels may associate sums differently from the reference (differences
of a few float32 ulps, e.g. fused multiply-adds). That can flip a discrete decision (candidate, shadow) for a pixel
within float rounding of its boundary (d within ~1e-4 of thr), which changes its alpha (mode 1, or the shadow test)
and, with the clean-up, the alpha of its neighbours.

Environment switches (read at every call, for tests and debugging): ``SYNCSSL_DEBUG_POISON=1`` makes the C++ and
Triton kernels pre-fill their output with NaN, so an element they fail to write shows; ``SYNCSSL_PORTABLE_KERNEL=1``
makes the C++ kernel skip its SIMD paths, ``SYNCSSL_NO_AVX512=1`` its AVX-512 path (AVX2 then);
``SYNCSSL_NO_EXT=1`` (read at import) ignores ``syncssl._C``.
"""
from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from .reference import assemble_pairs_reference

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BG_MODES = {0: "off", 1: "hard", 2: "soft"}

OP_NAME = "syncssl::assemble_pairs"
SCHEMA = (
    "(Tensor frames, Tensor frame_hw, Tensor src, Tensor boxes, Tensor flip, Tensor backgrounds, "
    "Tensor bg_index, Tensor fill_index, Tensor fill, Tensor mean, Tensor std, Tensor bg_threshold, int size, "
    "int bg_mode, float bg_softness, float shadow_min, float shadow_chroma, bool clean, ScalarType out_dtype) -> Tensor"
)


def _op_defined() -> bool:
    return hasattr(torch.ops.syncssl, "assemble_pairs")


def _load_cpp() -> str | None:
    """Import syncssl._C (which registers the schema and the CPU kernel); the reason it is unusable, or None."""
    if os.environ.get("SYNCSSL_NO_EXT") == "1":
        return "disabled by SYNCSSL_NO_EXT=1"
    try:
        from .. import _C  # noqa: F401  (importing registers the operators)
    except ImportError as e:
        return f"not importable ({e})"
    return None if _op_defined() else "loaded, but it does not define syncssl::assemble_pairs"


_cpp_problem = _load_cpp()
HAS_CPP_KERNEL = _cpp_problem is None  # the CPU kernel is the C++ one (else the PyTorch reference)
if not HAS_CPP_KERNEL:
    if not _op_defined():
        torch.library.define(OP_NAME, SCHEMA)
    torch.library.register_kernel(OP_NAME, "cpu", assemble_pairs_reference)
    warnings.warn(
        f"syncssl: the C++ extension syncssl._C is {_cpp_problem}; syncssl::assemble_pairs falls back to the "
        "slower PyTorch reference on CPU (build it with `pip install --no-build-isolation -e .`)",
        RuntimeWarning,
        stacklevel=2,
    )

HAS_TRITON_KERNEL = False  # the CUDA kernel is the Triton one (else the PyTorch reference)
if torch.cuda.is_available():
    try:
        from .triton_assemble import assemble_pairs_triton

        torch.library.register_kernel(OP_NAME, "cuda", assemble_pairs_triton)
        HAS_TRITON_KERNEL = True
    except ImportError as e:
        torch.library.register_kernel(OP_NAME, "cuda", assemble_pairs_reference)
        warnings.warn(
            f"syncssl: Triton is not importable ({e}); syncssl::assemble_pairs uses the PyTorch reference on CUDA",
            RuntimeWarning,
            stacklevel=2,
        )


@torch.library.register_fake(OP_NAME)
def _assemble_pairs_fake(frames, frame_hw, src, boxes, flip, backgrounds, bg_index, fill_index, fill, mean, std,
                         bg_threshold, size, bg_mode, bg_softness, shadow_min, shadow_chroma, clean, out_dtype):
    return torch.empty(
        (src.shape[0], 3, size, size), dtype=out_dtype, device=frames.device, memory_format=torch.channels_last
    )


@functools.lru_cache(maxsize=64)
def _constant(values: tuple[float, ...], device: torch.device) -> Tensor:
    # Cached: building a small tensor on a GPU from Python numbers is a blocking host-to-device copy.
    return torch.tensor(values, dtype=torch.float32, device=device)


def _channels(name: str, value, device: torch.device) -> Tensor:
    """A float32 (3,) tensor on `device` from a sequence of 3 numbers or a tensor of 3 elements."""
    if isinstance(value, Tensor):
        if value.numel() != 3:
            raise ValueError(f"assemble_pairs: {name} must have 3 elements (R, G, B), got shape {tuple(value.shape)}")
        return value.reshape(3).to(device=device, dtype=torch.float32)
    if not isinstance(value, Sequence) or len(value) != 3:
        raise ValueError(f"assemble_pairs: {name} must be 3 numbers (R, G, B), got {value!r}")
    return _constant(tuple(float(v) for v in value), torch.device(device))


def _require(ok: bool, problem: str) -> None:
    if not ok:
        raise ValueError(f"assemble_pairs: {problem}")


def _check_index(name: str, t: Tensor, views: int, device: torch.device) -> Tensor:
    _require(t.shape == (views,), f"{name} must have shape (V,) = ({views},), got {tuple(t.shape)}")
    _require(t.device == device, f"{name} is on {t.device}, frames on {device}")
    _require(t.dtype in (torch.int64, torch.int32), f"{name} must be int64 (or int32), got {t.dtype}")
    return t.long()


def _check_range(name: str, t: Tensor, low: int, high: int, meaning: str) -> None:
    if t.numel():
        lo, hi = int(t.min()), int(t.max())
        _require(low <= lo and hi < high,
                 f"{name} must lie in [{low}, {high}) ({meaning}); found values in [{lo}, {hi}]")


def assemble_pairs(
    frames: Tensor,
    frame_hw: Tensor,
    src: Tensor,
    boxes: Tensor,
    flip: Tensor,
    *,
    size: int,
    backgrounds: Tensor | None = None,
    bg_index: Tensor | None = None,
    fill_index: Tensor | None = None,
    fill: Sequence[float] | Tensor | None = None,
    mean: Sequence[float] | Tensor = IMAGENET_MEAN,
    std: Sequence[float] | Tensor = IMAGENET_STD,
    bg_mode: int = 0,
    bg_threshold: float | Tensor = 20.0,
    bg_softness: float = 10.0,
    shadow_min: float = 0.5,
    shadow_chroma: float = 0.0,
    clean: bool = False,
    out_dtype: torch.dtype = torch.float16,
    check_ranges: bool | None = None,
) -> Tensor:
    """Crop, resize, remove or substitute the background, flip, normalise and cast view pairs (see module doc).

    Returns (N, 2, 3, size, size) with N = V / 2, channels_last underneath: ``.flatten(0, 1)`` is the model batch.
    ``backgrounds`` is required for bg_mode 1/2 (with ``bg_index``) and for substitution (``fill_index`` >= 0).
    ``fill`` defaults to mean * 255, which normalises to 0. ``bg_threshold``: one Euclidean RGB distance for every
    background, or a float32 (B,) tensor on the frames' device, one per background. ``shadow_chroma`` > 0 turns on
    the shadow test, ``clean`` the 3x3 clean-up (bg modes 1/2). ``check_ranges``: check index and box values; the
    default checks them for CPU tensors and skips them on a GPU (reading values back would stall the stream) and
    under torch.compile (data-dependent checks would break the graph); the kernels never read out of bounds.
    """
    if not isinstance(frames, Tensor) or frames.dim() != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"assemble_pairs: frames must be a uint8 (M, H, W, 3) tensor, got {_describe(frames)}")
    device = frames.device
    num_frames, height, width, _ = frames.shape
    _require(isinstance(size, int) and size >= 1, f"size must be an int >= 1, got {size!r}")
    _require(bg_mode in BG_MODES, f"bg_mode must be 0 (off), 1 (hard) or 2 (soft), got {bg_mode!r}")
    _require(bg_mode != 2 or bg_softness > 0, f"bg_softness must be > 0 in bg_mode 2, got {bg_softness}")
    _require(0 <= shadow_min <= 1, f"shadow_min must lie in [0, 1], got {shadow_min}")
    _require(shadow_chroma >= 0, f"shadow_chroma must be >= 0 (0 turns the shadow test off), got {shadow_chroma}")
    _require(out_dtype in OUT_DTYPES, f"out_dtype must be float32, float16 or bfloat16, got {out_dtype}")
    _require(isinstance(src, Tensor) and src.dim() == 1, f"src must be a 1-D (V,) tensor, got {_describe(src)}")
    views = src.shape[0]
    _require(views % 2 == 0, f"the number of views V = {views} must be even (views 2n, 2n+1 form pair n)")
    src = _check_index("src", src, views, device)
    _require(frame_hw.shape == (num_frames, 2),
             f"frame_hw must be (M, 2) = ({num_frames}, 2), got {tuple(frame_hw.shape)}")
    _require(frame_hw.dtype in (torch.int32, torch.int64), f"frame_hw must be int32, got {frame_hw.dtype}")
    _require(frame_hw.device == device, f"frame_hw is on {frame_hw.device}, frames on {device}")
    _require(boxes.shape == (views, 4), f"boxes must be (V, 4) = ({views}, 4), got {tuple(boxes.shape)}")
    _require(boxes.dtype == torch.float32, f"boxes must be float32, got {boxes.dtype}")
    _require(boxes.device == device, f"boxes is on {boxes.device}, frames on {device}")
    _require(flip.shape == (views,), f"flip must have shape (V,) = ({views},), got {tuple(flip.shape)}")
    _require(flip.dtype in (torch.bool, torch.uint8), f"flip must be bool or uint8, got {flip.dtype}")
    _require(flip.device == device, f"flip is on {flip.device}, frames on {device}")

    if backgrounds is None:
        backgrounds = frames.new_empty((0, height, width, 3))
    _require(
        backgrounds.dim() == 4 and backgrounds.shape[1:] == (height, width, 3) and backgrounds.dtype == torch.uint8,
        f"backgrounds must be uint8 (B, H, W, 3) in the geometry of frames (H, W = {height}, {width}), "
        f"got {_describe(backgrounds)}",
    )
    _require(backgrounds.device == device, f"backgrounds is on {backgrounds.device}, frames on {device}")
    num_backgrounds = backgrounds.shape[0]
    if bg_mode != 0:
        _require(num_backgrounds > 0, f"bg_mode {bg_mode} needs backgrounds")
        _require(bg_index is not None, f"bg_mode {bg_mode} needs bg_index (the background of each view)")
    if isinstance(bg_threshold, Tensor):
        _require(bg_threshold.shape == (num_backgrounds,),
                 f"bg_threshold must be a float or have shape (B,) = ({num_backgrounds},) (one per background), "
                 f"got {tuple(bg_threshold.shape)}")
        _require(bg_threshold.dtype == torch.float32, f"bg_threshold must be float32, got {bg_threshold.dtype}")
        _require(bg_threshold.device == device, f"bg_threshold is on {bg_threshold.device}, frames on {device}")
        threshold_t = bg_threshold
    else:
        _require(math.isfinite(bg_threshold) and bg_threshold >= 0,
                 f"bg_threshold must be finite and >= 0, got {bg_threshold}")
        threshold_t = torch.full((num_backgrounds,), float(bg_threshold), dtype=torch.float32, device=device)
    bg_index = torch.zeros(views, dtype=torch.int64, device=device) if bg_index is None else bg_index
    bg_index = _check_index("bg_index", bg_index, views, device)
    fill_index = torch.full((views,), -1, dtype=torch.int64, device=device) if fill_index is None else fill_index
    fill_index = _check_index("fill_index", fill_index, views, device)
    mean_t, std_t = _channels("mean", mean, device), _channels("std", std, device)
    if fill is None:  # mean * 255, which normalises to 0
        fill = mean_t * 255 if isinstance(mean, Tensor) else tuple(255 * float(m) for m in mean)
    fill_t = _channels("fill", fill, device)

    if check_ranges is None:  # values are free to read on the CPU, not on a GPU or inside a compiled graph
        check_ranges = device.type == "cpu" and not torch.compiler.is_compiling()
    if check_ranges:
        _check_range("src", src, 0, num_frames, "an index into frames")
        _check_range("fill_index", fill_index, -1, num_backgrounds, "-1 or an index into backgrounds")
        if bg_mode != 0:
            _check_range("bg_index", bg_index, 0, num_backgrounds, "an index into backgrounds")
        _check_range("frame_hw[:, 0] (valid heights)", frame_hw[:, 0], 1, height + 1, "1 <= h <= H")
        _check_range("frame_hw[:, 1] (valid widths)", frame_hw[:, 1], 1, width + 1, "1 <= w <= W")
        _require(bool(torch.isfinite(boxes).all()), "boxes must be finite")
        _require(bool((boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()),
                 "every box needs x1 > x0 and y1 > y0")
        _require(bool((std_t != 0).all()), "std must not be 0")
        _require(bool((torch.isfinite(threshold_t) & (threshold_t >= 0)).all()),
                 "bg_threshold must be finite and >= 0")

    out = torch.ops.syncssl.assemble_pairs(
        frames.contiguous(), frame_hw.contiguous(), src, boxes.contiguous(), flip, backgrounds.contiguous(),
        bg_index, fill_index, fill_t, mean_t, std_t, threshold_t.contiguous(), size, bg_mode, float(bg_softness),
        float(shadow_min), float(shadow_chroma), bool(clean), out_dtype,
    )
    return out.unflatten(0, (views // 2, 2))


def _describe(x) -> str:
    if isinstance(x, Tensor):
        return f"{x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__
