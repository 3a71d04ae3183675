"""The command line: one `syncssl` group, the old `syncssl-*` names as aliases, `-h` everywhere, and an import of
the package that does not pay for torch."""
from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from syncssl import cli

# Every console script of pyproject.toml (the old names) and the function it runs.
OLD_COMMANDS = {"syncssl-data": cli.data, "syncssl-train": cli.train, "syncssl-finetune": cli.finetune,
                "syncssl-eval": cli.evaluate, "syncssl-sync": cli.sync, "syncssl-bench": cli.bench,
                "syncssl-reproduce": cli.reproduce, "syncssl-transfer-curve": cli.transfer_curve}


def _help(command: click.Command, args: list[str]) -> str:
    result = CliRunner().invoke(command, args, prog_name="syncssl")
    assert result.exit_code == 0, (args, result.output)
    assert "Usage:" in result.output
    return result.output


def test_the_scripts_of_pyproject_are_these_commands():
    import tomllib
    from pathlib import Path
    scripts = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts.pop("syncssl") == "syncssl.cli:main"
    assert {name: getattr(cli, target.split(":")[1]) for name, target in scripts.items()} == OLD_COMMANDS


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_syncssl_group_lists_every_subcommand(flag):
    text = _help(cli.main, [flag])
    for name in ("data", "train", "finetune", "eval", "sync", "bench", "reproduce", "transfer-curve"):
        assert name in text


@pytest.mark.parametrize("name", sorted(OLD_COMMANDS))
def test_every_old_command_and_its_subcommand_answer_h(name):
    _help(OLD_COMMANDS[name], ["-h"])
    _help(cli.main, [name.removeprefix("syncssl-"), "-h"])


@pytest.mark.parametrize("group, sub", [(cli.data, s) for s in cli.data.commands] +
                                       [(cli.bench, s) for s in cli.bench.commands])
def test_group_subcommands_answer_h(group, sub):
    _help(group, [sub, "-h"])


def test_a_bad_command_line_exits_2_and_a_user_error_1(tmp_path):
    assert CliRunner().invoke(cli.main, ["train", "--no-such-option"]).exit_code == 2
    result = CliRunner().invoke(cli.main, ["train", "no.such_key=1"])
    assert result.exit_code == 1 and "Error" in result.output


def test_train_help_names_the_default_dataset():
    from syncssl.train.config import load_config
    default = load_config("cpu-small", None, []).data.dataset  # what `syncssl train` with no arguments reads
    assert default.removeprefix("synthetic:") in _help(cli.train, ["-h"])


def test_import_syncssl_does_not_import_torch():
    code = "import syncssl, syncssl.cli, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_python_m_syncssl_answers_h():
    run = subprocess.run([sys.executable, "-m", "syncssl", "data", "-h"], capture_output=True, text=True)
    assert run.returncode == 0 and "prepare" in run.stdout, run.stderr


def test_workers_of_syncssl_train_get_the_subcommand_arguments_only():
    # `syncssl train --nproc 2 ...` relaunches `python -m syncssl.train ...`: without the subcommand's name
    with click.Context(cli.main, info_name="syncssl") as parent, click.Context(cli.train, info_name="train",
                                                                               parent=parent):
        assert cli._worker_args(["train", "--nproc", "2", "train.steps=3"]) == ["train.steps=3"]
    with click.Context(cli.train, info_name="syncssl-train"):
        assert cli._worker_args(["--nproc=2", "train.steps=3"]) == ["train.steps=3"]
