"""``syncssl-reproduce --grid``: pre-training against random init, each side at its best, chosen on people that no
training saw and that the reported numbers are not measured on (docs/reproduction.md).

Three kinds of people (the dataset's splits): those pre-training sees (unlabelled), the validation people ("val")
on which every choice is made, and the test people ("test"), read once per reported configuration. A grid file
(``syncssl/experiments/grids/<name>.toml``) declares, before anything runs, the seeds and one search of fine-tuning
protocols that both sides get. Then:

1. pre-train once per pre-training seed (its held-out evaluation on val);
2. fine-tune every protocol on both sides, random init and the pre-trained backbone, once per seed; each run
   evaluates on val only;
3. choose each side's protocol by its mean val MPJPE over seeds (val rows only: test is never read here);
4. evaluate the chosen protocols and the paper's on test (the fine-tuned checkpoints, nothing trained again);
5. write the tables (merged with the rows already in ``--out``, never fewer) and the headline with its intervals.

Runs live in ``<out>/runs``; finished ones are reused (and refused if trained with another configuration).
"""
from __future__ import annotations

import csv
import json
import pickle
import re
import statistics
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..eval.stats import gain
from ..figures import pyplot, save_figure
from ..parallel import Workers, threads_per_process
from ..storage import write_csv_atomic
from ..train import runfolder
from ..train.config import FinetuneConfig, load_config
from . import declared
from .reproduce import train_or_reuse

GRIDS_PACKAGE = "syncssl.experiments.grids"
SIDES = ("random", "pretrained")
# (goal, floor): the point estimate must reach the goal and every interval's lower bound clear the floor
GOALS = {"best": (0.30, 0.20), "paper": (0.37, 0.37)}
COLUMNS = ("split", "side", "protocol", "paper", "chosen", "pretrain_seed", "finetune_seed", "mpjpe", "n_mpjpe",
           "p_mpjpe", "train_mpjpe", "frames", "sync_acc", "flip_acc", "sync_pairs", "flip_pairs", "run")
PERSON_COLUMNS = ("side", "protocol", "paper", "chosen", "pretrain_seed", "finetune_seed", "subject", "mpjpe",
                  "frames")
KEY = ("split", "side", "protocol", "pretrain_seed", "finetune_seed")
PERSON_KEY = ("side", "protocol", "pretrain_seed", "finetune_seed", "subject")


@dataclass(frozen=True)
class Protocol:
    """One fine-tuning protocol of the search: the same overrides for both sides."""

    id: str
    name: str
    overrides: tuple[str, ...]
    paper: bool = False


@dataclass(frozen=True)
class Grid:
    """A declared search: the data, the seeds, the run presets and the fine-tuning protocols."""

    name: str
    note: str
    dataset: str
    pretrain_preset: str
    pretrain_overrides: tuple[str, ...]
    pretrain_seeds: tuple[int, ...]
    finetune_preset: str
    finetune_overrides: tuple[str, ...]
    finetune_seeds: tuple[int, ...]  # the k-th run of each side; the pre-trained one starts from the k-th pre-training
    protocols: tuple[Protocol, ...]

    @property
    def paper(self) -> Protocol:
        return next(p for p in self.protocols if p.paper)


def grid_names() -> list[str]:
    return declared.names(GRIDS_PACKAGE)


def load_grid(name: str | Path) -> Grid:
    """A grid by name (``syncssl/experiments/grids/<name>.toml``) or by the path of a TOML file; clear errors naming
    it."""
    path, doc = declared.read(name, GRIDS_PACKAGE, "grid")

    def need(table: dict, key: str, kind, where: str, item=None):
        return declared.need(path, table, key, kind, where, item)

    unknown = set(doc) - {"note", "dataset", "pretrain", "finetune", "protocol"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    runs = {kind: need(doc, kind, dict, "") for kind in ("pretrain", "finetune")}
    for kind, table in runs.items():
        need(table, "preset", str, f"[{kind}] ")
        need(table, "overrides", list, f"[{kind}] ", str)
        if not need(table, "seeds", list, f"[{kind}] ", int):
            raise ConfigError(f"{path}: [{kind}] seeds must not be empty")
    if len(runs["pretrain"]["seeds"]) != len(runs["finetune"]["seeds"]):
        raise ConfigError(f"{path}: [pretrain] and [finetune] need as many seeds (the k-th fine-tuning of the "
                          "pre-trained side starts from the k-th pre-training)")
    protocols = []
    for i, p in enumerate(need(doc, "protocol", list, "")):
        if not isinstance(p, dict) or set(p) - {"id", "name", "overrides", "paper"}:
            raise ConfigError(f"{path}: [[protocol]] {i + 1} must hold id, name, overrides and optionally paper")
        pid = need(p, "id", str, f"[[protocol]] {i + 1}: ")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", pid):
            raise ConfigError(f"{path}: protocol id {pid!r} must be letters, digits, '-', '_' or '.' (it names "
                              "run folders)")
        protocols.append(Protocol(pid, need(p, "name", str, f"[[protocol]] {pid}: "),
                                  tuple(need(p, "overrides", list, f"[[protocol]] {pid}: ", str)),
                                  bool(p.get("paper"))))
    if len({p.id for p in protocols}) != len(protocols) or sum(p.paper for p in protocols) != 1:
        raise ConfigError(f"{path}: protocol ids must be unique, and exactly one protocol the paper's (paper = true)")
    return Grid(name=path.stem, note=str(doc.get("note", "")), dataset=need(doc, "dataset", str, ""),
                pretrain_preset=runs["pretrain"]["preset"], pretrain_overrides=tuple(runs["pretrain"]["overrides"]),
                pretrain_seeds=tuple(runs["pretrain"]["seeds"]), finetune_preset=runs["finetune"]["preset"],
                finetune_overrides=tuple(runs["finetune"]["overrides"]),
                finetune_seeds=tuple(runs["finetune"]["seeds"]), protocols=tuple(protocols))


def choose(rows: list[dict], protocols: tuple[Protocol, ...]) -> dict[str, str]:
    """Each side's protocol: the lowest mean MPJPE over seeds on the validation people (rows of split "val" only;
    a tie goes to the protocol declared first)."""
    chosen = {}
    for side in SIDES:
        means = {}
        for p in protocols:
            values = [float(r["mpjpe"]) for r in rows if r["split"] == "val" and r["side"] == side
                      and r["protocol"] == p.id]
            if values:
                means[p.id] = statistics.mean(values)
        if means:
            chosen[side] = min(means, key=means.get)  # min keeps the first of equal values: declared order
    return chosen


def train_run(run: tuple, threads: int, log) -> dict:
    """One run of :meth:`Evaluation.pretrain_run` / ``finetune_run`` in a worker process: ``threads`` torch
    threads, and no live progress bar (the runs share one terminal)."""
    import torch
    torch.set_num_threads(threads)
    return train_or_reuse(*run, log, progress=False)


def evaluate_on_test(run_dir: Path, data_root: str, log, threads: int | None = None) -> dict:
    """The fine-tuned model of ``run_dir`` on the test people (once: a finished evaluation is read back)."""
    from .evaluate import run_evaluation
    metrics = run_dir / "test" / "metrics.json"
    try:
        return json.loads(metrics.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    if threads:
        import torch
        torch.set_num_threads(threads)
    log(f"test: {run_dir.name}")
    return run_evaluation(run_dir, run_dir / "test", split="test", pictures=0, data_root=data_root)


@dataclass
class Evaluation:
    """One grid, run end to end into ``out``."""

    grid: Grid
    out: Path
    data_root: str = "data"
    seeds: int = 0  # runs per side and protocol: the grid's first N seeds; 0: all of them
    extra_pretrain: tuple[str, ...] = ()
    extra_finetune: tuple[str, ...] = ()
    log: object = print  # picklable where jobs > 1: the runs' processes log through it
    jobs: int = 1  # runs trained at once, each on an equal share of the CPUs (:meth:`train_in_parallel`)
    chosen: dict = field(default_factory=dict)

    @property
    def runs(self) -> Path:
        return self.out / "runs"

    def seed_pairs(self) -> list[tuple[int, int]]:
        g = self.grid
        return list(zip(g.pretrain_seeds, g.finetune_seeds))[:self.seeds or None]

    def common(self, run_dir: Path, seed: int) -> list[str]:
        # choices are made on val: pre-training's held-out curve and every fine-tuning's evaluation read val only
        return [f"data.dataset='{self.grid.dataset}'", f"data.data_root='{self.data_root}'", "data.eval_split='val'",
                f"train.run_dir='{run_dir}'", f"train.seed={seed}"]

    def pretrain_run(self, seed: int) -> tuple:
        """(config, run folder, kind, what the log calls it) of the pre-training with ``seed``."""
        g, run_dir = self.grid, self.runs / f"pre-seed{seed}"
        cfg = load_config(g.pretrain_preset, None, [*g.pretrain_overrides, *self.extra_pretrain,
                                                    *self.common(run_dir, seed)])
        return cfg, run_dir, "pretrain", f"seed {seed}"

    def pretrain(self, seed: int) -> dict:
        return train_or_reuse(*self.pretrain_run(seed), self.log)

    def finetune_dir(self, side: str, protocol: Protocol, pre_seed: int, seed: int) -> Path:
        return self.runs / (f"ft-{side}-{protocol.id}-seed{seed}" + (f"-pre{pre_seed}" if side == "pretrained"
                                                                      else ""))

    def finetune_run(self, side: str, protocol: Protocol, pre_seed: int, seed: int) -> tuple:
        g, run_dir = self.grid, self.finetune_dir(side, protocol, pre_seed, seed)
        init = [f"transfer.init='{side}'"] + ([f"transfer.checkpoint='{self.runs / f'pre-seed{pre_seed}'}'"]
                                             if side == "pretrained" else [])
        cfg = load_config(g.finetune_preset, None, [*g.finetune_overrides, *protocol.overrides,
                                                    *self.extra_finetune, *init, *self.common(run_dir, seed)],
                          cls=FinetuneConfig)
        return cfg, run_dir, "finetune", f"{side}, {protocol.name}, seed {seed}"

    def finetune(self, side: str, protocol: Protocol, pre_seed: int, seed: int) -> dict:
        return train_or_reuse(*self.finetune_run(side, protocol, pre_seed, seed), self.log)

    def test(self, run_dir: Path) -> dict:
        return evaluate_on_test(run_dir, self.data_root, self.log)

    def train_in_parallel(self, pairs: list[tuple[int, int]]) -> None:
        """Train every run of the grid, ``jobs`` at a time, each process on an equal share of the CPUs (a small
        network's intra-op threads scale poorly: on 2 cores, two single-threaded runs together train 1.3x the pairs
        per second of one run on both). A fine-tuning from a pre-training starts once that one has finished. A
        run's error stops the grid, and the runs beside it stop too (each resumes from its last checkpoint)."""
        threads, log = threads_per_process(self.jobs), self.worker_log()
        todo = [(side, protocol, p, f) for side in SIDES for protocol in self.grid.protocols for p, f in pairs]
        pretrained: set[int] = set()
        with Workers(self.jobs, preload=(__name__,)) as pool:
            running = {pool.submit(train_run, self.pretrain_run(p), threads, log): p for p, _ in pairs}
            while running or todo:
                for t in [t for t in todo if t[0] == "random" or t[2] in pretrained]:
                    todo.remove(t)
                    running[pool.submit(train_run, self.finetune_run(*t), threads, log)] = None
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    seed = running.pop(future)
                    future.result()
                    if seed is not None:
                        pretrained.add(seed)

    def test_in_parallel(self, run_dirs: list[Path]) -> None:
        """The test evaluations of ``run_dirs`` not made yet, ``jobs`` at a time."""
        threads, log = threads_per_process(self.jobs), self.worker_log()
        with Workers(self.jobs, preload=(__name__,)) as pool:
            for future in [pool.submit(evaluate_on_test, d, self.data_root, log, threads) for d in run_dirs]:
                future.result()

    def worker_log(self):
        """``log`` as the runs' processes can have it: a function they can import (a lambda cannot be sent), else
        print."""
        try:
            pickle.dumps(self.log)
            return self.log
        except (pickle.PicklingError, AttributeError, TypeError):
            return print

    def identity(self) -> dict:
        """What makes the rows of one ``--out`` comparable: recorded in ``<out>/run.json``, a second call must agree."""
        return {"grid": self.grid.name, "pretrain": " ".join(self.extra_pretrain),
                "finetune": " ".join(self.extra_finetune)}

    def run(self) -> dict:
        """Claims ``out`` as every command claims its folder (another command's output, an ablation grid's table
        included, is refused, never merged into), then runs the grid under the folder's lock."""
        with runfolder.claimed(self.out, "protocol", self.identity(), "syncssl-reproduce --grid"):
            return self._run()

    def _run(self) -> dict:
        g = self.grid
        pairs = self.seed_pairs()
        if self.jobs > 1:
            self.train_in_parallel(pairs)  # the loops below then find every run finished and read its summary
        pre = {p: self.pretrain(p) for p, _ in pairs}
        rows = []
        for side in SIDES:
            for protocol in g.protocols:
                for p, f in pairs:
                    summary = self.finetune(side, protocol, p, f)
                    rows.append(self.row("val", side, protocol, p, f, summary, summary.get("eval_frames"),
                                         pre[p] if side == "pretrained" else None))
        self.chosen = choose(rows, g.protocols)  # from the val rows: nothing of test has been read
        for side in SIDES:
            self.log(f"{side}: chose {self.chosen[side]} on val")
        tested = [(side, protocol, p, f) for side in SIDES
                  for protocol in g.protocols if protocol.id == self.chosen[side] or protocol.paper for p, f in pairs]
        if self.jobs > 1:
            self.test_in_parallel([self.finetune_dir(*t) for t in tested])
        people = []
        for side, protocol, p, f in tested:
            metrics = self.test(self.finetune_dir(side, protocol, p, f))
            row = self.row("test", side, protocol, p, f, metrics, metrics.get("count"),
                           pre[p] if side == "pretrained" else None)
            rows.append(row)
            people += [{**{k: row[k] for k in PERSON_KEY[:4]}, "paper": row["paper"], "subject": subject,
                        "mpjpe": m["mpjpe"], "frames": m["frames"]}
                       for subject, m in metrics["by_subject"].items()]
        return self.write(rows, people)

    def row(self, split: str, side: str, protocol: Protocol, pre_seed: int, seed: int, metrics: dict, frames,
            pre: dict | None) -> dict:
        pretext = (pre or {}).get("paper_offsets", {}).get(split, {})  # single pass at the paper's offsets
        return {"split": split, "side": side, "protocol": protocol.id, "paper": int(protocol.paper),
                "pretrain_seed": pre_seed if side == "pretrained" else "", "finetune_seed": seed,
                "mpjpe": metrics["mpjpe"], "n_mpjpe": metrics["n_mpjpe"], "p_mpjpe": metrics["p_mpjpe"],
                "train_mpjpe": metrics.get("train_mpjpe", ""), "frames": frames if frames is not None else "",
                **{k: pretext.get(k, "") for k in ("sync_acc", "flip_acc", "sync_pairs", "flip_pairs")},
                "run": self.finetune_dir(side, protocol, pre_seed, seed).name}

    # ------------------------------------------------------------ outputs

    def write(self, rows: list[dict], people: list[dict]) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        rows = merge(self.out / "results.csv", rows, COLUMNS, KEY, self.chosen)
        people = merge(self.out / "results_per_person.csv", people, PERSON_COLUMNS, PERSON_KEY, self.chosen)
        result = headline(rows, people, self.grid.paper.id)
        (self.out / "headline.json").write_text(json.dumps(result, indent=2) + "\n")
        (self.out / "results.md").write_text(self.markdown(rows, result))
        (self.out / "results_per_person.md").write_text(person_table(people, self.grid.paper.id))
        plot(rows, self.grid, self.out / "results.png")
        return result

    def markdown(self, rows: list[dict], result: dict) -> str:
        g = self.grid
        lines = [f"# syncssl-reproduce --grid {g.name} ({g.note})", "",
                 f"Dataset `{g.dataset}`: labels of S1; every protocol chosen on the validation people, the chosen "
                 "ones and the paper's read once on the test people. Pre-training preset "
                 f"`{g.pretrain_preset}`, fine-tuning preset `{g.finetune_preset}`. MPJPE in mm, mean ± sample std "
                 "over seeds; sync / flip: pre-training's single-pass accuracy at the paper's offsets on that split.",
                 "", "| split | side | protocol | chosen | seeds | MPJPE | N-MPJPE | P-MPJPE | sync / flip |",
                 "|---|---|---|---|---|---|---|---|---|"]
        names = {p.id: p.name for p in g.protocols}
        groups = dict.fromkeys((r["split"], r["side"], r["protocol"]) for r in rows)
        for split, side, pid in sorted(groups, key=lambda k: (k[0] != "val", k[1], k[2])):
            rs = [r for r in rows if (r["split"], r["side"], r["protocol"]) == (split, side, pid)]
            cells = [mean_std([float(r[k]) for r in rs if r[k] != ""]) for k in ("mpjpe", "n_mpjpe", "p_mpjpe")]
            acc = [float(r[k]) for r in rs for k in ("sync_acc", "flip_acc") if r[k] not in ("", None)]
            pretext = f"{statistics.mean(acc[0::2]):.3f} / {statistics.mean(acc[1::2]):.3f}" if acc else "-"
            lines.append(f"| {split} | {side} | {names.get(pid, pid)} | {'yes' if int(rs[0]['chosen']) else ''} | "
                         f"{len(rs)} | {' | '.join(cells)} | {pretext} |")
        lines += ["", f"**Headline:** {headline_text(result)}", ""]
        return "\n".join(lines)


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.1f}"


def merge(path: Path, rows: list[dict], columns: tuple[str, ...], key: tuple[str, ...], chosen: dict) -> list[dict]:
    """The rows already in ``path`` updated with ``rows`` (same key: the new one), none dropped; ``chosen`` set
    from this run's choice of each side's protocol; written back, returned as strings as they were read."""
    old = []
    if path.is_file():
        with path.open(newline="") as f:
            old = list(csv.DictReader(f))
    ident = lambda r: tuple(str(r.get(k, "")) for k in key)  # noqa: E731
    merged = {ident(r): r for r in old}
    merged.update({ident(r): r for r in rows})
    out = [{c: "" if r.get(c) is None else str(r[c]) for c in columns} for r in merged.values()]
    for r in out:
        r["chosen"] = str(int(chosen.get(r["side"]) == r["protocol"]))
    write_csv_atomic(path, out, columns, "the grid's results")  # a killed run leaves the old table whole
    return out


def comparison(people: list[dict], protocol: dict[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list, list]:
    """(seeds, people) test MPJPE of each side under ``protocol[side]``, for the fine-tuning seeds and the people
    both sides have; and the frames of each person."""
    table = {side: {(r["finetune_seed"], r["subject"]): r for r in people
                    if r["side"] == side and r["protocol"] == protocol[side]} for side in SIDES}
    seeds = sorted({s for s, _ in table["random"]} & {s for s, _ in table["pretrained"]}, key=int)
    subjects = sorted({p for _, p in table["random"]} & {p for _, p in table["pretrained"]})
    seeds = [s for s in seeds if all((s, p) in table[side] for side in SIDES for p in subjects)]
    mpjpe = {side: np.array([[float(table[side][s, p]["mpjpe"]) for p in subjects] for s in seeds]).reshape(
        len(seeds), len(subjects)) for side in SIDES}
    frames = np.array([float(table["random"][seeds[0], p]["frames"]) for p in subjects]) if seeds else np.zeros(0)
    return mpjpe["random"], mpjpe["pretrained"], frames, seeds, subjects


def headline(rows: list[dict], people: list[dict], paper: str) -> dict:
    """The two comparisons on the test people, from the per-person rows of the test evaluations: best against best
    (each side's protocol chosen on val: ``chosen`` = 1) and the paper's protocol on both sides."""
    chosen = {side: next((r["protocol"] for r in rows if r["side"] == side and r["chosen"] == "1"), None)
              for side in SIDES}
    out = {}
    for name, protocol in (("best", chosen), ("paper", dict.fromkeys(SIDES, paper))):
        goal, floor = GOALS[name]
        entry = {"protocols": protocol, "goal": goal, "floor": floor}
        if all(protocol.values()):
            random, pretrained, frames, seeds, subjects = comparison(people, protocol)
            if len(seeds) and len(subjects):
                g = gain(random, pretrained, frames)
                entry.update(g.fields(), met=g.met(goal, floor), text=g.text(),
                             random_mpjpe=float((random @ frames).sum() / (frames.sum() * len(seeds))),
                             pretrained_mpjpe=float((pretrained @ frames).sum() / (frames.sum() * len(seeds))),
                             finetune_seeds=seeds, people=subjects)
        out[name] = entry
    return out


def headline_text(result: dict) -> str:
    parts = []
    for name, label in (("best", "best against best (each side's protocol chosen on val)"),
                        ("paper", "under the paper's protocol (3 stages frozen) on both sides")):
        e = result[name]
        if "text" not in e:
            parts.append(f"{label}: not measured")
            continue
        verdict = "met" if e["met"] else "not met"
        parts.append(f"{label}: {e['pretrained_mpjpe']:.1f} mm ({e['protocols']['pretrained']}) against "
                     f"{e['random_mpjpe']:.1f} mm ({e['protocols']['random']}; means over the test people's views), "
                     f"a gain of "
                     f"{e['text']}; goal >= {100 * e['goal']:.0f}% with every lower bound above "
                     f"{100 * e['floor']:.0f}%: {verdict}")
    return "; ".join(parts) + "."


def person_table(people: list[dict], paper: str) -> str:
    """Markdown: each test person's MPJPE (mean over seeds) on both sides, and the gain, for both comparisons."""
    chosen = {side: next((r["protocol"] for r in people if r["side"] == side and r["chosen"] == "1"), None)
              for side in SIDES}
    lines = ["# Per test person", "", "MPJPE in mm, mean over the fine-tuning seeds both sides have; gain = 1 - "
             "pre-trained / random init.", ""]
    for title, protocol in (("Best against best", chosen), ("The paper's protocol", dict.fromkeys(SIDES, paper))):
        if not all(protocol.values()):
            continue
        random, pretrained, _, seeds, subjects = comparison(people, protocol)
        lines += [f"## {title}: {protocol['pretrained']} against {protocol['random']} ({len(seeds)} seeds)", "",
                  "| person | random init | pre-trained | gain | gain, lowest / highest seed |",
                  "|---|---|---|---|---|"]
        for i, subject in enumerate(subjects):
            r, p = random[:, i], pretrained[:, i]
            per_seed = 1 - p / r
            lines.append(f"| {subject} | {r.mean():.1f} | {p.mean():.1f} | {100 * (1 - p.mean() / r.mean()):+.1f}% | "
                         f"{100 * per_seed.min():+.1f}% / {100 * per_seed.max():+.1f}% |")
        lines.append("")
    return "\n".join(lines)


def plot(rows: list[dict], grid: Grid, path: Path) -> Path:
    """Each protocol's val MPJPE on both sides (mean and spread over seeds), the chosen ones starred, and the test
    MPJPE of those evaluated there."""
    plt = pyplot()
    ids = [p.id for p in grid.protocols]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(ids) + 1.5))
    for k, (side, colour) in enumerate(zip(SIDES, ("tab:grey", "tab:blue"))):
        for split, marker, dy in (("val", "o", -0.15), ("test", "s", 0.15)):
            ys, xs, errs = [], [], []
            for i, pid in enumerate(ids):
                v = [float(r["mpjpe"]) for r in rows if (r["split"], r["side"], r["protocol"]) == (split, side, pid)]
                if v:
                    ys.append(i + dy + 0.05 * k)
                    xs.append(statistics.mean(v))
                    errs.append(statistics.stdev(v) if len(v) > 1 else 0.0)
            ax.errorbar(xs, ys, xerr=errs, fmt=marker, color=colour, mfc=colour if split == "test" else "white",
                        label=f"{side}, {split}")
    chosen = {r["protocol"]: [] for r in rows}
    for side in SIDES:
        chosen.setdefault(next((r["protocol"] for r in rows if r["side"] == side and r["chosen"] == "1"), ""),
                          []).append(side)
    ax.set_yticks(range(len(ids)), [p.name + (f"\n(chosen on val: {', '.join(chosen[p.id])})" if chosen.get(p.id)
                                              else "") for p in grid.protocols], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("MPJPE (mm, lower is better)\nopen: validation people, filled: test people")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
