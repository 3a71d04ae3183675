"""The few lines every PNG writer shares: pyplot on a file-only backend, and saving a figure."""
from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the Agg backend: PNG files only, no display needed (servers, CI, SLURM jobs)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path, dpi: int = 110) -> Path:
    """Lay out, write and close ``fig`` (closing frees pyplot's reference to it); returns the path."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return Path(path)
