"""cloudpickle that keeps the file names of code shipped by value, for SLURM tasks.

Functions of ``run.py`` (``__main__``) and of modules registered with
``cloudpickle.register_pickle_by_value`` travel as their code, not as an import.
Since cloudpickle 3.1.3 (its PR #560, for deterministic payloads) such code arrives
named ``<dynamic-code>``: a traceback recorded on the node then has no file and no
source line. Earlier versions kept ``co_filename``; this pickler does so with any of
them, by shipping each code object as ``marshal`` writes it into ``.pyc`` files
(file name, qualified name, line table and nested code included). Code and its
payload are only ever read by the same Python (the node runs the submitter's
environment), which is what marshal requires.

A relative file name is made absolute here: on the node ``execute`` works in the
experiment's folder, where linecache would not find the file.
"""

from __future__ import annotations

import io
import marshal
import os
import pickle
import types
from collections import ChainMap
from typing import Any

import cloudpickle  # type: ignore[import-untyped]

__all__ = ["dumps"]


def _absolute(code: types.CodeType) -> types.CodeType:
    name = code.co_filename
    if name.startswith("<") or os.path.isabs(name):  # "<string>" and the like stay
        return code
    consts = tuple(_absolute(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=os.path.abspath(name), co_consts=consts)


def _reduce_code(code: types.CodeType) -> tuple[Any, ...]:
    try:
        data = marshal.dumps(_absolute(code))
    except ValueError:  # a constant marshal cannot write (hand-built code): cloudpickle's way
        reduced: tuple[Any, ...] = cloudpickle.CloudPickler.dispatch_table[types.CodeType](code)
        return reduced
    return marshal.loads, (data,)


class _Pickler(cloudpickle.CloudPickler):  # type: ignore[misc]
    # reducer_override handles functions and classes only; code objects come here, in
    # every cloudpickle version (dispatch_table is the documented pickle hook).
    dispatch_table = ChainMap(
        {types.CodeType: _reduce_code}, cloudpickle.CloudPickler.dispatch_table
    )


def dumps(obj: object) -> bytes:
    """``cloudpickle.dumps(obj)``, by-value code keeping its file name (read: ``pickle.loads``)."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()
