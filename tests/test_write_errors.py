"""A disk that refuses a write (full, read-only, over quota, no permission) is the machine's problem, not a bug:
every command that writes exits with code 2 and one line naming the path and the cause (issue 31: a full disk
while best/ was written ended in exit 1 and a ``ResourceExhaustedError``). The writers are patched to fail the
way the real ones do: TensorFlow's ``saved_model.save`` with its own error type, Python's writes with an
``OSError`` that often carries no file name.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from helpers import assert_user_error

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished tiny search (2 trials, 2 epochs) with its trial models kept."""
    from bad_input_cases import Workspace
    from click.testing import CliRunner

    from automtl.cli import cli

    ws = Workspace(tmp_path_factory.mktemp("write_errors"))
    folder = ws.root / "run"
    result = CliRunner().invoke(cli, ["search", "--config", str(ws.good), "--out", str(folder), "--no-report",
                                      "--quiet", "--ensemble", "0", "--baselines", "off", "--no-refit"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder, ws


def tf_disk_error(message: str):
    """``tf.saved_model.save`` failing as TensorFlow does on a full or read-only disk."""
    import tensorflow as tf

    def save(module, export_dir, *args, **kwargs):
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{export_dir}/variables/variables.data-00000-of-00001.tempstate42; {message}")
    return save


def one_line(result, *fragments):
    assert_user_error(result, *fragments)
    error = result.output[result.output.index("Error: "):]  # progress lines may come before it
    assert len(error.strip().splitlines()) == 1, result.output
    assert "internal error" not in result.output


def fingerprint(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


@pytest.mark.e2e
def test_a_full_disk_while_search_writes_best_is_exit_2(run, cli, monkeypatch):
    folder, ws = run
    import tensorflow as tf

    monkeypatch.setattr(tf.saved_model, "save", tf_disk_error("No space left on device"))
    result = cli("search", "--config", ws.good, "--out", folder, "--trials", "3", "--no-report", "--quiet",
                 "--ensemble", "0", "--baselines", "off", "--no-refit")
    one_line(result, "No space left on device", str(folder / "best"))
    assert not (folder / "automtl-error.log").exists()  # nothing appended: it is not a bug


@pytest.mark.e2e
def test_a_quota_while_search_writes_its_snapshot_names_the_run(run, cli, monkeypatch):
    """An OSError without a file name (as ``write()`` raises): the run folder is named."""
    folder, ws = run

    def over_quota(*args, **kwargs):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr("automtl.run.phases.write_snapshot", over_quota)
    result = cli("search", "--config", ws.good, "--out", folder, "--trials", "3", "--no-report", "--quiet")
    one_line(result, "Disk quota exceeded", f"while writing in {folder}")
    assert not (folder / "automtl-error.log").exists()


@pytest.mark.e2e
def test_export_onto_a_read_only_disk_is_exit_2(run, cli, monkeypatch, tmp_path):
    folder, _ = run
    import tensorflow as tf

    monkeypatch.setattr(tf.saved_model, "save", tf_disk_error("Read-only file system"))
    before = fingerprint(folder)
    result = cli("export", folder, "--trial", "0", "--out", tmp_path / "exported")
    one_line(result, "Read-only file system", str(tmp_path))
    assert not (tmp_path / "exported").exists()  # the temporary folder is gone, nothing half-written
    assert fingerprint(folder) == before


@pytest.mark.e2e
def test_predict_onto_a_full_disk_is_exit_2(run, cli, monkeypatch, tmp_path):
    folder, ws = run

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("automtl.export.table.write_outputs", full)
    out = tmp_path / "predictions.csv"
    one_line(cli("predict", folder / "best", "--data", ws.data, "--out", out), "No space left on device", str(out))


@pytest.mark.e2e
def test_report_without_permission_is_exit_2(run, cli, monkeypatch, tmp_path):
    folder, _ = run
    real = Path.write_text

    def refuse(self, *args, **kwargs):
        if self.name == "report.html":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", refuse)
    one_line(cli("report", folder, "--out", tmp_path / "report.html"), "Permission denied", str(tmp_path))


@pytest.mark.e2e
def test_distill_onto_a_full_disk_is_exit_2(run, cli, monkeypatch, tmp_path):
    folder, _ = run
    import tensorflow as tf

    monkeypatch.setattr(tf.saved_model, "save", tf_disk_error("No space left on device"))
    result = cli("distill", folder, "--out", tmp_path / "student", "--teacher", "best", "--epochs", "1",
                 "--mixup", "0")
    one_line(result, "No space left on device", str(tmp_path))
    assert not (tmp_path / "student").exists()


@pytest.mark.parametrize("exc, fragments", [
    (OSError(errno.ENOSPC, "No space left on device"), ("No space left on device", "while writing in /runs/x")),
    (OSError(errno.EROFS, "Read-only file system", "/runs/x/trials.csv"), ("Read-only file system: /runs/x/trials.csv",)),
    (RuntimeError("h5py: Unable to create file (name = '/runs/x/m.h5', errno = 122, error message = "
                  "'Disk quota exceeded')"), ("Disk quota exceeded", "/runs/x/m.h5")),
    (ValueError("(sqlite3.OperationalError) database or disk is full"), ("No space left on device",
                                                                          "while writing in /runs/x")),
])
def test_write_failures_are_recognised_in_any_error(exc, fragments):
    from automtl.commands.base import environment_problem, writing_to

    writing_to(Path("/runs/x"))
    try:
        line = environment_problem(exc)
    finally:
        writing_to(None)
    assert line is not None and "\n" not in line
    for fragment in fragments:
        assert fragment in line, line


def test_a_chained_write_failure_is_found():
    from automtl.commands.base import environment_problem

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/trials.json")
        except OSError as inner:
            raise RuntimeError("could not save the study") from inner
    except RuntimeError as outer:
        assert environment_problem(outer) == "No space left on device: /runs/x/trials.json"
    assert environment_problem(KeyError("a bug")) is None
