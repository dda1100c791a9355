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


def test_help_and_plugins_do_not_import_tensorflow():
    code = (
        "import sys; from click.testing import CliRunner; from automtl.cli import cli;"
        "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0;"
        "r = CliRunner().invoke(cli, ['plugins']); assert r.exit_code == 0, r.output;"
        "heavy = [m for m in ('tensorflow', 'keras', 'optuna') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


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
