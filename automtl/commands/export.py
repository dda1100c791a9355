"""``automtl export RUN_DIR --trial N --out DIR [--format ...] [--layout ...]``: export any completed trial."""

from __future__ import annotations

from pathlib import Path

import click

from automtl.commands.base import RUN_DIR, quiet_tensorflow, user_errors


@click.command()
@RUN_DIR
@click.option("--trial", "number", type=int, help="Trial number (see `automtl trials`).")
@click.option("--baseline", metavar="TASK", help="Export TASK's single-task baseline instead of a trial.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder to write: new, or an earlier automtl export (replaced); never a run folder.")
@click.option("--format", "formats", default="saved_model", show_default=True,
              help="Comma-separated: saved_model, onnx (extra 'onnx'), tflite. The SavedModel is always written.")
@click.option("--layout", type=click.Choice(["plain", "tf-serving"]), default="plain", show_default=True,
              help="tf-serving: write OUT/<experiment>/<next version>/ for TensorFlow Serving.")
@click.option("--force", is_flag=True, help="Replace an existing folder that is not an automtl export "
              "(a run folder, or a folder holding or inside one, is never replaced).")
@user_errors
def export(run_dir: Path, number: int | None, baseline: str | None, out: Path, formats: str, layout: str,
           force: bool) -> None:
    """Export any completed trial of a run (or, with --baseline TASK, a task's single-task baseline),
    like RUN_DIR/best, optionally to ONNX and LiteRT (TFLite)."""
    from automtl.errors import ConfigError
    from automtl.export.formats import parse_formats, require_extras
    from automtl.run.export_trial import baseline_model, exportable
    from automtl.rundir.outdir import check_out

    if (number is None) == (baseline is None):
        raise ConfigError("give exactly one of --trial N or --baseline TASK")
    chosen = parse_formats(formats)
    require_extras(chosen)  # a missing optional dependency fails before TensorFlow starts
    if baseline is not None:
        baseline_model(run_dir, baseline)  # so does an unknown task
    else:
        exportable(run_dir, number)  # and a bad trial number
    check_out(out, force=force, serving=layout == "tf-serving")  # and an --out that would destroy something
    if baseline is not None:
        quiet_tensorflow()
        from automtl.run.export_trial import export_baseline

        folder = export_baseline(run_dir, baseline, out, chosen, layout, force)
        click.echo(f"single-task baseline of '{baseline}' exported to {folder}: saved_model/ (serving_default), "
                   "model.keras, automtl.json")
        return
    quiet_tensorflow()
    from automtl.run.export_trial import export_run_trial

    folder = export_run_trial(run_dir, number, out, chosen, layout, force)
    _summary(folder, number)


def _summary(folder: Path, number: int) -> None:
    import json

    manifest = json.loads((folder / "automtl.json").read_text())
    lines = [f"trial {number} exported to {folder} ({manifest['parameters']:,} parameters)"]
    for fmt, entry in manifest["formats"].items():
        lat = entry.get("latency") or {}
        parity = entry.get("parity")
        worst = max((o.get("max_abs_diff", 0.0) for o in parity["outputs"].values()), default=0.0) if parity else None
        text = f"  {fmt:<11} {entry['path']}"
        if lat:
            text += f"  latency {lat['batch_1_ms']:.3g} ms (batch 1), {lat['batch_256_ms']:.3g} ms (batch 256)"
        if worst is not None:
            text += f"  parity: max abs diff {worst:.2g} over {parity['rows']} validation rows"
        lines.append(text)
    click.echo("\n".join(lines))
