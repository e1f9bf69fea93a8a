"""What an experiment's page and a file's preview show, read from the folder on request.

Nothing here is indexed: one experiment's metafile, log tail and file list are read
when its page asks (well under 100 ms), so they are always as the disk has them.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from typing import Any

from xhelpers.config import is_secret_name
from xhelpers.core import results
from xhelpers.core.logs import EXPERIMENT_LOG
from xhelpers.views.results import flatten, format_cell

__all__ = [
    "LOG_TAIL",
    "experiment_details",
    "file_list",
    "log_since",
    "preview",
    "redact",
    "traceback_of",
]

LOG_TAIL = 64 * 1024  # of experiment.log, shown when the page opens
_MAX_FILES = 1000
_TEXT_PREVIEW = 256 * 1024
_CSV_ROWS = 200
_IMAGES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")
_HIDDEN = (results.LOCKFILE, ".metafile.json.tmp")
_FACTS = (
    "started",
    "ended",
    "duration",
    "host",
    "pid",
    "runs",
    "backend",
    "ref",
    "slurm_job_id",
    "requeued",
    "function",
    "fingerprint_scope",
    "xhelpers",
    "python",
    "cwd",
    "argv",
    "gpus",
)


def redact(value: Any) -> Any:
    """``value`` with every member whose key names a secret as ``'***'``: a metafile's
    config is redacted when written, and this holds for one written by hand too."""
    if isinstance(value, dict):
        return {
            k: "***" if is_secret_name(str(k)) and v is not None else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def experiment_details(folder: str) -> dict[str, Any]:
    """The metafile's sections for the experiment page (the metafile itself redacted)."""
    meta = redact(results.read_metafile(folder) or {})
    error = meta.get("error") if isinstance(meta.get("error"), dict) else None
    config = meta.get("config")
    git = meta.get("git")
    upstreams = meta.get("upstreams") if isinstance(meta.get("upstreams"), list) else []
    return {
        "has_metafile": bool(meta),
        "facts": [(k, format_cell(meta[k])) for k in _FACTS if k in meta],
        "config": [(k, format_cell(v)) for k, v in flatten(config).items()]
        if isinstance(config, dict)
        else [],
        "git": [(k, format_cell(v)) for k, v in flatten(git).items()]
        if isinstance(git, dict)
        else [],
        "upstreams": [u for u in upstreams if isinstance(u, dict)],
        "error": error,
        "metafile": json.dumps(meta, indent=1, default=str),
    }


def traceback_of(folder: str) -> str:
    """The traceback a failed run's metafile holds, or ''."""
    meta = results.read_metafile(folder) or {}
    error = meta.get("error")
    return str(error.get("traceback") or "") if isinstance(error, dict) else ""


def log_since(folder: str, offset: int) -> dict[str, Any]:
    """What ``experiment.log`` holds past byte ``offset`` (-1: its last LOG_TAIL bytes).
    ``reset`` when the file is shorter than ``offset``: it was started anew (a rerun)."""
    path = os.path.join(folder, EXPERIMENT_LOG)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            reset = offset > size
            start = max(0, size - LOG_TAIL) if offset < 0 or reset else offset
            if size - start > LOG_TAIL:  # fell far behind: only the tail is worth showing
                start = size - LOG_TAIL
            f.seek(start)
            data = f.read(size - start)
    except OSError:
        return {"exists": False, "offset": 0, "text": "", "reset": offset > 0}
    return {
        "exists": True,
        "offset": start + len(data),
        "text": data.decode(errors="replace"),
        "reset": reset or offset < 0,
    }


def file_list(folder: str) -> list[dict[str, Any]]:
    """The files in an experiment's folder (not the lock), relative paths and sizes.
    Symlinks are listed but not followed into folders."""
    out: list[dict[str, Any]] = []
    for top, dirs, files in os.walk(folder):
        dirs.sort()
        rel_top = os.path.relpath(top, folder)
        for name in sorted(files):
            if name in _HIDDEN:
                continue
            rel = name if rel_top == "." else f"{rel_top}/{name}"
            try:
                size = os.stat(os.path.join(top, name)).st_size
            except OSError:
                size = None  # a link to nothing, or out of the tree: its preview says 404
            out.append({"path": rel, "size": size})
            if len(out) >= _MAX_FILES:
                return out
    return out


def preview(path: str) -> dict[str, Any]:
    """How to show the file at ``path`` (already checked to be inside the tree):
    ``kind`` is image, json, csv, text or binary, with what that kind shows."""
    name = os.path.basename(path).lower()
    size = os.path.getsize(path)
    if name.endswith(_IMAGES):
        return {"kind": "image", "size": size}
    with open(path, "rb") as f:
        head = f.read(_TEXT_PREVIEW + 1)
    cut = len(head) > _TEXT_PREVIEW
    head = head[:_TEXT_PREVIEW]
    if b"\0" in head:
        return {"kind": "binary", "size": size}
    text = head.decode(errors="replace")
    if name.endswith(".json") and not cut:
        try:
            data = json.loads(text)
        except ValueError:
            pass
        else:
            text = json.dumps(redact(data), indent=1)
            return {"kind": "json", "size": size, "text": text, "cut": False}
    if name.endswith((".csv", ".tsv")):
        return {"kind": "csv", "size": size, **_csv(text, "\t" if name.endswith(".tsv") else ",")}
    return {"kind": "text", "size": size, "text": text, "cut": cut}


def _csv(text: str, delimiter: str) -> Mapping[str, Any]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows: list[list[str]] = []
    more = False
    for row in reader:
        if len(rows) > _CSV_ROWS:  # the header and _CSV_ROWS rows are shown
            more = True
            break
        rows.append(row)
    return {"header": rows[0] if rows else [], "rows": rows[1:], "more": more}
