"""benchmarks/gpu_check.sh: the one prepared GPU check. Its control flow is tested here with --dry-run (no GPU)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
STEPS = ["environment", "wheels", "build", "gpu_tests", "bench_data", "bench_train", "pretrain_gpu"]


def run(out: Path, fake: str = "") -> tuple[subprocess.CompletedProcess, dict]:
    env = dict(os.environ, GPU_CHECK_FAKE=fake)
    r = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(out)], capture_output=True, text=True, env=env,
                       timeout=120)
    return r, json.loads((out / "summary.json").read_text())


def test_dry_run_lists_every_step_with_a_log_and_a_summary(tmp_path):
    r, summary = run(tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert [s["step"] for s in summary["steps"]] == STEPS and summary["ok"]
    for s in summary["steps"]:
        assert s["status"] == "dry-run" and Path(s["log"]).read_text().startswith("would run")
    # the commands it would run name the real entry points and a timeout each
    text = " ".join(Path(s["log"]).read_text() for s in summary["steps"])
    assert "syncssl.bench data --json" in text and "syncssl.bench train" in text and "--preset gpu" in text
    assert "-m gpu" in text and "build_ext --inplace" in text


@pytest.mark.parametrize("fake,status", [("build:3", "failed"), ("gpu_tests:124", "timeout")])
def test_one_failing_step_does_not_stop_the_others(tmp_path, fake, status):
    _, summary = run(tmp_path / "out", fake)
    by = {s["step"]: s for s in summary["steps"]}
    name = fake.split(":")[0]
    assert by[name]["status"] == status and not summary["ok"]
    assert all(s["status"] == "dry-run" for n, s in by.items() if n != name)  # every later step still ran


def test_usage_error_without_an_output_folder():
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "usage" in r.stderr
