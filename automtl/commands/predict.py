"""``automtl predict MODEL_DIR --data FILE --out FILE``: run an exported model over a data file."""

from __future__ import annotations

from pathlib import Path

import click

from automtl.commands.base import user_errors


@click.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True,
              help="CSV, Parquet, JSONL or NPZ file with the model's input columns/arrays.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output file (.csv, .parquet, .jsonl or .npz): one column per task output.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--keep", multiple=True, help="Copy this data column (an id) into the output; repeatable.")
@user_errors
def predict(model_dir: Path, data_path: Path, out: Path, batch_size: int, keep: tuple[str, ...]) -> None:
    """Run an exported model (RUN_DIR/best or an `export` folder) over a data file.

    The data and --out are checked before TensorFlow loads.
    """
    from rich.console import Console

    from automtl.outputs.predict import predict as run_predict

    result = run_predict(model_dir, data_path, out, batch_size=batch_size, keep=keep, console=Console(stderr=True))
    click.echo(f"{result.rows} rows -> {result.out} ({', '.join(result.outputs)}) in {result.seconds:.1f}s")
