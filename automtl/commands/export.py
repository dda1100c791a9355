"""``automtl export RUN_DIR --trial N --out DIR``: export any completed trial."""

from __future__ import annotations

from pathlib import Path

import click

from automtl.commands.base import RUN_DIR, quiet_tensorflow, user_errors


@click.command()
@RUN_DIR
@click.option("--trial", "number", type=int, required=True, help="Trial number (see `automtl trials`).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write (replaced if present).")
@user_errors
def export(run_dir: Path, number: int, out: Path) -> None:
    """Export any completed trial of a run, in the same format as RUN_DIR/best."""
    from automtl.outputs.export_run import export_run_trial, exportable

    exportable(run_dir, number)  # a bad trial number fails before TensorFlow starts
    quiet_tensorflow()
    folder = export_run_trial(run_dir, number, out)
    click.echo(f"trial {number} exported to {folder}: saved_model/ (serving_default), model.keras, automtl.json")
