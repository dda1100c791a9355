"""The README's annotated experiment file states the defaults the code has."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from automtl.config import DataConfig, SearchConfig

#: where the annotated experiment file lives: the documentation site's getting-started page
README = Path(__file__).resolve().parent.parent / "docs" / "getting-started.md"


def documented_experiment() -> dict:
    text = README.read_text()
    section = text[text.index("## Using your own data"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    return yaml.safe_load(block)


def test_documented_search_defaults_are_the_code_defaults():
    documented = documented_experiment()["search"]
    defaults = SearchConfig()  # with the default backend's algorithm and pruner filled in
    assert documented, "the README's experiment file has no search section"
    for key, value in documented.items():
        assert key in SearchConfig.model_fields, f"README documents unknown search.{key}"
        assert getattr(defaults, key) == value, f"README says search.{key}: {value!r}; the default is {getattr(defaults, key)!r}"


def test_documented_data_defaults_are_the_code_defaults():
    documented = documented_experiment()["data"]
    for key in ("valid_fraction", "split_seed", "group", "folds"):
        assert key in documented, f"README's experiment file does not show data.{key}"
        assert DataConfig.model_fields[key].default == documented[key], key
