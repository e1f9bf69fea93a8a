"""Execution backends, by name: the built-in ones and those installed under the entry
point group ``xhelpers.backends`` (``name = "package.module:BackendClass"``).

Backends run tasks and report; the core records outcomes.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

from xhelpers.errors import BackendError

if TYPE_CHECKING:
    from xhelpers.backends.base import (
        UNKNOWN_STATUS,
        Backend,
        Finished,
        JobState,
        JobStatus,
        Lost,
        Report,
        Submitted,
    )

__all__ = [
    "ENTRY_POINT_GROUP",
    "UNKNOWN_STATUS",
    "Backend",
    "Finished",
    "JobState",
    "JobStatus",
    "Lost",
    "Report",
    "Submitted",
    "backend_names",
    "find_backend",
    "get_backend",
]

logger = logging.getLogger(__name__)


def __getattr__(name: str) -> object:
    # The seam's names (all the others of __all__ are defined here) load on first use:
    # a SLURM task imports this package, its modules living under it, and never asks.
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from xhelpers.backends import base

    value = getattr(base, name)
    globals()[name] = value
    return value


ENTRY_POINT_GROUP = "xhelpers.backends"

# name -> "module:Class", imported only when chosen (a listing asks one backend).
_REGISTRY: dict[str, str] = {
    "local": "xhelpers.backends.local:LocalBackend",
    "slurm": "xhelpers.backends.slurm.backend:SlurmBackend",
}


def _registry() -> dict[str, str]:
    # importlib.metadata on use: a SLURM task imports this package and never asks
    from importlib.metadata import entry_points

    found = dict(_REGISTRY)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:  # a package cannot take over a built-in name
            logger.warning("ignoring backend entry point %r: the name is built in", ep.value)
            continue
        found.setdefault(ep.name, ep.value)
    return found


def backend_names() -> list[str]:
    return sorted(_registry())


def get_backend(name: str) -> type[Backend]:
    """The backend class registered under ``name``; BackendError (usage) if there is none."""
    # A built-in name needs no scan of every installed package's entry points (~15 ms).
    target = _REGISTRY.get(name) or _registry().get(name)
    if target is None:
        raise BackendError(
            f"unknown backend {name!r}; valid backends: {', '.join(backend_names())}",
            usage=True,
        )
    module, _, attr = target.partition(":")
    try:
        imported = importlib.import_module(module)
        cls = getattr(imported, attr)
    except ModuleNotFoundError as exc:  # a dependency of the backend is missing
        raise BackendError(
            f"the {name} backend needs {exc.name}, which is not installed: pip install {exc.name}",
            usage=True,
        ) from None
    except (ImportError, AttributeError) as exc:
        raise BackendError(f"the {name} backend cannot be loaded: {exc}", usage=True) from None
    from xhelpers.backends.base import Backend

    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendError(f"the {name} backend ({target}) is not a Backend", usage=True)
    return cls


def find_backend(name: object) -> type[Backend] | None:
    """The backend class named ``name`` (read from a metafile, say), None if there is none."""
    if not isinstance(name, str):
        return None
    try:
        return get_backend(name)
    except BackendError as exc:
        logger.debug("%s", exc)
        return None
