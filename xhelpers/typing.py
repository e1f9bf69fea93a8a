"""Every standard ``typing`` name plus xhelpers' own, so experiments import from one place.

``from xhelpers.typing import Any, Optional, PathLike, ConfigLike``; and NumPy's
``ArrayLike`` when NumPy is installed (imported when first asked for: NumPy is not a
dependency of xhelpers).
"""

from __future__ import annotations

import os as _os
from collections.abc import Callable as _Callable
from collections.abc import Mapping as _Mapping
from typing import *  # noqa: F403 - re-exported on purpose
from typing import TYPE_CHECKING as _TYPE_CHECKING
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

if _TYPE_CHECKING:
    from numpy.typing import ArrayLike as ArrayLike


def __getattr__(name: str) -> _Any:
    # PEP 562: NumPy is imported only by code that asks for ArrayLike.
    if name == "ArrayLike":
        try:
            from numpy.typing import ArrayLike
        except ImportError:
            raise AttributeError(
                "xhelpers.typing.ArrayLike is NumPy's, which is not installed: pip install numpy"
            ) from None
        return ArrayLike
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
