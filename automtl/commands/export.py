"""``automtl export RUN_DIR --out DIR [--ensemble | --trial N | --baseline TASK] [--format ...]``: export what a run
serves (best/ by default), in any format."""

from __future__ import annotations

from pathlib import Path

import click

from automtl.commands.base import RUN_DIR, VERBOSE, quiet_tensorflow, user_errors
from automtl.console import shown


@click.command()
@RUN_DIR
@click.option("--ensemble", is_flag=True, help="Export RUN_DIR/ensemble (as it serves) instead of best/.")
@click.option("--trial", "number", type=int, help="Export trial N's own model instead (see `automtl trials`).")
@click.option("--baseline", metavar="TASK", help="Export TASK's single-task baseline instead.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder to write: new, or an earlier automtl export (replaced); never a run folder.")
@click.option("--format", "formats", default="saved_model", show_default=True,
              help="Comma-separated: saved_model, onnx (extra 'onnx'), tflite. The SavedModel is always written.")
@click.option("--layout", type=click.Choice(["plain", "tf-serving"]), default="plain", show_default=True,
              help="tf-serving: write OUT/<experiment>/<next version>/ for TensorFlow Serving.")
@click.option("--force", is_flag=True, help="Replace an existing folder that is not an automtl export "
              "(a run folder, or a folder holding or inside one, is never replaced).")
@VERBOSE
@user_errors
def export(run_dir: Path, ensemble: bool, number: int | None, baseline: str | None, out: Path, formats: str,
           layout: str, force: bool) -> None:
    """Export what RUN_DIR/best serves (default; the refit model when the search refit), the ensemble
    (--ensemble), any completed trial (--trial N) or a task's single-task baseline (--baseline TASK),
    optionally to ONNX and LiteRT (TFLite), each checked against the SavedModel on the validation rows."""
    from automtl.errors import ConfigError
    from automtl.export.formats import parse_formats, require_extras
    from automtl.run.export_trial import baseline_model, exportable, served_manifest
    from automtl.rundir.folder import refuse_inside_run
    from automtl.rundir.outdir import check_out

    if sum((ensemble, number is not None, baseline is not None)) > 1:
        raise ConfigError("give at most one of --ensemble, --trial N or --baseline TASK (none: best/)")
    beside = (f"trial{number}" if number is not None else f"baseline-{baseline}" if baseline is not None
              else "ensemble" if ensemble else "best")
    refuse_inside_run(out, beside=beside)
    chosen = parse_formats(formats)
    require_extras(chosen)  # a missing optional dependency fails before TensorFlow starts
    if baseline is not None:
        baseline_model(run_dir, baseline)  # so does an unknown task
    elif number is not None:
        exportable(run_dir, number)  # and a bad trial number
    else:
        served_manifest(run_dir, "ensemble" if ensemble else "best")  # and a missing best/ or ensemble/
    check_out(out, force=force, serving=layout == "tf-serving")  # and an --out that would destroy something
    quiet_tensorflow()
    if baseline is not None:
        from automtl.run.export_trial import export_baseline

        folder = export_baseline(run_dir, baseline, out, chosen, layout, force)
        _summary(folder, f"single-task baseline of '{baseline}'")
    elif number is not None:
        from automtl.run.export_trial import export_run_trial

        _summary(export_run_trial(run_dir, number, out, chosen, layout, force), f"trial {number}")
    else:
        from automtl.run.export_trial import export_served

        which = "ensemble" if ensemble else "best"
        folder = export_served(run_dir, which, out, chosen, layout, force)
        _summary(folder, f"{shown(run_dir / which)}/" + ("" if ensemble else f" (trial {_trial_of(folder)})"))


def _trial_of(folder: Path) -> str:
    import json

    return str(json.loads((folder / "automtl.json").read_text()).get("trial", {}).get("number", "?"))


def _summary(folder: Path, what: str) -> None:
    """What was exported where: one line per file, with each format's latency and parity."""
    import json

    from automtl.rundir.outdir import exported_files

    manifest = json.loads((folder / "automtl.json").read_text())
    lines = [f"{what} exported to {shown(folder)} ({manifest['parameters']:,} parameters): "
             + ", ".join(exported_files(folder))]
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
