"""Every result says where it came from: the env block of summary.json and of the benchmarks' JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from syncssl.provenance import env_block, git_commit

REPO = Path(__file__).resolve().parent.parent


def test_env_block_names_commit_versions_machine_and_date():
    env = json.loads(json.dumps(env_block()))  # JSON-ready
    assert set(env) >= {"commit", "dirty", "packages", "python", "cpu", "gpu", "date"}
    assert set(env["packages"]) >= {"torch", "triton", "nvidia-dali", "av", "numpy"}
    assert env["packages"]["numpy"] and env["packages"]["torch"]
    assert env["cpu"]["model"] and env["cpu"]["cores"] >= 1 and isinstance(env["cpu"]["flags"], list)
    assert env["date"].endswith("+00:00")
    if (REPO / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        assert env["commit"] == head and isinstance(env["dirty"], bool)


def test_outside_a_checkout_the_commit_is_unknown(tmp_path):
    assert git_commit(tmp_path) == {"commit": None, "dirty": None}


def test_env_block_does_not_import_torch():
    code = "import sys; from syncssl.provenance import env_block; env_block(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_benchmark_json_carries_env(tmp_path):
    from syncssl import cli
    cli._write_json(tmp_path / "bench.json", {"pairs_per_s": 1.0})
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["pairs_per_s"] == 1.0 and saved["env"]["packages"]["torch"]


def test_training_summary_carries_env(tiny_dataset, tmp_path):
    from test_train import tiny_config

    from syncssl.train.run import run_training
    run_training(tiny_config(tiny_dataset, tmp_path / "run", "train.steps=2", "train.eval_pairs=16"))
    env = json.loads((tmp_path / "run" / "summary.json").read_text())["env"]
    assert env["packages"]["torch"] and env["date"]
