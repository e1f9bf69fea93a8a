"""A TOML experiment file, read and parsed, and its errors located: file, line and key."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from xhelpers.define.toml.locations import Key, key_lines, show_key
from xhelpers.errors import ExperimentFileError

__all__ = ["ExperimentFile"]


class ExperimentFile:
    """The file at ``path``: its text, its parsed ``data`` and its folder ``here``.

    Raises :class:`~xhelpers.errors.ExperimentFileError` when it cannot be read or is
    not valid TOML.
    """

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

    def line_of(self, key: Key) -> int | None:
        """The line of ``key``, else of the nearest enclosing key found; None if none is."""
        if self._lines is None:
            try:
                self._lines = key_lines(self.text)
            except Exception:  # a locator problem must never hide the real error
                self._lines = {}
        for end in range(len(key), 0, -1):
            if key[:end] in self._lines:
                return self._lines[key[:end]]
        return None

    def error(self, key: Key, problem: str) -> ExperimentFileError:
        """The error to raise for ``problem`` with ``key``: ``path:line: key: problem``."""
        line = self.line_of(key)
        shown = show_key(key)
        return ExperimentFileError(
            f"{self._where(line)}: {shown}: {problem}", path=self.path, line=line, key=shown
        )

    def _where(self, line: int | None) -> str:
        return f"{self.path}:{line}" if line is not None else self.path

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
            if line is None and "end of document" in message:
                # tomli (Python 3.10) gives no line for an error at the end: the last
                # line that holds anything is where the file was cut short.
                filled = [i for i, text in enumerate(self.text.splitlines(), 1) if text.strip()]
                line = filled[-1] if filled else None
            key = ""
            if line is not None:
                source = self.text.splitlines()[line - 1 : line]
                found = re.match(r"\s*([A-Za-z0-9_.\-\"' ]+?)\s*=", source[0] if source else "")
                key = found.group(1).strip() if found else ""
            at_key = f"{key}: " if key else ""
            raise ExperimentFileError(
                f"{self._where(line)}: {at_key}invalid TOML: {message}",
                path=self.path,
                line=line,
                key=key,
            ) from None
        return data
