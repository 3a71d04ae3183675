"""benchmarks/gpu_check.sh, the one prepared GPU check. Without a GPU its plan (--dry-run) and a CPU rehearsal of
the real script (--rehearse: every step that needs a GPU skipped) are tested here."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
STEPS = ["environment", "wheels", "gpu_tests", "bench_data", "pretrain_gpu", "bench_train", "build"]
# the C++ build compiles for minutes on two cores: the rehearsals below leave it out
NO_BUILD = ",".join(s for s in STEPS if s != "build")
OUT_FILES = {"summary.json", "steps.md", "environment.json", "bench_data.json", "pretrain.json", "bench_train.json",
             "logs.tar.gz"}


def script(*args, fail: str = "", timeout: int = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_FAIL=fail)
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.mark.parametrize("order", ["OUT --dry-run", "--dry-run OUT"])
def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, order):
    out = tmp_path / "out"
    r = script(*[out if a == "OUT" else a for a in order.split()])
    assert r.returncode == 0, r.stderr
    assert not out.exists()  # nothing written, nothing run
    rows = [line.split()[0] for line in r.stdout.splitlines()[2:-1]]
    assert rows == STEPS
    total = int(re.search(r"at most (\d+) s in all", r.stdout).group(1))
    limits = [int(x) for x in re.findall(r"^\S+\s+(\d+)s ", r.stdout, re.M)]
    assert total == sum(limits) <= 480
    # the commands name the real entry points; pytest runs every GPU test (no -x); the data root is an override
    assert "-m gpu tests" in r.stdout and " -x" not in r.stdout and "--data-root" not in r.stdout
    assert "data.data_root=\"$WORK/data\"" in r.stdout and "syncssl.bench data" in r.stdout
    assert "--preset gpu" in r.stdout
    assert "pip install -q --no-index" in r.stdout and "--target \"$WORK/site\" .whl/*.whl" in r.stdout


def test_rehearsal_runs_the_script_and_leaves_only_small_files_in_out(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    r = script(out, "--rehearse", "--work", work, "--only", NO_BUILD)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.index("at most") < r.stdout.index("== environment")  # the plan comes first
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] and summary["mode"] == "rehearse"
    status = {s["step"]: s["status"] for s in summary["steps"]}
    assert status == {"environment": "ok", "wheels": "ok", "gpu_tests": "skipped", "bench_data": "skipped",
                      "pretrain_gpu": "skipped", "bench_train": "skipped"}
    files = {p.name: p.stat().st_size for p in out.rglob("*") if p.is_file()}
    assert set(files) <= OUT_FILES and max(files.values()) < 1 << 20, files
    assert json.loads((out / "environment.json").read_text())["cpus_usable"] >= 1
    with tarfile.open(out / "logs.tar.gz") as tar:
        assert {f"logs/{s}.log" for s in status} <= set(tar.getnames())
    assert "| gpu_tests | skipped |" in (out / "steps.md").read_text()


@pytest.mark.parametrize("fail, status", [("environment:3", "failed"), ("wheels:124", "timeout")])
def test_a_failing_step_does_not_stop_the_others(tmp_path, fail, status):
    out = tmp_path / "out"
    r = script(out, "--rehearse", "--work", tmp_path / "work", "--only", NO_BUILD, fail=fail)
    assert r.returncode != 0
    summary = json.loads((out / "summary.json").read_text())
    by = {s["step"]: s for s in summary["steps"]}
    name = fail.split(":")[0]
    assert by[name]["status"] == status and not summary["ok"]
    assert len(by) == len(NO_BUILD.split(","))  # every later step still ran (or was skipped)
    assert all(s["status"] in ("ok", "skipped") for n, s in by.items() if n != name)


def test_without_a_gpu_the_environment_step_fails(tmp_path):
    out = tmp_path / "out"
    r = script(out, "--only", "environment", "--work", tmp_path / "work")
    summary = json.loads((out / "summary.json").read_text())
    assert r.returncode != 0 and summary["steps"][0]["status"] == "failed"
    assert "no CUDA device" in summary["steps"][0]["last"]


@pytest.mark.parametrize("args, message", [([], "usage"), (["a", "b"], "one output folder"),
                                           (["a", "--fast"], "unknown option")])
def test_usage_errors(args, message):
    r = script(*args, timeout=30)
    assert r.returncode == 2 and message in r.stderr


def test_a_working_folder_inside_out_is_refused(tmp_path):
    r = script(tmp_path / "out", "--rehearse", "--work", tmp_path / "out" / "work", timeout=30)
    assert r.returncode == 2 and "inside OUT" in r.stderr


def test_the_package_and_the_gpu_tests_load_without_pyav():
    # A bare GPU machine has no PyAV: the GPU tests must still be collected (the video tests skip), and a video
    # opened without it fails with an error that says what to install.
    code = """
import sys
sys.modules["av"] = None  # import av raises ImportError
import pytest
from syncssl.data.decode.video import probe
try:
    probe("README.md")  # a file that exists: the import is the first thing to fail
except ImportError as e:
    print("ERROR:", e)
sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests"]))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "ERROR: reading and writing videos (PyAV: pip install av) needs the 'av' package" in r.stdout
    assert "test_assemble_triton.py::test_triton_kernel_on_gpu" in r.stdout
    assert "test_models.py::test_cuda_channels_last_amp" in r.stdout
