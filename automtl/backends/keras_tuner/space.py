"""automtl search spaces in Keras Tuner: the one translation, and reading values back.

:func:`to_hyperparameters` declares every parameter of a
:class:`~automtl.space.SearchSpace` on a ``keras_tuner.HyperParameters``:
ranges become ``Int``/``Float``, choices ``Choice``, fixed values ``Fixed``,
and ``when`` conditions ``conditional_scope``. What Keras Tuner cannot hold
is refused here, before any trial, with the file, the key and the reason:

- a choice whose values mix types (``[16, "auto"]``, ``[0.5, 1]``): a
  ``Choice`` holds one type;
- a fixed value that is not a string, number or boolean (``null``, a list);
- ``when`` values that mix types or are not strings, numbers or booleans;
- ``when`` on several parents that do not nest (``conditional_scope``
  needs each parent declared inside the scopes opened before it);
- a name starting with ``tuner/``, which Keras Tuner's Hyperband reserves.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from typing import Any, Mapping

import keras_tuner as kt

from automtl.errors import ConfigError
from automtl.space import ChoiceParam, Condition, FixedParam, FloatParam, IntParam, Param, SearchSpace

SCALARS = (bool, int, float, str)
RESERVED_PREFIX = "tuner/"


def to_hyperparameters(space: SearchSpace, hp: kt.HyperParameters | None = None) -> kt.HyperParameters:
    """Declare ``space`` on ``hp`` (a new one by default); raises ConfigError for what Keras Tuner cannot express."""
    hp = kt.HyperParameters() if hp is None else hp
    chains: dict[str, list[Condition]] = {}
    for p in space.params:
        _check(space.source, p)
        chain = _scope_chain(space.source, p, chains)
        chains[p.name] = chain
        with contextlib.ExitStack() as scopes:
            for c in chain:
                scopes.enter_context(hp.conditional_scope(c.parent, list(c.values)))
            _declare(hp, p)
    return hp


def params_of(space: SearchSpace, values: Mapping[str, Any]) -> dict[str, Any]:
    """The automtl parameter values of a Keras Tuner trial (its ``hyperparameters.values``).

    Walks the space as the Optuna backend does, so both produce the same
    ``params``; Hyperband's ``tuner/*`` bookkeeping values are left out.
    """
    return space.sample_with(lambda p: _decode(p, values[p.name]))


def space_signature(hp: kt.HyperParameters) -> str:
    """A stable text form of the declared parameters (not their values), to compare two spaces.

    Sorted and without defaults, because Keras Tuner's gRPC form groups the
    parameters by type and fills in the defaults left unset.
    """
    entries = []
    for e in hp.get_config()["space"]:
        config = {k: v for k, v in e["config"].items() if k != "default"}
        entries.append(json.dumps({"class_name": e["class_name"], "config": config}, sort_keys=True, default=str))
    return json.dumps(sorted(entries))


def _declare(hp: kt.HyperParameters, p: Param) -> None:
    if isinstance(p, IntParam):
        hp.Int(p.name, p.low, p.high, step=None if p.log else p.step, sampling="log" if p.log else "linear")
    elif isinstance(p, FloatParam):
        hp.Float(p.name, p.low, p.high, step=p.step, sampling="log" if p.log else "linear")
    elif isinstance(p, ChoiceParam):
        hp.Choice(p.name, list(p.values))
    elif isinstance(p, FixedParam):
        hp.Fixed(p.name, p.value)
    else:  # pragma: no cover - the space parser knows no other kinds
        raise TypeError(f"cannot declare {p!r}")


def _decode(p: Param, value: Any) -> Any:
    """Keras Tuner stores boolean choices as 0/1 and may widen numbers; give back the space's own value."""
    if isinstance(p, ChoiceParam):
        return next((v for v in p.values if v == value), value)
    if isinstance(p, IntParam):
        return int(value)
    if isinstance(p, FloatParam):
        return float(value)
    return value


def _fail(source: str, name: str, msg: str) -> ConfigError:
    return ConfigError(f"{source}: {name}: Keras Tuner cannot express this: {msg}")


def _one_type(values: tuple[Any, ...]) -> bool:
    return len({type(v) for v in values}) == 1 and isinstance(values[0], SCALARS)


def _check(source: str, p: Param) -> None:
    if p.name.startswith(RESERVED_PREFIX):
        raise _fail(source, p.name, f"names starting with '{RESERVED_PREFIX}' are reserved by Keras Tuner's Hyperband")
    if isinstance(p, ChoiceParam) and not _one_type(p.values):
        types = sorted({type(v).__name__ for v in p.values})
        raise _fail(source, p.name, f"a Choice holds values of one type, got {list(p.values)} ({', '.join(types)}); "
                                    "write them all alike (e.g. 1.0 rather than 1)")
    if isinstance(p, FixedParam) and not isinstance(p.value, SCALARS):
        raise _fail(source, p.name, f"a Fixed value must be a string, number or boolean, got {p.value!r}")
    for c in p.when:
        if not c.values or not _one_type(c.values):
            raise _fail(source, p.name, f"'when' values for '{c.parent}' must be strings, numbers or booleans "
                                        f"of one type, got {list(c.values)}")


def _scope_chain(source: str, p: Param, chains: dict[str, list[Condition]]) -> list[Condition]:
    """The nested ``conditional_scope``s to open for ``p``.

    Keras Tuner finds a scope's parent only among parameters declared under
    exactly the scopes already open, so each parent's own chain comes first.
    Several conditions work when they nest (one parent lies inside the
    other's scope); independent parents cannot be expressed.
    """
    if not p.when:
        return []
    for order in itertools.permutations(p.when):
        chain = list(chains[order[0].parent]) + [order[0]]
        for c in order[1:]:
            if chains[c.parent] != chain:
                break
            chain.append(c)
        else:
            return chain
    parents = ", ".join(f"'{c.parent}'" for c in p.when)
    raise _fail(source, p.name, f"'when' on several parents ({parents}) that do not nest; Keras Tuner's "
                                "conditional_scope needs each parent declared inside the scopes of the ones before it "
                                "(condition on one parent, or make one parent conditional on the other)")
