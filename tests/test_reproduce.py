"""syncssl-reproduce on the tiny preset: the grid machinery, its outputs, and resuming a finished grid."""
import csv
import math

import pytest
from click.testing import CliRunner

from syncssl import cli
from syncssl.errors import ConfigError
from syncssl.experiments.reproduce import GRID, HEADLINE, Reproduction, load_preset, preset_names


def test_reproduce_writes_results_and_reuses_finished_runs(tiny_dataset, tmp_path):
    out = tmp_path / "reproduce"
    data_root = tiny_dataset.parent  # holds synthetic-tiny, generated once per session
    args = ["--preset", "tiny", "--out", str(out), "--data-root", str(data_root),
            "--only", "random init, background removed", "--only", "self-supervised (sync+flip"]
    result = CliRunner().invoke(cli.reproduce, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert list(rows[0]) == ["name", "init", "pretext", "background", "fusion", "views", "frozen", "aug", "tuned",
                             "seed", "mpjpe", "n_mpjpe", "p_mpjpe", "train_mpjpe", "sync_acc", "flip_acc"]
    assert {r["name"] for r in rows} == set(HEADLINE)
    assert len(rows) == 2 * load_preset("tiny").headline_seeds
    for r in rows:
        assert math.isfinite(float(r["mpjpe"])) and float(r["mpjpe"]) > 0
        assert math.isfinite(float(r["train_mpjpe"])) and float(r["train_mpjpe"]) > 0  # S1's own frames
        assert (r["init"] == "random") == math.isnan(float(r["sync_acc"])) == math.isnan(float(r["flip_acc"]))
    md = (out / "results.md").read_text()
    assert "**Headline:** pre-training" in md and "| paper MPJPE |" in md
    assert (out / "results.png").stat().st_size > 2000
    # a second call finds every run finished: nothing is trained again, the tables are the same
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/summary.json")}
    assert len(stamps) == 3 * load_preset("tiny").headline_seeds  # pre-training + two fine-tunings per seed
    again = CliRunner().invoke(cli.reproduce, args)
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/summary.json")} == stamps
    assert list(csv.DictReader(open(out / "results.csv"))) == rows
    # the folder holds this grid: one with other overrides is refused (its rows would mix), nothing trained
    other = CliRunner().invoke(cli.reproduce, [*args, "--finetune", "optim.lr=0.005"])
    assert other.exit_code != 0 and "another configuration" in other.output
    assert "finetune: none there, optim.lr=0.005 now" in other.output
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/summary.json")} == stamps


def test_config_changes_reads_options_added_since_as_their_default(tmp_path):
    from syncssl import config as cfglib
    from syncssl.train.config import load_config
    from syncssl.train.runfolder import config_changes
    cfg = load_config("tiny", None, [f"train.run_dir='{tmp_path}'"])
    saved = cfglib.to_toml(cfg).replace("backbone_lr_scale = 1.0\n", "")  # a run from before that option
    (tmp_path / "config.toml").write_text(saved)
    assert config_changes(tmp_path, load_config("tiny", None, ["train.run_dir='elsewhere'"])) == []
    assert config_changes(tmp_path, load_config("tiny", None, ["optim.backbone_lr_scale=0.1"])) == [
        "optim.backbone_lr_scale: 1.0 there, 0.1 now"]
    (tmp_path / "config.toml").unlink()
    assert config_changes(tmp_path, cfg) == ["its config.toml is missing or unreadable"]


def test_grid_covers_the_paper_ablations():
    names = " ".join(r.name for r in GRID)
    for word in ("random init", "background kept", "only sync", "only flip", "concatenation", "addition",
                 "difference", "single-view"):
        assert word in names
    pretrained = [r for r in GRID if r.init == "pretrained"]
    # every pre-trained row is its own run, or shares one with a row that only fine-tunes differently
    assert len({(r.pretrain_key(), r.frozen, r.aug, r.tuned) for r in pretrained}) == len(pretrained)
    assert len({r.finetune_key() for r in GRID}) == len(GRID)
    assert {r.frozen for r in GRID} == {0, 2, 3}  # the paper's protocol (3 stages frozen), 2, full fine-tuning
    for init in ("random", "pretrained"):  # each protocol for both sides, so that the best of each can be compared
        assert {r.frozen for r in GRID if r.init == init and r.background == "removed" and r.pretext == "sync+flip"
                and r.fusion == "prod" and r.views == "multi"} == {0, 2, 3}, init
    row = next(r for r in GRID if r.views == "single")
    assert "sampling.mode='single_view'" in row.pretrain_overrides()
    assert Reproduction  # importable API


def test_cpu_grid_uses_the_main_jobs_model_where_a_row_can():
    """The cpu preset pre-trains the main job's model (mask channel, grid pooling, grouped batches, 12000 steps)
    except where a row cannot use a part of it (single-view rows: ungrouped, as cross pairs span cameras); every
    row's configs load (a mask would refuse a kept background); random init has the same input channels unless
    the row says RGB only. The preset of 2026-12-01 keeps its model."""
    from syncssl.train.config import FinetuneConfig, load_config
    p = load_preset("cpu")
    for row in GRID:
        cfg = load_config(p.pretrain_preset, None, [*p.pretrain_overrides, *row.pretrain_overrides()])
        model = (cfg.model.input_norm, cfg.model.pool, cfg.train.steps, cfg.sampling.group_size)
        assert model == ("none" if row.background == "kept" else "mask", "grid", 12000,
                         1 if row.views in ("single", "temporal") else 4), row.name
        ft = load_config(p.finetune_preset, None, [*p.finetune_overrides, *row.finetune_overrides()],
                         cls=FinetuneConfig)
        assert ft.model.input_norm == ("none" if row.background == "kept" or row.rgb_only else "mask"), row.name
        assert ft.model.frozen_stages == row.frozen
        aug = (ft.data.aug_jitter, ft.data.aug_hue_deg, ft.data.aug_permute, ft.data.aug_grey)
        assert (aug == (0.3, 180, 0.5, 0.2)) if row.aug else (aug == (0, 0, 0, 0)), row.name
        schedule = (ft.train.steps, ft.optim.lr, ft.model.pool)
        assert schedule == ((3000, 0.003, "grid") if row.tuned else (1500, 1e-3, "avg")), row.name
    # the tuned fine-tuning on both sides, so that the best protocol of each can be compared
    assert {r.init for r in GRID if r.tuned} == {"random", "pretrained"}
    assert {r.aug for r in GRID if r.name in HEADLINE} == {True}  # the headline: the fine-tuning default
    assert not all(r.aug for r in GRID)  # and rows without it, to show what it does to each side
    assert p.dataset == "synthetic:small-pool"
    morning = load_preset("cpu-2026-12-06-morning")  # flip weight 0.25, fine-tuning without appearance augmentation
    for row in GRID:
        cfg = load_config(morning.pretrain_preset, None, [*morning.pretrain_overrides, *row.pretrain_overrides()])
        assert cfg.pretext.flip_weight == {"sync+flip": 0.25, "sync": 0, "flip": 1}[row.pretext], row.name
        assert cfg.model.input_norm == ("none" if row.background == "kept" else "mask"), row.name
        ft = load_config(morning.finetune_preset, None, [*morning.finetune_overrides, *row.finetune_overrides()],
                         cls=FinetuneConfig)
        assert ft.data.aug_jitter == ft.data.aug_hue_deg == ft.data.aug_permute == ft.data.aug_grey == 0, row.name
    assert load_config(p.pretrain_preset, None, list(p.pretrain_overrides)).pretext.flip_weight == 1
    old = load_preset("cpu-2026-12-01")
    for row in GRID:
        cfg = load_config(old.pretrain_preset, None, [*old.pretrain_overrides, *row.pretrain_overrides()])
        assert (cfg.model.input_norm, cfg.model.pool, cfg.train.steps, cfg.sampling.group_size) == (
            "none", "avg", 6000, 1), row.name
        ft = load_config(old.finetune_preset, None, [*old.finetune_overrides, *row.finetune_overrides()],
                         cls=FinetuneConfig)
        assert ft.data.aug_jitter == ft.data.aug_hue_deg == ft.data.aug_permute == ft.data.aug_grey == 0, row.name


def test_seeds_option_sets_every_rows_seeds(tmp_path, monkeypatch):
    """--seeds N runs N seeds of each row it selects (here a row with one seed by default); the runs themselves are
    stood in for: this is about which runs the grid asks for."""
    asked = []

    def fake_run(self, kind, run_dir, overrides):
        asked.append(run_dir.name)
        return {"mpjpe": 100.0, "n_mpjpe": 90.0, "p_mpjpe": 80.0, "heldout_sync_acc": 0.9, "heldout_flip_acc": 0.8}
    monkeypatch.setattr(Reproduction, "_run", fake_run)
    monkeypatch.setattr(Reproduction, "plot", lambda self: None)
    args = ["--preset", "tiny", "--out", str(tmp_path), "--only", "fusion: difference"]
    assert CliRunner().invoke(cli.reproduce, args).exit_code == 0
    assert asked == ["pre-syncflip-removed-diff-multi-seed0", "ft-pretrained-pre-syncflip-removed-diff-multi-seed0"]
    asked.clear()
    assert CliRunner().invoke(cli.reproduce, [*args, "--seeds", "3"]).exit_code == 0
    assert [n for n in asked if n.startswith("ft-")] == [
        f"ft-pretrained-pre-syncflip-removed-diff-multi-seed{s}" for s in range(3)]
    assert len(list(csv.DictReader(open(tmp_path / "results.csv")))) == 3


def test_headline_compares_the_same_protocol_and_the_best_protocol_of_each(tmp_path):
    rep = Reproduction(tmp_path, load_preset("tiny"))
    keys = ("n_mpjpe", "p_mpjpe", "train_mpjpe", "sync_acc", "flip_acc")
    for name, mpjpe in ((HEADLINE[0], 160.0), ("random init, full fine-tuning (no stage frozen)", 150.0),
                        (HEADLINE[1], 112.0), ("self-supervised, 2 stages frozen", 105.0),
                        ("only sync", 90.0)):  # another pre-training: not a protocol of the headline's
        rep.rows.append({"name": name, "mpjpe": mpjpe, "paper_mpjpe": "", **dict.fromkeys(keys, 1.0)})
    text = rep.headline()
    assert "MPJPE 112.0 ± 0.0 vs 160.0 ± 0.0 mm (+48.0 mm, +30.0% lower" in text
    assert ("the best protocol of each, self-supervised, 2 stages frozen (105.0 mm) against random init, full "
            "fine-tuning (no stage frozen) (150.0 mm): +45.0 mm (+30.0%)") in text


def test_presets_are_files_loaded_by_name_or_path_with_errors_naming_the_file(tmp_path):
    """The ablation presets are TOML files (the dated ones too), not CLI choices; a bad file is a clear error."""
    assert {"cpu", "gpu", "tiny", "cpu-2026-12-01", "cpu-2026-12-06-morning"} <= set(preset_names())
    option = next(p for p in cli.reproduce.params if p.name == "preset")
    assert not hasattr(option.type, "choices")  # a name or a file: dated names live in files, not in the CLI
    own = tmp_path / "mine.toml"
    own.write_text('dataset = "synthetic:tiny"\nheadline_seeds = 1\n[pretrain]\npreset = "tiny"\n'
                   '[finetune]\npreset = "tiny"\noverrides = ["transfer.pictures=0"]\n')
    p = load_preset(own)
    assert (p.pretrain_preset, p.pretrain_overrides, p.finetune_overrides, p.seeds, p.headline_seeds) == (
        "tiny", (), ("transfer.pictures=0",), 1, 1)
    text = own.read_text()
    for bad_text, message in ((text.replace("headline_seeds = 1", "seeds = 0"), "seeds must be an integer >= 1"),
                              (text.replace('"tiny"\n[finetune]', '"nope"\n[finetune]'),
                               r"\[pretrain\] unknown preset 'nope'"),
                              ("steps = 3\n" + text, r"unknown keys \['steps'\]"),
                              ("seeds = [\n", "not a readable TOML preset")):
        bad = tmp_path / "bad.toml"
        bad.write_text(bad_text)
        with pytest.raises(ConfigError, match=f"bad.toml: .*{message}"):
            load_preset(bad)
    with pytest.raises(ConfigError, match="unknown preset 'nope': not a file, and not one of .*cpu-2026-12-01"):
        load_preset("nope")
    result = CliRunner().invoke(cli.reproduce, ["--preset", "nope", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "unknown preset 'nope'" in result.output
