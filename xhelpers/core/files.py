"""Saving and loading by file name: ``xh.save(obj, "scores.json")``, ``xh.load(...)``.

The format comes from the name's suffixes, matched case-insensitively by the longest
known one; a compression suffix after it (``.gz``, ``.bz2``, ``.xz``, ``.zst``) wraps
the bytes. A relative path is inside the running experiment's folder (else the working
directory). A save goes to a temporary file in the same folder, renamed over the
target once complete, so a crash leaves the old file whole; parent folders are made.

Formats of optional libraries (NumPy, pandas, PyYAML, zstandard) import them when
used; without them the error names the package to install. :func:`register_format`
adds one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from xhelpers.core.execution import running_experiment
from xhelpers.errors import FileFormatError

__all__ = ["atomic_write", "file_format", "load", "register_format", "save"]

Saver = Callable[[Any, IO[bytes]], None]
Loader = Callable[[IO[bytes]], Any]


@dataclass(frozen=True, slots=True)
class _Format:
    suffix: str
    save: Saver
    load: Loader


_FORMATS: dict[str, _Format] = {}
_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")


def register_format(suffix: str, *, save: Saver, load: Loader) -> None:
    """Add (or replace) the format of files ending in ``suffix`` (e.g. ``".toml"``).

    ``save(obj, stream)`` writes ``obj`` to a binary stream, ``load(stream)`` reads it
    back; compression suffixes then work for it too.
    """
    key = suffix.lower()
    if not key.startswith(".") or key in _COMPRESSIONS:
        raise ValueError(f"a format's suffix starts with '.' and is not a compression: {suffix!r}")
    _FORMATS[key] = _Format(key, save, load)


def file_format(path: str | os.PathLike[str]) -> tuple[str, str | None]:
    """(format suffix, compression suffix or None) of ``path``; FileFormatError if unknown."""
    name = os.path.basename(os.fspath(path)).lower()
    compression = next((c for c in _COMPRESSIONS if name.endswith(c)), None)
    if compression is not None:
        name = name[: -len(compression)]
    best = max((s for s in _FORMATS if name.endswith(s)), key=len, default=None)
    if best is None:
        known = ", ".join(sorted(_FORMATS))
        raise FileFormatError(
            f"{os.fspath(path)!r}: no format for this file name (known: {known}; "
            f"compressed: add {', '.join(_COMPRESSIONS)}; more with xh.register_format)",
            path=os.fspath(path),
        )
    return best, compression


def _where(path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    if target.is_absolute():
        return target
    info = running_experiment()
    return Path(info.folder) / target if info is not None else Path.cwd() / target


def save(obj: Any, path: str | os.PathLike[str], *, result: bool = False) -> Path:
    """Write ``obj`` to ``path`` in the format its name says, atomically; the path.

    ``result=True`` marks the file as one of the running experiment's results: its
    metafile lists it (``result_files``), and the results table shows the values of the
    dict it holds beside the experiment's parameters.
    """
    suffix, compression = file_format(path)
    info = running_experiment()
    if result and info is None:
        raise FileFormatError(
            f"xh.save(..., result=True) marks a result of the running experiment, and "
            f"none runs here: save {os.fspath(path)!r} without result=True",
            path=os.fspath(path),
        )
    target = _where(path)
    with atomic_write(target) as raw, _compressed(raw, compression, "wb") as stream:
        _FORMATS[suffix].save(obj, stream)
    if result and info is not None:
        inside = os.path.relpath(target, info.folder).replace(os.sep, "/")
        if inside not in info.result_files:
            info.result_files.append(inside)
    return target


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary stream whose bytes replace ``path`` only once the block ends without an
    error (a temporary file in the same folder, then a rename); parent folders are made."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as raw:
            yield raw
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike[str]) -> Any:
    """Read ``path`` in the format its name says."""
    suffix, compression = file_format(path)
    with open(_where(path), "rb") as raw, _compressed(raw, compression, "rb") as stream:
        return _FORMATS[suffix].load(stream)


@contextlib.contextmanager
def _compressed(raw: IO[bytes], compression: str | None, mode: str) -> Any:
    if compression is None:
        yield raw
        return
    if compression == ".gz":
        import gzip

        with gzip.GzipFile(fileobj=raw, mode=mode) as stream:
            yield stream
    elif compression == ".bz2":
        import bz2

        with bz2.BZ2File(raw, mode=mode) as stream:  # type: ignore[call-overload]
            yield stream
    elif compression == ".xz":
        import lzma

        with lzma.LZMAFile(raw, mode=mode) as stream:
            yield stream
    else:
        zstandard = _optional("zstandard", ".zst")
        if "w" in mode:
            with zstandard.ZstdCompressor().stream_writer(raw, closefd=False) as stream:
                yield stream
        else:
            with zstandard.ZstdDecompressor().stream_reader(raw, closefd=False) as stream:
                yield io.BufferedReader(stream)


def _optional(module: str, suffix: str, package: str | None = None) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise FileFormatError(
            f"{suffix} files need {package or module}, which is not installed: "
            f"pip install {package or module}",
            path="",
        ) from None


# -- the built-in formats ----------------------------------------------------------------
def _plain(value: Any) -> Any:
    """What json.dump cannot write: NumPy scalars and arrays as numbers and lists."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _text_out(stream: IO[bytes]) -> io.TextIOWrapper:
    return io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=True)


def _save_json(obj: Any, stream: IO[bytes]) -> None:
    stream.write(json.dumps(obj, default=_plain, indent=2).encode() + b"\n")


def _save_jsonl(obj: Any, stream: IO[bytes]) -> None:
    for row in obj:
        stream.write(json.dumps(row, default=_plain).encode() + b"\n")


def _load_jsonl(stream: IO[bytes]) -> list[Any]:
    return [json.loads(line) for line in stream.read().decode().splitlines() if line.strip()]


def _save_csv(obj: Any, stream: IO[bytes]) -> None:
    to_csv = getattr(obj, "to_csv", None)
    if callable(to_csv):  # a pandas DataFrame
        stream.write(to_csv(index=False).encode())
        return
    rows = list(obj)
    text = _text_out(stream)
    if rows and isinstance(rows[0], dict):
        fields = list(dict.fromkeys(k for row in rows for k in row))
        writer: Any = csv.DictWriter(text, fieldnames=fields)
        writer.writeheader()
    else:
        writer = csv.writer(text)
    writer.writerows(rows)
    text.detach()


def _load_csv(stream: IO[bytes]) -> list[dict[str, str]]:
    return list(csv.DictReader(io.TextIOWrapper(stream, encoding="utf-8", newline="")))


def _save_text(obj: Any, stream: IO[bytes]) -> None:
    stream.write(str(obj).encode())


def _save_npy(obj: Any, stream: IO[bytes]) -> None:
    _optional("numpy", ".npy").save(stream, obj, allow_pickle=False)


def _load_npy(stream: IO[bytes]) -> Any:
    return _optional("numpy", ".npy").load(io.BytesIO(stream.read()), allow_pickle=False)


def _save_npz(obj: Any, stream: IO[bytes]) -> None:
    # A zip file seeks back to write its directory; a compressed stream cannot seek.
    buffer = io.BytesIO()
    _optional("numpy", ".npz").savez_compressed(buffer, **dict(obj))
    stream.write(buffer.getbuffer())


def _load_npz(stream: IO[bytes]) -> dict[str, Any]:
    with _optional("numpy", ".npz").load(io.BytesIO(stream.read()), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _save_parquet(obj: Any, stream: IO[bytes]) -> None:
    pandas = _optional("pandas", ".parquet", "pandas pyarrow")
    _optional("pyarrow", ".parquet", "pyarrow")  # else pandas' own, longer, error
    frame = obj if hasattr(obj, "to_parquet") else pandas.DataFrame(obj)
    buffer = io.BytesIO()  # as for .npz: the writer may seek, a compressed stream cannot
    frame.to_parquet(buffer)
    stream.write(buffer.getbuffer())


def _load_parquet(stream: IO[bytes]) -> Any:
    pandas = _optional("pandas", ".parquet", "pandas pyarrow")
    _optional("pyarrow", ".parquet", "pyarrow")
    return pandas.read_parquet(io.BytesIO(stream.read()))


def _save_yaml(obj: Any, stream: IO[bytes]) -> None:
    stream.write(_optional("yaml", ".yaml", "pyyaml").safe_dump(obj, sort_keys=False).encode())


def _load_yaml(stream: IO[bytes]) -> Any:
    return _optional("yaml", ".yaml", "pyyaml").safe_load(stream.read().decode())


for _suffixes, _save, _load in (
    ((".json",), _save_json, lambda s: json.loads(s.read().decode())),
    ((".jsonl", ".ndjson"), _save_jsonl, _load_jsonl),
    ((".csv",), _save_csv, _load_csv),
    ((".txt", ".log", ".md"), _save_text, lambda s: s.read().decode()),
    ((".pkl", ".pickle"), lambda o, s: pickle.dump(o, s, pickle.HIGHEST_PROTOCOL), pickle.load),
    ((".npy",), _save_npy, _load_npy),
    ((".npz",), _save_npz, _load_npz),
    ((".parquet",), _save_parquet, _load_parquet),
    ((".yaml", ".yml"), _save_yaml, _load_yaml),
):
    for _suffix in _suffixes:
        register_format(_suffix, save=_save, load=_load)
