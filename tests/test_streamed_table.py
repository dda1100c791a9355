"""Tables as folders or globs of Parquet files, and tables larger than memory read in batches (data.stream)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import TINY_SPACE, experiment_dict, make_table


def _parts(folder: Path, n: int = 3000, files: int = 3, seed: int = 0) -> "object":
    frame = make_table(n, seed)
    folder.mkdir(parents=True, exist_ok=True)
    size = n // files
    for i in range(files):
        frame.iloc[i * size:(i + 1) * size].to_parquet(folder / f"part-{i}.parquet")
    return frame


def _experiment(tmp_path: Path, train: str, **data) -> "object":
    from automtl.config import load_experiment

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    exp = experiment_dict(Path(train), space, out=str(tmp_path / "run"))
    exp["data"].update(data)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return load_experiment(path)


def _prepare(exp):
    from automtl.data.prepare import instantiate, prepare

    encoders, tasks = instantiate(exp)
    return prepare(exp, encoders, tasks, exp.run_dir)


def test_a_folder_or_glob_of_parquet_files_is_one_table(tmp_path):
    from automtl.data.readers import read_table
    from automtl.errors import DataError

    frame = _parts(tmp_path / "parts")
    for path in (tmp_path / "parts", tmp_path / "parts" / "part-*.parquet"):
        table = read_table(path)
        assert len(table) == 3000 and np.allclose(table.columns["x0"], frame["x0"])  # files in path order
        assert list(table.columns["city"][:3]) == list(frame["city"][:3])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Parquet files"):
        read_table(tmp_path / "empty")
    (tmp_path / "parts" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="notes.txt, not a Parquet file"):
        read_table(tmp_path / "parts" / "*")
    make_table(10).drop(columns="city").to_parquet(tmp_path / "parts" / "part-9.parquet")
    with pytest.raises(DataError, match="part-9.parquet: columns"):
        read_table(tmp_path / "parts")


def test_the_hash_split_is_the_same_however_the_rows_are_batched(tmp_path):
    from automtl.config import GroupRule
    from automtl.data.streamed_table import valid_rows
    from automtl.data.table import from_frame

    frame = make_table(4000)
    whole = valid_rows(from_frame(frame, "t"), 0.2, 0)
    parts = np.concatenate([valid_rows(from_frame(frame.iloc[i:i + 333], "t"), 0.2, 0) for i in range(0, 4000, 333)])
    assert (whole == parts).all()  # a row's side depends on the row only
    shuffled = frame.sample(frac=1.0, random_state=1)
    assert (valid_rows(from_frame(shuffled, "t"), 0.2, 0) == whole[shuffled.index.to_numpy()]).all()
    assert 0.17 < whole.mean() < 0.23
    assert (valid_rows(from_frame(frame, "t"), 0.2, 1) != whole).any()  # the split seed moves rows
    grouped = valid_rows(from_frame(frame, "t"), 0.3, 0, GroupRule(column="city"))
    for city in ("north", "south", "east"):  # a group stays on one side
        assert len(set(grouped[frame["city"].to_numpy() == city])) == 1


def test_a_streamed_table_is_encoded_once_and_read_from_disk(tmp_path):
    from automtl.data.streamed import MappedArray

    frame = _parts(tmp_path / "parts")
    exp = _experiment(tmp_path, str(tmp_path / "parts"), stream=True, sample_rows=400, valid_fraction=0.25)
    prepared = _prepare(exp)
    train, valid = prepared.train, prepared.valid
    assert all(isinstance(v, MappedArray) for v in (*train.x.values(), *valid.x.values()))
    assert train.streamed and not prepared.can_refit
    assert len(train) + len(valid) == 3000 and 600 < len(valid) < 900
    stream = prepared.sources["stream"]
    assert stream["rows"] == {"train": len(train), "valid": len(valid)} and stream["sample_rows"] == 400
    # The encodings were fitted on the sample of training rows only: its mean, not the table's.
    features = prepared.encoders[0]
    table_mean = frame[[f"x{i}" for i in range(4)]].to_numpy().mean(axis=0)
    assert not np.allclose(features.mean, table_mean, atol=1e-6) and np.allclose(features.mean, table_mean, atol=0.2)
    # Rows read back by index: the text column as bytes the model's lookup takes, the numbers as written.
    rows = train.x["city"].take(np.array([0, 5, 1]))
    assert set(rows.astype(str)) <= {"north", "south", "east"}
    assert train.x["features"].take(np.array([2])).shape == (1, 4)
    # A second process reuses the cache; a changed file makes a new one.
    cache = sorted((exp.run_dir / "cache").glob("table-*"))
    stamp = (cache[0] / "train" / "x.features.npy").stat().st_mtime_ns
    again = _prepare(exp)
    assert len(again.train) == len(train) and np.allclose(again.encoders[0].mean, features.mean)
    assert (cache[0] / "train" / "x.features.npy").stat().st_mtime_ns == stamp
    make_table(900, seed=3).to_parquet(tmp_path / "parts" / "part-1.parquet")
    changed = _prepare(exp)
    assert len(changed.train) + len(changed.valid) == 2900
    assert len([p for p in (exp.run_dir / "cache").glob("table-*") if p.is_dir()]) == 2


def test_tables_above_the_memory_budget_stream_by_themselves(tmp_path, monkeypatch):
    from automtl.data.streamed import wants_stream

    _parts(tmp_path / "parts")
    exp = _experiment(tmp_path, str(tmp_path / "parts"))
    assert not wants_stream(exp.data, exp.path(exp.data.train))
    monkeypatch.setenv("AUTOMTL_INMEMORY_MB", "0.1")  # 3000 rows x 7 columns: about 0.4 MB in memory
    assert wants_stream(exp.data, exp.path(exp.data.train))
    off = _experiment(tmp_path, str(tmp_path / "parts"), stream=False)
    assert not wants_stream(off.data, off.path(off.data.train))


def test_stream_refuses_what_it_cannot_do(tmp_path, cli, monkeypatch):
    from automtl.errors import ConfigError

    make_table(50).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ConfigError, match="data.stream reads Parquet files"):
        _prepare(_experiment(tmp_path, str(tmp_path / "t.csv"), stream=True))
    _parts(tmp_path / "parts")
    from automtl.errors import AutomtlError

    with pytest.raises(AutomtlError, match="cannot cross-validate"):
        _experiment(tmp_path, str(tmp_path / "parts"), stream=True, folds=3)
    from automtl.core import plugins

    # an input type that does not declare InputEncoder.streams_from_table
    monkeypatch.setattr(plugins.load("input", "tabular", where="test"), "streams_from_table", False)
    with pytest.raises(ConfigError, match=r"data.stream: inputs features \(tabular\) cannot stream from a table"):
        _prepare(_experiment(tmp_path, str(tmp_path / "parts"), stream=True))


@pytest.mark.slow
def test_search_on_a_streamed_parquet_folder_exports_a_model_and_records_the_sample(tmp_path):
    import subprocess
    import sys

    _parts(tmp_path / "parts", n=2400)
    exp = _experiment(tmp_path, str(tmp_path / "parts"), stream=True, sample_rows=300)
    config = tmp_path / "exp.yaml"
    done = subprocess.run([sys.executable, "-m", "automtl.cli", "search", "--config", str(config), "--no-report",
                           "--trials", "2", "--epochs", "2", "--baselines", "off", "--ensemble", "0"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads((exp.run_dir / "best" / "automtl.json").read_text())
    assert manifest["data"]["stream"]["sample_rows"] == 300
    assert sum(manifest["data"]["stream"]["rows"].values()) == 2400
    assert not (exp.run_dir / "split.json").exists()  # the split is the hash, not a list of rows


def test_each_pass_reads_every_row_once_in_a_new_seeded_order():
    from automtl.training.streams import shuffled_rows

    ds = shuffled_rows(1000, seed=3)
    first, second = [np.concatenate([b.numpy() for b in ds.batch(64)]) for _ in range(2)]
    assert sorted(first) == sorted(second) == list(range(1000))
    assert (first != second).any()  # reshuffled every pass
    again = np.concatenate([b.numpy() for b in shuffled_rows(1000, seed=3).batch(64)])
    assert (again == first).all()  # the same seed, the same order
