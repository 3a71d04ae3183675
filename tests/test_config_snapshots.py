"""Moving configuration between places (dataclass defaults, presets, grid files) must not change a single run.

tests/data/config_snapshots.json holds, as ``config.describe`` writes them, the effective configs of every training
preset and of every run of every ablation preset of ``syncssl-reproduce``, recorded from the code before such a move
(its commit is in the file). Regenerate it only for an intended change of a run, and say so in the commit:
``python tests/test_config_snapshots.py``.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from syncssl import config as cfglib
from syncssl.experiments import reproduce
from syncssl.train.config import PRESET_PREFIX, load_config, preset_names

SNAPSHOT = Path(__file__).parent / "data" / "config_snapshots.json"


def rows(cfg) -> dict[str, str]:
    return {key: value for key, value, _ in cfglib.describe(type(cfg), obj=cfg)}


def training_presets() -> dict[str, dict[str, str]]:
    """Every training preset, pre-training and fine-tuning (``finetune-<name>``), as resolved by load_config."""
    return {f"{PRESET_PREFIX[cls]}{name}": rows(load_config(name, None, [], cls=cls))
            for cls in PRESET_PREFIX for name in preset_names(cls)}


def ablation_runs(preset) -> dict:
    """Every run the ablation grid asks for under ``preset``, all rows and seeds, in order: the first config of
    each kind in full, then each run as its differences from it (the grid's runs differ in a few keys)."""
    runs, base = [], {}

    def capture(cfg, run_dir, kind, detail, log=print):
        r = rows(cfg)
        base.setdefault(kind, r)
        runs.append([kind, run_dir.name, {k: v for k, v in r.items() if base[kind][k] != v}])
        return {"mpjpe": 1.0, "n_mpjpe": 1.0, "p_mpjpe": 1.0}

    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as scratch:
        mp.chdir(scratch)  # the grid's folder marker goes there; its relative paths are recorded as they are
        mp.setattr(reproduce, "train_or_reuse", capture)
        mp.setattr(reproduce.Reproduction, "write", lambda self: None)
        reproduce.Reproduction(Path("out"), preset, log=lambda m: None).run()
    return {"base": base, "runs": runs}


def snapshot() -> dict:
    return {"training_presets": training_presets(),
            "ablation_presets": {name: ablation_runs(reproduce.load_preset(name))
                                 for name in reproduce.preset_names()}}


def recorded(part: str) -> dict:
    return json.loads(SNAPSHOT.read_text())[part]


def test_training_presets_are_unchanged():
    assert training_presets() == recorded("training_presets")


def test_every_ablation_preset_is_recorded():
    assert sorted(reproduce.preset_names()) == sorted(recorded("ablation_presets"))


@pytest.mark.parametrize("name", reproduce.preset_names())
def test_ablation_preset_runs_are_unchanged(name):
    assert ablation_runs(reproduce.load_preset(name)) == recorded("ablation_presets")[name]


if __name__ == "__main__":
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    SNAPSHOT.write_text(json.dumps({"commit": commit, **snapshot()}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT} (commit {commit})", file=sys.stderr)
