"""syncssl::assemble_pairs: the C++ kernel (AVX-512, AVX2 and portable paths) against the PyTorch reference,
hand-checkable cases (background removal with the shadow test and the clean-up on a constructed image), the op's
registration (opcheck, torch.compile), input validation, the fallback without the extension and the benchmark's
baseline. The Triton kernel is tested in test_assemble_triton.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from syncssl.ops import assemble_pairs
from syncssl.ops.assemble import HAS_CPP_KERNEL
from syncssl.ops.reference import assemble_pairs_reference, fg_neighbours, sample_views

ARG_ORDER = ("frames", "frame_hw", "src", "boxes", "flip", "backgrounds", "bg_index", "fill_index", "fill", "mean",
             "std", "bg_threshold", "size", "bg_mode", "bg_softness", "shadow_min", "shadow_chroma", "clean",
             "out_dtype")
API_KEYWORDS = ARG_ORDER[5:]
# Tolerances on normalised values (about -2..2.7 here): fp32 tight; fp16 and bf16 allow a rounding step or two.
TOLERANCES = {
    torch.float32: dict(rtol=1e-5, atol=1e-4),
    torch.float16: dict(rtol=1e-2, atol=1e-2),
    torch.bfloat16: dict(rtol=2e-2, atol=4e-2),
}
# Pixels whose alpha two correct implementations may disagree on: a discrete decision (candidate, shadow) within
# float rounding of its boundary, and with the clean-up their 8 neighbours. The kernels' samples differ from the
# reference's by a few float32 ulps (~1e-5 in 0..255 units): d within NEAR_THRESHOLD of the threshold, or a shadow
# comparison within a relative NEAR_SHADOW of equality, is 100x that. These pixels are left out of the comparisons
# below, and there must be few of them (MAX_FRAGILE) for a comparison to mean something; the rest must agree to the
# dtype's tolerance.
NEAR_THRESHOLD = 1e-3
NEAR_SHADOW = 1e-4
# Share of the output pixels, without / with the clean-up (3x3 dilated); ~0.01% / 0.1% at S = 37, more at S = 5.
MAX_FRAGILE = {False: 0.01, True: 0.08}


def make_inputs(seed: int = 0, views: int = 8, size: int = 37, bg_mode: int = 2, out_dtype=torch.float32,
                shadow_chroma: float = 0.0, clean: bool = False) -> dict:
    """Random op inputs in awkward geometry: a padded bank of frames with different valid sizes, non-square boxes
    partly or wholly outside their frame, flips and background substitution in every combination, backgrounds close
    to some frames so that bg modes 1 and 2 see differences on both sides of each background's own threshold, and
    a patch of each of those frames that is its background in shadow (darker, same colour) for the shadow test."""
    g = torch.Generator().manual_seed(seed)
    height, width = 23, 31
    frame_hw = torch.tensor([[23, 31], [17, 29], [23, 12], [9, 31]], dtype=torch.int32)
    frames = torch.randint(0, 256, (4, height, width, 3), dtype=torch.uint8, generator=g)
    noise = torch.randint(-25, 26, (3, height, width, 3), generator=g)
    backgrounds = (frames[:3].int() + noise).clamp(0, 255).to(torch.uint8)  # camera b's background ~ frame b
    frames[:3, 3:13, 4:17] = (backgrounds[:, 3:13, 4:17].float() * 0.7).round().to(torch.uint8)  # in shadow
    src = torch.randint(0, 4, (views,), generator=g)
    h, w = frame_hw[src].float().unbind(1)
    cx, cy = w * (1.4 * torch.rand(views, generator=g) - 0.2), h * (1.4 * torch.rand(views, generator=g) - 0.2)
    bw, bh = w * (0.2 + 1.3 * torch.rand(views, generator=g)), h * (0.2 + 1.3 * torch.rand(views, generator=g))
    boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=1)
    if views > 2:
        boxes[-1] = torch.tensor([-40.0, -30.0, -5.0, -2.0])  # wholly outside: all fill
    pattern = torch.arange(views)
    substitute = torch.randint(0, 3, (views,), generator=g)
    return dict(
        frames=frames, frame_hw=frame_hw, src=src, boxes=boxes, flip=pattern % 2 == 1,
        backgrounds=backgrounds, bg_index=src.clamp(max=2),
        fill_index=torch.where((pattern // 2) % 2 == 1, substitute, torch.full_like(substitute, -1)),
        fill=torch.tensor([30.0, 140.0, 220.0]), mean=torch.tensor([0.485, 0.456, 0.406]),
        std=torch.tensor([0.229, 0.224, 0.225]), bg_threshold=torch.tensor([21.37, 26.5, 31.25]), size=size,
        bg_mode=bg_mode, bg_softness=9.0, shadow_min=0.5, shadow_chroma=shadow_chroma, clean=clean,
        out_dtype=out_dtype,
    )


def op_args(inputs: dict) -> tuple:
    return tuple(inputs[k] for k in ARG_ORDER)


def samples(inputs: dict):
    return sample_views(*(inputs[k] for k in ARG_ORDER[:9]), inputs["size"], inputs["bg_mode"])


def fragile_pixels(inputs: dict) -> torch.Tensor:
    """(V, S, S) bool: the pixels whose alpha may differ between correct implementations (see NEAR_THRESHOLD)."""
    s = samples(inputs)
    near = torch.zeros(s.pix.shape[:-1], dtype=torch.bool)
    mode, chroma, clean = inputs["bg_mode"], inputs["shadow_chroma"], inputs["clean"]
    if mode == 0 or (mode == 2 and chroma == 0 and not clean):  # alpha is continuous in the samples
        return near
    margin = s.difference() - inputs["bg_threshold"][inputs["bg_index"]][:, None, None]
    near |= margin.abs() <= NEAR_THRESHOLD
    if chroma > 0:  # the shadow test matters for candidates only
        pb, bb, pp = (s.pix * s.bgv).sum(-1), (s.bgv * s.bgv).sum(-1).clamp(min=1), (s.pix * s.pix).sum(-1)
        shadow_near = (pb - inputs["shadow_min"] * bb).abs() <= NEAR_SHADOW * bb
        shadow_near |= (pb - bb).abs() <= NEAR_SHADOW * bb
        shadow_near |= (pp * bb - (1 + chroma ** 2) * pb * pb).abs() <= NEAR_SHADOW * pp * bb
        near |= shadow_near & (margin > -NEAR_THRESHOLD)
    if clean:  # a flipped class changes its neighbours' counts
        near |= fg_neighbours(near) > 0
    return near


def assert_matches_reference(out: torch.Tensor, inputs: dict) -> None:
    ref = assemble_pairs_reference(*op_args(inputs))
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert out.stride() == ref.stride(), "output must be channels_last"
    assert torch.isfinite(out).all(), "an element was left unwritten (NaN poison) or is not finite"
    fragile = fragile_pixels(inputs)
    assert fragile.float().mean() <= MAX_FRAGILE[inputs["clean"]], "too many fragile pixels for a meaningful test"
    keep = ~fragile[:, None].expand_as(out)
    torch.testing.assert_close(out.float()[keep], ref.float()[keep], **TOLERANCES[inputs["out_dtype"]])


needs_cpp = pytest.mark.skipif(not HAS_CPP_KERNEL, reason="syncssl._C (the C++ kernel) is not built")
CPP_PATHS = ("best-simd", "avx2", "portable")


def use_cpp_path(path: str, monkeypatch) -> None:
    """Route the C++ kernel to one row kernel (its best SIMD path: AVX-512 where the CPU has it, the AVX2 path, or
    the portable one) and poison its output with NaN before every run."""
    if not HAS_CPP_KERNEL:
        pytest.skip("syncssl._C (the C++ kernel) is not built")
    monkeypatch.setenv("SYNCSSL_PORTABLE_KERNEL", "1" if path == "portable" else "0")
    monkeypatch.setenv("SYNCSSL_NO_AVX512", "1" if path == "avx2" else "0")
    monkeypatch.setenv("SYNCSSL_DEBUG_POISON", "1")


@pytest.fixture(params=CPP_PATHS)
def cpp_kernel(request, monkeypatch):
    """The C++ CPU kernel through the dispatcher on one of its paths (see use_cpp_path), as inputs -> output."""
    use_cpp_path(request.param, monkeypatch)
    return lambda inputs: torch.ops.syncssl.assemble_pairs(*op_args(inputs))


@pytest.fixture(params=["reference", *(f"cpp-{p}" for p in CPP_PATHS)])
def kernel(request, monkeypatch):
    """Every CPU implementation, as a function of the op's positional arguments."""
    if request.param == "reference":
        return assemble_pairs_reference
    use_cpp_path(request.param.removeprefix("cpp-"), monkeypatch)
    return torch.ops.syncssl.assemble_pairs


# (shadow_chroma, clean): the background-removal options, each alone and together.
VARIANTS = {"plain": (0.0, False), "shadow": (0.1, False), "clean": (0.0, True), "shadow+clean": (0.1, True)}


# ---- agreement with the reference ------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("bg_mode", [0, 1, 2])
def test_cpp_matches_reference(cpp_kernel, bg_mode, out_dtype, variant):
    chroma, clean = VARIANTS[variant]
    inputs = make_inputs(seed=bg_mode, bg_mode=bg_mode, out_dtype=out_dtype, shadow_chroma=chroma, clean=clean)
    assert_matches_reference(cpp_kernel(inputs), inputs)


@pytest.mark.parametrize("bg_mode", [1, 2])
@pytest.mark.parametrize("size, views", [(1, 2), (5, 2), (8, 4), (64, 6), (37, 2), (17, 4)])
def test_cpp_matches_reference_odd_sizes(cpp_kernel, size, views, bg_mode):
    inputs = make_inputs(seed=size, views=views, size=size, bg_mode=bg_mode, out_dtype=torch.float16,
                         shadow_chroma=0.1, clean=True)
    assert_matches_reference(cpp_kernel(inputs), inputs)


def test_random_inputs_exercise_every_class_and_clean_up_rule():
    # The agreement tests mean something only if their inputs have pixels of each class and each rule fires.
    inputs = make_inputs(seed=1, bg_mode=1, shadow_chroma=0.1, clean=True)
    s = samples(inputs)
    candidate, shadow = s.classes(inputs["bg_threshold"][inputs["bg_index"]], 0.5, 0.1)
    fg = candidate & ~shadow
    n = fg_neighbours(fg)
    for name, pixels in {"background": ~candidate, "shadow": shadow, "foreground": fg, "speck": fg & (n < 1),
                         "shadow filled": shadow & (n >= 3), "hole filled": ~candidate & (n >= 5)}.items():
        assert pixels.sum() >= 5, name


@needs_cpp
def test_cpp_edge_of_the_bank_and_one_pixel_frames(monkeypatch):
    # The AVX2 kernel loads 8 bytes per tap pair: a box touching the bank's last pixel must still be exact, and a
    # frame 1 pixel wide (the right tap of every pair outside) must read nothing it should not.
    monkeypatch.setenv("SYNCSSL_DEBUG_POISON", "1")
    inputs = make_inputs(seed=5, views=4, size=9, bg_mode=1, shadow_chroma=0.1, clean=True)
    frames = inputs["frames"]
    inputs["frame_hw"] = torch.tensor([[23, 31], [17, 1], [1, 12], [23, 31]], dtype=torch.int32)
    inputs["src"] = torch.tensor([3, 1, 2, 3])
    inputs["bg_index"] = torch.tensor([2, 2, 2, 2])
    inputs["fill_index"] = torch.tensor([2, -1, 2, -1])
    inputs["boxes"] = torch.tensor([[20.0, 15.0, 31.0, 23.0], [-1.0, 0.0, 2.0, 17.0], [0.0, -2.0, 12.0, 3.0],
                                    [28.5, 20.5, 31.5, 23.5]])
    assert frames.shape[0] == 4
    for portable in ("0", "1"):
        monkeypatch.setenv("SYNCSSL_PORTABLE_KERNEL", portable)
        assert_matches_reference(torch.ops.syncssl.assemble_pairs(*op_args(inputs)), inputs)


def test_api_returns_pairs_as_a_view_of_the_channels_last_batch():
    inputs = make_inputs(views=6, size=11, bg_mode=2, out_dtype=torch.float16, shadow_chroma=0.1, clean=True)
    keywords = {k: inputs[k] for k in API_KEYWORDS}
    pairs = assemble_pairs(*op_args(inputs)[:5], **keywords)
    assert pairs.shape == (3, 2, 3, 11, 11)
    batch = pairs.flatten(0, 1)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert batch.data_ptr() == pairs.data_ptr()
    assert_matches_reference(batch, inputs)


def test_api_defaults():
    # No backgrounds, no substitution, fill = mean * 255 (normalises to 0), ImageNet mean/std, float16.
    inputs = make_inputs(views=4, size=7, bg_mode=0)
    pairs = assemble_pairs(inputs["frames"], inputs["frame_hw"], inputs["src"], inputs["boxes"], inputs["flip"],
                           size=7)
    assert pairs.dtype == torch.float16
    outside = pairs.flatten(0, 1)[-1]  # the last view's box is wholly outside its frame: all fill
    torch.testing.assert_close(outside.float(), torch.zeros_like(outside, dtype=torch.float32), atol=1e-3, rtol=0)


def test_api_threshold_number_is_every_backgrounds_threshold():
    inputs = make_inputs(views=4, size=9, bg_mode=1, shadow_chroma=0.1, clean=True)
    keywords = {k: inputs[k] for k in API_KEYWORDS}
    number = assemble_pairs(*op_args(inputs)[:5], **{**keywords, "bg_threshold": 26.5})
    tensor = assemble_pairs(*op_args(inputs)[:5], **{**keywords, "bg_threshold": torch.full((3,), 26.5)})
    assert torch.equal(number, tensor)
    assert not torch.equal(number, assemble_pairs(*op_args(inputs)[:5], **{**keywords, "bg_threshold": 10.0}))


# ---- hand-checkable cases ----------------------------------------------------------------------------------------
SCENE = 24  # the constructed scene's frame side, and the output size that samples it 1:1
SCENE_FILL = (0.0, 0.0, 255.0)  # a colour the scene does not have: removed pixels show it


def scene_inputs(bg_mode: int = 1, shadow_chroma: float = 0.05, clean: bool = True) -> tuple[dict, dict]:
    """A constructed scene, sampled 1:1 (the box is the frame and S its side, so every output pixel is exactly one
    source pixel) by an unflipped and a flipped view: the camera's background (a smooth gradient), a patch of it in
    shadow (0.6 x darker, same colour), a red person patch with a 1-pixel hole showing the background, and an
    isolated white 1-pixel speck. Returns the op's inputs and the regions, (S, S) bool each."""
    y, x = torch.meshgrid(torch.arange(SCENE), torch.arange(SCENE), indexing="ij")
    background = torch.stack([100 + 2 * x, 120 + y, 90 + x + y], -1).to(torch.uint8)
    regions = {name: torch.zeros(SCENE, SCENE, dtype=torch.bool) for name in ("person", "shadow", "hole", "speck")}
    regions["person"][4:15, 10:18] = True
    regions["shadow"][17:22, 2:9] = True  # apart from the person: no shadow pixel touches it
    regions["hole"][9, 13] = True
    regions["speck"][2, 3] = True
    frame = background.clone()
    frame[regions["shadow"]] = (background[regions["shadow"]].float() * 0.6).round().to(torch.uint8)
    frame[regions["person"]] = torch.tensor([200, 30, 40], dtype=torch.uint8)
    frame[regions["hole"]] = background[regions["hole"]]
    frame[regions["speck"]] = torch.tensor([250, 250, 250], dtype=torch.uint8)
    inputs = dict(
        frames=frame[None], frame_hw=torch.tensor([[SCENE, SCENE]], dtype=torch.int32), src=torch.tensor([0, 0]),
        boxes=torch.tensor([[0.0, 0.0, SCENE, SCENE]] * 2), flip=torch.tensor([False, True]),
        backgrounds=background[None], bg_index=torch.tensor([0, 0]), fill_index=torch.tensor([-1, -1]),
        fill=torch.tensor(SCENE_FILL), mean=torch.zeros(3), std=torch.ones(3), bg_threshold=torch.tensor([30.0]),
        size=SCENE, bg_mode=bg_mode, bg_softness=1.0, shadow_min=0.5, shadow_chroma=shadow_chroma, clean=clean,
        out_dtype=torch.float32,
    )
    return inputs, regions


def kept_pixels(out: torch.Tensor) -> torch.Tensor:
    """(V, S, S) bool: the pixels of an output of the scene (mean 0, std 1) that do not show the fill."""
    fill = torch.tensor(SCENE_FILL).view(1, 3, 1, 1) / 255
    return ~(out.float() == fill).all(1)


def check_scene(kernel) -> None:
    """Raises AssertionError unless `kernel` (the op's positional arguments -> output) removes the scene's
    background as the semantics say, with and without the shadow test and the clean-up, in bg modes 1 and 2."""
    for bg_mode in (1, 2):
        for chroma, clean in ((0.05, True), (0.0, False), (0.0, True), (0.05, False)):
            inputs, r = scene_inputs(bg_mode, chroma, clean)
            kept = kept_pixels(kernel(*op_args(inputs)))
            expected = r["person"] | r["shadow"] | r["speck"]  # the distance alone
            if chroma > 0:
                expected &= ~r["shadow"]
            if clean:  # the hole is filled, the speck removed
                expected = (expected | r["hole"]) & ~r["speck"]
            else:
                expected &= ~r["hole"]
            case = f"bg_mode {bg_mode}, shadow_chroma {chroma}, clean {clean}"
            assert torch.equal(kept[0], expected), f"{case}: wrong mask"
            assert torch.equal(kept[1], expected.flip(-1)), f"{case}: the flipped view's mask is not the mirror"


def check_thresholds_per_background(kernel) -> None:
    """Raises AssertionError unless two views of the scene against two copies of its background, with thresholds
    30 and 100 (the shadow's distance is ~84), get different masks: the shadow only under the lower threshold."""
    inputs, r = scene_inputs(bg_mode=1, shadow_chroma=0.0, clean=False)
    inputs.update(backgrounds=inputs["backgrounds"].expand(2, -1, -1, -1).contiguous(),
                  bg_threshold=torch.tensor([30.0, 100.0]), bg_index=torch.tensor([0, 1]),
                  flip=torch.tensor([False, False]))
    kept = kept_pixels(kernel(*op_args(inputs)))
    body = (r["person"] & ~r["hole"]) | r["speck"]
    assert torch.equal(kept[0], body | r["shadow"]), "threshold 30"
    assert torch.equal(kept[1], body), "threshold 100"


def test_scene_background_removal(kernel):
    check_scene(kernel)


def test_thresholds_are_per_background(kernel):
    check_thresholds_per_background(kernel)


@pytest.mark.parametrize("portable", ["0", "1"])
@pytest.mark.parametrize("kernel_name", ["reference", "cpp"])
def test_identity_crop_is_the_frame(kernel_name, portable, monkeypatch):
    if kernel_name == "cpp" and not HAS_CPP_KERNEL or kernel_name == "reference" and portable == "1":
        pytest.skip("not applicable")
    monkeypatch.setenv("SYNCSSL_PORTABLE_KERNEL", portable)
    kernel = torch.ops.syncssl.assemble_pairs if kernel_name == "cpp" else assemble_pairs_reference
    inputs = make_inputs(views=2, size=9, bg_mode=0)
    inputs["frame_hw"] = torch.tensor([[9, 9], [9, 9], [23, 31], [23, 31]], dtype=torch.int32)
    inputs.update(src=torch.tensor([0, 1]), boxes=torch.tensor([[0.0, 0.0, 9.0, 9.0]] * 2),
                  flip=torch.tensor([False, True]), fill_index=torch.tensor([-1, -1]),
                  mean=torch.zeros(3), std=torch.ones(3))
    out = kernel(*op_args(inputs))
    expected = inputs["frames"][:2, :9, :9].permute(0, 3, 1, 2).float() / 255
    expected[1] = expected[1].flip(-1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)  # exact up to one float rounding


@pytest.mark.parametrize("bg_mode, variant", [(0, "plain"), (2, "plain"), (1, "shadow+clean"), (2, "shadow+clean")])
def test_flip_reverses_columns_exactly(kernel, bg_mode, variant):
    # The clean-up's neighbourhood is in output coordinates: a flipped view's cleaned mask is the mirror too.
    chroma, clean = VARIANTS[variant]
    inputs = make_inputs(seed=3, views=8, size=13, bg_mode=bg_mode, shadow_chroma=chroma, clean=clean)
    plain = kernel(*op_args({**inputs, "flip": torch.zeros(8, dtype=torch.bool)}))
    mirrored = kernel(*op_args({**inputs, "flip": torch.ones(8, dtype=torch.bool)}))
    assert torch.equal(mirrored, plain.flip(-1))


@pytest.mark.parametrize("variant", ["plain", "shadow+clean"])
def test_frame_equal_to_its_background_becomes_the_fill(kernel, variant):
    chroma, clean = VARIANTS[variant]
    inputs = make_inputs(seed=4, views=4, size=10, bg_mode=1, shadow_chroma=chroma, clean=clean)
    inputs["backgrounds"] = inputs["frames"].clone()
    inputs["bg_index"] = inputs["src"]
    inputs["bg_threshold"] = torch.zeros(4)  # d = 0 is not above even a zero threshold
    inputs["fill_index"] = torch.tensor([-1, -1, 2, 0])
    out = kernel(*op_args(inputs))
    constant = (inputs["fill"] / 255 - inputs["mean"]) / inputs["std"]
    torch.testing.assert_close(out[:2], constant.view(1, 3, 1, 1).expand(2, 3, 10, 10), rtol=0, atol=1e-5)
    # With substitution the fill is the substitute background's crop: the op in mode 0 on that image as the frame.
    as_frame = {**inputs, "bg_mode": 0, "src": torch.tensor([2, 0]), "boxes": inputs["boxes"][2:],
                "flip": inputs["flip"][2:], "fill_index": torch.tensor([-1, -1]), "bg_index": torch.tensor([0, 0])}
    # ... whose own outside taps take the constant fill, and whose valid region is the source frame's.
    as_frame["frame_hw"] = inputs["frame_hw"].clone()
    as_frame["frame_hw"][as_frame["src"]] = inputs["frame_hw"][inputs["src"][2:]]
    torch.testing.assert_close(out[2:], kernel(*op_args(as_frame)), rtol=0, atol=1e-5)


# ---- registration ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bg_mode, out_dtype, variant", [(2, torch.float16, "shadow+clean"),
                                                         (0, torch.float32, "plain"), (1, torch.bfloat16, "clean")])
def test_opcheck(bg_mode, out_dtype, variant):
    chroma, clean = VARIANTS[variant]
    inputs = make_inputs(seed=7, views=4, size=6, bg_mode=bg_mode, out_dtype=out_dtype, shadow_chroma=chroma,
                         clean=clean)
    torch.library.opcheck(torch.ops.syncssl.assemble_pairs.default, op_args(inputs))


def _compiled_pairs(backend):
    @torch.compile(fullgraph=True, backend=backend)
    def pairs_doubled(frames, frame_hw, src, boxes, flip, backgrounds, bg_index, fill_index, mean, std, threshold):
        out = assemble_pairs(frames, frame_hw, src, boxes, flip, backgrounds=backgrounds, bg_index=bg_index,
                             fill_index=fill_index, mean=mean, std=std, bg_threshold=threshold, size=9, bg_mode=2,
                             shadow_chroma=0.1, clean=True, out_dtype=torch.float32)
        return out * 2

    return pairs_doubled


def _check_compiled(backend):
    inputs = make_inputs(seed=8, views=4, size=9, bg_mode=2)
    args = [inputs[k] for k in ARG_ORDER[:8]] + [inputs["mean"], inputs["std"], inputs["bg_threshold"]]
    got = _compiled_pairs(backend)(*args)
    eager = assemble_pairs(*args[:5], backgrounds=args[5], bg_index=args[6], fill_index=args[7], mean=args[8],
                           std=args[9], bg_threshold=args[10], size=9, bg_mode=2, shadow_chroma=0.1, clean=True,
                           out_dtype=torch.float32) * 2
    assert got.shape == (2, 2, 3, 9, 9)
    torch.testing.assert_close(got, eager)


def test_torch_compile_fullgraph_traces_the_op():
    torch._dynamo.reset()
    _check_compiled("aot_eager")  # dynamo + AOTAutograd with the fake kernel: no graph break


@pytest.mark.slow
def test_torch_compile_fullgraph_inductor():
    torch._dynamo.reset()
    _check_compiled("inductor")  # ~40 s on 2 contended cores: mostly compiling inductor's own C++


# ---- input validation --------------------------------------------------------------------------------------------
def _call(**changes):
    inputs = make_inputs(views=4, size=5, bg_mode=2)
    inputs.update(changes)
    keywords = {k: inputs[k] for k in API_KEYWORDS}
    return assemble_pairs(*(inputs[k] for k in ARG_ORDER[:5]), **keywords)


@pytest.mark.parametrize("changes, message", [
    (dict(frames=torch.zeros(4, 23, 31, 3)), "frames must be a uint8"),
    (dict(frames=torch.zeros(4, 23, 31, 4, dtype=torch.uint8)), "frames must be a uint8"),
    (dict(src=torch.tensor([0, 1, 2])), "must be even"),
    (dict(src=torch.tensor([0, 1, 2, 4])), r"src must lie in \[0, 4\)"),
    (dict(src=torch.tensor([0.0, 1, 2, 3])), "src must be int64"),
    (dict(frame_hw=torch.tensor([[23, 31]] * 3, dtype=torch.int32)), "frame_hw must be"),
    (dict(frame_hw=torch.tensor([[23, 31], [24, 31], [5, 5], [5, 5]], dtype=torch.int32)), "valid heights"),
    (dict(frame_hw=torch.tensor([[23, 0], [5, 5], [5, 5], [5, 5]], dtype=torch.int32)), "valid widths"),
    (dict(boxes=torch.zeros(4, 3)), "boxes must be"),
    (dict(boxes=torch.zeros(4, 4, dtype=torch.float64)), "boxes must be float32"),
    (dict(boxes=torch.tensor([[0.0, 0, 5, 5], [0, 0, 5, 5], [3, 0, 3, 5], [0, 0, 5, 5]])), "x1 > x0"),
    (dict(boxes=torch.tensor([[0.0, 0, 5, float("nan")]] * 4)), "finite"),
    (dict(flip=torch.zeros(4, dtype=torch.int64)), "flip must be bool or uint8"),
    (dict(backgrounds=torch.zeros(3, 22, 31, 3, dtype=torch.uint8)), "geometry of frames"),
    (dict(backgrounds=None), "bg_mode 2 needs backgrounds"),
    (dict(bg_index=None), "needs bg_index"),
    (dict(bg_index=torch.tensor([0, 1, 2, 3])), r"bg_index must lie in \[0, 3\)"),
    (dict(fill_index=torch.tensor([0, -2, 0, 0])), r"fill_index must lie in \[-1, 3\)"),
    (dict(size=0), "size must be an int >= 1"),
    (dict(bg_mode=3), "bg_mode must be"),
    (dict(bg_softness=0.0), "bg_softness must be > 0"),
    (dict(out_dtype=torch.float64), "out_dtype must be"),
    (dict(mean=(0.5, 0.5)), "mean must be 3 numbers"),
    (dict(std=torch.tensor([0.2, 0.0, 0.2])), "std must not be 0"),
    (dict(bg_threshold=torch.tensor([20.0, 20.0])), r"bg_threshold must be a float or have shape \(B,\) = \(3,\)"),
    (dict(bg_threshold=torch.full((3,), 20.0, dtype=torch.float64)), "bg_threshold must be float32"),
    (dict(bg_threshold=torch.tensor([20.0, float("nan"), 20.0])), "bg_threshold must be finite and >= 0"),
    (dict(bg_threshold=torch.tensor([20.0, -1.0, 20.0])), "bg_threshold must be finite and >= 0"),
    (dict(bg_threshold=-1.0), "bg_threshold must be finite and >= 0"),
    (dict(bg_threshold=float("inf")), "bg_threshold must be finite and >= 0"),
    (dict(shadow_min=1.5), r"shadow_min must lie in \[0, 1\]"),
    (dict(shadow_chroma=-0.1), "shadow_chroma must be >= 0"),
])
def test_validation_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        _call(**changes)


def test_validation_rejects_mixed_devices():
    meta_src = torch.zeros(4, dtype=torch.int64, device="meta")
    with pytest.raises(ValueError, match="src is on meta"):
        _call(src=meta_src)
    with pytest.raises(ValueError, match="bg_threshold is on meta"):
        _call(bg_threshold=torch.zeros(3, device="meta"))


@needs_cpp
@pytest.mark.parametrize("changes, message", [
    (dict(src=torch.tensor([0, 1, 2, 9])), "src must lie in"),
    (dict(bg_threshold=torch.ones(2)), r"bg_threshold must be \(B,\)"),
    (dict(bg_threshold=torch.tensor([1.0, float("nan"), 1.0])), "bg_threshold must be finite"),
    (dict(shadow_chroma=-1.0), "shadow_chroma must be >= 0"),
])
def test_cpp_op_checks_its_inputs_without_the_api(changes, message):
    inputs = make_inputs(views=4, size=5, bg_mode=2)
    with pytest.raises(RuntimeError, match=message):
        torch.ops.syncssl.assemble_pairs(*op_args({**inputs, **changes}))


# ---- without the C++ extension -----------------------------------------------------------------------------------
FALLBACK_SCRIPT = """
import json, sys, warnings
sys.path.insert(0, sys.argv[1])  # the tests folder
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import syncssl.ops
    import syncssl.ops.assemble  # importing twice must not warn twice
    import torch
    from syncssl.ops.reference import assemble_pairs_reference
    from test_assemble_pairs import make_inputs, op_args
    inputs = make_inputs(views=4, size=6, bg_mode=2)
    out = torch.ops.syncssl.assemble_pairs(*op_args(inputs))
    out = torch.ops.syncssl.assemble_pairs(*op_args(inputs))
    same = bool(torch.equal(out, assemble_pairs_reference(*op_args(inputs))))
messages = [str(w.message) for w in caught if "falls back" in str(w.message)]
print(json.dumps({"has_cpp": syncssl.ops.HAS_CPP_KERNEL, "warnings": messages, "same": same}))
"""


def test_fallback_without_the_extension_warns_once_and_uses_the_reference():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "SYNCSSL_NO_EXT": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT, os.path.dirname(__file__)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["has_cpp"] is False
    assert len(result["warnings"]) == 1 and "PyTorch reference" in result["warnings"][0]
    assert result["same"]


# ---- the benchmark -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bg_mode, variant", [(0, "plain"), (2, "plain"), (1, "shadow+clean"), (2, "shadow+clean")])
def test_eager_baseline_does_the_same_work(bg_mode, variant):
    # For integer boxes inside the frame that do not upsample, slicing + F.interpolate samples exactly the op's
    # points, so the benchmark's eager chain must agree with the op: it is a fair baseline.
    from syncssl.bench.assemble import eager_assemble

    chroma, clean = VARIANTS[variant]
    inputs = make_inputs(seed=11, views=4, size=6, bg_mode=bg_mode, shadow_chroma=chroma, clean=clean)
    inputs["frame_hw"] = torch.tensor([[23, 31]] * 4, dtype=torch.int32)
    inputs["boxes"] = torch.tensor([[2.0, 3.0, 14.0, 15.0], [10.0, 1.0, 28.0, 19.0], [0.0, 0.0, 31.0, 23.0],
                                    [5.0, 7.0, 11.0, 20.0]])
    inputs["fill_index"] = torch.tensor([-1, 1, -1, 0])
    keep = ~fragile_pixels(inputs)[:, None].expand(4, 3, 6, 6)
    torch.testing.assert_close(eager_assemble(*op_args(inputs))[keep],
                               assemble_pairs_reference(*op_args(inputs))[keep], rtol=1e-5, atol=1e-4)


def test_benchmark_runs_and_reports_ratios():
    from syncssl.bench.assemble import BenchCase, counted_bytes, make_batch, run_assemble_benchmark
    from syncssl.bench.bandwidth import copy_bandwidth

    assert copy_bandwidth(1 << 20) > 0
    case = BenchCase(64, 48, 16, torch.float16, pad_h=2)
    batch = make_batch(case, pairs=2)
    assert counted_bytes(batch) > 4 * 3 * 16 * 16 * 2  # output bytes plus some input
    result = run_assemble_benchmark(sizes=(case,), repeats=1, pairs=2)
    row = result["cases"][0]
    assert {"reference", "eager"} <= set(row["providers"])
    assert result["assemble_triton_over_copy"] is None
    if HAS_CPP_KERNEL:
        assert row["assemble_cpp_over_copy"] > 0 and row["assemble_cpp_over_eager"] > 0
