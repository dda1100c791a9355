"""Where decoded training images live: memory, an on-disk cache read per batch, or their files every epoch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from automtl.data.table import Table
from automtl.errors import ConfigError


def image_table(folder: Path, n: int = 12) -> Table:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        side = 20 + 3 * (i % 4)  # files of several sizes, resized to one
        Image.fromarray(rng.integers(0, 255, (side, side + 2, 3)).astype(np.uint8)).save(folder / f"{i}.png")
        names.append(f"{i}.png")
    path = folder / "data.csv"
    return Table(str(path), {"image_path": np.array(names, dtype=object)}, meta={"path": str(path)})


def encoder(cache: str, cache_dir: Path | None):
    from automtl_image import ImageInput

    enc = ImageInput("img", {"size": [16, 16], "cache": cache})
    enc.cache_dir = cache_dir
    return enc


def test_memory_disk_and_files_give_the_model_the_same_pixels(tmp_path):
    from automtl.api import MappedArray
    from automtl_image.decode import ImageFiles

    table = image_table(tmp_path / "pics")
    rows = np.array([3, 0, 11, 5])
    found = {}
    for mode in ("memory", "disk", "none"):
        enc = encoder(mode, tmp_path / "cache")
        enc.prepare(table)
        images = enc.arrays(table)["img"]
        assert enc.storage == mode
        found[mode] = images.take(rows) if mode != "memory" else images[rows]
        if mode == "disk":
            assert isinstance(images, MappedArray) and Path(images.path).parent == tmp_path / "cache"
            assert np.array_equal(images.read(np.asarray(rows)).numpy(), found[mode])  # the tf.data reader
        if mode == "none":
            assert isinstance(images, ImageFiles)
            assert np.array_equal(images.read(np.asarray(rows)).numpy(), found[mode])
        assert enc.mean and len(enc.mean) == 3
    assert found["memory"].shape == (4, 16, 16, 3) and found["memory"].dtype == np.uint8
    assert np.array_equal(found["memory"], found["disk"]) and np.array_equal(found["memory"], found["none"])


@pytest.mark.e2e
def test_images_stream_from_a_disk_cache_when_they_would_not_fit(tmp_path, monkeypatch):
    table = image_table(tmp_path / "pics")
    monkeypatch.setenv("AUTOMTL_INMEMORY_MB", "0.001")  # 12 images of 16x16x3 = 9 KB > 1 KB
    enc = encoder("auto", tmp_path / "cache")
    enc.prepare(table)
    assert enc.storage == "disk"
    cache = enc.arrays(table)["img"].path
    stamp = os.stat(cache).st_mtime_ns
    again = encoder("auto", tmp_path / "cache")
    again.prepare(table)
    assert again.arrays(table)["img"].path == cache and os.stat(cache).st_mtime_ns == stamp  # reused
    Image.fromarray(np.zeros((20, 22, 3), np.uint8)).save(tmp_path / "pics" / "4.png")  # a file changes
    changed = encoder("auto", tmp_path / "cache")
    changed.prepare(table)
    assert changed.arrays(table)["img"].path != cache and not list((tmp_path / "cache").glob(".*tmp*"))
    no_folder = encoder("auto", None)
    no_folder.prepare(table)
    assert no_folder.storage == "none"  # no run folder to cache in: decode every epoch
    monkeypatch.setenv("AUTOMTL_INMEMORY_MB", "64")
    fits = encoder("auto", tmp_path / "cache")
    fits.prepare(table)
    assert fits.storage == "memory"


@pytest.mark.e2e
def test_trainer_streams_cached_images_and_evaluates_every_row(tmp_path):
    from automtl_classification import ClassificationTask
    from helpers import prepared, train_once

    table = image_table(tmp_path / "pics", n=40)
    table.columns["kind"] = np.array(["a", "b"] * 20, dtype=object)
    enc = encoder("disk", tmp_path / "cache")
    task = ClassificationTask("kind", {"target": "kind"})
    train, valid = prepared([enc], [task], table, table)
    assert train.streamed and train.nbytes() < 1000  # the images are not held: only labels and masks
    _, trainer, fit = train_once([enc], [task], train, valid, {"image.stages": 2, "image.filters": 4,
                                                                "trunk.depth": 0, "batch_size": 16}, epochs=2)
    assert trainer.streaming and fit.metrics["kind"]["labelled"] == 40.0


def test_cache_options_for_npz_arrays_are_refused():
    from automtl_image import ImageInput

    with pytest.raises(ConfigError, match="input 'img': option 'cache: disk' is for image files"):
        ImageInput("img", {"array": "pixels", "cache": "disk"})


@pytest.mark.parametrize("mode", ["memory", "disk", "none"])
def test_a_truncated_image_among_many_is_named_with_its_row(tmp_path, mode):
    """Issue 31: a truncated PNG was reported with TensorFlow's op text and no file name."""
    from automtl.errors import DataError

    table = image_table(tmp_path / "pics", n=30)
    bad = tmp_path / "pics" / "17.png"
    bad.write_bytes(bad.read_bytes()[:120])
    enc = encoder(mode, tmp_path / "cache")
    with pytest.raises(DataError) as caught:
        enc.prepare(table)
    message = str(caught.value)
    assert "data.csv" in message and "row 18" in message and str(bad) in message, message
    assert "{{function_node" not in message and "[Op:" not in message, message
