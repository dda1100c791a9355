"""ONNX and LiteRT exports: parity with the SavedModel per input type, the reference preprocessing,
one signature per task, the TF Serving layout, and a clear error for a missing extra."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from automtl.core.trial import TrialRecord
from automtl.data.table import Table
from automtl.errors import AutomtlError
from automtl_classification import ClassificationTask
from automtl_regression import RegressionTask
from automtl_tabular import ArrayInput, TabularInput
from conftest import make_table
from helpers import prepared, split, train_once

#: every test here converts an export (ONNX, LiteRT, TF Serving) and checks its parity: the e2e loop
pytestmark = pytest.mark.e2e

PORTABLE = ["saved_model", "onnx", "tflite"]


def export(tmp_path: Path, encs, tasks, train, valid, params: dict, formats=PORTABLE, epochs: int = 2, **kwargs):
    """Train briefly, save, export with parity checks on the validation rows; returns (folder, manifest)."""
    assembled, _, fit = train_once(encs, tasks, train, valid, params, epochs=epochs)
    assembled.model.save(tmp_path / "model.keras")
    from automtl.export.savedmodel import export_trial

    record = TrialRecord(0, "complete", fit.objective, params, {}, 1.0, "cpu")
    out = export_trial(tmp_path / "model.keras", encs, tasks, record, tmp_path / "out", formats=formats,
                       rows=valid.x, **kwargs)
    return out, json.loads((out / "automtl.json").read_text())


def reference(folder: Path):
    spec = importlib.util.spec_from_file_location("exported_preprocess", folder / "preprocess.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve(folder: Path, rows: dict, signature: str = "serving_default") -> dict:
    import tensorflow as tf

    fn = tf.saved_model.load(str(folder / "saved_model")).signatures[signature]
    feed = {k: tf.constant(v.astype(str) if v.dtype == object else v) for k, v in rows.items()}
    return {k: v.numpy() for k, v in fn(**feed).items()}


def run_onnx(folder: Path, feed: dict) -> dict:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feed)))


def run_tflite(folder: Path, feed: dict) -> dict:
    import tensorflow as tf

    runner = tf.lite.Interpreter(model_path=str(folder / "model.tflite")).get_signature_runner("serving_default")
    return runner(**feed)


def assert_parity(manifest: dict, formats=("onnx", "tflite")) -> None:
    for fmt in formats:
        parity = manifest["formats"][fmt]["parity"]
        assert parity["rows"] > 0 and parity["outputs"]
        assert all(o["ok"] for o in parity["outputs"].values()), parity
        lat = manifest["formats"][fmt]["latency"]
        assert lat["batch_1_ms"] > 0 and lat["batch_256_ms"] > 0 and lat["device"]


def assert_runtimes_match_saved_model(folder: Path, raw: dict, formats=("onnx", "tflite")) -> None:
    """What a user does: raw rows -> preprocess.py -> the runtime -> postprocess.py equals the SavedModel."""
    ref = reference(folder)
    served = serve(folder, raw)
    feed = ref.preprocess(raw)
    for fmt in formats:
        got = ref.postprocess(run_onnx(folder, feed) if fmt == "onnx" else run_tflite(folder, feed))
        for key, value in got.items():
            if key not in served:
                continue
            if value.dtype == object or served[key].dtype == object:
                assert [str(v) for v in value.ravel()] == [v.decode() for v in served[key].ravel()], (fmt, key)
            else:
                np.testing.assert_allclose(value, served[key], rtol=1e-4, atol=1e-4, err_msg=f"{fmt} {key}")


def test_tabular_numeric_and_categorical_to_onnx_and_tflite(tmp_path):
    frame = make_table(240)
    frame.loc[::9, "x1"] = np.nan  # imputed inside the graph, in every format
    encs = [TabularInput("features", {"numeric": ["x*"], "categorical": ["city"]})]
    tasks = [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]
    train, valid = prepared(encs, tasks, *split(frame))
    out, manifest = export(tmp_path, encs, tasks, train, valid, {"trunk.units": 16})
    assert_parity(manifest)
    assert {i["name"] for i in manifest["formats"]["onnx"]["inputs"]} == {"features", "city_ids"}
    assert manifest["formats"]["tflite"]["outputs"] == ["kind.class_id", "kind.probabilities", "price.value"]
    assert manifest["parameters"] > 0 and manifest["formats"]["saved_model"]["latency"]["batch_256_ms"] > 0
    pre = json.loads((out / "preprocessing.json").read_text())
    city = next(i for i in pre["inputs"] if i["input"] == "city")
    vocab = city["steps"][0]["vocabulary"]
    assert city["name"] == "city_ids" and sorted(vocab) == ["east", "north", "south"]
    assert pre["labels"]["kind.label"] == {"from": "kind.class_id", "names": ["basic", "premium"]}
    raw = {k: v[:20] for k, v in valid.x.items()}
    raw["city"] = raw["city"].copy()
    raw["city"][:3] = ["nowhere", "", "north"]  # unseen and empty categories map to the unknown id
    assert reference(out).preprocess(raw)["city_ids"][:3].tolist() == [0, 0, 1 + vocab.index("north")]
    assert_runtimes_match_saved_model(out, raw)


def test_array_input_to_onnx_and_tflite(tmp_path):
    rng = np.random.default_rng(0)
    grids = rng.normal(size=(160, 4, 5)).astype(np.float32)
    table = Table("a.npz", {"grid": grids, "total": grids.sum(axis=(1, 2)),
                            "sign": np.where(grids[:, 0, 0] > 0, 1, 0)})
    encs = [ArrayInput("grid", {"array": "grid"})]
    tasks = [RegressionTask("total", {"target": "total"}), ClassificationTask("sign", {"target": "sign"})]
    train, valid = prepared(encs, tasks, table.take(np.arange(120)), table.take(np.arange(120, 160)))
    out, manifest = export(tmp_path, encs, tasks, train, valid, {"trunk.units": 16})
    assert_parity(manifest)
    assert manifest["formats"]["onnx"]["inputs"] == [{"name": "grid", "dtype": "float", "shape": [None, 4, 5]}]
    assert_runtimes_match_saved_model(out, valid.x)


def test_image_input_to_onnx_and_tflite_at_the_training_size(tmp_path):
    from automtl_image import ImageInput

    rng = np.random.default_rng(1)
    images = rng.integers(0, 60, size=(96, 12, 12, 1)).astype(np.uint8)
    bright = rng.random(96) > 0.5
    images[bright, 3:9, 3:9] = 250
    table = Table("i.npz", {"pixels": images, "bright": bright.astype(int)})
    encs = [ImageInput("image", {"array": "pixels"})]
    tasks = [ClassificationTask("bright", {"target": "bright"})]
    train, valid = prepared(encs, tasks, table.take(np.arange(72)), table.take(np.arange(72, 96)))
    out, manifest = export(tmp_path, encs, tasks, train, valid, {"trunk.units": 4, "trunk.depth": 2})
    assert_parity(manifest)
    image = next(i for i in manifest["formats"]["tflite"]["inputs"] if i["name"] == "image")
    assert image == {"name": "image", "dtype": "uint8", "shape": [None, 12, 12, 1]}
    assert_runtimes_match_saved_model(out, valid.x)
    with pytest.raises(ValueError, match="12x12"):  # the reference says to resize first
        reference(out).preprocess({"image": np.zeros((1, 20, 20, 1), np.uint8)})


def text_data(n: int = 48):
    from automtl_text import TextInput, TextTask
    from test_text import _objects, slot_records

    rows = slot_records(n)
    table = Table("d.jsonl", {"text": _objects([r["text"] for r in rows]), "tokens": _objects([r["tokens"] for r in rows]),
                              "tags": _objects([r["tags"] for r in rows]), "intent": _objects([r["intent"] for r in rows])})
    enc = TextInput("text", {"column": "text", "embedding": 8})
    tasks = [ClassificationTask("intent", {"target": "intent"}), TextTask("slots", {"tokens": "tokens"})]
    enc.tasks = tuple(tasks)
    train, valid = prepared([enc], tasks, table.take(np.arange(36)), table.take(np.arange(36, n)))
    return [enc], tasks, train, valid


@pytest.mark.parametrize("encoder,formats", [("conv", PORTABLE), ("transformer", PORTABLE),
                                             ("bigru", ["saved_model", "onnx"])])
def test_text_input_exports_ids_and_a_reference_tokeniser(encoder, formats, tmp_path):
    encs, tasks, train, valid = text_data()
    out, manifest = export(tmp_path, encs, tasks, train, valid,
                           {"text.encoder": encoder, "trunk.units": 16, "trunk.depth": 1, "batch_size": 16},
                           formats=formats)
    assert_parity(manifest, formats[1:])
    ids = next(i for i in json.loads((out / "preprocessing.json").read_text())["inputs"] if i["input"] == "text")
    assert ids["name"] == "text_ids" and ids["dtype"] == "int32" and ids["shape"][0] is None
    assert [s["op"] for s in ids["steps"]] == ["lowercase_ascii", "regex_replace", "split", "lookup", "pad"]
    raw = {"text": np.array(["Fly to PARIS, please!", "weather in Reykjavik", "to", "  "], dtype=object)}
    assert_runtimes_match_saved_model(out, raw, formats[1:])
    labelled = reference(out).postprocess(run_onnx(out, reference(out).preprocess(raw)))
    assert labelled["slots.tags"].shape == (4, tasks[1].length) and labelled["intent.label"][0] in ("flight", "weather")


def test_bigru_text_to_tflite_is_a_clear_error(tmp_path):
    encs, tasks, train, valid = text_data()
    with pytest.raises(AutomtlError, match="bigru.*ONNX"):
        export(tmp_path, encs, tasks, train, valid,
               {"text.encoder": "bigru", "trunk.units": 8, "trunk.depth": 1, "batch_size": 16}, formats=PORTABLE)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_serve_task_signatures_return_only_their_task(tmp_path):
    encs = [TabularInput("features", {"numeric": ["x*"], "categorical": ["city"]})]
    tasks = [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]
    train, valid = prepared(encs, tasks, *split(make_table(160)))
    out, manifest = export(tmp_path, encs, tasks, train, valid, {"trunk.units": 16}, formats=["saved_model"])
    assert set(manifest["signatures"]) == {"serving_default", "serve_price", "serve_kind", "portable"}
    assert {t["name"]: t["signature"] for t in manifest["tasks"]} == {"price": "serve_price", "kind": "serve_kind"}
    everything = serve(out, valid.x)
    for task in ("price", "kind"):
        alone = serve(out, valid.x, f"serve_{task}")
        assert sorted(alone) == sorted(k for k in everything if k.startswith(f"{task}."))
        for key, value in alone.items():
            if value.dtype == object:
                assert value.tolist() == everything[key].tolist()
            else:
                np.testing.assert_allclose(value, everything[key], rtol=1e-6, atol=1e-6)
    import tensorflow as tf

    graph = tf.saved_model.load(str(out / "saved_model")).signatures["serve_price"].graph.as_graph_def()
    ops = {n.name for f in graph.library.function for n in f.node_def}
    assert not any("head_kind" in n for n in ops)  # the other head is not even in the graph


def test_tf_serving_layout_loads_and_versions(tmp_path):
    import tensorflow as tf

    encs = [TabularInput("features", {"numeric": ["x*"]})]
    tasks = [RegressionTask("price", {"target": "price"})]
    train, valid = prepared(encs, tasks, *split(make_table(120)))
    first, manifest = export(tmp_path, encs, tasks, train, valid, {"trunk.units": 8}, formats=["saved_model"],
                             layout="tf-serving", model_name="houses")
    assert first == tmp_path / "out" / "houses" / "1" and manifest["layout"] == "tf-serving"
    assert (first / "saved_model.pb").exists() and (first / "variables").is_dir()
    served = tf.saved_model.load(str(first)).signatures["serving_default"](features=tf.constant(valid.x["features"]))
    assert served["price.value"].shape == (len(valid),)
    from automtl.export.savedmodel import export_trial

    second = export_trial(tmp_path / "model.keras", encs, tasks, TrialRecord(1, "complete", 0.0, {}, {}, 1.0),
                          tmp_path / "out", layout="tf-serving", model_name="houses")
    assert second == tmp_path / "out" / "houses" / "2" and first.exists()  # a new version, the old one kept


def test_parity_beyond_tolerance_fails_naming_the_output(tmp_path):
    encs = [TabularInput("features", {"numeric": ["x*"]})]
    tasks = [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]
    train, valid = prepared(encs, tasks, *split(make_table(120)))
    out, _ = export(tmp_path, encs, tasks, train, valid, {"trunk.units": 8}, formats=["saved_model"])
    from automtl.export.formats.portable import parity

    served = serve(out, valid.x)
    converted = {k: v for k, v in served.items() if v.dtype != object}
    assert parity(out, valid.x, valid.x, converted, "onnx")["outputs"]["price.value"]["max_abs_diff"] == 0
    converted["price.value"] = converted["price.value"] * (1 + 1e-3)
    with pytest.raises(AutomtlError, match=r"onnx export differs.*price\.value") as info:
        parity(out, valid.x, valid.x, converted, "onnx")
    assert "kind.probabilities" not in str(info.value)


def test_missing_onnx_extra_is_a_clear_error(cli, monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    monkeypatch.delitem(sys.modules, "tf2onnx", raising=False)
    result = cli("export", tmp_path, "--trial", "0", "--out", tmp_path / "m", "--format", "onnx")
    assert result.exit_code == 2 and "pip install 'automtl[onnx]'" in result.output and "tf2onnx" in result.output
    assert "Traceback" not in result.output
    bad = cli("export", tmp_path, "--trial", "0", "--out", tmp_path / "m", "--format", "onnx,coreml")
    assert bad.exit_code == 2 and "coreml" in bad.output
