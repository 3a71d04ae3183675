"""The Triton kernel of syncssl::assemble_pairs against the PyTorch reference.

Without a GPU the kernel really runs, in Triton's interpreter (TRITON_INTERPRET=1) on CPU tensors. The interpreter
must be switched on before triton is imported, so the checks run in a subprocess: this file executed as a script.
With a GPU, the registered CUDA kernel is checked directly as well.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

# (name, make_inputs keywords): every bg mode, every output dtype, the shadow test and the clean-up alone and
# together, odd sizes (S * S not a multiple of BLOCK: views of 2 and 3 blocks), N = 1.
CASES = {
    "mode0-fp32": dict(seed=0, bg_mode=0, out_dtype="float32", shadow_chroma=0.1, clean=True),
    "mode1-fp32": dict(seed=1, bg_mode=1, out_dtype="float32"),
    "mode1-fp32-shadow-clean": dict(seed=1, bg_mode=1, out_dtype="float32", shadow_chroma=0.1, clean=True),
    "mode2-fp32": dict(seed=2, bg_mode=2, out_dtype="float32"),
    "mode2-fp32-shadow": dict(seed=2, bg_mode=2, out_dtype="float32", shadow_chroma=0.1),
    "mode2-fp16-clean": dict(seed=3, bg_mode=2, out_dtype="float16", clean=True),
    "mode1-bf16-shadow-clean": dict(seed=4, bg_mode=1, out_dtype="bfloat16", shadow_chroma=0.1, clean=True),
    "mode2-bf16-shadow-clean": dict(seed=4, bg_mode=2, out_dtype="bfloat16", shadow_chroma=0.1, clean=True),
    "size1-pair1": dict(seed=5, views=2, size=1, bg_mode=2, out_dtype="float16", shadow_chroma=0.1, clean=True),
    "size5-pair1": dict(seed=6, views=2, size=5, bg_mode=0, out_dtype="float32"),
    "size17-shadow-clean": dict(seed=7, views=4, size=17, bg_mode=1, out_dtype="float32", shadow_chroma=0.1,
                                clean=True),
    "size23-shadow-clean": dict(seed=8, views=4, size=23, bg_mode=2, out_dtype="float16", shadow_chroma=0.1,
                                clean=True),
}
HAND_CHECKS = ("identity-crop", "flip-exact", "scene", "thresholds-per-background")


def _inputs(name: str, device="cpu"):
    from test_assemble_pairs import make_inputs

    keywords = dict(CASES[name])
    keywords["out_dtype"] = getattr(torch, keywords["out_dtype"])
    inputs = make_inputs(**keywords)
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def _hand_check(name: str, kernel) -> None:
    """Raises AssertionError unless the kernel passes the named hand-checkable case."""
    from test_assemble_pairs import check_scene, check_thresholds_per_background, make_inputs, op_args

    if name == "identity-crop":
        inputs = make_inputs(views=2, size=9, bg_mode=0)
        inputs["frame_hw"] = torch.tensor([[9, 9], [9, 9], [23, 31], [23, 31]], dtype=torch.int32)
        inputs.update(src=torch.tensor([0, 1]), boxes=torch.tensor([[0.0, 0.0, 9.0, 9.0]] * 2),
                      flip=torch.tensor([False, True]), fill_index=torch.tensor([-1, -1]),
                      mean=torch.zeros(3), std=torch.ones(3))
        expected = inputs["frames"][:2, :9, :9].permute(0, 3, 1, 2).float() / 255
        expected[1] = expected[1].flip(-1)
        torch.testing.assert_close(kernel(*op_args(inputs)), expected, rtol=0, atol=1e-6)
    elif name == "flip-exact":  # the clean-up's neighbourhood is in output coordinates: mirrored too
        for bg_mode in (1, 2):
            inputs = make_inputs(seed=3, views=4, size=13, bg_mode=bg_mode, shadow_chroma=0.1, clean=True)
            plain = kernel(*op_args({**inputs, "flip": torch.zeros(4, dtype=torch.bool)}))
            mirrored = kernel(*op_args({**inputs, "flip": torch.ones(4, dtype=torch.bool)}))
            assert torch.equal(mirrored, plain.flip(-1)), "flipping must reverse the columns exactly"
    elif name == "scene":
        check_scene(kernel)
    elif name == "thresholds-per-background":
        check_thresholds_per_background(kernel)


def _interpreter_main() -> None:
    """Subprocess entry: run every case through the Triton launcher in the interpreter, one JSON line each."""
    assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"
    os.environ["SYNCSSL_DEBUG_POISON"] = "1"
    from test_assemble_pairs import assert_matches_reference, op_args

    from syncssl.ops.triton_assemble import assemble_pairs_triton

    for name in [*CASES, *HAND_CHECKS]:
        try:
            if name in CASES:
                inputs = _inputs(name)
                assert_matches_reference(assemble_pairs_triton(*op_args(inputs)), inputs)
            else:
                _hand_check(name, assemble_pairs_triton)
            result = {"case": name, "ok": True}
        except AssertionError as e:
            result = {"case": name, "ok": False, "message": str(e)}
        print(json.dumps(result), flush=True)


@pytest.fixture(scope="module")
def interpreter_results() -> dict:
    pytest.importorskip("triton")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    results = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    return {r["case"]: r for r in results}


@pytest.mark.parametrize("name", [*CASES, *HAND_CHECKS])
def test_triton_kernel_in_the_interpreter(interpreter_results, name):
    result = interpreter_results.get(name)
    assert result is not None, f"case {name} did not run"
    assert result["ok"], result.get("message")


# Argument types of the kernels as the launcher passes them; ints equal to 1 become constants when launched.
_SIGNATURE = dict(
    frames_ptr="*u8", frame_hw_ptr="*i32", src_ptr="*i64", boxes_ptr="*fp32", flip_ptr="*u8", backgrounds_ptr="*u8",
    bg_index_ptr="*i64", fill_index_ptr="*i64", fill_ptr="*fp32", mean_ptr="*fp32", std_ptr="*fp32",
    bg_threshold_ptr="*fp32", classes_ptr="*u8", num_frames="i32", num_backgrounds="i32", height="i32",
    width="i32", size="i32", bg_softness="fp32", shadow_min="fp32", shadow_limit="fp32", BG_MODE="constexpr",
    SHADOW_TEST="constexpr", CLASSES="constexpr", BLOCK="constexpr",
)
_CLEAN_ONLY = ("bg_index_ptr", "bg_threshold_ptr", "bg_softness", "shadow_min", "shadow_limit", "BG_MODE",
               "SHADOW_TEST", "CLASSES")


@pytest.mark.parametrize("kernel, bg_mode, shadow, clean, out_type, ones", [
    ("assemble", 0, False, False, "fp32", False), ("assemble", 1, False, False, "bf16", False),
    ("assemble", 2, False, False, "fp16", False), ("assemble", 2, True, True, "fp16", True),
    ("assemble", 1, True, True, "bf16", False), ("clean", None, None, None, "fp16", False),
    ("clean", None, None, None, "fp32", True),
])
def test_triton_kernel_compiles_for_a_gpu(kernel, bg_mode, shadow, clean, out_type, ones):
    # Without a GPU, compile ahead of time down to a cubin for sm_90: catches what the interpreter lets pass
    # (types, constexpr specialisation of arguments equal to 1, lowering).
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget

    if "nvidia" not in getattr(triton.backends, "backends", {}):
        pytest.skip("Triton's NVIDIA backend is not installed")
    from syncssl.ops.triton_assemble import BLOCK, _assemble_pairs_kernel, _clean_kernel

    signature = {**_SIGNATURE, "out_ptr": "*" + out_type}
    constants = {"BLOCK": BLOCK}
    if kernel == "assemble":
        fn = _assemble_pairs_kernel
        constants.update(BG_MODE=bg_mode, SHADOW_TEST=shadow, CLASSES=clean)
    else:
        fn = _clean_kernel
        signature = {k: v for k, v in signature.items() if k not in _CLEAN_ONLY}
    if ones:
        for name in ("num_frames", "num_backgrounds", "size"):
            signature[name], constants[name] = "constexpr", 1
    source = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constants)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"enable_fp_fusion": True})
    assert compiled.asm.get("cubin")
    # every division correctly rounded, as the reference's: `/` compiles to div.full / div.approx (2 ulp), which
    # an emulation showed breaks the fp32 tolerance of the mode-2 cases
    ptx = compiled.asm["ptx"]
    assert "div.rn.f32" in ptx and "div.approx" not in ptx and "div.full" not in ptx


def test_triton_kernels_do_not_specialise_on_per_batch_sizes():
    # the bank's frame and background counts change from batch to batch: a value of 1 or a multiple of 16 must not
    # compile another kernel variant mid-training (the launcher passes them as plain ints)
    pytest.importorskip("triton")
    from syncssl.ops.triton_assemble import PER_BATCH, _assemble_pairs_kernel, _clean_kernel

    for fn in (_assemble_pairs_kernel, _clean_kernel):
        assert {p.name for p in fn.params if p.do_not_specialize} == set(PER_BATCH) == {"num_frames", "num_backgrounds"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(CASES))
def test_triton_kernel_on_gpu(name, monkeypatch):
    from test_assemble_pairs import assert_matches_reference, op_args

    from syncssl.ops.assemble import HAS_TRITON_KERNEL

    assert HAS_TRITON_KERNEL, "on a CUDA machine the CUDA kernel must be the Triton one"
    monkeypatch.setenv("SYNCSSL_DEBUG_POISON", "1")
    inputs = _inputs(name, device="cuda")
    out = torch.ops.syncssl.assemble_pairs(*op_args(inputs))
    assert out.is_cuda
    assert_matches_reference(out.cpu(), {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_kernel_on_gpu_hand_checks_and_opcheck():
    from test_assemble_pairs import op_args

    def on_gpu(*args):
        moved = [a.cuda() if isinstance(a, torch.Tensor) else a for a in args]
        return torch.ops.syncssl.assemble_pairs(*moved).cpu()

    for name in HAND_CHECKS:
        _hand_check(name, on_gpu)
    torch.library.opcheck(torch.ops.syncssl.assemble_pairs.default, op_args(_inputs("mode2-fp16", device="cuda")))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    _interpreter_main()
