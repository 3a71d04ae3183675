"""The honest evaluation protocol: validation and test people, the declared search of each side, selection on
validation only, intervals over seeds and people (docs/reproduction.md)."""
import csv
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from syncssl import cli
from syncssl.data.synthetic import PRESETS, plan_sequences, render_sequence
from syncssl.data.synthetic.generator import dataset_meta
from syncssl.errors import ConfigError, RunFolderError
from syncssl.eval.stats import gain, t_interval
from syncssl.experiments.protocol import Evaluation, choose, load_grid


def test_eval_presets_add_val_and_test_people_and_change_no_one_else():
    for base, ev in (("small-pool", "small-pool-eval"), ("tiny", "tiny-eval"), ("large", "large-eval")):
        old, new = plan_sequences(PRESETS[base]), plan_sequences(PRESETS[ev])
        assert new[:len(old)] == old, ev  # the same people, the same takes, in the same order
        assert {s.split for s in new[len(old):]} == {"val", "test"}, ev
    p = PRESETS["small-pool-eval"]
    splits = dataset_meta(p, 0, "mjpeg", plan_sequences(p))["splits"]
    assert len(splits["val"]) >= 8 and splits["test"][:2] == ["S9", "S11"] and len(splits["test"]) >= 2 + 6
    assert not set(splits["val"]) & set(splits["pretrain"]) and not set(splits["test"]) & set(splits["pretrain"])
    assert not set(splits["val"]) & set(splits["test"])
    assert {s.action for s in plan_sequences(p) if s.split == "val"} == set(p.actions)  # every action type
    # a person's draws are seeded by their name: S1's first frame is the same pixels whatever else is generated
    spec = plan_sequences(PRESETS["tiny"])[0]
    frames = [next(render_sequence(spec, PRESETS[name], 0)[2]) for name in ("tiny", "tiny-eval")]
    for (a, ma), (b, mb) in zip(*frames):
        assert np.array_equal(a, b) and np.array_equal(ma, mb)


# ---------------------------------------------------------------- the protocol end to end, at tiny scale


@pytest.fixture(scope="module")
def eval_data_root(tmp_path_factory):
    from syncssl.data.synthetic import generate
    root = tmp_path_factory.mktemp("data")
    generate(root / "synthetic-tiny-eval", preset="tiny-eval", seed=0, progress=False, workers=2)
    return root


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_grid_end_to_end_chooses_on_val_and_reads_test_once(eval_data_root, tmp_path):
    out = tmp_path / "rep"
    args = ["--grid", "tiny", "--out", str(out), "--data-root", str(eval_data_root), "--seeds", "2"]
    # two runs at a time (a fine-tuning from a pre-training waits for it); the smaller call below runs in-process
    result = CliRunner().invoke(cli.reproduce, [*args, "--jobs", "2"])
    assert result.exit_code == 0, result.output
    meta = json.loads((eval_data_root / "synthetic-tiny-eval" / "dataset.json").read_text())
    assert meta["splits"]["val"] == ["V01", "V02"] and meta["splits"]["test"] == ["S9", "T01"]
    rows = read(out / "results.csv")
    assert list(rows[0])[:7] == ["split", "side", "protocol", "paper", "chosen", "pretrain_seed", "finetune_seed"]
    val = [r for r in rows if r["split"] == "val"]
    assert len(val) == 2 * 2 * 2  # sides x protocols x seeds
    assert {(r["pretrain_seed"], r["finetune_seed"]) for r in val if r["side"] == "pretrained"} == {("0", "10"),
                                                                                                   ("1", "11")}
    assert {r["pretrain_seed"] for r in val if r["side"] == "random"} == {""}
    chosen = choose(val, load_grid("tiny").protocols)
    for r in rows:  # chosen marks every row of each side's protocol with the lowest mean on val
        assert r["chosen"] == str(int(chosen[r["side"]] == r["protocol"])), r
        assert math.isfinite(float(r["mpjpe"])) and float(r["mpjpe"]) > 0
    test = [r for r in rows if r["split"] == "test"]
    for side in ("random", "pretrained"):  # the chosen protocol and the paper's, nothing else, on test
        assert {r["protocol"] for r in test if r["side"] == side} == {chosen[side], "paper"}
    # every fine-tuning evaluated on val only; test was read by separate evaluations of the chosen checkpoints
    for run in out.glob("runs/ft-*"):
        assert "eval_split = \"val\"" in (run / "config.toml").read_text(), run
        assert (run / "test" / "metrics.json").is_file() == any(r["run"] == run.name for r in test)
    # pre-training: single-pass accuracy at the paper's offsets (3..63 frames at 25 fps) on val and test, with counts
    pre = json.loads((out / "runs" / "pre-seed0" / "summary.json").read_text())["paper_offsets"]
    assert pre["window"]["frames"] == [3, 63] and set(pre) == {"window", "val", "test"}
    assert pre["val"]["sync_pairs"] > 0 and pre["test"]["flip_pairs"] > 0 and "sync_acc_mirror_averaged" in pre["test"]
    assert "heldout_sync_acc" in json.loads((out / "runs" / "pre-seed0" / "summary.json").read_text())
    # the per-person table holds the test people only, for each evaluated run
    people = read(out / "results_per_person.csv")
    assert {p["subject"] for p in people} == {"S9", "T01"} and len(people) == 2 * len(test)
    headline = json.loads((out / "headline.json").read_text())
    for name in ("best", "paper"):
        h = headline[name]
        assert h["n_seeds"] == 2 and h["n_people"] == 2 and isinstance(h["met"], bool)
        assert h["seeds_lo"] <= h["seeds_hi"] and h["people_lo"] <= h["people_hi"]
        assert h["seeds_and_people_lo"] <= h["gain"] + 1e-9 or h["seeds_and_people_hi"] >= h["gain"]
    assert "**Headline:** best against best" in (out / "results.md").read_text()
    assert "| S9 |" in (out / "results_per_person.md").read_text() and (out / "results.png").stat().st_size > 2000
    # a smaller call reuses every run and merges: the table keeps the rows it did not recompute, never fewer
    with open(out / "results.csv", "a", newline="") as f:
        csv.writer(f).writerow(["val", "random", "older-protocol", "0", "0", "", "3", "200.0", "190.0", "150.0"])
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/**/*.json")}
    again = CliRunner().invoke(cli.reproduce, [*args[:-1], "1"])
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/**/*.json")} == stamps
    merged = read(out / "results.csv")
    assert [r for r in merged if r["protocol"] != "older-protocol"] == rows
    assert any(r["protocol"] == "older-protocol" for r in merged)
    assert json.loads((out / "headline.json").read_text())["best"]["n_seeds"] == 2
    # a pre-training evaluated on "val" evaluates on a dataset without that split (another rig, a user's session)
    cross = CliRunner().invoke(cli.evaluate, [str(out / "runs" / "pre-seed0"), "--dataset", "synthetic:tiny",
                                              "--out", str(tmp_path / "cross"), "--pairs", "64"])
    assert cross.exit_code == 0, cross.output
    assert json.loads((tmp_path / "cross" / "metrics.json").read_text())["unseen_pairs"] == 64


GRID = """
note = "planted"
dataset = "synthetic:tiny-eval"
[pretrain]
preset = "tiny"
overrides = []
seeds = [0, 1, 2]
[finetune]
preset = "tiny"
overrides = []
seeds = [0, 1, 2]
[[protocol]]
id = "paper"
name = "the paper's"
paper = true
overrides = ["model.frozen_stages=3"]
[[protocol]]
id = "val-best"
name = "best on val"
overrides = ["model.frozen_stages=2"]
[[protocol]]
id = "test-best"
name = "best on test, not on val"
overrides = ["model.frozen_stages=0"]
"""
# side -> protocol -> (val MPJPE, test MPJPE); seeds and people add a little spread
PLANTED = {"random": {"paper": (170, 160), "val-best": (150, 150), "test-best": (155, 120)},
           "pretrained": {"paper": (125, 120), "val-best": (100, 100), "test-best": (110, 60)}}


def test_selection_reads_val_only_and_met_needs_the_interval(tmp_path, monkeypatch):
    """A protocol planted to be the best on test but not on val is never chosen, and test is read only for the
    chosen protocols and the paper's; the verdicts follow the intervals."""
    (tmp_path / "planted.toml").write_text(GRID)
    tested = []

    def finetune(self, side, protocol, pre_seed, seed):
        return {"mpjpe": PLANTED[side][protocol.id][0] + seed, "n_mpjpe": 1.0, "p_mpjpe": 1.0, "eval_frames": 40}

    def test(self, run_dir):
        side, protocol = next((s, p) for s in PLANTED for p in PLANTED[s] if run_dir.name.startswith(f"ft-{s}-{p}-"))
        tested.append((side, protocol))
        seed = int(run_dir.name.split("-seed")[1].split("-")[0])
        by_subject = {f"T{i:02d}": {"mpjpe": PLANTED[side][protocol][1] * (1 + 0.02 * i) + seed, "frames": 10}
                      for i in range(6)}
        return {"mpjpe": PLANTED[side][protocol][1], "n_mpjpe": 1.0, "p_mpjpe": 1.0, "count": 60,
                "by_subject": by_subject}
    monkeypatch.setattr(Evaluation, "pretrain", lambda self, seed: {"paper_offsets": {}})
    monkeypatch.setattr(Evaluation, "finetune", finetune)
    monkeypatch.setattr(Evaluation, "test", test)
    rep = Evaluation(load_grid(tmp_path / "planted.toml"), tmp_path / "out", log=lambda m: None)
    result = rep.run()
    assert rep.chosen == {"random": "val-best", "pretrained": "val-best"}
    assert {p for _, p in tested} == {"val-best", "paper"} and len(tested) == 2 * 2 * 3
    rows = read(tmp_path / "out" / "results.csv")
    assert {r["protocol"] for r in rows if r["chosen"] == "1"} == {"val-best"}
    # best against best: 1 - 100/150 = 33% with tight intervals: met; the paper's: 1 - 120/160 = 25% < 37%: not met
    assert result["best"]["protocols"] == {"random": "val-best", "pretrained": "val-best"}
    assert 0.32 < result["best"]["gain"] < 0.34 and result["best"]["met"]
    assert 0.24 < result["paper"]["gain"] < 0.26 and not result["paper"]["met"]
    text = (tmp_path / "out" / "results.md").read_text()
    assert "above 20%: met;" in text and "above 37%: not met." in text


def test_a_folder_holding_an_ablation_table_is_refused_and_left_as_it_was(tmp_path, monkeypatch):
    """Both grids default to the same --out: the protocol must not merge its rows into an ablation grid's table."""
    (tmp_path / "planted.toml").write_text(GRID)
    out = tmp_path / "out"
    out.mkdir()
    table = "name,init,seed,mpjpe\nheadline,random,0,150.0\n"
    (out / "results.csv").write_text(table)
    monkeypatch.setattr(Evaluation, "pretrain", lambda self, seed: pytest.fail("nothing may train"))
    with pytest.raises(RunFolderError, match="holds a reproduction grid"):
        Evaluation(load_grid(tmp_path / "planted.toml"), out, log=lambda m: None).run()
    assert (out / "results.csv").read_text() == table and sorted(p.name for p in out.iterdir()) == ["results.csv"]


def test_intervals_and_the_met_rule():
    assert t_interval([1.0, 2.0, 3.0]) == pytest.approx((2 - 4.303 / math.sqrt(3), 2 + 4.303 / math.sqrt(3)))
    assert all(math.isnan(x) for x in t_interval([1.0]))
    random = np.full((5, 8), 150.0) + np.arange(5)[:, None]  # 5 seeds x 8 people
    # 38% on average, but from 0% to 70% per person: the interval over people reaches below 20%, so not met
    uneven = gain(random, random * np.array([0.3, 0.35, 0.95, 1.0, 0.4, 0.45, 0.9, 0.6]), np.full(8, 10.0))
    assert uneven.point > 0.3 and uneven.people[0] < 0.2 < uneven.people[1] and not uneven.met(0.3, 0.2)
    steady = gain(random, random * 0.6 + np.arange(8), np.full(8, 10.0))  # 38% for everyone
    assert steady.met(0.3, 0.2) and steady.met(0.37, 0.36) and not steady.met(0.37, 0.37)
    one_seed = gain(random[:1], random[:1] * 0.5, np.full(8, 10.0))
    assert one_seed.point == pytest.approx(0.5) and not one_seed.met(0.3, 0.2)  # no interval over one seed


def test_grid_files_declare_the_same_search_for_both_sides_and_errors_name_the_file(tmp_path):
    for name in ("cpu", "gpu", "tiny"):
        grid = load_grid(name)
        assert grid.paper.overrides == ("model.frozen_stages=3",) and "-eval" in grid.dataset
    cpu = load_grid("cpu")
    assert len(cpu.pretrain_seeds) >= 5 and cpu.dataset == "synthetic:small-pool-eval"
    frozen = {o for p in cpu.protocols for o in p.overrides if o.startswith("model.frozen_stages")}
    assert frozen == {"model.frozen_stages=0", "model.frozen_stages=2", "model.frozen_stages=3"}
    for lever in ("optim.lr", "train.steps", "optim.weight_decay", "data.aug_jitter", "model.pool"):
        assert any(o.startswith(lever) for p in cpu.protocols for o in p.overrides), lever
    bad = tmp_path / "bad.toml"
    bad.write_text(GRID.replace("seeds = [0, 1, 2]\n[finetune]", "seeds = [0]\n[finetune]"))
    with pytest.raises(ConfigError, match="bad.toml: .*as many seeds"):
        load_grid(bad)
    bad.write_text(GRID.replace('paper = true\n', ''))
    with pytest.raises(ConfigError, match="bad.toml: .*exactly one protocol the paper's"):
        load_grid(bad)
    with pytest.raises(ConfigError, match="unknown grid 'nope'"):
        load_grid("nope")


def test_jobs_needs_a_grid(tmp_path):
    result = CliRunner().invoke(cli.reproduce, ["--out", str(tmp_path / "rep"), "--jobs", "2"])
    assert result.exit_code == 2 and "--jobs runs a --grid's runs in parallel" in result.output
    assert not (tmp_path / "rep").exists()


def test_parallel_runs_log_through_a_function_they_can_import(tmp_path):
    from syncssl.cli import _reproduce_log
    grid = load_grid("tiny")
    assert Evaluation(grid, tmp_path, log=_reproduce_log, jobs=2).worker_log() is _reproduce_log
    assert Evaluation(grid, tmp_path, log=lambda m: None, jobs=2).worker_log() is print  # a lambda cannot be sent
