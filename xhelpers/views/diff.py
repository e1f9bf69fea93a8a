"""How two experiments of a group differ: backs ``--diff A B`` and ``group.diff(a, b)``.

Each experiment is read, from its metafile and result files, as five sections of flat
``{key: value}``, compared key by key:

- ``status``: ``status`` as ``-l`` shows it, ``duration``, ``ended``, ``host``, ``runs``,
  and ``error`` (the ``-l`` error line) for one that did not succeed;
- ``parameters``: those its result was made with, as the results table reads them (the
  metafile's, else the current definition's for an experiment that never ran);
- ``config``: the metafile's ``config``, nested dicts as dotted keys (secrets are
  ``***`` there already);
- ``code``: ``function``, ``fingerprints.<scope>`` (each scope the run covered),
  ``git.commit``, ``git.dirty`` (None outside a repository), ``xhelpers``, ``python``;
- ``metrics``: as the results table merges them.

A key one side does not have is :data:`ABSENT` there: an experiment that never ran has
only its status (``pending``) and parameters. The text, CSV and JSON outputs show it as
``(absent)``, so that it is never mistaken for None (``None`` in the text table, JSON
``null``). NaN equals NaN here: a metric that is NaN on both sides does not differ.
"""

from __future__ import annotations

import csv
import enum
import glob
import io
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from xhelpers.config import BaseConfig
from xhelpers.core import results
from xhelpers.errors import PatternError, ResultsQueryError
from xhelpers.views.results import (
    flatten,
    format_cell,
    json_safe,
    metrics_of_experiment,
    parameters_of_experiment,
)
from xhelpers.views.status import StatusRow, collect_status, group_base, resolved_config, text_table

if TYPE_CHECKING:
    from xhelpers.framework import ParametrizedExperiments

__all__ = ["ABSENT", "SECTIONS", "Absent", "cell", "diff", "diff_text", "differing", "sections"]

SECTIONS = ("status", "parameters", "config", "code", "metrics")
DiffFormat = Literal["table", "csv", "json"]
Sections = dict[str, dict[str, Any]]  # section -> key -> value, one experiment's


class Absent(enum.Enum):
    """The type of :data:`ABSENT`: an enum, so that it stays one object when pickled."""

    ABSENT = "(absent)"

    def __repr__(self) -> str:
        return "ABSENT"

    def __str__(self) -> str:
        return str(self.value)


ABSENT = Absent.ABSENT  # what a side holds for a key it does not have
_ABSENT_TEXT = str(ABSENT)


def diff(
    group: ParametrizedExperiments,
    a: str,
    b: str,
    *,
    config: BaseConfig | Mapping[str, Any] | None = None,
    config_file: str | Literal[False] | None = None,
) -> dict[str, dict[str, tuple[Any, Any]]]:
    """``{section: {key: (value in a, value in b)}}`` of the keys whose values differ, for
    every section of :data:`SECTIONS` in that order (one with no difference is empty).

    ``a`` and ``b`` are names of ``group``'s experiments, or patterns matching exactly one.
    """
    _, _, sides = _read_both(group, a, b, config, config_file)
    return {s: differing(sides[0][s], sides[1][s]) for s in SECTIONS}


def diff_text(
    group: ParametrizedExperiments,
    a: str,
    b: str,
    *,
    config: BaseConfig | Mapping[str, Any] | None = None,
    config_file: str | Literal[False] | None = None,
    fmt: DiffFormat = "table",
) -> str:
    """What ``--diff A B`` prints: a table per section that differs and a line counting
    what is the same (``table``); ``section,key,a,b`` rows (``csv``); or ``{"a", "b",
    "differences": {section: {key: [a, b]}}}`` with NaN as null (``json``)."""
    if fmt not in ("table", "csv", "json"):
        raise ResultsQueryError(f"diff: unknown format {fmt!r}; formats: table, csv, json")
    name_a, name_b, sides = _read_both(group, a, b, config, config_file)
    found = {s: differing(sides[0][s], sides[1][s]) for s in SECTIONS}
    if fmt == "json":
        differences = {
            s: {k: [_json_value(x), _json_value(y)] for k, (x, y) in found[s].items()}
            for s in SECTIONS
        }
        data = {"a": name_a, "b": name_b, "differences": differences}
        return json.dumps(data, indent=1, default=str, allow_nan=False)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["section", "key", "a", "b"])
        for section in SECTIONS:
            for key, (x, y) in found[section].items():
                writer.writerow([section, key, _csv_value(x), _csv_value(y)])
        return out.getvalue().rstrip("\n")
    return _table(group.name, name_a, name_b, sides, found)


# -- reading -------------------------------------------------------------------------------
def _read_both(
    group: ParametrizedExperiments,
    a: str,
    b: str,
    config: BaseConfig | Mapping[str, Any] | None,
    config_file: str | Literal[False] | None,
) -> tuple[str, str, tuple[Sections, Sections]]:
    name_a, name_b = _one(group, a, "A"), _one(group, b, "B")
    resolved = resolved_config(group, config, config_file)
    base = group_base(group, resolved)
    # The status as -l shows it, a backend asked about a queued job included. Escaped:
    # a name may hold the characters of a pattern ("[", "*"), and each must select itself.
    rows = {
        r.name: r
        for r in collect_status(
            group,
            [glob.escape(name_a), glob.escape(name_b)],
            config=resolved,
            config_file=False,  # resolved already: the machine file is in it
        )
    }
    return (
        name_a,
        name_b,
        (
            _sections(group, name_a, base + name_a, rows[name_a]),
            _sections(group, name_b, base + name_b, rows[name_b]),
        ),
    )


def _one(group: ParametrizedExperiments, pattern: str, label: str) -> str:
    """The one experiment ``pattern`` names (argument ``label`` of the diff)."""
    if pattern in group.experiments:  # a name that holds "[" or "*" names itself, too
        return pattern
    try:
        hits = group.select(pattern)
    except PatternError as exc:  # its message has the closest names
        raise ResultsQueryError(f"diff {label}: {exc}") from None
    if len(hits) != 1:
        shown = ", ".join(hits[:3]) + (", ..." if len(hits) > 3 else "")
        raise ResultsQueryError(
            f"diff {label}: {pattern!r} matches {len(hits)} experiments of group "
            f"{group.name!r} ({shown}); A and B must each name one"
        )
    return hits[0]


def _sections(group: ParametrizedExperiments, name: str, folder: str, row: StatusRow) -> Sections:
    return sections(group.experiments[name], folder, row)


def sections(fn: Any, folder: str, row: StatusRow) -> Sections:
    """One experiment as the diff reads it: ``{section: {key: value}}`` for every
    section of :data:`SECTIONS`, from its folder, its ``-l`` row and its definition
    ``fn`` (None where unknown: then the parameters are only those its metafile has)."""
    meta = results.read_metafile(folder)
    status: dict[str, Any] = {"status": row.status}
    config: dict[str, Any] = {}
    code: dict[str, Any] = {}
    if meta is not None:
        status.update((k, meta[k]) for k in ("duration", "ended", "host") if k in meta)
        status["runs"] = results.runs_so_far(meta)
        if isinstance(meta.get("config"), dict):
            config = flatten(meta["config"])
        code = _code(meta)
    if row.error:
        status["error"] = row.error
    return {
        "status": status,
        "parameters": parameters_of_experiment(fn, meta),
        "config": config,
        "code": code,
        "metrics": metrics_of_experiment(folder, meta),
    }


def _code(meta: Mapping[str, Any]) -> dict[str, Any]:
    code: dict[str, Any] = {}
    if "function" in meta:
        code["function"] = meta["function"]
    fingerprints = meta.get("fingerprints")
    if isinstance(fingerprints, dict):
        code.update((f"fingerprints.{k}", v) for k, v in fingerprints.items())
    elif "fingerprint" in meta:  # written before scopes: its one fingerprint is this scope's
        code["fingerprints.arguments"] = meta["fingerprint"]
    if "git" in meta:
        git = meta["git"]
        # None (outside a repository) under the same keys as a commit, so that it is
        # shown against the commit rather than as a key of its own
        code.update(flatten(git, "git.") if isinstance(git, dict) else dict.fromkeys(_GIT_KEYS))
    code.update((k, meta[k]) for k in ("xhelpers", "python") if k in meta)
    return code


_GIT_KEYS = ("git.commit", "git.dirty")


# -- comparing -----------------------------------------------------------------------------
def differing(x: Mapping[str, Any], y: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The keys of one section whose values differ, each with (value in x, in y)."""
    keys = {**dict.fromkeys(x), **dict.fromkeys(y)}  # a's order, then b's own keys
    pairs = ((k, x.get(k, ABSENT), y.get(k, ABSENT)) for k in keys)
    return {k: (u, v) for k, u, v in pairs if not _same(u, v)}


def _same(x: Any, y: Any) -> bool:
    """Equal values of the same kind: 1 and 1.0, or True and 1, are not the same
    parameter (nor the same fingerprint); NaN is the same as NaN."""
    if isinstance(x, float) and isinstance(y, float):
        return x == y or (math.isnan(x) and math.isnan(y))
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(_same(u, v) for u, v in zip(x, y, strict=True))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same(v, y[k]) for k, v in x.items())
    return type(x) is type(y) and bool(x == y)


# -- output --------------------------------------------------------------------------------
def _json_value(value: Any) -> Any:
    return _ABSENT_TEXT if value is ABSENT else json_safe(value)


def _csv_value(value: Any) -> str:
    return _ABSENT_TEXT if value is ABSENT else format_cell(value, exact=True)


def cell(section: str, key: str, value: Any, exact: bool = False) -> str:
    """One side's value of a key as the diff's table shows it."""
    if value is ABSENT:
        return _ABSENT_TEXT
    if value is None:  # an empty cell would read as missing
        return "None"
    if section == "status" and not isinstance(value, bool):
        if key == "duration" and isinstance(value, (int, float)):
            # as -l shows it; recorded to the microsecond, which exact shows
            return f"{value:.6f}s" if exact else f"{value:.2f}s"
        if key == "ended" and isinstance(value, str) and not exact:
            return value[:19].replace("T", " ")  # as -l shows it
    return format_cell(value, exact=exact)


def _cells(section: str, key: str, x: Any, y: Any) -> list[str]:
    """Two differing values as cells that differ too: rounded as the results table
    shows them, else every digit, else their reprs (the string "1" against 1)."""
    for exact in (False, True):
        u, v = cell(section, key, x, exact), cell(section, key, y, exact)
        if u != v:
            return [key, u, v]
    return [key, repr(x), repr(y)]


def _table(
    group_name: str,
    a: str,
    b: str,
    sides: tuple[Sections, Sections],
    found: Mapping[str, Mapping[str, tuple[Any, Any]]],
) -> str:
    parts = [f"{group_name}: {a} vs {b}"]
    counts = []
    one_sided: dict[str, list[str]] = {a: [], b: []}
    for section in SECTIONS:
        x, y = sides[0][section], sides[1][section]
        differ = found[section]
        total = len({**x, **y})
        if not total:
            counts.append(f"{section}: none")
        elif not differ:
            counts.append(f"{section}: identical")
        elif not x or not y:
            # One side has nothing here (it never ran, or recorded none): a row of
            # "(absent)" for each key of the other would be 30 of them for a config.
            only = a if x else b
            counts.append(f"{section}: {only} only")
            one_sided[only].append(f"{section} ({total} key{'s' if total != 1 else ''})")
        else:
            same = total - len(differ)
            verb = "differs" if len(differ) == 1 else "differ"
            counts.append(f"{section}: {len(differ)} {verb}, {same} the same")
            cells = [_cells(section, key, u, v) for key, (u, v) in differ.items()]
            block = text_table([section, a, b], cells)
            if section == "code" and found["parameters"] and _fingerprints_only(differ):
                block += "\n(a fingerprint covers the parameters too: it differs whenever they do)"
            parts.append(block)
    parts += [f"only in {name}: {', '.join(what)}" for name, what in one_sided.items() if what]
    if len(parts) == 1:
        parts.append("no differences")
    return "\n\n".join(parts) + "\n\n" + "; ".join(counts)


def _fingerprints_only(differ: Mapping[str, Any]) -> bool:
    return all(k.startswith("fingerprints.") for k in differ)
