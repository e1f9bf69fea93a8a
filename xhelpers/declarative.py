"""Experiment files: groups of command experiments defined in TOML.

Each top-level table is a group::

    [sweep]
    command = "python {here}/train.py --lr {lr} --seed {seed} --epochs {epochs} --out {cwd}"
    name = "lr={lr}/seed={seed}"          # name template (grid rows, unnamed batch rows)
    default_args = { epochs = 3 }          # every experiment's arguments, unless overridden
    grid = { lr = [0.1, 0.01], seed = [0, 1, 2] }   # the Cartesian product (or [[sweep.grid]])
    batch_args = [ { name = "long", lr = 0.1, seed = 0, epochs = 30 } ]  # one experiment each
    env = { OMP_NUM_THREADS = 1 }
    timeout = 3600                         # seconds
    description = "shown in --help"

Keys: ``command`` (required), ``name``, ``default_args``, ``grid`` (a table of arrays,
or an array of such tables), ``batch_args`` (an array of tables; a row's ``name`` is
its own name template), ``env``, ``timeout``, ``shell``, ``description``. With
neither ``grid`` nor ``batch_args`` the group is one experiment named by ``name``.
``{here}`` in the command is the file's folder. Errors name the file, line and key.
"""

from __future__ import annotations

import bisect
import difflib
import os
import re
import sys
from pathlib import Path
from typing import Any

from .commands import Command
from .errors import ExperimentDefinitionError, ExperimentFileError
from .framework import ParametrizedExperiments, _name_problem, groups, unregister
from .grids import Fixed, grid, render_name, template_fields

__all__ = ["GROUP_KEYS", "load_experiments", "read_experiments"]

GROUP_KEYS = (
    "command",
    "name",
    "description",
    "default_args",
    "grid",
    "batch_args",
    "env",
    "timeout",
    "shell",
)

Key = tuple[str | int, ...]


def load_experiments(
    path: str | os.PathLike[str], *, register: bool = True
) -> dict[str, ParametrizedExperiments]:
    """Define the groups of a TOML experiment file; ``{group name: group}``.

    ``run.py`` can be one line and the CLI: ``xh.load_experiments("experiments.toml")``
    then ``xh.experiment_cli()``. Raises :class:`~xhelpers.errors.ExperimentFileError`
    (a ``ValueError``) naming the file, line and key of a mistake.
    """
    file = _File(path)
    definitions = file.groups()
    taken = groups() if register else {}
    for name in definitions:
        if name in taken:
            raise file.error((name,), f"a group named {name!r} is already registered")
    made: dict[str, ParametrizedExperiments] = {}
    for name, (experiments, description) in definitions.items():
        try:
            made[name] = ParametrizedExperiments(
                name, experiments, description=description, register=register
            )
        except ExperimentDefinitionError as exc:
            for done in made if register else ():
                unregister(done)
            raise file.error((name,), str(exc)) from None
    return made


def read_experiments(path: str | os.PathLike[str]) -> dict[str, dict[str, Command]]:
    """The experiments of each group of a TOML file, without registering anything."""
    return {name: exps for name, (exps, _) in _File(path).groups().items()}


class _File:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            self.text = Path(self.path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ExperimentFileError(
                f"{self.path}: cannot read experiment file: {exc}", path=self.path
            ) from None
        self.here = os.path.dirname(os.path.abspath(self.path))
        self._lines: dict[Key, int] | None = None
        self.data = self._parse()

    # -- errors -----------------------------------------------------------------------
    def line_of(self, key: Key) -> int | None:
        if self._lines is None:
            try:
                self._lines = _key_lines(self.text)
            except Exception:  # a locator problem must never hide the real error
                self._lines = {}
        for end in range(len(key), 0, -1):
            if key[:end] in self._lines:
                return self._lines[key[:end]]
        return None

    def error(self, key: Key, problem: str) -> ExperimentFileError:
        line = self.line_of(key)
        shown = _show_key(key)
        where = f"{self.path}:{line}" if line is not None else self.path
        return ExperimentFileError(
            f"{where}: {shown}: {problem}", path=self.path, line=line, key=shown
        )

    def _parse(self) -> dict[str, Any]:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib  # type: ignore[import-not-found]
        try:
            data: dict[str, Any] = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            message = str(exc)
            match = re.search(r"line (\d+)", message)
            line = int(match.group(1)) if match else None
            key = ""
            if line is not None:
                source = self.text.splitlines()[line - 1 : line]
                found = re.match(r"\s*([A-Za-z0-9_.\-\"' ]+?)\s*=", source[0] if source else "")
                key = found.group(1).strip() if found else ""
            where = f"{self.path}:{line}" if line is not None else self.path
            at_key = f"{key}: " if key else ""
            raise ExperimentFileError(
                f"{where}: {at_key}invalid TOML: {message}", path=self.path, line=line, key=key
            ) from None
        return data

    # -- groups -----------------------------------------------------------------------
    def groups(self) -> dict[str, tuple[dict[str, Command], str | None]]:
        if not self.data:
            raise ExperimentFileError(
                f"{self.path}: defines no group; each top-level table [name] is a group",
                path=self.path,
            )
        out: dict[str, tuple[dict[str, Command], str | None]] = {}
        for name, table in self.data.items():
            if not isinstance(table, dict):
                raise self.error(
                    (name,),
                    "top-level keys must be tables, one per group: write [" + name + "] "
                    "and the group's keys below it",
                )
            out[name] = self._group(name, table)
        return out

    def _group(self, gname: str, table: dict[str, Any]) -> tuple[dict[str, Command], str | None]:
        for unknown in table:
            if unknown not in GROUP_KEYS:
                close = difflib.get_close_matches(unknown, GROUP_KEYS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.error(
                    (gname, unknown), f"unknown key{hint} (valid: {', '.join(GROUP_KEYS)})"
                )
        if "command" not in table:
            raise self.error((gname,), "missing key 'command' (the command template)")
        template = self._typed(gname, table, "command", str, "a string")
        name_template = self._typed(gname, table, "name", str, "a string")
        description = self._typed(gname, table, "description", str, "a string")
        shell = self._typed(gname, table, "shell", bool, "true or false")
        timeout = table.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
        ):
            raise self.error(
                (gname, "timeout"), f"must be a positive number of seconds, not {timeout!r}"
            )
        env = self._typed(gname, table, "env", dict, "a table")
        for var, value in (env or {}).items():
            if not isinstance(value, (str, int, float, bool)):
                raise self.error((gname, "env", var), f"must be a string or number, not {value!r}")
        defaults = self._typed(gname, table, "default_args", dict, "a table") or {}
        try:
            base = Command(
                template,
                env=env,
                timeout=timeout,
                shell=True if shell is None else shell,
                here=self.here,
            )
        except ExperimentDefinitionError as exc:
            raise self.error((gname, "command"), str(exc)) from None
        fields = template_fields(template)
        for param in defaults:
            self._check_param(gname, ("default_args", param), param, fields)

        experiments: dict[str, Command] = {}
        origin: dict[str, Key] = {}

        def add(name: str, cmd: Command, key: Key) -> None:
            if name in experiments:
                raise self.error(
                    key,
                    f"experiment name {name!r} is taken already (by {_show_key(origin[name])})",
                )
            experiments[name] = cmd
            origin[name] = key

        for where, gtable in self._grids(gname, table):
            if name_template is None:
                raise self.error(
                    (gname, *where),
                    'a grid needs the group\'s name template: name = "lr={lr}/seed={seed}"',
                )
            for param, values in gtable.items():
                self._check_param(gname, (*where, param), param, fields)
                if not isinstance(values, list):
                    raise self.error(
                        (gname, *where, param),
                        f"grid values must be an array, e.g. [{values!r}], not {values!r}",
                    )
            unset = [f for f in base.unbound() if f not in gtable and f not in defaults]
            if unset:
                raise self.error(
                    (gname, "command"),
                    "uses "
                    + ", ".join(f"{{{f}}}" for f in unset)
                    + f", which neither default_args nor {_show_key((gname, *where))} sets",
                )
            args = {k: Fixed(v) for k, v in defaults.items() if k not in gtable}
            try:
                made = grid(base, name_template, **args, **gtable)
            except ExperimentDefinitionError as exc:
                raise self.error(self._blame(gname, exc, where), str(exc)) from None
            for name, cmd in made.items():
                add(name, cmd, (gname, *where))

        rows = table.get("batch_args")
        if rows is not None and not (
            isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
        ):
            raise self.error((gname, "batch_args"), "must be an array of tables")
        for i, row in enumerate(rows or []):
            key: Key = (gname, "batch_args", i)
            row = dict(row)
            own_name = row.pop("name", None)
            if own_name is not None and not isinstance(own_name, str):
                raise self.error((*key, "name"), "must be a string")
            for param in row:
                self._check_param(gname, ("batch_args", i, param), param, fields)
            rtemplate = own_name if own_name is not None else name_template
            if rtemplate is None:
                raise self.error(
                    key, "needs a name: give the row a name key, or the group a name template"
                )
            add(*self._one(gname, base, rtemplate, {**defaults, **row}, key, own_name is not None))

        if "grid" not in table and rows is None:
            if name_template is None:
                raise self.error(
                    (gname,),
                    "define grid and/or batch_args, or a name for the group's one experiment",
                )
            add(*self._one(gname, base, name_template, defaults, (gname,), False))
        return experiments, description

    def _one(
        self, gname: str, base: Command, template: str, args: dict[str, Any], key: Key, own: bool
    ) -> tuple[str, Command, Key]:
        name_key: Key = (*key, "name") if own else (gname, "name")
        try:
            unknown = [f for f in template_fields(template) if f not in args]
            if unknown:
                raise ExperimentDefinitionError(
                    "name template uses "
                    + ", ".join(f"{{{f}}}" for f in unknown)
                    + f", which no argument sets (arguments: {', '.join(args) or 'none'})"
                )
            name = render_name(template, args)
            problem = _name_problem(name)
            if problem is not None:
                raise ExperimentDefinitionError(f"invalid experiment name {name!r} ({problem})")
        except ExperimentDefinitionError as exc:
            raise self.error(name_key, str(exc)) from None
        except (KeyError, AttributeError, IndexError, TypeError, ValueError) as exc:
            raise self.error(name_key, f"cannot fill the name template: {exc}") from None
        try:
            cmd = base.with_params(**args).checked()
        except ExperimentDefinitionError as exc:
            raise self.error((gname, "command"), str(exc)) from None
        return name, cmd, key

    def _grids(self, gname: str, table: dict[str, Any]) -> list[tuple[Key, dict[str, Any]]]:
        value = table.get("grid")
        if value is None:
            return []
        if isinstance(value, dict):
            return [(("grid",), value)]
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            return [(("grid", i), v) for i, v in enumerate(value)]
        raise self.error((gname, "grid"), "must be a table of arrays, or an array of such tables")

    def _check_param(self, gname: str, key: Key, param: str, fields: list[str]) -> None:
        from .commands import PLACEHOLDERS

        if param in PLACEHOLDERS:
            raise self.error(
                (gname, *key),
                f"{param!r} is a placeholder xhelpers fills ({', '.join(PLACEHOLDERS)}); "
                "rename the argument",
            )
        if param not in fields:
            raise self.error(
                (gname, *key),
                f"the command does not use {{{param}}}; every argument must appear in it",
            )

    def _blame(self, gname: str, exc: ExperimentDefinitionError, key: Key) -> Key:
        """Where a grid error points: a parameter it names, else the name template."""
        params = _grid_params(self.data[gname], key)
        for bad in exc.offending:
            if bad in params:
                return (gname, *key, bad)
        return (gname, "name")

    def _typed(self, gname: str, table: dict[str, Any], key: str, kind: type, what: str) -> Any:
        value = table.get(key)
        if value is not None and not isinstance(value, kind):
            raise self.error((gname, key), f"must be {what}, not {value!r}")
        return value


def _grid_params(table: dict[str, Any], key: Key) -> dict[str, Any]:
    value: Any = table
    for part in key:
        value = value[part]
    return value if isinstance(value, dict) else {}


def _show_key(key: Key) -> str:
    out = ""
    for part in key:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if re.fullmatch(r"[A-Za-z0-9_\-]+", part) else '"' + part + '"'
            out += ("." if out else "") + text
    return out


# -- where each key is: a small scanner over the (already valid) TOML text ---------------


class _Scanner:
    """Finds the line of every key, array element and table of a valid TOML document."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self.lines: dict[Key, int] = {}
        self.aot: dict[Key, int] = {}  # arrays of tables: how many so far

    def line(self, pos: int) -> int:
        return bisect.bisect_right(self.newlines, pos - 1) + 1

    def note(self, key: Key, pos: int) -> None:
        self.lines.setdefault(key, self.line(pos))

    def peek(self, n: int = 1) -> str:
        return self.s[self.i : self.i + n]

    def skip(self, newlines: bool) -> None:
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t" or (newlines and c in "\r\n"):
                self.i += 1
            elif c == "#":
                while self.i < len(self.s) and self.s[self.i] != "\n":
                    self.i += 1
            else:
                return

    def document(self) -> dict[Key, int]:
        table: Key = ()
        while True:
            self.skip(True)
            if self.i >= len(self.s):
                return self.lines
            start = self.i
            if self.peek(2) == "[[":
                self.i += 2
                path = self.keys()
                self.i += 2  # ]]
                index = self.aot.get(path, 0)
                self.aot[path] = index + 1
                self.note(path, start)
                table = (*path, index)
                self.note(table, start)
            elif self.peek() == "[":
                self.i += 1
                table = self.keys()
                self.i += 1  # ]
                self.note(table, start)
            else:
                key = (*table, *self.keys())
                self.note(key, start)
                self.skip(False)
                self.i += 1  # =
                self.value(key)

    def keys(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self.skip(False)
            c = self.peek()
            if c in "\"'":
                parts.append(self.string())
            else:
                m = re.compile(r"[A-Za-z0-9_\-]+").match(self.s, self.i)
                if m is None:
                    raise ValueError(f"no key at {self.i}")
                parts.append(m.group())
                self.i = m.end()
            self.skip(False)
            if self.peek() != ".":
                return tuple(parts)
            self.i += 1

    def string(self) -> str:
        quote = self.s[self.i]
        if self.peek(3) == quote * 3:
            end = self.s.index(quote * 3, self.i + 3)
            while self.s[end + 3 : end + 4] == quote:  # up to two quotes before the closing
                end += 1
            text = self.s[self.i + 3 : end]
            self.i = end + 3
            return text
        j = self.i + 1
        while self.s[j] != quote:
            j += 2 if quote == '"' and self.s[j] == "\\" else 1
        text = self.s[self.i + 1 : j]
        self.i = j + 1
        return text

    def value(self, key: Key) -> None:
        self.skip(False)
        c = self.peek()
        if c in "\"'":
            self.string()
        elif c == "[":
            self.i += 1
            index = 0
            while True:
                self.skip(True)
                if self.peek() == "]":
                    self.i += 1
                    return
                if self.peek() == ",":
                    self.i += 1
                    continue
                self.note((*key, index), self.i)
                self.value((*key, index))
                index += 1
        elif c == "{":
            self.i += 1
            while True:
                self.skip(True)
                if self.peek() == "}":
                    self.i += 1
                    return
                if self.peek() == ",":
                    self.i += 1
                    continue
                start = self.i
                inner = (*key, *self.keys())
                self.note(inner, start)
                self.skip(False)
                self.i += 1  # =
                self.value(inner)
        else:
            m = re.compile(r"[^,\]}\s#]+(?:[ T][0-9:.+\-Z]+)?").match(self.s, self.i)
            if m is None:
                raise ValueError(f"no value at {self.i}")
            self.i = m.end()


def _key_lines(text: str) -> dict[Key, int]:
    return _Scanner(text).document()
