"""The honest evaluation protocol: validation and test people, the declared search of each side, selection on
validation only, intervals over seeds and people (docs/reproduction.md)."""
import numpy as np

from syncssl.data.synthetic import PRESETS, plan_sequences, render_sequence
from syncssl.data.synthetic.generator import dataset_meta


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
