"""Pretrained word vectors in the text input: file formats, frozen or fine-tuned, searched, bad files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import yaml

from automtl.data.table import Table
from automtl.errors import DataError
from automtl_text import TextInput
from helpers import assert_user_error

from conftest import LEAN_ENDING

DIM = 6


def vectors_file(path: Path, words: list[str], header: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    vecs = {w: rng.normal(size=DIM).round(4).astype(np.float32) for w in words}
    lines = [f"{len(words)} {DIM}"] if header else []
    lines += [w + " " + " ".join(f"{v:g}" for v in vec) for w, vec in vecs.items()]
    text = "\n".join(lines) + "\n"
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return vecs


@pytest.mark.parametrize("name,header", [("glove.txt", False), ("wiki.vec", True), ("glove.txt.gz", False)])
def test_vector_files_are_read_for_the_vocabulary_only(tmp_path, name, header):
    from automtl_text.vectors import read_vectors

    vecs = vectors_file(tmp_path / name, ["the", "Paris", "cat", "zebra"], header)
    found, dim = read_vectors(tmp_path / name, {"the", "cat", "paris", "Paris", "dog"})
    assert dim == DIM and set(found) == {"the", "cat", "Paris"}
    np.testing.assert_array_equal(found["Paris"], vecs["Paris"])


def test_bad_vector_files_name_the_line(tmp_path):
    from automtl_text.vectors import read_vectors

    (tmp_path / "short.txt").write_text("a 1 2 3\nb 1 2\n")
    with pytest.raises(DataError, match=r"short.txt: line 2: 2 numbers, expected 3"):
        read_vectors(tmp_path / "short.txt", {"a", "b"})
    (tmp_path / "nan.txt").write_text("a 1 2 3\nb 1 x 3\n")
    with pytest.raises(DataError, match=r"nan.txt: line 2: the vector of 'b' holds a value that is not a number"):
        read_vectors(tmp_path / "nan.txt", {"a", "b"})


@pytest.mark.parametrize("text, fragment", [
    ("a 1 2 3\nb 1 nan 3\n", r"line 2: the vector of 'b' holds a non-finite value \(nan\)"),
    ("a 1 2 3\nzz -inf 2 3\n", r"line 2: the vector of 'zz' holds a non-finite value \(-inf\)"),  # a word not kept
    ("a 1 2 3\nb 1 2 1e999\n", r"line 2: the vector of 'b' holds a non-finite value \(1e999\)"),
    ("2 3\na 1 2 3\nb 1 2 3 4\n", r"line 3: 4 numbers, expected 3"),
    ("a 1 2 3\nb 1 2 3 4\n", r"line 2: 4 numbers, expected 3"),
    ("", r"the word-vector file holds no vectors"),
    ("\n\n", r"the word-vector file holds no vectors"),
    ("5 3\n", r"the word-vector file holds no vectors \(only its header line\)"),
])
def test_broken_vector_files_are_refused_naming_the_first_bad_line(tmp_path, text, fragment):
    """Issue 31: a nan or inf was accepted, and every trial then failed on a non-finite loss."""
    from automtl_text.vectors import read_vectors

    (tmp_path / "v.txt").write_text(text)
    with pytest.raises(DataError, match=r"v.txt: " + fragment):
        read_vectors(tmp_path / "v.txt", {"a", "b"})


def test_a_word_with_spaces_still_reads(tmp_path):
    from automtl_text.vectors import read_vectors

    (tmp_path / "v.txt").write_text("a 1 2 3\n. . . 4 5 6\nnan 7 8 9\n")
    found, dim = read_vectors(tmp_path / "v.txt", {". . .", "nan"})
    assert dim == 3 and found[". . ."].tolist() == [4, 5, 6] and found["nan"].tolist() == [7, 8, 9]


def sentences(n: int = 40) -> Table:
    words = ["good", "great", "bad", "awful", "movie", "film", "plot"]
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for _ in range(n):
        pos = bool(rng.integers(0, 2))
        texts.append(" ".join([str(rng.choice(words[:2] if pos else words[2:4])), str(rng.choice(words[4:]))]))
        labels.append("pos" if pos else "neg")
    return Table("r.csv", {"text": np.array(texts, dtype=object), "label": np.array(labels, dtype=object)})


@pytest.mark.parametrize("freeze", [True, False])
def test_pretrained_vectors_start_the_embedding_and_freeze_keeps_them(tmp_path, freeze):
    import keras

    from automtl_classification import ClassificationTask
    from helpers import prepared, train_once

    vecs = vectors_file(tmp_path / "v.txt", ["good", "great", "bad", "awful", "movie", "film"])  # no "plot"
    enc = TextInput("text", {"column": "text", "embeddings": "v.txt", "word_dropout": 0.0})
    enc.base_dir = tmp_path
    task = ClassificationTask("label", {"target": "label"})
    table = sentences()
    train, valid = prepared([enc], [task], table, table)
    assembled, _, fit = train_once([enc], [task], train, valid, {"text.freeze_embeddings": freeze, "trunk.units": 8,
                                                                 "trunk.depth": 1, "batch_size": 8,
                                                                 "learning_rate": 0.05}, epochs=2)
    layer = assembled.model.get_layer("text_embedding")
    ids = {w: i + 2 for i, w in enumerate(enc.vocabulary)}
    embed = lambda w: np.asarray(layer(np.array([[ids[w]]])))[0, 0]  # noqa: E731
    for word in ("good", "bad", "movie"):
        same = np.allclose(embed(word), vecs[word], atol=1e-6)
        assert same == freeze  # frozen: the file's vectors; fine-tuned: moved
    assert enc.describe()["words_with_vectors"] == pytest.approx(6 / 7, abs=1e-4)
    plot_before = np.asarray(layer(np.array([[ids["plot"]]])))[0, 0]
    assert not np.allclose(plot_before, 0.0)  # a word the file lacks has a (learnt) random vector
    assert {v.path.split("/")[-1] for v in layer.trainable_weights} == ({"learned"} if freeze else {"table"})
    assembled.model.save(tmp_path / "m.keras")
    x = {"text": np.array(["good plot", "awful film"], dtype=object)}
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "m.keras").predict(x, verbose=0)["label"],
                               assembled.model.predict(x, verbose=0)["label"], rtol=1e-5, atol=1e-6)


@pytest.mark.e2e
def test_searched_freezing_runs_and_bad_embeddings_are_refused(cli, tmp_path):
    vectors_file(tmp_path / "v.vec", ["good", "great", "bad", "awful", "movie", "film"], header=True)
    table = sentences(40)
    import pandas as pd

    pd.DataFrame(table.columns).to_csv(tmp_path / "r.csv", index=False)
    space = {"parameters": {"text.freeze_embeddings": {"choice": [True, False]}, "trunk.units": 8, "trunk.depth": 1,
                            "batch_size": 16}, "per_task": {"head.units": 8, "head.depth": 0}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    exp = {"data": {"train": "r.csv"}, "inputs": [{"name": "text", "type": "text", "column": "text",
                                                   "embeddings": "v.vec"}],
           "tasks": [{"name": "label", "type": "classification", "target": "label"}], "space": "space.yaml",
           "search": {**LEAN_ENDING, "trials": 1, "epochs": 1, "out": str(tmp_path / "run"), "trials_per_process": 0}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    result = cli("search", "--config", tmp_path / "exp.yaml", "--no-report")
    assert result.exit_code == 0, result.output
    exp["inputs"][0]["embeddings"] = "missing.txt"
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    assert_user_error(cli("search", "--config", tmp_path / "exp.yaml"), "input 'text'", "option 'embeddings'",
                      "missing.txt not found")
    vectors_file(tmp_path / "other.txt", ["hund", "katze"])
    exp["inputs"][0]["embeddings"] = "other.txt"
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    assert_user_error(cli("search", "--config", tmp_path / "exp.yaml"), "other.txt", "none of the 7 training words")
