"""Search-space files: every ready-made one validates; kinds, conditions and expansion."""

from __future__ import annotations

import pytest

from automtl.core.plugins import GROUPS, entry_points
from automtl.errors import ConfigError
from automtl.space import (ChoiceParam, plugin_parameters, FixedParam, FloatParam, IntParam, builtin_spaces, load_space, parse_space)


def plugin_parameter_names() -> dict:
    return plugin_parameters(ep.load() for kind in GROUPS for ep in entry_points(kind).values())


@pytest.mark.parametrize("path", builtin_spaces(), ids=lambda p: p.name)
def test_every_builtin_space_validates(path):
    space = load_space(path, ["a", "b"], plugin_parameter_names())
    assert space.params
    # sampling with the lowest value of everything produces a consistent parameter set
    chosen = space.sample_with(lambda p: p.values[0] if isinstance(p, ChoiceParam) else p.low)
    for p in space.params:
        if p.name in chosen:
            assert space.active(p, chosen)


def test_builtin_spaces_include_default_and_another():
    names = {p.stem for p in builtin_spaces()}
    assert "default" in names and len(names) >= 2


def test_kinds_per_task_expansion_and_conditions():
    raw = {
        "parameters": {
            "trunk.depth": {"int": [1, 4], "step": 1},
            "learning_rate": {"float": [1e-4, 1e-2], "log": True},
            "strategy": {"choice": ["joint", "alternating"]},
            "batch_size": 32,
            "dropout": {"fixed": 0.1},
        },
        "per_task": {
            "head.units": {"int": [8, 64], "log": True},
            "loss_weight": {"float": [0.5, 2], "when": {"strategy": "joint"}},
        },
    }
    space = parse_space(raw, "s.yaml", ["price", "kind"])
    by_name = {p.name: p for p in space.params}
    assert isinstance(by_name["trunk.depth"], IntParam)
    assert isinstance(by_name["learning_rate"], FloatParam) and by_name["learning_rate"].log
    assert isinstance(by_name["batch_size"], FixedParam) and by_name["batch_size"].value == 32
    assert isinstance(by_name["dropout"], FixedParam)
    assert {"head.price.units", "head.kind.units", "loss_weight.price", "loss_weight.kind"} <= set(by_name)
    joint = space.sample_with(lambda p: "joint" if isinstance(p, ChoiceParam) else p.low)
    alternating = space.sample_with(lambda p: "alternating" if isinstance(p, ChoiceParam) else p.low)
    assert "loss_weight.price" in joint and "loss_weight.price" not in alternating


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"parameters": {"trunk.depth": {"integer": [1, 3]}}}, "unknown parameter kind 'integer'"),
        ({"parameters": {"trunk.depth": {"int": [3, 1]}}}, "empty range"),
        ({"parameters": {"learning_rate": {"float": [0.1, 0.1]}}}, "empty range"),
        ({"parameters": {"learning_rate": {"float": [0, 0.1], "log": True}}}, "log-scaled range needs low > 0"),
        ({"parameters": {"strategy": {"choice": []}}}, "non-empty list"),
        ({"parameters": {"strategy": {"choice": ["joint", "solo"]}}}, "strategy: unknown value 'solo'"),
        ({"parameters": {"learning_rate": {"float": [-0.1, 0.01]}}}, "learning_rate: -0.1 is out of range; values must be > 0"),
        ({"parameters": {"learning_rate": 0}}, "values must be > 0"),
        ({"parameters": {"batch_size": "abc"}}, "batch_size: expected a number, got 'abc'"),
        ({"parameters": {"batch_size": {"float": [16, 64]}}}, "batch_size: takes whole numbers"),
        ({"parameters": {"dropout": {"choice": [0.1, 1.0]}}}, "values must lie in [0, 1)"),
        ({"parameters": {"sharing": "shared"}}, "sharing: unknown value 'shared'"),
        ({"parameters": {"weighting": "gradnorm", "gradnorm_alpha": -1.0}}, "gradnorm_alpha: -1.0 is out of range"),
        ({"per_task": {"loss_weight": {"float": [0.0, 2.0]}}}, "loss_weight.t: 0.0 is out of range"),
        ({"parameters": {"strategy": {"choice": ["joint", "sequential"]}},
          "per_task": {"task_prob": {"float": [0.5, 2.0], "when": {"strategy": "alternating"}}}}, "strategy: unknown value 'sequential'"),
        ({"parameters": {"trunk.widht": 3}}, "unknown parameter"),
        ({"parameters": {"dropout": {"float": [0, 0.2], "when": {"strategy": "joint"}}}}, "not defined before it"),
        ({"parameters": {"strategy": "joint", "dropout": {"float": [0, 0.2], "when": {"strategy": "solo"}}}}, "never occur"),
        ({"parameters": {"trunk.depth": [1, 2]}}, "ambiguous"),
        ({"parameters": {"batch_size": {"int": [0, 8]}}}, ">= 1"),
        ({"layers": {}}, "unknown top-level key"),
    ],
)
def test_bad_spaces_are_refused_with_the_key(raw, fragment):
    with pytest.raises(ConfigError) as err:
        parse_space(raw, "bad.yaml", ["t"])
    assert "bad.yaml" in str(err.value)
    assert fragment in str(err.value)


def test_plugin_declared_values_are_checked():
    known = {"text.encoder": ("conv", "bigru"), "text.embedding": None}
    space = parse_space({"parameters": {"text.encoder": {"choice": ["conv"]}, "text.embedding": 32}}, "s.yaml", ["t"], known)
    assert {p.name for p in space.params} == {"text.encoder", "text.embedding"}
    with pytest.raises(ConfigError, match=r"text.encoder: unknown value 'lstm'"):
        parse_space({"parameters": {"text.encoder": {"choice": ["conv", "lstm"]}}}, "s.yaml", ["t"], known)
