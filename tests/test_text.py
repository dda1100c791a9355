"""Text inputs and the token-tagging task: tokenisation, readers, tags, bad input, models, searches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from automtl.data.readers import read_table
from automtl.data.table import Table
from automtl.errors import DataError
from automtl_text import TextInput, TextTask
from automtl_text.tags import TagError, align, check_iob2
from automtl_text.tokens import tokenize
from helpers import assert_user_error

from conftest import LEAN_ENDING, LEAN_FLAGS

TRICKY = [
    "Book a flight to Boston, please!",
    "It's 3:30pm... (maybe) [later]?",
    "ÀBC Déf İstanbul naïve café",  # non-ASCII letters keep their case on both sides
    "tabs\tand\nnewlines\r\n and\vvertical\fform feeds",
    "no\u00a0break space\u2003em space \x1cfile sep",  # not ASCII whitespace: kept inside tokens
    "emoji 🙂 and «quotes» — dash",
    "under_score a-b a/b a.b.c $5 #1 @me ~x",
    "",
    "   ",
    "MiXeD CaSe",
]


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def slot_records(n: int = 24) -> list[dict]:
    cities = ["boston", "new york", "paris", "rio de janeiro", "oslo", "tokyo"]
    out = []
    for i in range(n):
        city = cities[i % len(cities)].split()
        intent = "weather" if i % 2 else "flight"
        lead = ["weather", "in"] if i % 2 else ["fly", "to"]
        out.append({"text": " ".join(lead + city), "tokens": lead + city,
                    "tags": ["O", "O", "B-city"] + ["I-city"] * (len(city) - 1), "intent": intent})
    return out


def tagging_experiment(tmp_path: Path, train: Path, space: Path | None = None, **task_options) -> Path:
    space = space or tmp_path / "space.yaml"
    if not space.exists():
        space.write_text(yaml.safe_dump({"parameters": {"trunk.depth": 1, "trunk.units": 16, "batch_size": 16,
                                                         "text.encoder": "conv", "text.embedding": 16},
                                          "per_task": {"head.units": 16, "head.depth": 1}}))
    exp = {
        "name": "tagging",
        "data": {"train": str(train), "valid_fraction": 0.25},
        "inputs": [{"name": "text", "type": "text", "column": "tokens"}],
        "tasks": [{"name": "slots", "type": "text", **task_options}],
        "space": str(space),
        "search": {**LEAN_ENDING, "trials": 1, "epochs": 1, "out": str(tmp_path / "run")},
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


# -- tokenisation: one definition, the same tokens in training and serving ---------------
def test_python_and_tensorflow_tokenise_identically():
    import tensorflow as tf

    from automtl_text.tokens import tf_tokenize

    for lowercase in (True, False):
        served = tf_tokenize(tf.constant(TRICKY), lowercase=lowercase).to_list()
        for text, tokens in zip(TRICKY, served):
            assert [t.decode() for t in tokens] == tokenize(text, lowercase), text
    assert tokenize("It's 3:30pm!") == ["it", "'", "s", "3", ":", "30pm", "!"]
    assert tokenize("ÀBC İx") == ["Àbc", "İx"]  # ASCII-only lower-casing, on both sides


def test_the_model_vectoriser_reads_the_tokens_the_tags_were_aligned_to():
    """The TextVectorization layer inside the model (standardize + split) sees Python's tokens."""
    from automtl_text.layers import vectorizer

    texts = [t for t in TRICKY if tokenize(t)]
    vocab = sorted({tok for t in texts for tok in tokenize(t)})
    layer = vectorizer(vocab, 16, lowercase=True, name="v")
    ids = np.asarray(layer(np.array(texts, dtype=object)))
    words = layer.get_vocabulary()
    for text, row in zip(texts, ids):
        assert [words[i] for i in row if i > 0] == tokenize(text)[:16], text


# -- readers ------------------------------------------------------------------------------
def test_jsonl_lists_become_object_columns_and_numbers_floats(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"tokens": ["a", "b"], "tags": ["O", "B-x"], "score": 1}\n\n'
                    '{"tokens": ["c"], "score": 2.5, "label": "z"}\n')
    table = read_table(path)
    assert len(table) == 2 and table.columns["tokens"].dtype == object
    assert table.columns["tokens"][0] == ["a", "b"] and table.columns["tags"][1] is None
    assert table.columns["score"].dtype == np.float64 and table.columns["score"].tolist() == [1.0, 2.5]
    assert table.row_label(1) == "line 3"  # the blank line is skipped but lines keep their numbers


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "ok"}\n{"text": "broken"\n')
    with pytest.raises(DataError, match=r"d.jsonl: line 2: malformed JSON"):
        read_table(path)


def test_conll_sentences_documents_and_columns(tmp_path):
    path = tmp_path / "d.conll"
    path.write_text("-DOCSTART- -X- O O\n\nEU NNP B-ORG\nrejects VBZ O\n\n\nPeter NNP B-PER\nBlackburn NNP I-PER\n")
    table = read_table(path)
    assert table.columns["tokens"].tolist() == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert table.columns["tags"].tolist() == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert table.row_label(1) == "sentence 2 (line 7)"


# -- tags ----------------------------------------------------------------------------------
def test_iob2_is_refused_or_repaired():
    with pytest.raises(TagError, match=r"tag 2 is 'I-city' but follows 'O'.*refused.*repair: true"):
        check_iob2(["O", "I-city"], repair=False)
    with pytest.raises(TagError, match="tag 1 is 'CITY'"):
        check_iob2(["CITY"], repair=True)  # not BIO at all: refused even with repair
    assert check_iob2(["O", "I-city", "I-city", "I-date"], repair=True) == (["O", "B-city", "I-city", "B-date"], 2)


def test_words_the_tokeniser_splits_keep_one_span():
    assert align(["at", "3:30", "pm"], ["O", "B-time", "I-time"], "iob2") == ["O", "B-time", "I-time", "I-time", "I-time"]
    assert align(["it's"], ["O"], "iob2") == ["O", "O", "O"]


def test_targets_mask_padding_and_untagged_rows_and_metrics():
    data = Table("d.jsonl", {
        "tokens": _objects([["fly", "to", "new", "york"], ["weather", "in", "oslo"], ["hello"]]),
        "tags": _objects([["O", "O", "B-city", "I-city"], None, ["O"]]),
    }, meta={"records": ["line 1", "line 2", "line 3"]})
    task = TextTask("slots", {})
    task.prepare(data)
    assert task.classes == ["O", "B-city", "I-city"] and task.length == 4
    t = task.targets(data)
    assert t.y.shape == t.mask.shape == (3, 4)
    assert t.mask.tolist() == [[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]]  # untagged row, padding: masked
    perfect = np.eye(3)[t.y] * 5.0
    raw = np.concatenate([perfect, t.mask[..., None]], axis=-1)
    m = task.evaluate(t.y, t.mask, raw)
    assert m["span_f1"] == 1.0 and m["token_accuracy"] == 1.0 and m["labelled"] == 2
    raw[0, 3, :3] = [0.0, 5.0, 0.0]  # "york" predicted B-city: two wrong spans instead of one right one
    m = task.evaluate(t.y, t.mask, raw)
    assert m["span_f1"] == 0.0 and m["token_accuracy"] == pytest.approx(4 / 5)


# -- bad input: exit 2, the file and the record named --------------------------------------
def test_tokens_and_tags_of_different_lengths(cli, tmp_path):
    records = slot_records()
    records[4]["tags"] = records[4]["tags"][:-1]
    train = write_jsonl(tmp_path / "bad.jsonl", records)
    assert_user_error(cli("search", "--config", tagging_experiment(tmp_path, train)),
                      "bad.jsonl", "line 5", "3 tokens in 'tokens' but 2 tags in 'tags'")


def test_tag_breaking_bio_is_refused(cli, tmp_path):
    records = slot_records()
    records[6]["tags"][2] = "I-city"
    train = write_jsonl(tmp_path / "bad.jsonl", records)
    assert_user_error(cli("search", "--config", tagging_experiment(tmp_path, train)),
                      "bad.jsonl", "line 7", "tag 3 is 'I-city' but follows 'O'", "refused", "repair: true")


def test_empty_text(cli, tmp_path):
    records = slot_records()
    records[2]["tokens"] = []
    train = write_jsonl(tmp_path / "bad.jsonl", records)
    assert_user_error(cli("search", "--config", tagging_experiment(tmp_path, train)), "bad.jsonl", "line 3", "empty text")


def test_non_string_in_a_text_column(cli, tmp_path, tiny_space):
    rows = [{"review": f"good thing number {i}", "stars": i % 5} for i in range(12)]
    rows[8]["review"] = 42
    train = write_jsonl(tmp_path / "bad.jsonl", rows)
    exp = {"data": {"train": str(train)}, "inputs": [{"name": "review", "type": "text", "column": "review"}],
           "tasks": [{"name": "stars", "type": "regression", "target": "stars"}], "space": str(tiny_space)}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    assert_user_error(cli("search", "--config", path), "bad.jsonl", "line 9", "column 'review'", "expected a string, got 42")


def test_conll_file_with_a_malformed_line(cli, tmp_path):
    train = tmp_path / "bad.conll"
    train.write_text("fly O\nto O\nboston B-city\n\nweather O\nin\noslo B-city\n")
    assert_user_error(cli("search", "--config", tagging_experiment(tmp_path, train)),
                      "bad.conll", "line 6", "malformed line 'in'", "a token and its tag")


def test_input_and_task_reading_different_tokens_is_refused(tmp_path):
    rows = slot_records(4)
    rows[1]["text"] = "weather in new-york"
    data = Table("d.jsonl", {k: _objects([r[k] for r in rows]) for k in ("text", "tokens", "tags")})
    enc, task = TextInput("text", {"column": "text"}), TextTask("slots", {})
    enc.tasks = (task,)
    with pytest.raises(DataError, match="row 2: input 'text' column 'text' and task 'slots' column 'tokens' give different tokens"):
        enc.prepare(data)


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


# -- models --------------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.parametrize("encoder", ["conv", "bigru", "transformer"])
def test_each_sequence_encoder_trains_saves_and_loads(encoder, tmp_path):
    import keras

    from automtl_classification import ClassificationTask
    from helpers import prepared, train_once

    rows = slot_records(48)
    table = Table("d.jsonl", {"text": _objects([r["text"] for r in rows]), "tokens": _objects([r["tokens"] for r in rows]),
                              "tags": _objects([r["tags"] for r in rows]), "intent": _objects([r["intent"] for r in rows])})
    enc = TextInput("text", {"column": "tokens", "embedding": 8})
    tasks = [ClassificationTask("intent", {"target": "intent"}), TextTask("slots", {})]
    enc.tasks = tuple(tasks)
    train, valid = prepared([enc], tasks, table.take(np.arange(36)), table.take(np.arange(36, 48)))
    assembled, trainer, fit = train_once([enc], tasks, train, valid,
                                         {"text.encoder": encoder, "trunk.units": 16, "trunk.depth": 1, "batch_size": 16},
                                         epochs=2)
    assert set(fit.metrics["slots"]) >= {"span_f1", "token_accuracy"}
    x = {"text": np.array(["fly to paris", "weather in rio de janeiro"], dtype=object)}
    before = assembled.model.predict(x, verbose=0)
    assert before["slots"].shape == (2, tasks[1].length, len(tasks[1].classes) + 1)
    assembled.model.save(tmp_path / "m.keras")
    after = keras.saving.load_model(tmp_path / "m.keras").predict(x, verbose=0)
    np.testing.assert_allclose(before["slots"], after["slots"], rtol=1e-5, atol=1e-5)


# -- searches end to end -------------------------------------------------------------------
SERVE = """
import json, sys
import tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = serve(text=tf.constant(json.loads(sys.argv[2])))
assert not any(m.startswith("automtl") for m in sys.modules)  # plain TensorFlow only
print(json.dumps({k: v.numpy().tolist() for k, v in out.items() if v.dtype != tf.float32}, default=bytes.decode))
"""


@pytest.mark.slow
def test_text_demo_exports_a_model_that_tags_raw_strings_in_plain_tensorflow(cli, tmp_path):
    out = tmp_path / "run"
    result = cli("search", "--demo", "text", "--trials", "1", "--epochs", "2", "--out", out, "--no-report", *LEAN_FLAGS)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "best" / "automtl.json").read_text())
    tags = next(t for t in manifest["tasks"] if t["name"] == "slots")["tags"]
    texts = ["Book a flight from Reykjavik to Boston tomorrow, please!", "play hey jude by the beatles"]
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1"}
    proc = subprocess.run([sys.executable, "-c", SERVE, str(out / "best" / "saved_model"), json.dumps(texts)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    assert served["intent.label"][0] in ("book_flight", "get_weather", "book_hotel", "book_restaurant", "play_music", "set_alarm")
    for text, words, row, length in zip(texts, served["slots.tokens"], served["slots.tags"], served["slots.length"]):
        expected = tokenize(text, lowercase=False)
        assert words[: len(expected)] == expected and not any(words[len(expected):])  # serving splits as training did
        assert length == len(expected) and all(t in tags for t in row[:length]) and not any(row[length:])


def reviews_csv(path: Path, n: int = 240, seed: int = 0) -> Path:
    """Reviews whose category shows in its nouns and whose rating in its adjectives."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    nouns = {"electronics": ["battery", "screen", "charger", "speaker"], "books": ["plot", "author", "chapter", "ending"],
             "kitchen": ["pan", "knife", "blender", "kettle"]}
    moods = {1: ["terrible", "broken"], 2: ["poor", "flimsy"], 3: ["okay", "average"], 4: ["good", "solid"],
             5: ["excellent", "superb"]}
    rows = []
    for _ in range(n):
        category = rng.choice(sorted(nouns))
        rating = int(rng.integers(1, 6))
        noun, mood = rng.choice(nouns[category]), rng.choice(moods[rating])
        filler = rng.choice(["honestly", "i think", "after a week", "overall", ""])
        rows.append({"review": f"The {noun} is {mood}, {filler}.", "rating": rating, "category": category})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.e2e
def test_text_classification_and_regression_from_a_csv_through_config(cli, tmp_path):
    train = reviews_csv(tmp_path / "reviews.csv")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"parameters": {"text.encoder": {"choice": ["conv", "transformer"]},
                                                    "text.embedding": 16, "trunk.depth": 1, "trunk.units": 32,
                                                    "learning_rate": 0.01, "batch_size": 32},
                                     "per_task": {"head.units": 16, "head.depth": 1}}))
    exp = {"name": "reviews", "data": {"train": "reviews.csv", "valid_fraction": 0.25},
           "inputs": [{"name": "words", "type": "text", "column": "review"}],  # an input named apart from its column
           "tasks": [{"name": "rating", "type": "regression", "target": "rating"},
                     {"name": "category", "type": "classification", "target": "category"}],
           "space": "space.yaml", "search": {**LEAN_ENDING, "trials": 2, "epochs": 15, "patience": 5, "out": "run"}}
    path = tmp_path / "reviews.yaml"
    path.write_text(yaml.safe_dump(exp))
    result = cli("search", "--config", path, "--no-report")
    assert result.exit_code == 0, result.output
    import tensorflow as tf

    serve = tf.saved_model.load(str(tmp_path / "run" / "best" / "saved_model")).signatures["serving_default"]
    out = serve(words=tf.constant(["The kettle is superb, overall.", "The plot is terrible, honestly."]))
    assert [v.decode() for v in out["category.label"].numpy()] == ["kitchen", "books"]
    stars = out["rating.value"].numpy().reshape(-1)
    assert stars[0] > 4.0 and stars[1] < 2.0
    # automtl predict reads the texts from the column the input was trained on
    (tmp_path / "new.csv").write_text('review\n"The kettle is superb, overall."\n"The plot is terrible, honestly."\n')
    result = cli("predict", tmp_path / "run" / "best", "--data", tmp_path / "new.csv", "--out", tmp_path / "pred.csv")
    assert result.exit_code == 0, result.output
    import pandas as pd

    pred = pd.read_csv(tmp_path / "pred.csv")
    assert pred["category.label"].tolist() == ["kitchen", "books"]
    assert pred["rating.value"].tolist() == pytest.approx(stars.tolist(), abs=1e-4)
