"""Every example in the docs (docs/**/*.md and README.md) runs here, as written.

The blocks of each page run in order, in one fresh folder per page (the "study"): a
page is a session a reader could type. What a block does follows from its language,
its first line and an optional marker, an HTML comment on the line just before its
opening fence (invisible on GitHub and on the site)::

    <!-- test: run -->
    ```console
    $ python run.py main -l
    ...
    ```

- A ``python`` (or ``toml``) block whose first line is ``# NAME.py`` (or ``# NAME.toml``,
  ``# NAME.txt``; ``: comment`` may follow) is a file: it is written to NAME in the
  study. A ``run.py`` is then checked with ``python run.py --help``, any other ``.py``
  is compiled and a ``.toml`` parsed. ``file=NAME`` in the marker names the file instead.
- Any other ``python`` block is a snippet, run with ``python`` in the study (which is
  on ``PYTHONPATH``, so ``from run import study`` works); it must exit 0.
- A ``console``, ``bash``, ``sh`` or ``shell`` block marked ``run`` runs in bash: in a
  console block each ``$ `` line is a command and the lines below it, up to the next
  ``$ ``, are its expected output (stdout and stderr together); in a bash block every
  line is a command and the output is not compared. Lines ending in ``\\`` continue.
- A ``text`` or ``console`` block marked ``output`` is the expected output of the
  snippet just before it.
- ``--8<-- "FILE"`` lines (pymdownx.snippets) are replaced by FILE, from the repository
  root, as the site build does.

Marker words, separated by spaces: ``run``; ``output``; ``file=NAME``; ``exit=N`` (every
command, or the snippet, exits N; ``exit=1,0`` gives one code per command in order;
default 0); ``unordered`` (the output lines may come in any order, as parallel
experiments log); ``words`` (compare the words only, for ``ls``); ``unchecked`` (run,
but do not compare the output); ``needs=PROGRAM`` (skip when PROGRAM is not on PATH);
``timeout=SECONDS``; and ``skip: REASON`` (the rest of the comment is the reason; keep
these few: a SLURM cluster, a Slack workspace, an interactive shell).

Output is compared after normalizing what changes from run to run: the study's path
becomes ``/home/me/study``, this machine's host name ``node17``, timestamps ``<time>``,
durations such as ``0.03s`` ``<s>``, runs of spaces one space (so table columns may
differ in width), runs of dashes ``---``. In expected output, ``...`` inside a line
matches any text, and a line that is only ``...`` matches any number of lines.

A ``console``/``bash`` block that runs ``run.py`` or ``xhelpers`` must be marked ``run``
or ``skip``, so no example of a command escapes the suite.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from xhelpers.backends.threads import THREAD_VARIABLES as _THREAD_VARIABLES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
# Blocks marked skip, in all pages together: keep them few. Those that start a server
# (dashboard) or need SSH or SLURM are run for real by test_serve, test_remote, test_slurm_*.
MAX_SKIPPED = 12

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)[^`]*$")
MARKER = re.compile(r"^\s*<!--\s*test:\s*(?P<body>.*?)\s*-->\s*$")
FILE_LINE = re.compile(r"^#\s*(?P<name>[\w.\-/]+\.(?:py|toml|txt))(?:\s*$|\s*:|\s+)")
WORDS = {"run", "output", "unordered", "words", "unchecked"}
OPTIONS = {"file", "exit", "needs", "timeout"}
SHELLS = {"console", "bash", "sh", "shell"}
COMMANDS = re.compile(r"(^|[\s/])(run\.py|xhelpers)(\s|$)|python -m xhelpers", re.M)


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marks: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def file_name(self) -> str | None:
        if "file" in self.marks:
            return self.marks["file"]
        if self.lang in ("python", "py", "toml"):
            first = self.text.split("\n", 1)[0]
            match = FILE_LINE.match(first)
            if match:
                return match["name"]
        return None


def parse_marks(body: str, where: str) -> dict[str, str]:
    if body.startswith("skip"):
        reason = body[4:].lstrip(":").strip()
        return {"skip": reason}
    marks: dict[str, str] = {}
    for word in body.split():
        key, eq, value = word.partition("=")
        if (eq and key in OPTIONS) or (not eq and key in WORDS):
            marks[key] = value
        else:
            raise AssertionError(f"{where}: unknown test marker word {word!r}")
    return marks


def blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence = len(match["indent"]), match["fence"]
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence) and set(lines[i].strip()) == {fence[0]}
        ):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        i += 1
        body = _include_snippets(body)
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marker = MARKER.match(lines[before]) if before >= 0 else None
        where = f"{page.relative_to(ROOT)}:{start + 1}"
        marks = parse_marks(marker["body"], where) if marker else {}
        found.append(Block(page, start + 1, match["info"].lower(), "\n".join(body) + "\n", marks))
    return found


SNIPPET = re.compile(r'^\s*-{1,}8<-{1,}\s+"(?P<path>[^"]+)"\s*$')


def _include_snippets(body: list[str]) -> list[str]:
    """Expand pymdownx.snippets lines (--8<-- "file"), as the site build does."""
    out: list[str] = []
    for line in body:
        match = SNIPPET.match(line)
        out.extend((ROOT / match["path"]).read_text().splitlines() if match else [line])
    return out


# --- comparing output -------------------------------------------------------------------

TIMESTAMP = re.compile(
    r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:[+-]\d\d:\d\d|Z)?"
    r"|\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d"
)
DURATION = re.compile(r"(?<![\w.])\d+\.\d+s\b")


def normalize(text: str, study: Path | None = None) -> list[str]:
    if study is not None:
        text = text.replace(str(study), "/home/me/study")
        host = os.uname().nodename  # what the metafile records
        if host and host != "node17":
            text = re.sub(rf"(?<![\w.-]){re.escape(host)}(?![\w-])", "node17", text)
    text = TIMESTAMP.sub("<time>", text)
    text = DURATION.sub("<s>", text)
    out = [re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n")]
    out = [re.sub(r"-{3,}", "---", line) for line in out]
    while out and not out[0]:
        out.pop(0)
    while out and not out[-1]:
        out.pop()
    return out


def _pattern(line: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in line.split("...")))


def lines_match(expected: list[str], actual: list[str]) -> bool:
    """In order; a line '...' matches any number of lines, '...' in a line any text."""
    memo: dict[tuple[int, int], bool] = {}

    def match(i: int, j: int) -> bool:
        if (i, j) in memo:
            return memo[i, j]
        if i == len(expected):
            result = j == len(actual)
        elif expected[i] == "...":
            result = any(match(i + 1, k) for k in range(j, len(actual) + 1))
        else:
            result = (
                j < len(actual)
                and _pattern(expected[i]).fullmatch(actual[j]) is not None
                and match(i + 1, j + 1)
            )
        memo[i, j] = result
        return result

    return match(0, 0)


def unordered_match(expected: list[str], actual: list[str]) -> bool:
    rest = list(actual)
    for line in expected:
        if line == "...":
            continue
        for k, candidate in enumerate(rest):
            if _pattern(line).fullmatch(candidate):
                del rest[k]
                break
        else:
            return False
    return "..." in expected or not rest


def output_matches(expected: str, actual: str, study: Path, marks: dict[str, str]) -> bool:
    want, got = normalize(expected), normalize(actual, study)
    if "words" in marks:
        return (
            _pattern(" ".join(" ".join(want).split())).fullmatch(" ".join(" ".join(got).split()))
            is not None
        )
    if "unordered" in marks:
        return unordered_match(want, got)
    return lines_match(want, got)


# --- running a page ---------------------------------------------------------------------


class Study:
    """The folder and environment that one page's blocks run in, in order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder / "study"
        self.folder.mkdir()
        home = folder / "home"
        home.mkdir()
        bindir = str(Path(sys.executable).parent)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("XHELPERS_", "_XHELPERS_", "SLURM_", "PYTEST_", "COV_"))
        }
        for name in _THREAD_VARIABLES:  # a page's runs record them: as in a fresh shell
            env.pop(name, None)
        env.update(
            CUDA_VISIBLE_DEVICES="",  # no GPU, whatever this machine has: outputs as shown
            PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}",
            # The study first; then what the suite runs under (a worktree's own xhelpers).
            PYTHONPATH=os.pathsep.join([str(self.folder), *filter(None, [env.get("PYTHONPATH")])]),
            PYTHONUNBUFFERED="1",
            PYTHONDONTWRITEBYTECODE="1",
            COLUMNS="80",
            HOME=str(home),
            TERM="dumb",
            LC_ALL="C.UTF-8",
        )
        self.env = env
        self.last_output: tuple[Block, str] | None = None
        self.snippets = 0

    def run(self, command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            cwd=self.folder,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )


def _exit_codes(block: Block, count: int) -> list[int]:
    codes = [int(c) for c in block.marks.get("exit", "0").split(",")]
    if len(codes) == 1:
        return codes * count
    assert len(codes) == count, f"{block.where}: exit= gives {len(codes)} codes for {count}"
    return codes


def _fail(block: Block, what: str, expected: str, result: str, study: Study) -> None:
    got = "\n".join(normalize(result, study.folder))
    pytest.fail(
        f"{block.where}: {what}\n--- expected (normalized) ---\n"
        + "\n".join(normalize(expected))
        + f"\n--- got (normalized) ---\n{got}\n--- got (raw) ---\n{result}",
        pytrace=False,
    )


def write_file(block: Block, name: str, study: Study) -> None:
    path = study.folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(block.text)
    if name.endswith(".toml"):
        if sys.version_info >= (3, 11):
            import tomllib
        else:
            import tomli as tomllib

        tomllib.loads(block.text)
    elif name.endswith(".py"):
        compile(block.text, str(path), "exec")
        if Path(name).name == "run.py":
            done = study.run([sys.executable, name, "--help"], 60)
            if done.returncode != 0:
                what = f"python {name} --help exited {done.returncode}"
                _fail(block, what, "", done.stdout, study)


def run_snippet(block: Block, study: Study) -> None:
    study.snippets += 1
    script = study.folder.parent / f"snippet_{study.snippets}.py"
    script.write_text(block.text)
    done = study.run([sys.executable, str(script)], float(block.marks.get("timeout", 120)))
    expected_code = _exit_codes(block, 1)[0]
    if done.returncode != expected_code:
        _fail(block, f"the snippet exited {done.returncode}", "", done.stdout, study)
    study.last_output = (block, done.stdout)


def commands_of(block: Block) -> list[tuple[str, str | None]]:
    """(command, expected output or None) of a shell block."""
    lines = block.text.splitlines()
    found: list[tuple[str, list[str] | None]] = []
    console = block.lang == "console"
    i = 0
    while i < len(lines):
        line = lines[i]
        if console and not line.startswith("$ "):
            if not found:
                raise AssertionError(f"{block.where}: console output before any '$ ' command")
            expected = found[-1][1]
            assert expected is not None
            expected.append(line)
            i += 1
            continue
        command = line[2:] if console else line
        while command.endswith("\\") and i + 1 < len(lines):
            i += 1
            command = command[:-1] + "\n" + lines[i]
        i += 1
        if console or (command.strip() and not command.lstrip().startswith("#")):
            found.append((command, [] if console else None))
    return [(c, None if e is None else "\n".join(e)) for c, e in found]


def run_commands(block: Block, study: Study) -> None:
    commands = commands_of(block)
    codes = _exit_codes(block, len(commands))
    timeout = float(block.marks.get("timeout", 120))
    for (command, expected), code in zip(commands, codes, strict=True):
        done = study.run(["bash", "-c", "set -o pipefail\n" + command], timeout)
        what = f"$ {command}"
        # bash may exec the last command itself: a signal's death is then negative
        returncode = 128 - done.returncode if done.returncode < 0 else done.returncode
        if returncode != code:
            _fail(block, f"{what}: exit code {returncode}, expected {code}", "", done.stdout, study)
        checked = expected is not None and "unchecked" not in block.marks
        if checked and not output_matches(expected or "", done.stdout, study.folder, block.marks):
            _fail(block, f"{what}: output differs", expected or "", done.stdout, study)


def check_output(block: Block, study: Study) -> None:
    assert study.last_output is not None, f"{block.where}: 'output' follows no snippet"
    snippet, actual = study.last_output
    study.last_output = None
    if not output_matches(block.text, actual, study.folder, block.marks):
        what = f"the output of the snippet at line {snippet.line} differs"
        _fail(block, what, block.text, actual, study)


def run_block(block: Block, study: Study) -> str | None:
    """Run one block; returns why it did not run, or None."""
    if "skip" in block.marks:
        return block.marks["skip"]
    needs = block.marks.get("needs")
    if needs and shutil.which(needs) is None:
        return f"needs {needs}"
    if "output" in block.marks:
        check_output(block, study)
        return None
    name = block.file_name
    if name is not None:
        write_file(block, name, study)
    elif block.lang in ("python", "py"):
        run_snippet(block, study)
    elif block.lang in SHELLS and "run" in block.marks:
        run_commands(block, study)
    return None


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def runnable_pages() -> list[Path]:
    return [
        p
        for p in PAGES
        if any(b.file_name or b.lang in ("python", "py") or b.marks for b in blocks(p))
    ]


@pytest.mark.parametrize("page", runnable_pages(), ids=_page_id)
def test_examples_run(page: Path, tmp_path: Path) -> None:
    study = Study(tmp_path)
    for block in blocks(page):
        run_block(block, study)


def test_every_example_is_accounted_for() -> None:
    """No command example escapes the suite, and the skipped ones are few and explained."""
    unmarked, skipped = [], []
    for page in PAGES:
        for block in blocks(page):
            if "skip" in block.marks:
                assert block.marks["skip"], f"{block.where}: skip needs a reason"
                skipped.append(f"{block.where}: {block.marks['skip']}")
            elif block.lang in SHELLS and not block.marks and COMMANDS.search(block.text):
                unmarked.append(block.where)
            if "run" in block.marks:
                assert block.lang in SHELLS, f"{block.where}: 'run' is for shell blocks"
    assert not unmarked, "command examples neither run nor skipped: " + ", ".join(unmarked)
    assert len(skipped) <= MAX_SKIPPED, "too many skipped examples:\n" + "\n".join(skipped)


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def test_readme_links_resolve() -> None:
    """README's relative links (into docs/) work on GitHub; mkdocs checks the docs' own."""
    text = (ROOT / "README.md").read_text()
    broken = []
    for match in LINK.finditer(text):
        target = match["target"].split("#", 1)[0]
        if not target or "://" in target or target.startswith("mailto:"):
            continue
        if not (ROOT / target).exists():
            broken.append(target)
    assert not broken, f"README links to missing files: {broken}"


def test_matching_rules() -> None:
    """The comparison itself: ellipses, widths, timings and order."""
    assert lines_match(["a", "...", "d"], ["a", "b", "c", "d"])
    assert lines_match(["a", "...", "b"], ["a", "b"])
    assert not lines_match(["a", "b"], ["a", "b", "c"])
    assert lines_match(normalize("x ... y"), normalize("x anything y"))
    assert normalize("main: 3 succeeded (3 selected, 0.1s)") == normalize(
        "main: 3 succeeded (3 selected, 12.34s)"
    )
    assert normalize("a    b  2026-11-22 00:50:46") == normalize("a b 2024-01-01 10:00:00")
    assert unordered_match(["b", "a"], ["a", "b"])
    assert not unordered_match(["a"], ["a", "b"])


def _config_tables() -> dict[str, tuple[str, str]]:
    """{field: (default cell, where)} of every docs table with 'field' and 'default' columns."""
    found: dict[str, tuple[str, str]] = {}
    for page in PAGES:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not (line.startswith("|") and cells[:1] == ["field"] and "default" in cells):
                continue
            column = cells.index("default")
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                values = [c.strip() for c in row.strip().strip("|").split("|")]
                name = values[0].strip("`")
                if name.endswith("*"):  # "slurm_*": see the other table
                    continue
                found[name] = (values[column], f"{page.relative_to(ROOT)}:{i + 1}")
    return found


def test_config_tables_match_the_model() -> None:
    """The docs' config tables list every BaseConfig field, with its real default."""
    import ast

    from xhelpers.config import BaseConfig

    documented = _config_tables()
    fields = BaseConfig.model_fields
    assert sorted(documented) == sorted(fields), "documented fields differ from BaseConfig's"
    for name, (cell, where) in documented.items():
        match = re.match(r"`([^`]*)`", cell)
        assert match, f"{where}: {name}: the default should start with `value`"
        shown = match.group(1)
        default = fields[name].get_default(call_default_factory=True)
        try:
            value = ast.literal_eval(shown)
        except (ValueError, SyntaxError):
            value = shown  # a bare word: results, WARNING
        if isinstance(default, Path):
            default = str(default)
        assert value == default, f"{where}: {name}: the docs say {shown}, the code {default!r}"
