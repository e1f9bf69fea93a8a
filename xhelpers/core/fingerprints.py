"""What an experiment is: its function, bound arguments and code, described and fingerprinted.

Computed in the main process for every experiment to run (the metafile's
``fingerprint``, ``function``, ``arguments``, ``fingerprint_scope`` and
``fingerprints``), and for every finished one when a run or ``-l`` checks for stale
results, so the common case is kept cheap: what a function's code hashes to is looked
up once per function, not once per experiment.

What the fingerprint covers is the run's ``config.fingerprint`` scope, narrowest first:

- ``arguments``: the function's module-qualified name and its bound arguments (the
  only scope before scopes existed: its fingerprint is the one older metafiles hold);
- ``code``: also the exact source text of the function (through partials, and
  ``functools.wraps`` decorators); without source, its bytecode; a builtin, its name
  only. An experiment object with an ``xh_code_files()`` method (a command) is
  covered by the contents of the files it names instead;
- ``module``: also the whole source file of the module that defines the function;
- ``git``: also the commit of the git repository holding that file, and its tracked
  changes not committed yet (outside a repository, or before its first commit: the
  module's file, as ``module``).

A result is compared at its own scope when that is the run's; otherwise at the
widest scope both cover (older metafiles, which record no scope, at ``arguments``),
so changing the setting never turns results stale by itself.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import os
import stat
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # at run time imported where used: a SLURM task needs only qualname
    from xhelpers.config import BaseConfig, FingerprintScope

__all__ = ["Fingerprints", "describe", "fingerprint", "qualname"]

logger = logging.getLogger(__name__)


_json_str: Callable[[str], str] = json.encoder.encode_basestring_ascii  # as json.dumps(str)

_takes_config: dict[Any, bool] = {}


_T = TypeVar("_T")


def _once(cache: dict[Any, _T], func: Any, compute: Callable[[Any], _T]) -> _T:
    """``compute(func)`` once per function object in this process: a sweep is thousands
    of partials of a few functions, and what is asked of each never changes."""
    try:
        return cache[func]
    except KeyError:
        value = cache[func] = compute(func)
        return value
    except TypeError:  # an unhashable callable
        return compute(func)


def _accepts_config(func: Callable[..., Any]) -> bool:
    return _once(_takes_config, func, _reads_config)  # (a signature costs ~10 us)


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
    fn: Callable[..., Any], base_config: BaseConfig, fingerprints: Fingerprints | None = None
) -> tuple[str, bool, BaseConfig | None]:
    """Describe an experiment in the main process.

    Returns the JSON members (fingerprint, function, bound arguments, fingerprint
    scope and the fingerprint at each scope it covers), whether it takes ``config=``,
    and its own config when its partial binds a ``config`` dict (which then updates the
    run's config for this experiment alone). ``fingerprints``: the run's, else one at
    ``base_config.fingerprint``.
    """
    fps = fingerprints if fingerprints is not None else Fingerprints(base_config.fingerprint)
    func: Any = fn
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    if isinstance(fn, functools.partial):
        func, args, kwargs = fn.func, fn.args, dict(fn.keywords)
    own_config = None
    if "config" in kwargs:
        from xhelpers.config import BaseConfig

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
    text = _text(name, args, kwargs)
    parts = {level: _digest(text + fps.suffix(fn, level)) for level in fps.levels}
    # The fingerprint comes first: the metafile's head holds status and fingerprint, so
    # a stale result is found by reading a few bytes.
    members = (
        f'"fingerprint": "{parts[fps.scope]}", '
        f'"function": {_json_str(name)}, "arguments": {arguments}, '
        f'"fingerprint_scope": "{fps.scope}", "fingerprints": {json.dumps(parts)}'
    )
    return members, _accepts_config(func), own_config


def fingerprint(fn: Callable[..., Any], scope: FingerprintScope = "code") -> str:
    """A short hash of what an experiment is, at ``scope`` (see the module's docstring).

    Equal definitions give equal fingerprints in every process and run; a result
    whose fingerprint differs from its experiment's current one is stale. For many
    experiments, or the ``git`` scope, one :class:`Fingerprints` is cheaper.
    """
    return Fingerprints(scope)(fn)


# The scopes a metafile written at each one records, narrowest first: module and git
# each cover code, but not each other.
_LEVELS: dict[str, tuple[FingerprintScope, ...]] = {
    "arguments": ("arguments",),
    "code": ("arguments", "code"),
    "module": ("arguments", "code", "module"),
    "git": ("arguments", "code", "git"),
}


class Fingerprints:
    """Fingerprints of experiments at one scope, for one run or one view.

    What can change on disk under a function already imported (the repository's
    state, a command's files) is read once per instance: make one per run or view, so
    a notebook sees an edit at its next call and a run agrees with itself.
    """

    def __init__(self, scope: FingerprintScope = "code") -> None:
        from xhelpers.config import FINGERPRINT_SCOPES

        if scope not in FINGERPRINT_SCOPES:
            raise ValueError(
                f"fingerprint scope must be one of {FINGERPRINT_SCOPES}, not {scope!r}"
            )
        self.scope: FingerprintScope = scope
        self.levels = _LEVELS[scope]
        self._suffixes: dict[str, dict[Any, str]] = {level: {} for level in FINGERPRINT_SCOPES}
        self._older_first = False
        self._files: dict[str, str | None] = {}
        self._git: dict[str, str | None] = {}

    def __call__(self, fn: Callable[..., Any]) -> str:
        """The fingerprint at this scope: what a current result's metafile head holds."""
        return self._quick(fn, self.scope)

    def at(self, fn: Callable[..., Any], level: FingerprintScope) -> str:
        """The fingerprint at ``level``, whatever this instance's scope."""
        suffix = self.suffix(fn, level)
        if isinstance(fn, functools.partial):
            return _fingerprint(_cached_qualname(fn.func), fn.args, fn.keywords, suffix)
        return _fingerprint(qualname(fn), (), {}, suffix)

    def head_scope(self, fn: Callable[..., Any], head: str) -> FingerprintScope | None:
        """The scope at which a metafile head's fingerprint shows its result current.

        None means the head alone cannot tell: :meth:`compare` the whole metafile. A
        head that holds the arguments-only fingerprint was written at that scope (or
        before scopes existed), so it is compared there, with no metafile parsed:
        results from before an upgrade stay as cheap to check as they were.
        """
        if self.scope == "arguments":
            return "arguments" if head == self._quick(fn, "arguments") else None
        # A tree is mostly of one kind (written before this scope, or at it): try the
        # kind the last result was first, so each costs one hash.
        first: FingerprintScope = "arguments" if self._older_first else self.scope
        second: FingerprintScope = self.scope if self._older_first else "arguments"
        if head == self._quick(fn, first):
            return first
        if head == self._quick(fn, second):
            self._older_first = not self._older_first
            return second
        return None

    def _quick(self, fn: Callable[..., Any], level: FingerprintScope) -> str:
        if type(fn) is functools.partial:  # a sweep's experiments: kept to dict lookups
            func = fn.func
            try:
                suffix = self._suffixes[level][func]
            except (KeyError, TypeError):
                suffix = self.suffix(fn, level)
            return _fingerprint(_cached_qualname(func), fn.args, fn.keywords, suffix)
        return self.at(fn, level)

    def compare(self, fn: Callable[..., Any], meta: Mapping[str, Any]) -> tuple[bool, str]:
        """Whether a done result's metafile matches ``fn`` now, and the scope compared at.

        At the metafile's own scope when it is this one, else at the widest scope both
        cover; a metafile that records no scope was written at ``arguments``.
        """
        head = meta.get("fingerprint")
        scope = meta.get("fingerprint_scope")
        recorded = meta.get("fingerprints")
        if not isinstance(scope, str) or not isinstance(recorded, dict):
            scope, recorded = "arguments", {"arguments": head}
        if scope == self.scope:
            return head == self(fn), scope
        for level in reversed(self.levels):
            if isinstance(recorded.get(level), str):
                return recorded[level] == self.at(fn, level), level
        return False, self.scope  # nothing in common (a hand-edited metafile)

    def is_current(self, fn: Callable[..., Any], meta: Mapping[str, Any]) -> bool:
        """Whether a done result's metafile matches ``fn`` now (no fingerprint: it does)."""
        head = meta.get("fingerprint")
        if not isinstance(head, str) or self.head_scope(fn, head) is not None:
            return True
        return self.compare(fn, meta)[0]

    def suffix(self, fn: Callable[..., Any], level: FingerprintScope) -> str:
        """What ``level`` adds to the arguments' text before hashing ("" for arguments)."""
        cache = self._suffixes[level]
        key = fn.func if type(fn) is functools.partial else fn
        try:
            return cache[key]
        except KeyError:
            suffix = cache[key] = self._make_suffix(key, level)
            return suffix
        except TypeError:  # an unhashable callable
            return self._make_suffix(key, level)

    def _make_suffix(self, fn: Any, level: FingerprintScope) -> str:
        if level == "arguments":  # cached all the same: the head's lookup then never misses
            return ""
        owner = _code_owner(fn)
        files = getattr(owner, "xh_code_files", None)
        if files is not None:  # a command: its code is the files it names
            folder, named = files()
            code = self._files_digest(named)
            wide = (self._git_digest(folder) or code) if level == "git" else code
        else:
            code = _code_digest(owner)
            if level == "module":
                wide = _module_digest(owner)
            elif level == "git":
                wide = self._git_digest(_source_folder(owner)) or _module_digest(owner)
            else:
                wide = ""
        return f"\0{level}\0{code}" + (f"\0{wide}" if level != "code" else "")

    def _files_digest(self, named: Iterable[tuple[str, str]]) -> str:
        parts = []
        for word, path in named:
            try:
                digest = self._files[path]
            except KeyError:
                digest = self._files[path] = _file_digest(path)
            if digest is not None:  # a file not there (yet) is no code
                parts.append(f"{word}\0{digest}")
        return _digest("\0".join(parts)) if parts else "-"

    def _git_digest(self, folder: str) -> str | None:
        try:
            return self._git[folder]
        except KeyError:
            state = self._git[folder] = _git_state(folder)
        if state is None:
            logger.warning(
                "fingerprint scope 'git': %s is in no git repository with a commit; "
                "its experiments' fingerprints cover what scope 'module' does instead",
                folder,
            )
        return state


def _code_owner(fn: Any) -> Any:
    # The callable whose code counts: through partials (nested ones of partial
    # subclasses are not flattened by functools), down to one that names its files.
    while isinstance(fn, functools.partial) and getattr(fn, "xh_code_files", None) is None:
        fn = fn.func
    return fn


_code_digests: dict[Any, str] = {}
_module_digests: dict[Any, str] = {}


def _code_digest(func: Any) -> str:
    return _once(_code_digests, func, _digest_code)  # a function object's code is fixed


def _digest_code(func: Any) -> str:
    source = _source(func)
    if source is not None:
        return _digest("source\0" + source)
    code = getattr(_unwrapped(func), "__code__", None)
    if isinstance(code, types.CodeType):  # defined in a REPL or exec'd: no source to read
        return _digest(b"bytecode\0" + _code_bytes(code))
    return "-"  # a builtin or C function: its name (in the arguments' text) is all there is


def _source(func: Any) -> str | None:
    # A callable instance's code is its class's.
    for target in (func, type(func)):
        try:
            return inspect.getsource(target)
        except Exception:  # OSError, TypeError, or whatever its tokenizer meets
            continue
    return None


def _code_bytes(code: types.CodeType) -> bytes:
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            parts.append(_code_bytes(const))
        elif isinstance(const, frozenset):  # iteration order varies between processes
            parts.append(repr(sorted(map(repr, const))).encode())
        else:
            parts.append(repr(const).encode())
    return b"\0".join(parts)


def _unwrapped(func: Any) -> Any:
    try:
        return inspect.unwrap(func)
    except ValueError:  # a __wrapped__ cycle
        return func


def _source_file(func: Any) -> str | None:
    for target in (_unwrapped(func), type(func)):
        try:
            path = inspect.getsourcefile(target)
        except TypeError:  # a builtin
            continue
        if path:
            return os.path.abspath(path)
    return None


def _source_folder(func: Any) -> str:
    path = _source_file(func)
    return os.path.dirname(path) if path else os.getcwd()


def _module_digest(func: Any) -> str:
    return _once(_module_digests, func, _digest_module)


def _digest_module(func: Any) -> str:
    path = _source_file(func)
    if path is not None:
        try:
            with open(path, "rb") as f:
                return _digest(b"module\0" + f.read())
        except OSError:
            pass
    return _code_digest(func)  # no file to read: what the code scope covers


# A command may name a dataset or a model through {here}: files past this size count
# by their size, so a fingerprint never reads gigabytes.
_FILE_LIMIT = 16 * 1024 * 1024


def _file_digest(path: str) -> str | None:
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > _FILE_LIMIT:
            return f"size {st.st_size}"
        with open(path, "rb") as f:
            return _digest(f.read())
    except OSError:
        return None


def _git_state(folder: str) -> str | None:
    """The commit of the repository holding ``folder``, and a hash of its tracked
    changes when there are any; None outside a repository or before its first commit."""
    import subprocess  # (only the git scope asks: the import is kept off start-up)

    try:
        head = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = head.stdout.splitlines()
        if head.returncode != 0 or len(lines) != 2:
            return None
        top, commit = lines
        # Untracked files do not count: a result tree in the repository changes at
        # every run. --no-ext-diff/--no-textconv/--no-color: the same bytes whatever the
        # user's diff settings.
        diff = subprocess.run(
            ["git", "diff", "HEAD", "--binary", "--no-ext-diff", "--no-textconv", "--no-color"],
            cwd=top,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):  # no git, a hung one
        return None
    if diff.returncode != 0:
        return None
    return f"{commit}+{_digest(diff.stdout)}" if diff.stdout else commit


_qualnames: dict[Any, str] = {}


def _cached_qualname(func: Any) -> str:
    return _once(_qualnames, func, qualname)


_PLAIN = (str, int, float, bool, type(None))


def _text(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    # Plain values (the common case) hash their repr, which is stable for these types
    # and twice as cheap as canonical JSON: checking 100,000 results for staleness
    # must stay close to the cost of reading their heads.
    if all(type(v) in _PLAIN for v in args) and all(type(v) in _PLAIN for v in kwargs.values()):
        return f"{name}\0{args!r}\0{sorted(kwargs.items())!r}"
    return json.dumps(
        [name, _canonical(list(args)), _canonical(dict(kwargs))],
        sort_keys=True,
        separators=(",", ":"),
    )


def _fingerprint(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], suffix: str) -> str:
    # The arguments scope adds nothing: its fingerprint is the one of every metafile
    # written before scopes existed. (_text's plain case inlined: once per result.)
    if all(type(v) in _PLAIN for v in args) and all(type(v) in _PLAIN for v in kwargs.values()):
        text = f"{name}\0{args!r}\0{sorted(kwargs.items())!r}{suffix}"
    else:
        text = _text(name, args, kwargs) + suffix
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _digest(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def _as_dict(config: dict[str, Any] | BaseConfig) -> dict[str, Any]:
    if not isinstance(config, dict):
        return {k: getattr(config, k) for k in config.model_fields_set}
    return config
