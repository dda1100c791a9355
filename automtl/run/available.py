"""Parameter values that cannot run on this machine, found before the first trial.

Each plugin says which of its parameter values cannot run here
(:meth:`automtl.api.InputEncoder.unavailable`, e.g. pretrained weights that
are neither cached nor downloadable). A space that fixes such a value, or
leaves the parameter at such a default, is refused with the plugin's fix; a
space that samples the parameter loses those choices (and one note says so),
so no trial is spent failing on them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from automtl.errors import ConfigError
from automtl.space import ChoiceParam, FixedParam, SearchSpace


def drop_unavailable(space: SearchSpace, plugins: Iterable[Any]) -> list[str]:
    """Remove unavailable choices from ``space`` in place; the notes to show; a clear error when nothing is left."""
    notes = []
    by_name = {p.name: i for i, p in enumerate(space.params)}
    for plugin in plugins:
        for name, bad in plugin.unavailable().items():
            values = set(bad.values)
            if name not in by_name:
                if bad.default in values:
                    raise ConfigError(f"{bad.why} (the search uses {name} {bad.default!r})")
                continue
            i = by_name[name]
            param = space.params[i]
            if isinstance(param, FixedParam) and param.value in values:
                raise ConfigError(f"{bad.why} (the space fixes {name}: {param.value!r})")
            if isinstance(param, ChoiceParam):
                kept = tuple(v for v in param.values if v not in values)
                dropped = [v for v in param.values if v in values]
                if not dropped:
                    continue
                if not kept:
                    raise ConfigError(f"{bad.why} (every choice of {name} needs them: "
                                      f"{', '.join(map(str, dropped))})")
                space.params[i] = dataclasses.replace(param, values=kept)
                space.start = [point for point in space.start if point.get(name) not in values]
                notes.append(f"{name} without {', '.join(map(str, dropped))}: {bad.why}")
    return notes
