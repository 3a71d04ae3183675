"""``syncssl-reproduce``: the paper's ablation grid on the embedded dataset, end to end.

Every configuration pre-trains (unless it starts from random weights), fine-tunes on the labels of one
subject and evaluates on the held-out subjects. Pre-training runs shared by several rows are run once.
Each run lives in its own folder under ``<out>/runs``; a finished run (its summary.json says complete) is
reused, so an interrupted reproduction continues where it stopped.

Writes ``results.csv`` (one row per configuration and seed), ``results.md`` (means and spreads next to
the directions the paper reports) and ``results.png``. The rows already in ``results.csv`` stay: a run of some
rows (``--only``) adds or replaces those, and the tables never lose the others. ``<out>`` holds one grid: its
preset and extra overrides are recorded (``run.json``), and another one is refused.
"""
from __future__ import annotations

import csv
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, RunFolderError
from ..figures import pyplot, save_figure
from ..storage import write_csv_atomic, write_text_atomic
from ..train import runfolder
from ..train.config import FinetuneConfig, PretrainConfig, load_config, preset_path
from ..train.run import run_training
from . import declared


@dataclass(frozen=True)
class Row:
    """One configuration of the grid."""

    name: str
    init: str  # "pretrained" | "random"
    pretext: str = "sync+flip"  # "sync+flip" | "sync" | "flip"
    background: str = "removed"  # "removed" | "kept"
    fusion: str = "prod"
    views: str = "multi"  # "multi" | "single" (a frame under two crops vs two instants) | "temporal" (two nearby
    #                       instants of one camera vs two distant ones)
    frozen: int = 3  # fine-tuning: stem and first k stages frozen (the paper: 3); 0: the whole backbone trains
    rgb_only: bool = False  # random init: no mask channel even where the preset's model has one (a pre-trained
    #                         backbone brings its own input channels)
    aug: bool = True  # fine-tuning with the fine-tuning preset's appearance augmentation; False: without any
    tuned: bool = False  # fine-tuning with TUNED_FINETUNE (longer, hotter, grid-pooled head) instead of the preset's
    many_seeds: bool = False  # run the preset's headline_seeds, as the headline pair and the random-init rows do
    paper: str = ""  # the paper's MPJPE for this setting (S1 protocol), for the table

    def pretrain_overrides(self) -> list[str]:
        o = {"sync+flip": [], "sync": ["pretext.flip_weight=0"],
             "flip": ["pretext.sync_weight=0", "pretext.flip_weight=1"]}[self.pretext]
        o += [f"model.fusion='{self.fusion}'"]
        o += self._background()
        # ungrouped: a group's cross pairs would join views of different cameras, i.e. multi-view pairs
        o += ["sampling.group_size=1", "sampling.mode='single_view'"] if self.views in ("single", "temporal") else []
        o += [f"sampling.single_view_sync_window={TEMPORAL_WINDOW}"] if self.views == "temporal" else []
        return o

    def _background(self) -> list[str]:
        # the mask channel is read off the removed background: with the background kept there is none to read
        return ["data.background='off'", "model.input_norm='none'"] if self.background == "kept" else []

    def pretrain_key(self) -> str:
        return f"pre-{self.pretext}-{self.background}-{self.fusion}-{self.views}".replace("+", "")

    def finetune_overrides(self) -> list[str]:
        return self._background() + [f"model.frozen_stages={self.frozen}"] + \
            (["model.input_norm='none'"] if self.rgb_only else []) + ([] if self.aug else list(NO_APPEARANCE_AUG)) + \
            (list(TUNED_FINETUNE) if self.tuned else [])

    def finetune_key(self) -> str:
        base = self.pretrain_key() if self.init == "pretrained" else self.background
        return (f"ft-{self.init}-{base}" + ("" if self.frozen == 3 else f"-frozen{self.frozen}")
                + ("-rgb" if self.rgb_only else "") + ("" if self.aug else "-noaug")
                + ("-tuned" if self.tuned else ""))


NO_APPEARANCE_AUG = ("data.aug_jitter=0", "data.aug_hue_deg=0", "data.aug_permute=0", "data.aug_grey=0")
# The fine-tuning levers that each helped the pre-trained model by ~1 mm (seed 0), together: twice the steps, three
# times the lr, the last feature map pooled over a 2x2 grid. Measured (2026-12-06, 3 seeds): the best protocol of both
# sides, pre-trained 107.9 ± 2.9 mm (109.7 ± 2.0 without), random init, 2 stages frozen 144.1 ± 3.8 (148.6 ± 6.9)
TUNED_FINETUNE = ("train.steps=3000", "optim.lr=0.003", "model.pool='grid'")
TEMPORAL_WINDOW = 2  # frames (80 ms at 25 fps): "nearby" in the temporal single-view row; distant is >= 0.3 s

# The grid: the rows of the paper's ablation tables (DESIGN.md), with its MPJPE (mm) for reference.
GRID = (
    Row("random init, background removed", "random", paper="165.5"),
    Row("random init, background removed, fine-tuning without appearance augmentation", "random", aug=False),
    Row("random init, 2 stages frozen", "random", frozen=2),
    Row("random init, full fine-tuning (no stage frozen)", "random", frozen=0),
    Row("random init, full fine-tuning, RGB only (no mask channel)", "random", frozen=0, rgb_only=True),
    Row("self-supervised, full fine-tuning (no stage frozen)", "pretrained", frozen=0),
    Row("random init, background kept", "random", background="kept", paper="167.8"),
    Row("self-supervised (sync+flip, removed, prod, multi-view)", "pretrained", paper="104.9"),
    Row("self-supervised, fine-tuning without appearance augmentation", "pretrained", aug=False, many_seeds=True),
    Row("self-supervised, 2 stages frozen", "pretrained", frozen=2, many_seeds=True),
    Row("self-supervised, tuned fine-tuning (3000 steps, lr 3e-3, grid-pooled head)", "pretrained", tuned=True,
        many_seeds=True),
    Row("random init, 2 stages frozen, tuned fine-tuning", "random", frozen=2, tuned=True),
    Row("self-supervised, background kept", "pretrained", background="kept", paper="138.4"),
    Row("only sync", "pretrained", pretext="sync", paper="126.7"),
    Row("only flip", "pretrained", pretext="flip", paper="129.9"),
    Row("fusion: concatenation", "pretrained", fusion="concat", paper="180.0"),
    Row("fusion: addition", "pretrained", fusion="sum", paper="169.4"),
    Row("fusion: difference", "pretrained", fusion="diff", paper="108.2"),
    Row("single-view (one camera: a frame under two crops vs two instants)", "pretrained", views="single",
        paper="158.3"),
    Row("single-view, temporal (one camera: instants <= 2 frames apart vs distant ones)", "pretrained",
        views="temporal"),
)
HEADLINE = ("random init, background removed", "self-supervised (sync+flip, removed, prod, multi-view)")
RANDOM_ROWS = tuple(r.name for r in GRID if r.init == "random" and r.background == "removed")  # the baselines
_HEADLINE_PRETRAIN = next(r for r in GRID if r.name == HEADLINE[1]).pretrain_key()
# the headline's pre-training under each fine-tuning protocol
PROTOCOL_ROWS = tuple(r.name for r in GRID if r.init == "pretrained" and r.pretrain_key() == _HEADLINE_PRETRAIN)


ABLATIONS_PACKAGE = "syncssl.experiments.ablations"


@dataclass(frozen=True)
class Preset:
    """How big each run is (a file ``syncssl/experiments/ablations/<name>.toml``). Several seeds for the headline pair,
    where the difference matters most, and for every random-init baseline (a fine-tuning only: cheap)."""

    pretrain_preset: str
    finetune_preset: str
    pretrain_overrides: tuple[str, ...] = ()
    finetune_overrides: tuple[str, ...] = ()
    seeds: int = 1  # seeds of every row
    headline_seeds: int = 3  # seeds of the headline rows (random init vs pre-trained) and the random-init rows
    dataset: str = "synthetic:small"
    note: str = ""


def preset_names() -> list[str]:
    return declared.names(ABLATIONS_PACKAGE)


def load_preset(name: str | Path) -> Preset:
    """An ablation preset by name (``syncssl/experiments/ablations/<name>.toml``) or by the path of a TOML file."""
    path, doc = declared.read(name, ABLATIONS_PACKAGE, "preset")
    unknown = set(doc) - {"note", "dataset", "seeds", "headline_seeds", "pretrain", "finetune"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    runs = {}
    for kind, cls in (("pretrain", PretrainConfig), ("finetune", FinetuneConfig)):
        table = declared.need(path, doc, kind, dict)
        if set(table) - {"preset", "overrides"}:
            raise ConfigError(f"{path}: [{kind}] holds preset and overrides only, got {sorted(table)}")
        preset = declared.need(path, table, "preset", str, f"[{kind}] ")
        try:
            preset_path(preset, cls)
        except ConfigError as e:
            raise ConfigError(f"{path}: [{kind}] {e}") from None
        runs[kind] = preset, tuple(declared.need(path, {"overrides": [], **table}, "overrides", list, f"[{kind}] ",
                                                 str))
    counts = {key: doc.get(key, getattr(Preset, key)) for key in ("seeds", "headline_seeds")}
    for key, value in counts.items():
        if type(value) is not int or value < 1:
            raise ConfigError(f"{path}: {key} must be an integer >= 1, got {value!r}")
    return Preset(runs["pretrain"][0], runs["finetune"][0], runs["pretrain"][1], runs["finetune"][1], **counts,
                  dataset=declared.need(path, doc, "dataset", str), note=str(doc.get("note", "")))


COLUMNS = ("name", "init", "pretext", "background", "fusion", "views", "frozen", "aug", "tuned", "seed", "mpjpe",
           "n_mpjpe", "p_mpjpe", "train_mpjpe", "sync_acc", "flip_acc")


def read_rows(path: Path) -> list[dict]:
    """The rows of an earlier results.csv, typed as the grid makes them (the paper's MPJPE from the grid)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise RunFolderError(f"{path}: cannot be read ({e}); "
                                       "move it away to start the table afresh") from None
    if not set(COLUMNS) <= set(reader.fieldnames or ()):
        raise RunFolderError(f"{path}: not a table of syncssl-reproduce (its columns: "
                                       f"{', '.join(reader.fieldnames or ())}); move it away to start the table afresh")
    paper = {r.name: r.paper for r in GRID}
    typed = []
    for r in rows:
        try:
            typed.append({**r, "frozen": int(r["frozen"]), "seed": int(r["seed"]), "aug": r["aug"] == "True",
                          "tuned": r["tuned"] == "True", "paper_mpjpe": paper.get(r["name"], ""),
                          **{k: float(r[k]) for k in COLUMNS[10:]}})
        except (KeyError, TypeError, ValueError) as e:
            raise RunFolderError(f"{path}: row {len(typed) + 1} is not a row of syncssl-reproduce ({e!r}); "
                                           "move the file away to start the table afresh") from None
    return typed


def train_or_reuse(cfg, run_dir: Path, kind: str, detail: str, log=print, progress: bool = True) -> dict:
    """The summary of the ``kind`` ("pretrain", "finetune") run in ``run_dir``: trained with ``cfg`` now (logged
    with ``detail``), or reused if it finished with ``cfg``. Runs are found by name: one trained with other settings
    (another preset, --pretrain / --finetune overrides) is refused, never stands in for this one."""
    summary = runfolder.reuse_finished(run_dir, cfg)
    if summary is not None:
        log(f"reusing {run_dir}")
        return summary
    log(f"{kind}: {run_dir.name} ({detail})")
    t0 = time.perf_counter()
    summary = run_training(cfg, progress=progress)
    log(f"{kind}: {run_dir.name} done in {time.perf_counter() - t0:.0f} s")
    return summary


@dataclass
class Reproduction:
    out: Path
    preset: Preset
    data_root: str = "data"
    only: tuple[str, ...] = ()
    extra_pretrain: tuple[str, ...] = ()
    extra_finetune: tuple[str, ...] = ()
    seeds: int = 0  # seeds of every row; 0: the preset's
    log: object = print
    rows: list[dict] = field(default_factory=list)

    def _run(self, kind: str, run_dir: Path, overrides: list[str]) -> dict:
        p = self.preset
        common = [f"data.dataset='{p.dataset}'", f"data.data_root='{self.data_root}'", f"train.run_dir='{run_dir}'"]
        if kind == "pretrain":
            cfg = load_config(p.pretrain_preset, None, [*common, *p.pretrain_overrides, *overrides,
                                                        *self.extra_pretrain])
        else:
            cfg = load_config(p.finetune_preset, None, [*common, *p.finetune_overrides, *overrides,
                                                        *self.extra_finetune], cls=FinetuneConfig)
        return train_or_reuse(cfg, run_dir, kind, ' '.join(overrides) or 'preset defaults', self.log)

    def identity(self) -> dict:
        """What makes the grid's rows comparable: recorded in ``<out>/run.json``, and a second call must agree."""
        name = next((n for n in preset_names() if load_preset(n) == self.preset), self.preset.note)
        return {"preset": name, "pretrain": " ".join(self.extra_pretrain),
                "finetune": " ".join(self.extra_finetune)}

    def run(self) -> list[dict]:
        read_rows(self.out / "results.csv")  # a table that is not this command's: refused before anything is written
        with runfolder.claimed(self.out, "reproduce", self.identity(), "syncssl-reproduce"):
            self.rows = read_rows(self.out / "results.csv")  # the rows of earlier calls stay
            return self._run_grid()

    def _run_grid(self) -> list[dict]:
        runs = self.out / "runs"
        names = {r.name for r in GRID}  # an --only that names a row exactly selects that row, not its longer kin
        grid = [r for r in GRID if not self.only or any(o == r.name or (o not in names and o in r.name)
                                                        for o in self.only)]
        for row in grid:
            many = row.name in HEADLINE or row.init == "random" or row.many_seeds
            seeds = self.seeds or (self.preset.headline_seeds if many else self.preset.seeds)
            for seed in range(seeds):
                seed_o = [f"train.seed={seed}"]
                sync_acc = flip_acc = math.nan
                finetune_o = [*seed_o, *row.finetune_overrides(), f"transfer.init='{row.init}'"]
                if row.init == "pretrained":
                    pre_dir = runs / f"{row.pretrain_key()}-seed{seed}"
                    pre = self._run("pretrain", pre_dir, [*seed_o, *row.pretrain_overrides()])
                    sync_acc = pre.get("heldout_sync_acc") or math.nan
                    flip_acc = pre.get("heldout_flip_acc") or math.nan
                    finetune_o.append(f"transfer.checkpoint='{pre_dir}'")
                ft_name = f"{row.finetune_key()}-seed{seed}"
                ft = self._run("finetune", runs / ft_name, finetune_o)
                self.rows = [r for r in self.rows if (r["name"], r["seed"]) != (row.name, seed)]
                self.rows.append({"name": row.name, "init": row.init, "pretext": row.pretext,
                                  "background": row.background, "fusion": row.fusion, "views": row.views,
                                  "frozen": row.frozen, "aug": row.aug, "tuned": row.tuned, "seed": seed,
                                  "mpjpe": ft["mpjpe"], "n_mpjpe": ft["n_mpjpe"], "p_mpjpe": ft["p_mpjpe"],
                                  "train_mpjpe": ft.get("train_mpjpe", math.nan),
                                  "sync_acc": sync_acc, "flip_acc": flip_acc, "paper_mpjpe": row.paper})
                self.write()
        return self.rows

    # ------------------------------------------------------------ outputs

    def write(self):
        self.out.mkdir(parents=True, exist_ok=True)
        order = {r.name: i for i, r in enumerate(GRID)}
        self.rows.sort(key=lambda r: (order.get(r["name"], len(order)), r["seed"]))
        write_csv_atomic(self.out / "results.csv", self.rows, COLUMNS, "the grid's results")
        write_text_atomic(self.out / "results.md", self.markdown(), "the grid's results")
        self.plot()

    def summary(self) -> list[dict]:
        """Per configuration: mean and spread (sample std; 0 with one seed) over seeds."""
        out = []
        for name in dict.fromkeys(r["name"] for r in self.rows):
            rs = [r for r in self.rows if r["name"] == name]
            entry = {"name": name, "seeds": len(rs), "paper_mpjpe": rs[0]["paper_mpjpe"]}
            for k in ("mpjpe", "n_mpjpe", "p_mpjpe", "train_mpjpe", "sync_acc", "flip_acc"):
                vals = [r[k] for r in rs if not (isinstance(r[k], float) and math.isnan(r[k]))]
                entry[k] = statistics.mean(vals) if vals else math.nan
                entry[k + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
            out.append(entry)
        return out

    def headline(self) -> str:
        s = {e["name"]: e for e in self.summary()}
        if not all(n in s for n in HEADLINE):
            return "headline not measured (its rows were not run)"
        rnd, pre = s[HEADLINE[0]], s[HEADLINE[1]]
        gain = rnd["mpjpe"] - pre["mpjpe"]
        text = (f"pre-training (sync+flip, background removed) vs random init at the same fine-tuning budget and "
                f"protocol: MPJPE {pre['mpjpe']:.1f} ± {pre['mpjpe_std']:.1f} vs {rnd['mpjpe']:.1f} ± "
                f"{rnd['mpjpe_std']:.1f} mm ({gain:+.1f} mm, {100 * gain / rnd['mpjpe']:+.1f}% "
                f"{'lower' if gain > 0 else 'higher'} with pre-training; {pre['seeds']} and {rnd['seeds']} seeds)")
        best = min((s[n] for n in RANDOM_ROWS if n in s), key=lambda e: e["mpjpe"])
        best_pre = min((s[n] for n in PROTOCOL_ROWS if n in s), key=lambda e: e["mpjpe"])
        if best["name"] != rnd["name"] or best_pre["name"] != pre["name"]:
            g = best["mpjpe"] - best_pre["mpjpe"]
            text += (f"; the best protocol of each, {best_pre['name']} ({best_pre['mpjpe']:.1f} mm) against "
                     f"{best['name']} ({best['mpjpe']:.1f} mm): {g:+.1f} mm ({100 * g / best['mpjpe']:+.1f}%)")
        return text

    def markdown(self) -> str:
        p = self.preset
        lines = [f"# syncssl-reproduce ({p.note})", "",
                 f"Dataset `{p.dataset}`; pre-training preset `{p.pretrain_preset}`, fine-tuning preset "
                 f"`{p.finetune_preset}` (labels of S1, evaluation on the held-out subjects). Mean ± sample std over "
                 "seeds; the paper's MPJPE (Human3.6M, S1 protocol) for the direction.", "",
                 "| configuration | seeds | MPJPE | N-MPJPE | P-MPJPE | S1 training MPJPE | held-out sync / flip acc | "
                 "paper MPJPE |",
                 "|---|---|---|---|---|---|---|---|"]
        for e in self.summary():
            sync = "-" if math.isnan(e["sync_acc"]) else f"{e['sync_acc']:.3f} / {e['flip_acc']:.3f}"
            train = "-" if math.isnan(e["train_mpjpe"]) else f"{e['train_mpjpe']:.1f}"
            lines.append(f"| {e['name']} | {e['seeds']} | {e['mpjpe']:.1f} ± {e['mpjpe_std']:.1f} | "
                         f"{e['n_mpjpe']:.1f} ± {e['n_mpjpe_std']:.1f} | {e['p_mpjpe']:.1f} ± {e['p_mpjpe_std']:.1f} | "
                         f"{train} | {sync} | {e['paper_mpjpe']} |")
        lines += ["", f"**Headline:** {self.headline()}.", ""]
        return "\n".join(lines)

    def plot(self):
        plt = pyplot()
        s = self.summary()
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(s) + 1.2))
        y = range(len(s))
        ax.barh(list(y), [e["mpjpe"] for e in s], xerr=[e["mpjpe_std"] for e in s], color=[
            "tab:grey" if e["name"].startswith("random") else "tab:blue" for e in s])
        ax.set_yticks(list(y), [e["name"] for e in s], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("MPJPE on held-out subjects (mm, lower is better)")
        ax.grid(axis="x", alpha=0.3)
        save_figure(fig, self.out / "results.png")
