"""The README is true where a test can tell: its commands, its plugin example, its paths."""

from __future__ import annotations

import re
import shlex
import sys
import tomllib
import types
from pathlib import Path

import click
import numpy as np
import pytest

from automtl.cli import cli
from helpers import table_from

ROOT = Path(__file__).resolve().parent.parent
FRONT = (ROOT / "README.md").read_text()
#: the README and every page of the documentation site: what they say must be true
README = FRONT + "".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def commands() -> list[list[str]]:
    """Every ``automtl ...`` line of the README's bash blocks, as arguments (comments and env vars dropped)."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():  # continuation lines joined
            line = line.split("  #")[0].strip().rstrip("&").strip()
            words = shlex.split(line, comments=True) if line else []
            while words and "=" in words[0] and not words[0].startswith("-"):
                words = words[1:]  # VAR=value in front
            if words and words[0] == "automtl":
                found.append(words[1:])
    return found


def test_every_readme_command_uses_real_options():
    assert len(commands()) >= 10
    for args in commands():
        command = cli.commands.get(args[0]) if args else None
        assert command is not None, f"README runs unknown command: automtl {' '.join(args)}"
        while isinstance(command, click.Group):  # `automtl storage serve`: the subcommand's options
            args = args[1:]
            command = command.commands.get(args[0]) if args else None
            assert command is not None, f"README runs an unknown subcommand: {' '.join(args)}"
        known = {opt for p in command.params for opt in getattr(p, "opts", [])} | {"--help", "-h"}
        for word in args[1:]:
            if word.startswith("-"):
                assert word.split("=")[0] in known, f"README: automtl {' '.join(args)}: no option {word}"
        if isinstance(command, click.Command):
            for p in command.params:
                if isinstance(p.type, click.Choice) and p.opts[0] in args:
                    value = args[args.index(p.opts[0]) + 1]
                    assert value in p.type.choices, f"README: {p.opts[0]} {value} is not a choice"


def test_demo_examples_after_the_quick_start_use_their_own_run_folder():
    """A run folder holds one study: the Keras Tuner and Pareto examples must not resume `runs/digits`."""
    demo_runs = [a for a in commands() if a[:1] == ["search"] and "--demo" in a]
    assert demo_runs
    for args in demo_runs:
        other_study = any(flag in args for flag in ("--backend", "--objective", "--study", "--storage"))
        if other_study:
            assert "--out" in args and args[args.index("--out") + 1] != "runs/digits", " ".join(args)


def test_trial_folders_are_named_as_the_code_names_them():
    from automtl.core.trial import trial_dir

    assert "trials/<n>" not in README
    assert f"{trial_dir(Path(), 15).as_posix()}/" in README  # trials/00015/


def test_plugin_pyproject_is_complete():
    toml = next(b for b in blocks("toml") if "automtl.tasks" in b)
    doc = tomllib.loads(toml)
    assert doc["build-system"]["build-backend"] and doc["project"]["name"]
    assert any(d.startswith("automtl") for d in doc["project"]["dependencies"])
    target = doc["project"]["entry-points"]["automtl.tasks"]["count"]
    assert target == "my_count_task:CountTask"
    assert doc["tool"]["setuptools"]["packages"] == ["my_count_task"]


def test_the_plugin_example_keeps_the_task_contract(tmp_path):
    """The README's count task, run as written through the checks a plugin author runs."""
    import pandas as pd

    from automtl.api import DataError
    from automtl.testing import check_task

    source = next(b for b in blocks("python") if "class CountTask" in b)
    module = types.ModuleType("my_count_task")
    exec(compile(source, "README.md (my_count_task)", "exec"), module.__dict__)
    sys.modules["my_count_task"] = module
    try:
        rng = np.random.default_rng(0)
        table = pd.DataFrame({"f0": rng.normal(size=80), "f1": rng.normal(size=80)})
        table["visits"] = rng.poisson(np.exp(0.5 + 0.5 * table["f0"]))
        table.loc[[3, 9], "visits"] = np.nan
        check_task(module.CountTask, {"target": "visits"}, table, missing_rows=[3, 9],
                   inputs=[{"name": "x", "type": "tabular", "numeric": ["f*"]}], search=False)
        task = module.CountTask("visits", {"target": "visits"})
        bad = table.assign(visits=table["visits"].where(table.index != 5, -2))
        with pytest.raises(DataError, match="row 6.*cannot be negative"):
            task.prepare(table_from(bad))
    finally:
        sys.modules.pop("my_count_task", None)


def test_requirements_and_test_switches_are_documented():
    assert "## Requirements" in README and "Python 3.11" in README
    assert "tensorflow[and-cuda]" in README
    assert "AUTOMTL_TEST_GPUS" in README and "chromium" in README


def test_quick_start_timing_names_the_machine():
    quick = FRONT[:FRONT.index("\n## ")]
    assert "about a minute" not in quick
    assert re.search(r"\d+(\.\d+)? ?min", quick) and "2-core" in quick


def test_the_readme_is_short_and_every_docs_page_is_in_the_site():
    """The README is the pitch, the two commands and links (at most 250 lines); the rest is docs/."""
    import yaml

    assert len(FRONT.splitlines()) <= 250
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]

    def pages(items):
        for item in items:
            for value in item.values():
                yield from pages(value) if isinstance(value, list) else [value]

    listed = set(pages(nav))
    assert listed == {p.name for p in (ROOT / "docs").glob("*.md")}
    for link in re.findall(r"\]\(docs/([^)#]+)", FRONT):
        assert (ROOT / "docs" / link).exists(), link
