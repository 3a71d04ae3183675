"""The command-line family: syncssl-data, syncssl-train, syncssl-finetune, syncssl-eval, syncssl-bench,
syncssl-reproduce. Thin: each command parses its options and calls into the package.

Errors a user can fix (bad data, bad config) are shown as one clear line, not a traceback.
"""
from __future__ import annotations

import functools
import sys

import click


def user_errors(fn):
    """Turn the package's bad-input errors into a clean ``Error: ...`` and exit code 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .data.dataset import DataError
        try:
            return fn(*args, **kwargs)
        except DataError as e:
            raise click.ClickException(str(e)) from None
    return wrapper


@click.group(help="Datasets: generate the embedded synthetic data, inspect, prepare and preview.")
def data():
    pass


# ---- syncssl-data commands (foundation + data-path issues) ------------------------------------------


# ---- syncssl-train ------------------------------------------------------------------------------------
def train():
    raise SystemExit("syncssl-train: not built yet (trainer issue)")


def finetune():
    raise SystemExit("syncssl-finetune: not built yet (transfer issue)")


def evaluate():
    raise SystemExit("syncssl-eval: not built yet (transfer issue)")


@click.group(help="Throughput benchmarks; each compares against a baseline measured in the same run.")
def bench():
    pass


def reproduce():
    raise SystemExit("syncssl-reproduce: not built yet (transfer issue)")


if __name__ == "__main__":
    sys.exit(data())
