"""Shared fixtures: the embedded tiny synthetic dataset, generated and prepared once per test session."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Root of the `tiny` synthetic dataset with its prepared manifest (seconds to make)."""
    from syncssl.data.preparation.prepare import prepare
    from syncssl.data.sources import open_dataset
    from syncssl.data.synthetic import generate

    root = tmp_path_factory.mktemp("data") / "synthetic-tiny"
    generate(root, preset="tiny", seed=0, progress=False, workers=2)
    prepare(open_dataset(root), root / "prepared")
    return root
