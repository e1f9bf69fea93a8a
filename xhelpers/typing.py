"""Every standard ``typing`` name plus xhelpers' own, so experiments import from one place.

``from xhelpers.typing import Any, Optional, PathLike, ConfigLike``
"""

from __future__ import annotations

import os as _os
from collections.abc import Callable as _Callable
from collections.abc import Mapping as _Mapping
from typing import *  # noqa: F403 - re-exported on purpose
from typing import Any as _Any
from typing import TypeAlias as _TypeAlias

from xhelpers.config import BaseConfig

PathLike: _TypeAlias = str | _os.PathLike[str]
"""A path as str or ``os.PathLike`` (``pathlib.Path``)."""

ConfigLike: _TypeAlias = BaseConfig | _Mapping[str, _Any] | None
"""What ``with_updates`` and ``config=`` accept: a config instance, a dict, or None."""

Experiment: _TypeAlias = _Callable[..., _Any]
"""An experiment: any callable, usually a ``functools.partial``."""

Experiments: _TypeAlias = _Mapping[str, Experiment]
"""Names to experiments, as given to ``ParametrizedExperiments``."""
