"""The step-memory check at the door: a batch that cannot fit is refused before any batch is built."""
import pytest
import torch
from click.testing import CliRunner

from syncssl import cli
from syncssl.errors import ConfigError
from syncssl.models.pairnet import PairNet
from syncssl.train import memory
from syncssl.train.config import load_config


def test_estimate_grows_with_the_crop_and_counts_every_kept_output():
    model = PairNet(load_config("tiny", None, []).model)
    small, large = (memory.bytes_per_image(model, s, torch.float32) for s in (32, 64))
    assert 3.5 < large / small < 4.5  # activations scale with the pixels
    half = memory.bytes_per_image(model, 64, torch.bfloat16)
    assert half * 2 == large
    assert all(p.device.type == "cpu" for p in model.parameters())  # the model itself is left as it was


def test_a_batch_beyond_free_memory_is_refused_naming_the_key(monkeypatch):
    model = PairNet(load_config("tiny", None, []).model)
    per_image = memory.bytes_per_image(model, 32, torch.float32)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 100 * per_image)
    memory.check_step_memory(model, images=100, crop=32, dtype=torch.float32, device=torch.device("cpu"),
                             batch_key="train.batch_size", batch=50)  # fits exactly
    with pytest.raises(ConfigError, match=r"train.batch_size=51 needs at least .* lower train.batch_size"):
        memory.check_step_memory(model, images=102, crop=32, dtype=torch.float32, device=torch.device("cpu"),
                                 batch_key="train.batch_size", batch=51)


def test_training_with_a_batch_far_too_large_stops_at_the_door(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    res = CliRunner().invoke(cli.train, ["--preset", "tiny", "--run-dir", str(run),
                                             f"data.dataset='{tiny_dataset}'", "train.batch_size=100000000"])
    assert res.exit_code == 1, res.output
    assert "train.batch_size=100000000 needs at least" in res.output
    assert not (run / "checkpoints").exists()


def test_more_threads_than_cpus_is_noted():
    assert memory.threads_note(1) is None
    assert "contend" in memory.threads_note(10_000)
