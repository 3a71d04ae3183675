"""Metrics behind one interface: ``logger.log(step, {"loss": ...}, split="train")``.

Backends: a CSV per split (``metrics_<split>.csv``, one column per metric) and TensorBoard. Only rank 0
creates a real logger; other ranks get one that does nothing. ``plot_curves`` turns the CSVs into a PNG.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from ..figures import pyplot, save_figure


class MetricLogger:
    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._columns: dict[str, list[str]] = {}
        self._tb = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for path in self.run_dir.glob("metrics_*.csv"):  # a resumed run appends to its CSVs
                with open(path, newline="") as f:
                    header = next(csv.reader(f), None)
                if header:
                    self._columns[path.stem.removeprefix("metrics_")] = header
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                    self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
                except ImportError:  # tensorboard is a dependency, but a broken install must not stop training
                    self._tb = None

    def log(self, step: int, metrics: dict[str, float], split: str = "train"):
        if not self.enabled:
            return
        path = self.run_dir / f"metrics_{split}.csv"
        cols = self._columns.get(split)
        keys = ["step"] + list(metrics)
        if cols is None or any(k not in cols for k in keys):
            # a new metric appeared: rewrite the file with the wider header, keeping old rows
            old = _read_rows(path) if path.exists() else []
            cols = list(dict.fromkeys((cols or []) + keys))
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=cols)
                w.writeheader()
                w.writerows(old)
            self._columns[split] = cols
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=cols).writerow({"step": step, **{k: _num(v) for k, v in metrics.items()}})
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(f"{split}/{k}", float(v), step)

    def close(self):
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def _read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_metrics(path: Path) -> dict[str, list[float]]:
    """A metrics CSV as columns of floats (missing values are NaN)."""
    rows = _read_rows(path)
    cols: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.items():
            try:
                cols.setdefault(k, []).append(float(v) if v not in ("", None) else math.nan)
            except ValueError:
                cols.setdefault(k, []).append(math.nan)
    return cols


def plot_curves(run_dir: Path, out: Path | None = None, panels: list[tuple[str, list[str]]] | None = None) -> Path:
    """Training curves from the run's CSVs: one panel per group of metrics, train and eval overlaid."""
    plt = pyplot()

    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "curves.png"
    splits = {p.stem.removeprefix("metrics_"): read_metrics(p) for p in sorted(run_dir.glob("metrics_*.csv"))}
    panels = panels or [
        ("loss", ["loss", "sync_loss", "flip_loss"]),
        ("accuracy", ["sync_acc", "flip_acc"]),
        ("throughput (pairs/s)", ["pairs_per_s"]),
        ("share of step time waiting for data", ["data_wait"]),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for split, cols in splits.items():
            steps = cols.get("step", [])
            for k in keys:
                if k in cols and any(not math.isnan(v) for v in cols[k]):
                    ax.plot(steps, cols[k], marker="o" if split != "train" else None, markersize=3,
                            label=f"{split} {k}", linewidth=1.2 if split == "train" else 1.8)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    return save_figure(fig, out)


def memory_use() -> dict:
    """This process's peak resident memory (what a job's memory limit and ``/usr/bin/time -v`` see) and, now, its
    anonymous part (heap, tensors; the rest is mapped files, e.g. the tile set, whose pages the page cache shares)."""
    import resource
    out = {"peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}  # KiB on Linux
    try:
        status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
        out["rss_anon_gb"] = round(int(status["RssAnon"].split()[0]) / 1e6, 2)
        out["rss_file_gb"] = round(int(status["RssFile"].split()[0]) / 1e6, 2)
    except (OSError, KeyError, ValueError):  # not Linux
        pass
    return out

