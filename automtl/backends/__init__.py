"""Search backends: they propose parameter values and record results, nothing else.

Each backend is a :class:`~automtl.backends.base.BackendSpec` registered under
the ``automtl.backends`` entry-point group; its engine loads on :func:`create`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from automtl.backends.base import Backend, BackendSpec
from automtl.core import registry

if TYPE_CHECKING:  # the backends' declarations are read while the experiment file is validated
    from automtl.config import SearchConfig
    from automtl.space import SearchSpace


def spec(name: str) -> BackendSpec:
    """The declaration of backend ``name`` (a clear ConfigError when none is installed by that name)."""
    return registry.member("backend", name, where="search.backend")


def create(settings: "SearchConfig", run_dir: Path, space: "SearchSpace", study: str,
           objectives: Sequence[str] = ()) -> Backend:
    """The backend named in the settings (already checked by the experiment file's validation).

    ``objectives`` are the task names, one objective each, for ``objective: pareto``.
    """
    return spec(settings.backend).create(settings, run_dir, space, study, objectives)
