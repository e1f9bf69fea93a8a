"""The groups of a TOML experiment file: each top-level table checked, made into commands.

Every mistake raises :class:`~xhelpers.errors.ExperimentFileError` naming the file, the
line and the key it is about.
"""

from __future__ import annotations

import difflib
from typing import Any

from xhelpers.core.upstreams import Upstream
from xhelpers.define.commands import ENV_VALUE_TYPES, Command, bad_timeout
from xhelpers.define.commands.templates import FORMAT_ERRORS, PLACEHOLDERS, braced
from xhelpers.define.grids import Fixed, grid, render_name
from xhelpers.define.placeholders import template_fields
from xhelpers.define.toml.file import ExperimentFile
from xhelpers.define.toml.locations import Key, show_key
from xhelpers.errors import ExperimentDefinitionError, ExperimentFileError
from xhelpers.framework import _name_problem

__all__ = ["GROUP_KEYS", "read_groups"]

GROUP_KEYS = (
    "command",
    "name",
    "description",
    "default_args",
    "grid",
    "batch_args",
    "upstream",
    "upstreams",
    "env",
    "timeout",
    "shell",
)


def read_groups(file: ExperimentFile) -> dict[str, tuple[dict[str, Command], str | None]]:
    """``{group name: ({experiment name: command}, description)}`` for each table of ``file``."""
    return _GroupReader(file).groups()


class _GroupReader:
    """Reads the groups of ``file``, locating every error in it."""

    def __init__(self, file: ExperimentFile) -> None:
        self.file = file

    def groups(self) -> dict[str, tuple[dict[str, Command], str | None]]:
        if not self.file.data:
            raise ExperimentFileError(
                f"{self.file.path}: defines no group; each top-level table [name] is a group",
                path=self.file.path,
            )
        out: dict[str, tuple[dict[str, Command], str | None]] = {}
        for name, table in self.file.data.items():
            if not isinstance(table, dict):
                raise self.file.error(
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
                raise self.file.error(
                    (gname, unknown), f"unknown key{hint} (valid: {', '.join(GROUP_KEYS)})"
                )
        if "command" not in table:
            raise self.file.error((gname,), "missing key 'command' (the command template)")
        template = self._typed(gname, table, "command", str, "a string")
        name_template = self._typed(gname, table, "name", str, "a string")
        description = self._typed(gname, table, "description", str, "a string")
        shell = self._typed(gname, table, "shell", bool, "true or false")
        timeout = table.get("timeout")
        if timeout is not None and bad_timeout(timeout):
            raise self.file.error(
                (gname, "timeout"), f"must be a positive number of seconds, not {timeout!r}"
            )
        env = self._typed(gname, table, "env", dict, "a table")
        for var, value in (env or {}).items():
            if not isinstance(value, ENV_VALUE_TYPES):
                raise self.file.error(
                    (gname, "env", var), f"must be a string or number, not {value!r}"
                )
        defaults = self._typed(gname, table, "default_args", dict, "a table") or {}
        try:
            base = Command(
                template,
                env=env,
                timeout=timeout,
                shell=True if shell is None else shell,
                here=self.file.here,
            )
        except ExperimentDefinitionError as exc:
            raise self.file.error((gname, "command"), str(exc)) from None
        fields = template_fields(template)
        for param in defaults:
            self._check_param(gname, ("default_args", param), param, fields)
        defaults = {**defaults, **self._upstreams(gname, table, fields)}

        experiments: dict[str, Command] = {}
        origin: dict[str, Key] = {}

        def add(name: str, cmd: Command, key: Key) -> None:
            if name in experiments:
                raise self.file.error(
                    key,
                    f"experiment name {name!r} is taken already (by {show_key(origin[name])})",
                )
            experiments[name] = cmd
            origin[name] = key

        for where, gtable in self._grids(gname, table):
            if name_template is None:
                example = "/".join(f"{p}={{{p}}}" for p in gtable) or "lr={lr}"
                raise self.file.error(
                    (gname, *where),
                    f'a grid needs the group\'s name template, e.g. name = "{example}"',
                )
            for param, values in gtable.items():
                self._check_param(gname, (*where, param), param, fields)
                if not isinstance(values, list):
                    raise self.file.error(
                        (gname, *where, param),
                        f"grid values must be an array, e.g. [{values!r}], not {values!r}",
                    )
            unset = [f for f in base.unbound() if f not in gtable and f not in defaults]
            if unset:
                raise self.file.error(
                    (gname, "command"),
                    f"uses {braced(unset)}, which neither default_args nor "
                    f"{show_key((gname, *where))} sets",
                )
            args = {
                k: v if isinstance(v, Upstream) else Fixed(v)
                for k, v in defaults.items()
                if k not in gtable
            }
            try:
                made = grid(base, name_template, **args, **gtable)
            except ExperimentDefinitionError as exc:
                raise self.file.error(self._blame(gname, exc, where), str(exc)) from None
            for name, cmd in made.items():
                add(name, cmd, (gname, *where))

        rows = table.get("batch_args")
        if rows is not None and not (
            isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
        ):
            raise self.file.error((gname, "batch_args"), "must be an array of tables")
        for i, row in enumerate(rows or []):
            key: Key = (gname, "batch_args", i)
            row = dict(row)
            own_name = row.pop("name", None)
            if own_name is not None and not isinstance(own_name, str):
                raise self.file.error((*key, "name"), "must be a string")
            for param in row:
                self._check_param(gname, ("batch_args", i, param), param, fields)
            rtemplate = own_name if own_name is not None else name_template
            if rtemplate is None:
                raise self.file.error(
                    key, "needs a name: give the row a name key, or the group a name template"
                )
            add(*self._one(gname, base, rtemplate, {**defaults, **row}, key, own_name is not None))

        if "grid" not in table and rows is None:
            if name_template is None:
                raise self.file.error(
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
                    f"name template uses {braced(unknown)}, which no argument sets "
                    f"(arguments: {', '.join(args) or 'none'})"
                )
            name = render_name(template, args)
            problem = _name_problem(name)
            if problem is not None:
                raise ExperimentDefinitionError(f"invalid experiment name {name!r} ({problem})")
        except ExperimentDefinitionError as exc:
            raise self.file.error(name_key, str(exc)) from None
        except FORMAT_ERRORS as exc:
            raise self.file.error(name_key, f"cannot fill the name template: {exc}") from None
        args = {k: v.formatted(args) if isinstance(v, Upstream) else v for k, v in args.items()}
        try:
            cmd = base.with_params(**args).checked()
        except ExperimentDefinitionError as exc:
            raise self.file.error((gname, "command"), str(exc)) from None
        return name, cmd, key

    def _upstreams(self, gname: str, table: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        """``upstream = { model = "train:lr={lr}" }``: template fields filled with the
        folder of another experiment's result ("group:name"; ``upstreams``: every match,
        their folders joined by spaces)."""
        out: dict[str, Any] = {}
        for key, many in (("upstream", False), ("upstreams", True)):
            entries = self._typed(gname, table, key, dict, "a table") or {}
            for param, ref in entries.items():
                self._check_param(gname, (key, param), param, fields)
                group, sep, pattern = ref.partition(":") if isinstance(ref, str) else ("", "", "")
                if not (sep and group and pattern):
                    raise self.file.error(
                        (gname, key, param),
                        f'must be "group:name" (e.g. "train:lr={{lr}}"), not {ref!r}',
                    )
                out[param] = Upstream(group, pattern, many=many)
        return out

    def _grids(self, gname: str, table: dict[str, Any]) -> list[tuple[Key, dict[str, Any]]]:
        value = table.get("grid")
        if value is None:
            return []
        if isinstance(value, dict):
            return [(("grid",), value)]
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            return [(("grid", i), v) for i, v in enumerate(value)]
        raise self.file.error(
            (gname, "grid"), "must be a table of arrays, or an array of such tables"
        )

    def _check_param(self, gname: str, key: Key, param: str, fields: list[str]) -> None:
        if param in PLACEHOLDERS:
            raise self.file.error(
                (gname, *key),
                f"{param!r} is a placeholder xhelpers fills ({', '.join(PLACEHOLDERS)}); "
                "rename the argument",
            )
        if param not in fields:
            raise self.file.error(
                (gname, *key),
                f"the command does not use {{{param}}}; every argument must appear in it",
            )

    def _blame(self, gname: str, exc: ExperimentDefinitionError, key: Key) -> Key:
        """Where a grid error points: a parameter it names, else the name template."""
        params = _grid_params(self.file.data[gname], key)
        for bad in exc.offending:
            if bad in params:
                return (gname, *key, bad)
        return (gname, "name")

    def _typed(self, gname: str, table: dict[str, Any], key: str, kind: type, what: str) -> Any:
        value = table.get(key)
        if value is not None and not isinstance(value, kind):
            raise self.file.error((gname, key), f"must be {what}, not {value!r}")
        return value


def _grid_params(table: dict[str, Any], key: Key) -> dict[str, Any]:
    value: Any = table
    for part in key:
        value = value[part]
    return value if isinstance(value, dict) else {}
