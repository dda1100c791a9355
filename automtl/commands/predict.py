"""``automtl predict MODEL_DIR --data FILE --out FILE``: run an exported model over a data file."""

from __future__ import annotations

from pathlib import Path

import click

from automtl.commands.base import VERBOSE, user_errors


@click.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True,
              help="CSV, Parquet, JSONL or NPZ file with the model's inputs, a file a reader plugin reads (COCO JSON), "
              "or a path an input plugin reads itself (the image input: an image file or a folder of images).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output file (.csv, .parquet, .jsonl or .npz): one column per task output; another --format "
              "says what it writes (coco: .json).")
@click.option("--root", type=click.Path(path_type=Path), default=None,
              help="Folder that relative file paths in the data start from (default: the data file's folder).")
@click.option("--format", "fmt", default="table", show_default=True, metavar="NAME",
              help="How the outputs are written: table, or an installed prediction format (`automtl plugins`, kind "
              "prediction), such as coco: a detection model's boxes as a COCO results JSON file (pycocotools' loadRes).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Rows per batch (default 1024, or fewer where an input asks: 64 for an image input).")
@click.option("--keep", multiple=True, help="Copy this data column (an id) into the output; repeatable.")
@click.option("--probabilities", "vectors", type=click.Choice(["columns", "list"]), default="columns",
              show_default=True, help="Class probabilities as one column per class (<task>.p.<class>) or as one "
              "list per row (<task>.probabilities, in the order of automtl.json's classes).")
@VERBOSE
@user_errors
def predict(model_dir: Path, data_path: Path, out: Path, root: Path | None, fmt: str, batch_size: int | None,
            keep: tuple[str, ...], vectors: str) -> None:
    """Run an exported model (RUN_DIR/best or an `export` folder) over a data file or a folder of images.

    The data and --out are checked before TensorFlow loads.
    """
    from automtl.console import make_console
    from automtl.export.predict import predict as run_predict

    result = run_predict(model_dir, data_path, out, batch_size=batch_size, keep=keep, console=make_console(stderr=True),
                         root=root, format=fmt, vectors=vectors)
    click.echo(f"{result.rows} rows -> {result.out} ({', '.join(result.outputs)}) in {result.seconds:.1f}s")
