"""``automtl distill RUN_DIR --out DIR``: teach one small multi-task student from the run's ensemble or best trial."""

from __future__ import annotations

from pathlib import Path

import click

from automtl.commands.base import RUN_DIR, VERBOSE, quiet_tensorflow, user_errors


@click.command()
@RUN_DIR
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder to write the student to: new, or an earlier automtl export (replaced); never a run folder.")
@click.option("--teacher", default="ensemble", show_default=True,
              help="ensemble (RUN_DIR/ensemble) or best (the best trial).")
@click.option("--student", default="best", show_default=True,
              help="best (the best trial's architecture), smallest (the smallest trial within 1% of the best "
              "score) or a search space file (a small search whose trials all learn from the teacher).")
@click.option("--epochs", type=int, help="Maximum epochs of the student (default: the run's search.epochs).")
@click.option("--temperature", type=float, default=2.0, show_default=True,
              help="Softens the teacher's probabilities (classification and tagging).")
@click.option("--trials", type=click.IntRange(min=1), default=8, show_default=True,
              help="Trials of the student search when --student is a space file.")
@click.option("--init", default="trial", show_default=True,
              help="trial: a best or smallest student starts from that trial's trained weights; scratch: fresh weights.")
@click.option("--mixup", type=float, default=4.0, show_default=True,
              help="MixUp rows per training row for the transfer set: pairs of training rows mixed and labelled by "
              "the teacher (0: none).")
@click.option("--force", is_flag=True, help="Replace an existing --out folder that is not an automtl export "
              "(a run folder, or a folder holding or inside one, is never replaced).")
@VERBOSE
@user_errors
def distill(run_dir: Path, out: Path, teacher: str, student: str, epochs: int | None, temperature: float,
            trials: int, init: str, mixup: float, force: bool) -> None:
    """Distil the run's ensemble (or best trial) into one small multi-task student.

    The student learns from the hard labels plus the teacher's soft outputs on
    every training row; where a task's label is missing, the teacher's
    prediction fills in (weighted below real labels), and MixUp rows (pairs of
    training rows mixed) add inputs that only the teacher labels. Prints teacher vs student
    metrics, parameter counts and serving latency of the exported SavedModels.
    """
    from automtl.console import make_console

    from automtl.run.distill import check_request

    check_request(run_dir, teacher, student, epochs, temperature, init, out, force, mixup)  # bad arguments fail before TensorFlow
    quiet_tensorflow()
    from automtl.run.distill import distill as run_distill

    console = make_console()
    result = run_distill(run_dir, out, teacher=teacher, student=student, epochs=epochs, temperature=temperature,
                         trials=trials, init=init, console=console, force=force, mixup=mixup)
    print_result(console, result)


def print_result(console: object, result: object) -> None:
    from rich.table import Table

    from automtl.console import print_table, shown
    from automtl.rundir.outdir import exported_files

    t, s = result.teacher, result.student  # type: ignore[attr-defined]
    table = Table(title="Teacher vs student (validation rows; latency of the exported SavedModels)", title_justify="left")
    table.add_column("", justify="left", no_wrap=True)
    table.add_column(t.name, justify="right", no_wrap=True)
    table.add_column("student", justify="right", no_wrap=True)
    table.add_row("objective (score)", f"{t.score:.4f}", f"{s.score:.4f}")
    for key in sorted(t.metrics):
        if key.endswith(".labelled") or key not in s.metrics:
            continue
        table.add_row(key, f"{t.metrics[key]:.4g}", f"{s.metrics[key]:.4g}")
    table.add_row("parameters", f"{t.parameters:,}" if t.parameters else "-", f"{s.parameters:,}")
    for b in ("batch_1", "batch_256"):
        tv, sv = t.latency_ms.get(b), s.latency_ms.get(b)
        table.add_row(f"latency {b.replace('_', ' ')} (ms)", "-" if tv is None else f"{tv:.2f}",
                      "-" if sv is None else f"{sv:.2f}")
    print_table(console, table)  # type: ignore[arg-type]
    for task, rows in result.filled.items():  # type: ignore[attr-defined]
        if rows:
            console.print(f"task '{task}': the teacher filled in {rows} training row(s) without its label",  # type: ignore[attr-defined]
                          highlight=False)
    for note in result.notes:  # type: ignore[attr-defined]
        console.print(f"[yellow]note:[/] {note}", highlight=False)  # type: ignore[attr-defined]
    console.print(f"student exported to {shown(result.out)}: "  # type: ignore[attr-defined]
                  f"{', '.join(exported_files(result.out))} (with the teacher)", highlight=False,  # type: ignore[attr-defined]
                  soft_wrap=True)
