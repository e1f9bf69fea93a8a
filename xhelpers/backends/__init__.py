"""Execution backends, by name. Backends run tasks and report; the core records outcomes."""

from __future__ import annotations

import importlib

from xhelpers.backends.base import Backend, Finished, Lost, Report
from xhelpers.errors import BackendError

__all__ = ["Backend", "Finished", "Lost", "Report", "backend_names", "get_backend"]

# name -> "module:Class", imported only when chosen: the SLURM backend pulls in
# submitit, which costs ~90 ms to import.
_REGISTRY: dict[str, str] = {
    "local": "xhelpers.backends.local:LocalBackend",
    "slurm": "xhelpers.backends.slurm.backend:SlurmBackend",
}


def backend_names() -> list[str]:
    return sorted(_REGISTRY)


def get_backend(name: str) -> type[Backend]:
    """The backend class registered under ``name``."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise BackendError(
            f"unknown backend {name!r}; valid backends: {', '.join(backend_names())}",
            usage=True,
        ) from None
    module, _, attr = target.partition(":")
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as exc:  # a dependency of xhelpers was removed
        raise BackendError(
            f"the {name} backend needs {exc.name}, which is not installed "
            f"(xhelpers depends on it): pip install {exc.name}",
            usage=True,
        ) from None
    cls: type[Backend] = getattr(imported, attr)
    return cls
