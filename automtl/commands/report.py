"""``automtl report RUN_DIR``: a self-contained HTML report of a run."""

from __future__ import annotations

from pathlib import Path

import click

from automtl.commands.base import RUN_DIR, VERBOSE, user_errors


@click.command()
@RUN_DIR
@click.option("--out", type=click.Path(path_type=Path), help="Where to write it (default: RUN_DIR/report.html).")
@VERBOSE
@user_errors
def report(run_dir: Path, out: Path | None) -> None:
    """Write a self-contained HTML report of a run (plots work offline)."""
    from automtl.errors import AutomtlError
    from automtl.rundir.folder import check_output_file, check_run_dir
    from automtl.rundir.report import write_report

    check_run_dir(run_dir)
    if out is not None:
        if out.suffix.lower() not in (".html", ".htm"):
            raise AutomtlError(f"--out {out}: the report is an HTML file; name it FILE.html")
        check_output_file(out, replaceable=("report.html",))
    click.echo(f"report: {write_report(run_dir, out)}")
