"""A machine's config file (``./config.py``, ``--config FILE[:Class]``), and the config
a run resolves from it, its group's class, keyword arguments and flags."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from xhelpers.config.model import BaseConfig
from xhelpers.errors import ConfigError

__all__ = ["DEFAULT_CONFIG_FILE", "load_machine_values", "resolve_config"]

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_FILE = "config.py"
DEFAULT_CONFIG_CLASS = "Config"

_ConfigT = TypeVar("_ConfigT", bound="BaseConfig")


def _class_body_values(klass: type, where: str) -> dict[str, Any]:
    if isinstance(klass, type) and issubclass(klass, BaseConfig):
        values = {}
        for key in klass._xh_own_fields:
            info = klass.model_fields[key]
            values[key] = info.get_default(call_default_factory=True)
        return values
    return {
        k: v
        for k, v in vars(klass).items()
        if not k.startswith("_")
        and not callable(v)
        and not isinstance(v, (classmethod, staticmethod, property))
    }


def load_machine_values(spec: str | None) -> tuple[dict[str, Any], str | None]:
    """Values a machine config class sets in its own body, and where they came from.

    ``spec`` is ``FILE`` or ``FILE:Class``; ``None`` means ``./config.py`` if it exists.
    """
    if spec is None:
        if not os.path.isfile(DEFAULT_CONFIG_FILE):
            return {}, None
        spec = DEFAULT_CONFIG_FILE
    path, _, class_name = spec.partition(":")
    class_name = class_name or DEFAULT_CONFIG_CLASS
    if not class_name.isidentifier():
        raise ConfigError(f"--config {spec!r}: {class_name!r} is not a class name (FILE[:Class])")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} not found (expected FILE or FILE:Class)")
    module_name = "_xhelpers_machine_config_" + re.sub(r"\W", "_", os.path.abspath(path))
    # Loaded afresh each time (never cached in sys.modules): the file may have changed.
    importer = importlib.util.spec_from_file_location(module_name, path)
    assert importer is not None and importer.loader is not None
    module = importlib.util.module_from_spec(importer)
    try:
        # Compiled from its source, never from __pycache__: a .pyc is matched by the
        # file's mtime in whole seconds and its size, so an edit within the same second
        # that keeps the size would load the old values (and record them in metafiles).
        with open(path, "rb") as f:
            exec(compile(f.read(), path, "exec"), module.__dict__)
    except SystemExit as exc:  # a config file is read, not run: exiting is an error
        line = _error_line(exc, path)
        raise ConfigError(
            f"config file {path!r} called sys.exit({exc.code!r}){line} while being loaded; "
            "a config file only defines its class"
        ) from None
    except Exception as exc:
        line = _error_line(exc, path)
        raise ConfigError(
            f"config file {path!r} raised {type(exc).__name__}: {exc}{line}"
        ) from None
    klass = getattr(module, class_name, None)
    if not isinstance(klass, type):
        found = sorted(
            k
            for k, v in vars(module).items()
            if isinstance(v, type) and v.__module__ == module_name
        )
        raise ConfigError(
            f"config file {path!r} has no class {class_name!r}"
            + (f"; classes there: {', '.join(found)}" if found else "")
        )
    return _class_body_values(klass, f"{path}:{class_name}"), f"{path}:{class_name}"


def _error_line(exc: BaseException, path: str) -> str:
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f" (line {exc.lineno})"
    tb = exc.__traceback__
    line = None
    target = os.path.abspath(path)
    while tb is not None:
        if os.path.abspath(tb.tb_frame.f_code.co_filename) == target:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" (line {line})" if line else ""


def resolve_config(
    configcls: type[_ConfigT],
    *,
    config_file: str | Literal[False] | None = None,
    config: BaseConfig | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> _ConfigT:
    """The config a run uses: ``configcls`` < machine file < ``config`` < ``overrides``.

    ``config_file=None`` loads ``./config.py`` when present; ``False`` loads nothing.
    """
    values: dict[str, Any] = {}
    if config_file is not False:
        machine, source = load_machine_values(config_file)
        for key in machine:
            if key not in configcls.model_fields:
                raise ConfigError(
                    f"{source} sets {key!r}, which {configcls.__name__} has no field for; "
                    f"valid fields: {', '.join(sorted(configcls.model_fields))}",
                    field=key,
                )
        if machine:
            logger.debug("machine config %s sets %s", source, sorted(machine))
        values.update(machine)
        if machine:
            configcls._build(values, source=str(source))
    if config is not None:
        values.update(configcls.with_updates(config).model_dump(include=_set_fields(config)))
    if overrides:
        values.update({k: v for k, v in overrides.items() if v is not None})
    return configcls._build(values, source="options")


def _set_fields(config: BaseConfig | Mapping[str, Any]) -> set[str]:
    if isinstance(config, BaseConfig):
        return set(config.model_fields_set)
    return set(config)
