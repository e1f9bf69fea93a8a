"""What an experiment is: its function and bound arguments, described and fingerprinted.

Computed in the main process for every experiment to run (the metafile's
``fingerprint``, ``function`` and ``arguments``), and for every finished one when a run
or ``-l`` checks for stale results, so the common case is kept cheap.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from xhelpers.config import BaseConfig

__all__ = ["describe", "fingerprint", "qualname"]


_json_str: Callable[[str], str] = json.encoder.encode_basestring_ascii  # as json.dumps(str)

_takes_config: dict[Any, bool] = {}


def _accepts_config(func: Callable[..., Any]) -> bool:
    # A signature costs ~10 us; a sweep asks it of a few functions thousands of times.
    try:
        return _takes_config[func]
    except KeyError:
        answer = _takes_config[func] = _reads_config(func)
        return answer
    except TypeError:  # an unhashable callable
        return _reads_config(func)


def _reads_config(func: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    p = params.get("config")
    return p is not None and p.kind is not inspect.Parameter.POSITIONAL_ONLY


def _canonical(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):  # iteration order varies between processes
        items = [_canonical(v) for v in value]
        return {"set": sorted(items, key=lambda v: json.dumps(v, sort_keys=True))}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, functools.partial):
        return {
            "partial": qualname(value.func),
            "args": _canonical(value.args),
            "kwargs": _canonical(value.keywords),
        }
    if callable(value) and hasattr(value, "__qualname__"):
        return {"callable": qualname(value)}
    text = repr(value)
    if " at 0x" in text:  # a default repr holds an address that changes every run
        return {"object": qualname(type(value))}
    return {"repr": text}


def qualname(func: Any) -> str:
    """``module.qualname`` of a function, with the script's own name for ``__main__``.

    ``python run.py`` runs run.py as ``__main__`` (``__mp_main__`` in spawned workers);
    ``import run`` in a notebook knows it as ``run``. Both must name, and fingerprint,
    the same function, or every result would be stale on the other side.
    """
    module = getattr(func, "__module__", None) or "?"
    if module in ("__main__", "__mp_main__"):
        module = _main_module_name(module)
    else:
        module = _FORMER_MODULES.get(module, module)
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{module}.{name}"


# xhelpers' own experiment callables keep the module name results recorded them under
# before they moved into sub-packages, so no finished result turns stale by the move.
_FORMER_MODULES = {"xhelpers.define.commands": "xhelpers.commands"}


@functools.cache  # the main module of a process does not change
def _main_module_name(alias: str) -> str:
    main = sys.modules.get(alias)
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name not in ("__main__", "__mp_main__"):
        return str(spec.name)  # python -m package.module
    path = getattr(main, "__file__", None)
    if path:
        return os.path.splitext(os.path.basename(str(path)))[0]
    return "__main__"


def describe(
    fn: Callable[..., Any], base_config: BaseConfig
) -> tuple[str, bool, BaseConfig | None]:
    """Describe an experiment in the main process.

    Returns the JSON members (function, bound arguments, fingerprint), whether it
    takes ``config=``, and its own config when its partial binds a ``config`` dict
    (which then updates the run's config for this experiment alone).
    """
    func: Any = fn
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    if isinstance(fn, functools.partial):
        func, args, kwargs = fn.func, fn.args, dict(fn.keywords)
    own_config = None
    if "config" in kwargs:
        bound = kwargs["config"]
        if isinstance(bound, (dict, BaseConfig)):
            own_config = type(base_config).with_updates(base_config, _as_dict(bound))
    name = _cached_qualname(func)
    # What json.dumps({"args": [reprs], "kwargs": {k: repr}}) writes, at a third of the
    # cost: this runs for every experiment of a run before the first one starts.
    arguments = (
        '{"args": ['
        + ", ".join([_json_str(repr(a)) for a in args])
        + '], "kwargs": {'
        + ", ".join([f"{_json_str(str(k))}: {_json_str(repr(v))}" for k, v in kwargs.items()])
        + "}}"
    )
    # The fingerprint comes first: the metafile's head holds status and fingerprint, so
    # a stale result is found by reading a few bytes.
    members = (
        f'"fingerprint": "{_fingerprint(name, args, kwargs)}", '
        f'"function": {_json_str(name)}, "arguments": {arguments}'
    )
    return members, _accepts_config(func), own_config


def fingerprint(fn: Callable[..., Any]) -> str:
    """A short hash of what an experiment is: its function and bound arguments.

    Equal definitions give equal fingerprints in every process and run; a result
    whose fingerprint differs from its experiment's current one is stale.
    """
    if isinstance(fn, functools.partial):
        return _fingerprint(_cached_qualname(fn.func), fn.args, fn.keywords)
    return _fingerprint(qualname(fn), (), {})


_qualnames: dict[Any, str] = {}


def _cached_qualname(func: Any) -> str:
    # A sweep is thousands of partials of a few functions: name each function once.
    try:
        return _qualnames[func]
    except KeyError:
        name = _qualnames[func] = qualname(func)
        return name
    except TypeError:  # an unhashable callable
        return qualname(func)


_PLAIN = (str, int, float, bool, type(None))


def _fingerprint(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    # Plain values (the common case) hash their repr, which is stable for these types
    # and twice as cheap as canonical JSON: checking 100,000 results for staleness
    # must stay close to the cost of reading their heads.
    if all(type(v) in _PLAIN for v in args) and all(type(v) in _PLAIN for v in kwargs.values()):
        text = f"{name}\0{args!r}\0{sorted(kwargs.items())!r}"
    else:
        text = json.dumps(
            [name, _canonical(list(args)), _canonical(kwargs)],
            sort_keys=True,
            separators=(",", ":"),
        )
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _as_dict(config: dict[str, Any] | BaseConfig) -> dict[str, Any]:
    if isinstance(config, BaseConfig):
        return {k: getattr(config, k) for k in config.model_fields_set}
    return config
