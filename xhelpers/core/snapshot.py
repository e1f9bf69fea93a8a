"""A run's config as a SLURM task carries it: its plain values, and the config itself
only when something asks for more.

Unpickling a config imports pydantic (and the user's config class), about 45 ms of CPU
in every array task; most experiments never look at their config, and the core reads
only a few plain settings of it (``output_directory``, ``checkpoint_files``). A
:class:`ConfigSnapshot` answers those from a dict and unpickles the real config on the
first other question: an experiment that takes ``config=``, ``current_experiment()``,
a Slack thread's token, a pack's pool. No pydantic here: this module is on that path.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from xhelpers.config import BaseConfig

__all__ = ["ConfigSnapshot", "real_config", "snapshot"]

_SCALARS = (str, int, float, bool, type(None), PurePath)


def _plain(value: Any) -> bool:
    """Whether ``value`` unpickles without importing anything (so it may be answered
    before the real config exists)."""
    if isinstance(value, _SCALARS):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


class ConfigSnapshot:
    """Stands in for a config: its plain fields as values, the rest through the real
    config, unpickled from ``payload`` when first needed (see the module)."""

    __slots__ = ("_payload", "_real", "_values")

    def __init__(self, values: dict[str, Any], payload: bytes) -> None:
        self._values = values
        self._payload = payload
        self._real: BaseConfig | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # the slots themselves, before __setstate__ ran
            raise AttributeError(name)
        values = self._values
        if name in values:
            return values[name]
        return getattr(self.real(), name)

    def real(self) -> BaseConfig:
        """The config itself (unpickled once)."""
        if self._real is None:
            self._real = cast("BaseConfig", pickle.loads(self._payload))
        return self._real

    def __getstate__(self) -> tuple[dict[str, Any], bytes]:
        return self._values, self._payload

    def __setstate__(self, state: tuple[dict[str, Any], bytes]) -> None:
        self._values, self._payload = state
        self._real = None

    def __repr__(self) -> str:
        return f"ConfigSnapshot({len(self._values)} values)"


def snapshot(config: BaseConfig, dumps: Callable[[Any], bytes]) -> BaseConfig:
    """``config`` as a :class:`ConfigSnapshot` pickled by ``dumps``, typed as the config
    it answers for."""
    if isinstance(config, ConfigSnapshot):
        return cast("BaseConfig", config)
    values = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        if _plain(value):
            values[name] = value
    return cast("BaseConfig", ConfigSnapshot(values, dumps(config)))


def real_config(config: BaseConfig) -> BaseConfig:
    """The config itself, where a :class:`ConfigSnapshot` may stand in for it."""
    if isinstance(config, ConfigSnapshot):
        return config.real()
    return config
