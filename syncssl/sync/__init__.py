"""Synchronizing a camera rig with the pre-trained sync classifier and the silhouettes' geometry (``syncssl-sync``).

:mod:`.search` finds offsets in score matrices (no pixels), :mod:`.pipeline` turns a dataset or bare session and a
pre-training checkpoint into those matrices, commits only what independent evidence confirms and writes the
results, :mod:`.tangency` is the appearance-free cue (silhouette epipolar tangency), :mod:`.domain` checks that the
classifier is inside its domain on the footage, :mod:`.adapt` fine-tunes a copy of the model on
the cameras a first search placed (``--adapt``), :mod:`.inject` makes shifted copies of a dataset with known offsets
(tests and the benchmark).
"""
from .pipeline import (
                       LoadedModel,
                       PairNetScorer,
                       PairScorer,
                       SyncOptions,
                       SyncResult,
                       apply_offsets,
                       load_model,
                       render_table,
                       synchronize,
)

__all__ = ["LoadedModel", "PairNetScorer", "PairScorer", "SyncOptions", "SyncResult", "apply_offsets", "load_model",
           "render_table", "synchronize"]
