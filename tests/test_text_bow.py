"""The ``bow`` text encoder: TF-IDF over words and word bigrams, straight into the dense trunk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from automtl.data.table import Table
from automtl.errors import ConfigError
from automtl_classification import ClassificationTask
from automtl_text import TextInput, TextTask
from automtl_text.bow import fit_terms
from automtl_text.tokens import tokenize
from helpers import prepared, train_once
from test_text import SERVE, _objects, slot_records

TOPICS = {
    "sports": ["goal", "match", "coach", "league", "striker", "referee"],
    "cooking": ["recipe", "oven", "garlic", "simmer", "flour", "skillet"],
    "travel": ["flight", "hotel", "passport", "beach", "luggage", "museum"],
    "money": ["stocks", "loan", "budget", "invoice", "interest", "savings"],
}
FILLER = ["the", "a", "today", "really", "we", "talked", "about", "and", "then", "some", "news", "Monday", "my",
          "friend", "said", "it", "was", "great", "!", ",", "?"]


def topic_rows(n: int, seed: int = 0) -> list[dict]:
    """Short texts whose topic words decide the ``topic`` label; ``urgent`` is one word's presence."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        topic = sorted(TOPICS)[i % len(TOPICS)]
        words = list(rng.choice(TOPICS[topic], size=2)) + list(rng.choice(FILLER, size=int(rng.integers(3, 7))))
        urgent = bool(rng.random() < 0.5)
        if urgent:
            words.append("asap")
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "topic": topic, "urgent": "yes" if urgent else "no"})
    return rows


def topic_table(n: int, seed: int = 0) -> Table:
    rows = topic_rows(n, seed)
    return Table("topics.jsonl", {k: _objects([r[k] for r in rows]) for k in ("text", "topic", "urgent")})


def bow_setup(n: int = 240, **options):
    table = topic_table(n)
    enc = TextInput("text", {"column": "text", **options})
    tasks = [ClassificationTask("topic", {"target": "topic"}), ClassificationTask("urgent", {"target": "urgent"})]
    enc.tasks = tuple(tasks)
    cut = n * 3 // 4
    train, valid = prepared([enc], tasks, table.take(np.arange(cut)), table.take(np.arange(cut, n)))
    return enc, tasks, train, valid


BOW = {"text.encoder": "bow", "trunk.units": 16, "trunk.depth": 1, "batch_size": 32, "learning_rate": 0.01}


def test_bow_terms_and_weights_are_what_keras_adapt_learns():
    """Counted in Python before TensorFlow starts, yet the same words, bigrams and IDF as ``adapt``."""
    import keras

    from automtl_text.layers import standardize_lower, tfidf_vectorizer

    texts = ["Book a flight to Boston, please!", "book a hotel in Boston", "It's 3:30pm... (maybe)",
             "not good, not bad", "a a a b", "MiXeD CaSe a"]
    terms = fit_terms([tokenize(t) for t in texts], 10_000)
    assert "not good" in terms.terms and "boston" in terms.terms  # word bigrams, lower-cased
    ref = keras.layers.TextVectorization(standardize=standardize_lower, split="whitespace", ngrams=2,
                                         output_mode="tf_idf")
    ref.adapt(np.array(texts, dtype=object))
    vocab = ref.get_vocabulary()
    weights = np.asarray(ref._lookup_layer.idf_weights)  # [UNK] first
    assert dict(zip(terms.terms, terms.idf.tolist())) == pytest.approx(dict(zip(vocab[1:], weights[1:].tolist())))
    mine = tfidf_vectorizer(terms.terms, terms.idf, lowercase=True, name="mine")
    probe = np.array([*texts, "Boston is not good at all"], dtype=object)
    order = [0] + [vocab.index(t) for t in terms.terms]
    np.testing.assert_allclose(np.asarray(mine(probe)), np.asarray(ref(probe))[:, order], rtol=1e-6)
    assert terms.head(3).terms == terms.terms[:3]
    assert fit_terms([["b", "a"], ["a", "b"]], 2).terms == ["a", "b"]  # ties by the term itself


def test_bow_trains_beats_chance_and_saves(tmp_path):
    import keras

    enc, tasks, train, valid = bow_setup(n=320)
    assert enc.describe()["ngram_terms"] == len(enc.terms) > len(enc.vocabulary)  # words and bigrams
    assembled, _, fit = train_once([enc], tasks, train, valid, {**BOW, "text.word_dropout": 0.1}, epochs=6)
    assert fit.metrics["topic"]["accuracy"] >= 0.9, fit.metrics  # chance: 0.25
    assert fit.metrics["urgent"]["accuracy"] >= 0.75, fit.metrics  # one word among many; chance: about 0.5
    model = assembled.model
    tfidf = model.get_layer("text_tfidf")
    assert tfidf.output.shape[-1] == len(enc.terms) + 1  # the terms plus one column for unseen ones
    assert not any(layer.name.startswith(("text_embedding", "text_mask")) for layer in model.layers)
    x = {"text": np.array(["the striker scored a goal", "garlic in the skillet asap"], dtype=object)}
    before = model.predict(x, verbose=0)
    model.save(tmp_path / "m.keras")
    after = keras.saving.load_model(tmp_path / "m.keras").predict(x, verbose=0)
    for task in ("topic", "urgent"):
        np.testing.assert_allclose(before[task], after[task], rtol=1e-5, atol=1e-6)


def test_bow_vocab_size_keeps_the_most_frequent_terms():
    enc, tasks, train, valid = bow_setup(n=80)
    from automtl.core.trial_params import TrialParams

    assert enc.settings(TrialParams({"text.encoder": "bow", "text.vocab_size": 7}))["vocab_size"] == 7
    assert enc.settings(TrialParams({"text.encoder": "bow", "text.vocab_size": 10**6}))["vocab_size"] == len(enc.terms)
    assert enc.settings(TrialParams({"text.encoder": "conv", "text.vocab_size": 10**6}))["vocab_size"] == len(
        enc.vocabulary)
    assembled, _, _ = train_once([enc], tasks, train, valid, {**BOW, "text.vocab_size": 7}, epochs=1)
    assert assembled.model.get_layer("text_tfidf").output.shape[-1] == 8


@pytest.mark.e2e
@pytest.mark.parametrize("sharing", ["none", "branch", "soft", "cross_stitch", "mmoe", "ple"])
def test_bow_feeds_the_vector_view_under_every_sharing_scheme(sharing):
    """The TF-IDF vector is the trunk's input, copied or mixed by the scheme like any vector view."""
    from automtl.core.trial_params import TrialParams
    from automtl.model.assemble import build_model

    enc, tasks, train, valid = bow_setup(n=80)
    params = {**BOW, "sharing": sharing, "trunk.depth": 2, "branch.at": 1}
    assembled = build_model([enc], tasks, TrialParams(params))
    out = assembled.model.predict({"text": train.x["text"][:3]}, verbose=0)
    assert out["topic"].shape == (3, 4) and out["urgent"].shape[0] == 3
    if sharing in ("none", "soft"):
        assert set(assembled.own_path_tasks()) == {"topic", "urgent"}  # the TF-IDF layer has no trainable weight
    _, _, fit = train_once([enc], tasks, train, valid, params, epochs=1)
    assert np.isfinite(fit.objective)


def test_bow_is_refused_where_a_task_tags_tokens():
    from automtl.core.trial_params import TrialParams
    from automtl.model.assemble import build_model

    rows = slot_records(12)
    table = Table("d.jsonl", {k: _objects([r[k] for r in rows]) for k in ("text", "tokens", "tags", "intent")})
    tasks = [ClassificationTask("intent", {"target": "intent"}), TextTask("slots", {})]
    fixed = TextInput("text", {"column": "tokens", "encoder": "bow"})
    fixed.tasks = tuple(tasks)
    with pytest.raises(ConfigError, match=r"input 'text': option 'encoder': bow reads no token sequence, which task "
                                          r"'slots' tags; use one of conv, bigru, transformer"):
        fixed.prepare(table)
    searched = TextInput("text", {"column": "tokens"})
    searched.tasks = tuple(tasks)
    for plugin in (searched, *tasks):
        plugin.prepare(table)
    assert searched.terms is None  # no n-grams counted for an encoder that cannot be used
    with pytest.raises(ValueError, match=r"text encoder 'bow' reads no token sequence, which task 'slots' tags"):
        build_model([searched], tasks, TrialParams({**BOW, "text.encoder": "bow"}))
    from test_auto_space import auto_for

    params, raw = auto_for([{"name": "text", "type": "text", "column": "text"}],  # space: auto neither offers bow
                           [{"name": "intent", "type": "classification", "target": "intent"},  # nor starts from it
                            {"name": "slots", "type": "text", "tokens": "tokens", "tags": "tags"}])
    assert params["text.encoder"].values == ("conv", "transformer")
    assert raw["start"] and all(p["text.encoder"] == "conv" for p in raw["start"])


def test_space_auto_offers_bow_and_starts_from_it():
    from automtl.space import parse_space, plugin_parameters
    from test_auto_space import auto_for

    params, raw = auto_for([{"name": "t", "type": "text", "column": "text"}],
                           [{"name": "topic", "type": "classification", "target": "topic"},
                            {"name": "urgent", "type": "classification", "target": "urgent"}])
    assert params["text.encoder"].values[0] == "bow"
    space = parse_space(raw, "auto", ["topic", "urgent"], plugin_parameters([TextInput, ClassificationTask]))
    first, second = space.start[:2]
    assert first["text.encoder"] == "bow" and first["text.vocab_size"] == 20000 and first["sharing"] == "hard"
    assert second["text.encoder"] == "conv"
    from automtl.space import BUILTIN_DIR, load_space

    known = plugin_parameters([TextInput, ClassificationTask, TextTask])
    text_space = load_space(BUILTIN_DIR / "text.yaml", ["intent", "slots"], known)
    assert "bow" in next(p for p in text_space.params if p.name == "text.encoder").values
    assert text_space.start[0]["text.encoder"] == "conv"  # a tagging task's first trial is never bow


@pytest.mark.slow
def test_a_bow_search_exports_a_model_that_serves_raw_strings_in_plain_tensorflow(cli, tmp_path):
    """``space: auto``'s first trial is bow; its export takes raw strings without automtl installed."""
    rows = topic_rows(400)
    (tmp_path / "topics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    exp = {"name": "topics", "data": {"train": "topics.jsonl", "valid_fraction": 0.25},
           "inputs": [{"name": "text", "type": "text", "column": "text"}],
           "tasks": [{"name": "topic", "type": "classification", "target": "topic"},
                     {"name": "urgent", "type": "classification", "target": "urgent"}],
           "search": {"trials": 1, "epochs": 4, "out": "run", "baselines": "off", "ensemble": 0}}
    (tmp_path / "topics.yaml").write_text(yaml.safe_dump(exp))
    result = cli("search", "--config", tmp_path / "topics.yaml", "--no-report")
    assert result.exit_code == 0, result.output
    best = tmp_path / "run" / "best"
    manifest = json.loads((best / "automtl.json").read_text())
    assert manifest["trial"]["params"]["text.encoder"] == "bow"
    assert "bow" in manifest["portable"]["unavailable"]  # no ONNX/LiteRT form, and the manifest says why
    texts = ["the coach said the match was great", "my flight and hotel asap", "Garlic, flour and the oven!"]
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1"}
    proc = subprocess.run([sys.executable, "-c", SERVE, str(best / "saved_model"),
                           json.dumps(texts)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    assert served["topic.label"] == ["sports", "travel", "cooking"]
    assert served["urgent.label"][1] == "yes"
