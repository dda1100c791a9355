"""Every command's --help, fast start-up without TensorFlow, and the CLI as a subprocess."""

from __future__ import annotations

import subprocess
import sys

import pytest

from automtl.cli import cli as group


@pytest.mark.parametrize("command", sorted(group.commands))
def test_every_command_has_help(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["spaces"], ["search", "--help"]])
def test_light_commands_import_no_heavy_library(args):
    code = (
        "import sys; from click.testing import CliRunner; from automtl.cli import cli;"
        f"r = CliRunner().invoke(cli, {args!r}); assert r.exit_code == 0, r.output;"
        "heavy = [m for m in ('tensorflow', 'keras', 'optuna', 'numpy', 'keras_tuner') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_python_dash_m_automtl_is_the_cli():
    proc = subprocess.run([sys.executable, "-m", "automtl", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "Usage: python -m automtl" in proc.stdout and "search" in proc.stdout


def test_plugins_lists_every_axis():
    proc = subprocess.run([sys.executable, "-m", "automtl", "plugins"], capture_output=True, text=True,
                          env={**__import__("os").environ, "COLUMNS": "200"})
    assert proc.returncode == 0
    rows = [[cell.strip() for cell in line.split("│")[1:3]] for line in proc.stdout.splitlines() if "│" in line]
    for kind, name in [("task", "regression"), ("input", "tabular"), ("sharing", "mmoe"), ("weighting", "gradnorm"),
                       ("strategy", "alternating"), ("backend", "keras-tuner"), ("reader", "coco"), ("demo", "digits"),
                       ("format", "onnx"), ("prediction", "table"), ("prediction", "coco")]:
        assert [kind, name] in rows, (kind, name)


def test_cli_subprocess_reports_bad_input_with_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "automtl.cli", "search", "--config", str(tmp_path / "nope.yaml")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "experiment file not found" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_search_needs_config_or_demo(cli):
    result = cli("search")
    assert result.exit_code == 2
    assert "--config" in result.output and "--demo" in result.output


def test_search_help_shows_every_default_and_the_defaults_are_the_codes():
    import re

    import click

    from automtl.config import DEFAULT_TRIALS, SearchConfig

    command = group.commands["search"]
    without = {"config_path", "demo", "help"}  # one of --config and --demo is required: no default
    for param in command.params:
        if param.name in without or not isinstance(param, click.Option):
            continue
        assert param.show_default or "default" in (param.help or ""), f"--{param.name} does not show its default"
    defaults = SearchConfig()
    for option in ("trials", "epochs", "seed", "workers"):
        text = next(p.help for p in command.params if p.name == option)
        shown = re.search(r"default (\d+)", text).group(1)
        expected = DEFAULT_TRIALS if option == "trials" else getattr(defaults, option)
        assert int(shown) == expected, (option, text)
