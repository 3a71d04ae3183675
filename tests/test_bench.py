"""The benchmark commands run and report the ratios the issues ask for (values are not asserted: timings)."""
import json
import math

import pytest
import torch
from click.testing import CliRunner

from syncssl import cli


def test_bench_train_reports_e2e_compute_and_naive(tiny_dataset, tmp_path):
    out = tmp_path / "train.json"
    result = CliRunner().invoke(cli.bench, ["train", "--dataset", str(tiny_dataset), "--preset", "tiny",
                                            "--steps", "2", "--json", str(out), "train.eval_pairs=16",
                                            f"train.run_dir='{tmp_path / 'run'}'"])
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())
    assert isinstance(r["device"], str)
    for key in ("e2e_tiles_over_compute", "e2e_video_over_compute", "over_naive", "pairs_per_s",
                "compute_pairs_per_s", "naive_pairs_per_s", "decoded_camera_frames_per_s"):
        assert math.isfinite(r[key]) and r[key] > 0, key
    for key in ("e2e_tiles_data_wait_share", "e2e_video_data_wait_share"):
        assert 0 <= r[key] <= 1
    assert "naive" in result.output and "compute only" in result.output and "tiles" in result.output


def test_bench_data_reports_the_data_path_ratios(tmp_path):
    out = tmp_path / "data.json"
    result = CliRunner().invoke(cli.bench, ["data", "--quick", "--json", str(out)])
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())
    assert isinstance(r["device"], str)
    for key in ("assemble_cpp_over_copy", "assemble_cpp_over_eager", "assemble_cpp_over_compiled",
                "assemble_cpp_over_opencv", "decode_pyav_over_opencv", "decode_pyav_over_torchcodec"):
        assert r[key] is None or (math.isfinite(r[key]) and r[key] > 0), key
    # the C++ kernel is built, torch.compile works and OpenCV is installed in the test environment
    for key in ("assemble_cpp_over_copy", "assemble_cpp_over_compiled", "assemble_cpp_over_opencv",
                "decode_pyav_over_opencv"):
        assert r[key] is not None, key
    assert "assemble_triton_over_copy" in r  # None without CUDA
    if r["decode_pyav_over_torchcodec"] is None:  # it does not load here: the reason is said
        assert r["decode"]["skipped"]["torchcodec"]
    assert "decode_pyav_over_opencv" in result.output and "goal" in result.output


def test_bench_data_on_a_gpu_machine_runs_the_gpu_providers_only(tmp_path, monkeypatch):
    import syncssl.bench.assemble as assemble
    import syncssl.bench.decode as decode

    devices = []

    def fake_assemble(device, **kw):
        devices.append(str(device))
        return {"device": device, "cases": [], "assemble_triton_over_copy": 0.8}

    def no_decode(*a, **kw):
        raise AssertionError("the CPU decoders must not run on a GPU machine")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(cli, "device_name", lambda: "a GPU")
    monkeypatch.setattr(assemble, "run_assemble_benchmark", fake_assemble)
    monkeypatch.setattr(assemble, "print_assemble_table", lambda *a, **kw: None)
    monkeypatch.setattr(decode, "run_decode_benchmark", no_decode)
    result = CliRunner().invoke(cli.bench, ["data", "--quick", "--json", str(tmp_path / "d.json")])
    assert result.exit_code == 0, result.output
    assert devices == ["cuda"]
    r = json.loads((tmp_path / "d.json").read_text())
    assert r["assemble_triton_over_copy"] == 0.8 and r["assemble_cpp_over_copy"] is None and r["assemble"]["skipped"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_assemble_benchmark_on_the_gpu():
    from syncssl.bench.assemble import DEFAULT_CASES, run_assemble_benchmark

    r = run_assemble_benchmark("cuda", sizes=DEFAULT_CASES[:1], repeats=1, providers_wanted=("triton", "eager"))
    providers = r["cases"][0]["providers"]
    assert set(providers) == {"triton", "eager"} and r["assemble_triton_over_copy"] > 0
