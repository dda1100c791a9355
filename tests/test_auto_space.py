"""``space: auto``: built from the experiment's input and task types, shown in the run's space.yaml."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from automtl.autospace import batch_sizes, build_auto_space
from automtl.config import build_experiment
from automtl.data.prepare import instantiate
from automtl.space import ChoiceParam, IntParam, load_space, parse_space, plugin_parameters


def auto_for(inputs: list[dict], tasks: list[dict], rows: int | None = 1000):
    exp = build_experiment({"data": {"train": "x.csv"}, "inputs": inputs, "tasks": tasks}, "exp.yaml", ".")
    assert exp.space == "auto"  # the default
    encoders, task_plugins = instantiate(exp)
    raw = build_auto_space(encoders, task_plugins, rows=rows)
    space = parse_space(raw, "auto", [t.name for t in task_plugins], plugin_parameters([*encoders, *task_plugins]))
    return {p.name: p for p in space.params}, raw


def test_tabular_gets_encodings_schedules_and_training_options():
    params, raw = auto_for([{"name": "f", "type": "tabular", "numeric": ["x*"], "categorical": ["city"]}],
                           [{"name": "price", "type": "regression", "target": "price"},
                            {"name": "kind", "type": "classification", "target": "kind"}])
    assert set(params["tabular.numeric"].values) == {"robust", "standard", "quantile", "ple", "periodic"}
    assert set(params["tabular.categorical"].values) == {"one_hot", "embedding"}
    assert {"tabular.numeric_bins", "tabular.embedding_dim", "tabular.periodic_sigma"} <= set(params)
    assert set(params["lr_schedule"].values) == {"constant", "cosine", "onecycle"}
    assert {"weight_decay", "norm", "label_smoothing", "loss_weight.price", "head.kind.units"} <= set(params)
    assert not any(n.startswith(("image.", "text.")) for n in params)
    assert "tabular" in raw["description"]


def test_tabular_without_categorical_columns_searches_no_categorical_encoding():
    params, _ = auto_for([{"name": "f", "type": "tabular", "numeric": ["x*"]}],
                         [{"name": "price", "type": "regression", "target": "price"}])
    assert "tabular.numeric" in params and "tabular.categorical" not in params
    assert "label_smoothing" not in params and "loss_weight.price" not in params  # one regression task


def test_image_gets_image_sized_trunks_never_trunk_units_widths():
    params, _ = auto_for([{"name": "img", "type": "image", "array": "pixels"}],
                         [{"name": "digit", "type": "classification", "target": "digit"}])
    filters = params["image.filters"]
    assert isinstance(filters, ChoiceParam) and min(filters.values) >= 16 and max(filters.values) <= 64
    stages = params["image.stages"]
    assert isinstance(stages, IntParam) and (stages.low, stages.high) == (2, 4)
    assert max(params["trunk.units"].values) <= 128  # the dense trunk on pooled features only
    assert not any(n.startswith(("tabular.", "text.")) for n in params)



def test_image_auto_starts_cheaper_first_with_three_conv_stages():
    _, raw = auto_for([{"name": "img", "type": "image", "array": "pixels"}],
                      [{"name": "digit", "type": "classification", "target": "digit"}])
    points = raw["start"]
    assert [(p["image.stages"], p["image.filters"]) for p in points] == [(3, 24), (3, 48)]
    assert all(p["trunk.depth"] == 1 and p["trunk.units"] == 64 for p in points)


def test_text_gets_the_fast_encoders():
    params, _ = auto_for([{"name": "t", "type": "text", "column": "text"}],
                         [{"name": "intent", "type": "classification", "target": "intent"}])
    assert set(params["text.encoder"].values) == {"bow", "conv", "transformer"}
    assert {"text.embedding", "text.vocab_size", "text.word_dropout"} <= set(params)
    assert not any(n.startswith(("tabular.", "image.")) for n in params)


def test_batch_sizes_fit_the_training_rows():
    assert batch_sizes(190) == [16, 32]
    assert batch_sizes(5600) == [64, 128, 256]
    assert batch_sizes(100_000) == [128, 256, 512]


@pytest.mark.e2e
def test_search_defaults_to_auto_and_writes_the_chosen_space(cli, tmp_path, write_experiment):
    path = write_experiment()
    raw = yaml.safe_load(path.read_text())
    del raw["space"]
    path.write_text(yaml.safe_dump(raw))
    result = cli("search", "--config", path, "--trials", "1", "--epochs", "1")
    assert result.exit_code == 0, result.output
    written = tmp_path / "run" / "space.yaml"
    chosen = yaml.safe_load(written.read_text())
    assert "tabular.numeric" in chosen["parameters"] and "lr_schedule" in chosen["parameters"]
    from automtl_classification import ClassificationTask
    from automtl_tabular import TabularInput

    reread = load_space(written, ["price", "kind"], plugin_parameters([TabularInput, ClassificationTask]))
    assert "tabular.numeric" in reread.names()  # a valid space file: --space run/space.yaml reruns it


def test_spaces_lists_auto_per_input_type_without_heavy_imports():
    code = (
        "import sys; from click.testing import CliRunner; from automtl.cli import cli;"
        "r = CliRunner().invoke(cli, ['spaces']); assert r.exit_code == 0, r.output; print(r.output);"
        "heavy = [m for m in ('tensorflow', 'keras', 'optuna', 'numpy') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.startswith("auto")
    for fragment in ("input tabular:", "input image:", "input text:", "image.filters 16-64", "conv, transformer"):
        assert fragment in out, out


def test_tabular_auto_starts_from_a_plain_mlp_with_each_numeric_encoding():
    params, raw = auto_for([{"name": "f", "type": "tabular", "numeric": ["x*"], "categorical": ["city"]}],
                           [{"name": "price", "type": "regression", "target": "price"},
                            {"name": "kind", "type": "classification", "target": "kind"}], rows=5000)
    space = parse_space(raw, "auto", ["price", "kind"], {"tabular.numeric": None, "tabular.categorical": None,
                        "tabular.numeric_bins": None, "tabular.embedding_dim": None, "tabular.periodic_sigma": None,
                        "label_smoothing": None})
    assert [p["tabular.numeric"] for p in space.start] == ["robust", "quantile", "ple", "periodic"]
    for point in space.start:
        assert point["trunk.units"] == 256 and point["lr_schedule"] == "cosine" and point["label_smoothing"] == 0.0
        assert point["loss_weight.price"] == point["loss_weight.kind"] == 1.0  # per-task names expanded


def test_start_points_are_checked_and_run_first(tmp_path):
    import pytest

    from automtl.errors import ConfigError

    base = {"parameters": {"trunk.units": {"choice": [8, 16]}, "learning_rate": {"float": [1e-3, 1e-2]}},
            "per_task": {"head.units": {"int": [4, 8]}}}
    for bad, fragment in (({"trunk.units": 32}, "start[0].trunk.units"), ({"dropout": 0.1}, "not a parameter"),
                          ({"learning_rate": 1.0}, "outside"), ({"head.units": 9}, "start[0].head.units")):
        with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
            parse_space({**base, "start": [bad]}, "s.yaml", ["a"])
    space = parse_space({**base, "start": [{"trunk.units": 16, "head.units": 5}]}, "s.yaml", ["a", "b"])
    assert space.start == [{"trunk.units": 16, "head.a.units": 5, "head.b.units": 5}]

    from automtl.backends.optuna.backend import OptunaBackend
    from automtl.config import SearchConfig

    backend = OptunaBackend(SearchConfig(trials=2), tmp_path, space, "s")
    seen = []

    def objective(handle):
        from automtl.core.trial import TrialOutcome

        seen.append(dict(handle.params))
        return TrialOutcome(score=0.5, metrics={}, scores={}, best_epoch=1, epochs=1, device="cpu")

    backend.optimize(objective, 2, None, lambda record: None)
    assert seen[0]["trunk.units"] == 16 and seen[0]["head.a.units"] == 5 and seen[0]["head.b.units"] == 5


def test_image_with_a_pretrained_backbone_searches_its_fine_tuning_not_conv_widths():
    params, raw = auto_for([{"name": "img", "type": "image", "array": "pixels", "backbone": "mobilenet_v3_small",
                             "weights": "none"}],
                           [{"name": "digit", "type": "classification", "target": "digit"}])
    assert set(params["image.fine_tune"].values) == {"frozen", "top", "all"}
    assert {"image.trainable_blocks", "image.backbone_lr_scale"} <= set(params)
    assert "image.stages" not in params and "image.filters" not in params
    assert "mobilenet_v3_small" in raw["description"]


def test_text_with_pretrained_vectors_searches_freezing_not_the_embedding_width(tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("hello 0.1 0.2\nworld 0.3 0.4\n")
    params, _ = auto_for([{"name": "msg", "type": "text", "column": "text", "embeddings": str(vectors)}],
                         [{"name": "intent", "type": "classification", "target": "intent"}])
    assert set(params["text.freeze_embeddings"].values) == {True, False}
    assert "text.embedding" not in params


def test_several_tasks_search_how_much_they_share_starting_from_hard():
    """With several tasks ``auto`` searches the sharing (none always a choice); with one it has nothing to share."""
    inputs = [{"name": "f", "type": "tabular", "numeric": ["x*"]}]
    two = [{"name": "price", "type": "regression", "target": "price"},
           {"name": "kind", "type": "classification", "target": "kind"}]
    params, raw = auto_for(inputs, two)
    assert set(params["sharing"].values) == {"hard", "none", "branch", "soft"}
    assert {"branch.at", "soft.strength"} <= set(params)
    exp = build_experiment({"data": {"train": "x.csv"}, "inputs": inputs, "tasks": two}, "exp.yaml", ".")
    space = parse_space(raw, "auto", ["price", "kind"], plugin_parameters([p for ps in instantiate(exp) for p in ps]))
    assert space.start and all(point["sharing"] == "hard" for point in space.start)
    params, _ = auto_for(inputs, two[:1])
    assert "sharing" not in params and "branch.at" not in params
