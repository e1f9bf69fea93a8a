"""Where each key of a TOML document is: its line, and how to write the key.

``tomllib`` gives values but no positions; :func:`key_lines` scans the (already valid)
text for the line of every key, array element and table, so that an error can point
at the line of the key it is about.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator

__all__ = ["Key", "key_lines", "show_key"]

Key = tuple[str | int, ...]  # a path into the document: table and key names, array indexes


def key_lines(text: str) -> dict[Key, int]:
    """The line (1-based) of every key, array element and table of valid TOML ``text``."""
    return _Scanner(text).document()


def show_key(key: Key) -> str:
    """``key`` as TOML writes it: ``sweep.grid[0].lr``, quoting what needs quotes."""
    out = ""
    for part in key:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if re.fullmatch(r"[A-Za-z0-9_\-]+", part) else '"' + part + '"'
            out += ("." if out else "") + text
    return out


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
                self.assignment(table)

    def assignment(self, table: Key) -> None:
        """``key = value``, the key under ``table``."""
        start = self.i
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

    def items(self, close: str) -> Iterator[None]:
        """Stops at each item of the inline array or table here, then passes ``close``."""
        self.i += 1  # [ or {
        while True:
            self.skip(True)
            if self.peek() == close:
                self.i += 1
                return
            if self.peek() == ",":
                self.i += 1
                continue
            yield

    def value(self, key: Key) -> None:
        self.skip(False)
        c = self.peek()
        if c in "\"'":
            self.string()
        elif c == "[":
            for index, _ in enumerate(self.items("]")):
                self.note((*key, index), self.i)
                self.value((*key, index))
        elif c == "{":
            for _ in self.items("}"):
                self.assignment(key)
        else:
            m = re.compile(r"[^,\]}\s#]+(?:[ T][0-9:.+\-Z]+)?").match(self.s, self.i)
            if m is None:
                raise ValueError(f"no value at {self.i}")
            self.i = m.end()
