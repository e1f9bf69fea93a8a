"""Shell completion in real shells: bash always, zsh and fish when installed.

Two kinds of tests per shell: the completion function called as the shell calls it
(bash: ``COMP_WORDS`` split at ``=`` as bash splits them; fish: ``complete -C``), and an
interactive shell in a pseudo-terminal, where keys are typed and the command line that
TAB built is run (``run.py`` prints its arguments instead of running).
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from conftest import write_run_py

from xhelpers.views.completion import split_line

NAMES = [
    *(f"sgd/lr={lr}/seed={s}" for lr in ("0.1", "0.01", "0.001") for s in (0, 1)),
    "baseline/seed=0",
    "baseline/seed=1",
    "single",
    "odd/a b(1)",
]

RUN_PY = f"""
import json, os
if os.environ.get("XH_ECHO_ARGV") and "_XHELPERS_COMPLETE" not in os.environ:
    print("ARGV=" + json.dumps(sys.argv[1:]), flush=True)
    sys.exit(0)
xh.ParametrizedExperiments("study", {{n: ex.no_config for n in {NAMES!r}}})
"""

needs_zsh = pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
needs_fish = pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An executable ./run.py (not on PATH) whose folder is also $HOME, for ~/run.py."""
    path = write_run_py(tmp_path, RUN_PY)
    path.write_text(f"#!{sys.executable}\n" + path.read_text())
    path.chmod(0o755)
    return tmp_path


def source(folder: Path, shell: str) -> Path:
    """The script ``_XHELPERS_COMPLETE={shell}_source ./run.py`` prints, in a file."""
    path = folder / f"complete.{shell}"
    if path.exists():
        return path
    out = subprocess.run(
        ["./run.py"],
        cwd=folder,
        env=dict(os.environ, _XHELPERS_COMPLETE=f"{shell}_source"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    path.write_text(out)
    return path


def shell_env(folder: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(folder),
        "LANG": "C.UTF-8",
        "TERM": "xterm",
        "XH_ECHO_ARGV": "1",
        **extra,
    }


# -- how bash reads the line ------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "words", "word", "cut", "quote"),
    [
        ("./run.py study sgd/lr=0.", ["./run.py", "study"], "sgd/lr=0.", 7, ""),
        ("./run.py study ", ["./run.py", "study"], "", 0, ""),
        ("./run.py  study  sg", ["./run.py", "study"], "sg", 0, ""),
        ("./run.py study 'sgd/lr=0.", ["./run.py", "study"], "sgd/lr=0.", 0, "'"),
        ("./run.py study sgd/lr='0.", ["./run.py", "study"], "sgd/lr=0.", 7, "'"),
        ('./run.py study "a=b" x=y', ["./run.py", "study", "a=b"], "x=y", 2, ""),
        ("./run.py study 'a=b'c", ["./run.py", "study"], "a=bc", 0, ""),
        ("./run.py study a\\=b", ["./run.py", "study"], "a=b", 0, ""),
        ("./run.py study a\\ b:c", ["./run.py", "study"], "a b:c", 4, ""),
        ('./run.py study "a\\"b', ["./run.py", "study"], 'a"b', 0, '"'),
        ("./run.py study --format=j", ["./run.py", "study"], "--format=j", 9, ""),
    ],
)
def test_split_line_as_bash(line: str, words: list[str], word: str, cut: int, quote: str) -> None:
    assert split_line(line) == (words, word, cut, quote)


def test_split_line_with_other_wordbreaks() -> None:
    assert split_line("./run.py study sgd/lr=0.", " \t\n") == (
        ["./run.py", "study"],
        "sgd/lr=0.",
        0,
        "",
    )


# -- bash: the completion function as bash calls it ---------------------------------------

BASH_CALL = """\
source "$XH_SCRIPT"
compopt() { echo "compopt $1 $2"; }  # records what the function asks of bash
readarray -t COMP_WORDS <<< "$XH_WORDS"
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE=$XH_LINE
COMP_POINT=${XH_POINT:-${#COMP_LINE}}
[[ -n $XH_BREAKS ]] && COMP_WORDBREAKS=$XH_BREAKS
COMPREPLY=()
_runpy_completion "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf 'reply %s\\n' "${COMPREPLY[@]}"
"""


def bash_call(
    folder: Path, line: str, words: list[str], point: int | None = None, breaks: str = ""
) -> tuple[list[str], bool]:
    """COMPREPLY and whether ``compopt -o nospace`` was asked, for ``line`` split as ``words``."""
    env = shell_env(
        folder,
        XH_SCRIPT=str(source(folder, "bash")),
        XH_WORDS="\n".join(words),
        XH_LINE=line,
        XH_POINT="" if point is None else str(point),
        XH_BREAKS=breaks,
    )
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", BASH_CALL],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    lines = proc.stdout.splitlines()
    reply = [x.removeprefix("reply ") for x in lines if x.startswith("reply ") and x != "reply "]
    return reply, "compopt -o nospace" in lines


def test_bash_completes_the_part_after_equals_without_space(project: Path) -> None:
    # bash splits "sgd/lr=0." into "sgd/lr", "=", "0." and replaces only "0."
    reply, nospace = bash_call(
        project, "./run.py study sgd/lr=0.", ["./run.py", "study", "sgd/lr", "=", "0."]
    )
    assert reply == ["0.1/", "0.01/", "0.001/"]
    assert nospace


def test_bash_folders_then_names(project: Path) -> None:
    assert bash_call(project, "./run.py study sg", ["./run.py", "study", "sg"]) == (
        ["sgd/"],
        True,
    )
    words = ["./run.py", "study", "baseline/seed", "="]
    assert bash_call(project, "./run.py study baseline/seed=", [*words, ""]) == (["0", "1"], False)
    # a whole name: bash adds the space
    assert bash_call(project, "./run.py study si", ["./run.py", "study", "si"]) == (
        ["single"],
        False,
    )
    assert bash_call(project, "./run.py st", ["./run.py", "st"]) == (["study"], False)


def test_bash_option_values_after_equals(project: Path) -> None:
    words = ["./run.py", "study", "--format", "=", "j"]
    assert bash_call(project, "./run.py study --format=j", words) == (["json"], False)
    words = ["./run.py", "study", "--format", "="]
    reply, _ = bash_call(project, "./run.py study --format=", words)
    assert "json" in reply and "table" in reply


def test_bash_quoted_words_and_escaped_names(project: Path) -> None:
    # in an open quote bash replaces from the quote on: the whole name, unescaped
    words = ["./run.py", "study", "'sgd/lr=0.1"]
    assert bash_call(project, "./run.py study 'sgd/lr=0.1", words) == (["sgd/lr=0.1/"], True)
    words = ["./run.py", "study", '"odd/a']
    assert bash_call(project, './run.py study "odd/a', words) == (["odd/a b(1)"], False)
    # unquoted, the name is inserted as bash must read it
    words = ["./run.py", "study", "odd/a"]
    assert bash_call(project, "./run.py study odd/a", words) == (["odd/a\\ b\\(1\\)"], False)


def test_bash_cursor_inside_the_line_and_wordbreaks_without_equals(project: Path) -> None:
    line = "./run.py study sg --force"
    words = ["./run.py", "study", "sg", "--force"]
    assert bash_call(project, line, words[:3], point=len("./run.py study sg")) == (
        ["sgd/"],
        True,
    )
    # a user who took "=" out of COMP_WORDBREAKS: bash replaces the whole word
    reply, _ = bash_call(
        project,
        "./run.py study sgd/lr=0.",
        ["./run.py", "study", "sgd/lr=0."],
        breaks=" \t\n\"'><;|&(:",
    )
    assert reply == ["sgd/lr=0.1/", "sgd/lr=0.01/", "sgd/lr=0.001/"]


def test_click_protocol_still_answers(project: Path) -> None:
    """COMP_WORDS and COMP_CWORD alone (click's own script, or a simulation) still work."""
    env = dict(
        os.environ,
        _XHELPERS_COMPLETE="bash_complete",
        COMP_WORDS="./run.py study sgd/lr=0.",
        COMP_CWORD="2",
    )
    out = subprocess.run(
        ["./run.py"], cwd=project, env=env, capture_output=True, text=True, timeout=60
    ).stdout
    assert out.split() == ["plain,sgd/lr=0.1/", "plain,sgd/lr=0.01/", "plain,sgd/lr=0.001/"]


# -- interactive shells in a pseudo-terminal ----------------------------------------------

_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-Za-z]|[=>])")


class Terminal:
    """A shell on a pseudo-terminal: type keys, wait for text on the screen."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: become the shell
            try:
                os.chdir(cwd)
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
        self.raw = b""

    def text(self) -> str:
        return _ANSI.sub("", self.raw.decode(errors="replace"))

    def expect(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.text())
            if found:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"no {pattern!r} on the terminal; it shows:\n{self.text()[-2000:]}")
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:  # the shell has exited
                    data = b""
                if not data:
                    pytest.fail(f"the shell ended before {pattern!r}:\n{self.text()[-2000:]}")
                self.raw += data

    def run(self, keys: str, timeout: float = 60) -> list[str]:
        """Type ``keys`` (TABs included) and Enter; the arguments run.py was called with."""
        self.raw = b""
        os.write(self.fd, keys.encode() + b"\r")
        found = self.expect(r"ARGV=(\[.*?\])\r?\n", timeout)
        return list(json.loads(found.group(1)))

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.fd)


def interactive(argv: list[str], folder: Path, env: dict[str, str], prompt: str) -> Terminal:
    term = Terminal(argv, folder, env)
    term.expect(prompt)
    return term


def test_bash_interactive(project: Path) -> None:
    rc = project / "bashrc"
    rc.write_text(f"PS1='READY$ '\nHISTFILE=/dev/null\nsource {source(project, 'bash')}\n")
    env = shell_env(project, INPUTRC="/dev/null")
    term = interactive(["bash", "--noprofile", "--rcfile", str(rc), "-i"], project, env, "READY")
    try:
        # no space after a folder, so the name goes on; "=" is no word break for us
        assert term.run("./run.py study sg\tlr=0.1\tseed=1\t") == ["study", "sgd/lr=0.1/seed=1"]
        assert term.run("./run.py study sgd/lr=0.0\t1\tseed=\t0\t") == [
            "study",
            "sgd/lr=0.01/seed=0",
        ]
        # a space after a whole name; quotes; the program by another path
        assert term.run("./run.py study si\tx") == ["study", "single", "x"]
        assert term.run("./run.py study 'sgd/lr=0.1\tseed=1") == ["study", "sgd/lr=0.1/seed=1"]
        assert term.run(f"{project}/run.py study od\ta\t") == ["study", "odd/a b(1)"]
        assert term.run("~/run.py study --format=j\t") == ["study", "--format=json"]
        # TAB TAB lists what may follow "0."
        term.raw = b""
        os.write(term.fd, b"./run.py study sgd/lr=0.\t\t")
        term.expect(r"0\.1/\s+0\.01/\s+0\.001/")
    finally:
        term.close()


@needs_zsh
def test_zsh_script_calls_the_program_as_typed(project: Path) -> None:
    script = source(project, "zsh")
    text = script.read_text()
    assert "$commands[" not in text  # click's looked run.py up on PATH
    proc = subprocess.run(
        [
            "zsh",
            "-f",
            "-c",
            f"autoload -U compinit; compinit -u -D; source {script}; print -r -- $_comps[run.py]",
        ],
        cwd=project,
        env=shell_env(project),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    assert proc.stdout.strip() == "_runpy_completion"


@needs_zsh
def test_zsh_interactive(project: Path) -> None:
    zdot = project / "zdot"
    zdot.mkdir()
    (zdot / ".zshrc").write_text(
        f"PS1='READY$ '\nautoload -U compinit\ncompinit -u -D\nsource {source(project, 'zsh')}\n"
    )
    env = shell_env(project, ZDOTDIR=str(zdot))
    term = interactive(["zsh", "-i"], project, env, "READY")
    try:
        assert term.run("./run.py study sg\tlr=0.1\tseed=1\t") == ["study", "sgd/lr=0.1/seed=1"]
        assert term.run("./run.py study si\tx") == ["study", "single", "x"]
        assert term.run("~/run.py study --format=j\t") == ["study", "--format=json"]
        assert term.run(f"{project}/run.py study od\ta\t") == ["study", "odd/a b(1)"]
    finally:
        term.close()


def fish_complete(folder: Path, line: str) -> list[str]:
    proc = subprocess.run(
        ["fish", "--no-config", "-c", 'source $XH_SCRIPT; complete -C "$XH_LINE"'],
        cwd=folder,
        env=shell_env(folder, XH_SCRIPT=str(source(folder, "fish")), XH_LINE=line),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    return [x.split("\t")[0] for x in proc.stdout.splitlines()]


@needs_fish
def test_fish_complete(project: Path) -> None:
    assert fish_complete(project, "./run.py study sgd/lr=0.") == [
        "sgd/lr=0.001/",
        "sgd/lr=0.01/",
        "sgd/lr=0.1/",
    ]  # fish sorts
    assert fish_complete(project, "~/run.py study sgd/lr=0.1/") == [
        "sgd/lr=0.1/seed=0",
        "sgd/lr=0.1/seed=1",
    ]
    assert fish_complete(project, "./run.py study 'sgd/lr=0.1") == ["sgd/lr=0.1/"]
    assert fish_complete(project, "./run.py study --format=j") == ["--format=json"]
    assert fish_complete(project, "./run.py st") == ["study"]


@needs_fish
def test_fish_interactive(project: Path) -> None:
    config = project / "config" / "fish"
    (config / "conf.d").mkdir(parents=True)
    shutil.copy(source(project, "fish"), config / "conf.d" / "xhelpers_run_py.fish")
    (config / "config.fish").write_text(
        "function fish_prompt; echo -n 'READY$ '; end\nfunction fish_greeting; end\n"
    )
    env = shell_env(
        project, XDG_CONFIG_HOME=str(project / "config"), XDG_DATA_HOME=str(project / "data")
    )
    term = interactive(["fish", "-i"], project, env, "READY")
    try:
        assert term.run("./run.py study sg\tlr=0.1\tseed=1\t") == ["study", "sgd/lr=0.1/seed=1"]
        assert term.run("./run.py study si\tx") == ["study", "single", "x"]
        assert term.run("~/run.py study --format=j\t") == ["study", "--format=json"]
    finally:
        term.close()
