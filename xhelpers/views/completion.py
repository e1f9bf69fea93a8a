"""Shell completion for ``./run.py``: bash, zsh and fish, for names with ``=`` and ``/``.

Importing this module replaces click's bash, zsh and fish classes (process-wide, through
``click.shell_completion.add_completion_class``), so ``_XHELPERS_COMPLETE=bash_source
./run.py`` gives these scripts. What they fix in click's:

- bash splits words at the characters of ``COMP_WORDBREAKS`` (``=`` and ``:`` among them),
  so for ``sgd/lr=0.`` click saw ``0.``. The script sends ``COMP_LINE`` up to the cursor;
  the word is rebuilt from it (quotes and backslashes as bash reads them), click completes
  the whole word, and only the part after the last word break goes back, which is the part
  bash replaces. A completion ending in ``/`` (a folder of names) gets no space after it.
- zsh and fish ran the program found on ``PATH`` under its bare name, which ``./run.py``
  is not; the scripts run the command as it is typed on the line (``./run.py``,
  ``~/study/run.py``, ``run.py`` on ``PATH``). zsh adds no space after a folder either.

Called with only ``COMP_WORDS`` and ``COMP_CWORD`` (click's protocol), they answer as
click's classes do.
"""

from __future__ import annotations

import os
import re
from typing import Any, ClassVar

from click.shell_completion import (
    BashComplete,
    CompletionItem,
    FishComplete,
    ZshComplete,
    add_completion_class,
)

__all__ = ["XBashComplete", "XFishComplete", "XZshComplete", "split_line"]

# Bash's default; only the non-blank, non-quote characters of it break a word.
_DEFAULT_WORDBREAKS = " \t\n\"'><=;|&(:"

_SOURCE_BASH = """\
%(complete_func)s() {
    local IFS=$'\\n'
    local response completion type value
    local prog=$1
    [[ $prog == '~/'* ]] && prog=$HOME/${prog#'~/'}

    response=$(env COMP_LINE="${COMP_LINE:0:COMP_POINT}" COMP_WORDBREAKS="$COMP_WORDBREAKS" \
COMP_WORDS="${COMP_WORDS[*]}" COMP_CWORD="$COMP_CWORD" \
%(complete_var)s=bash_complete "$prog" 2>/dev/null)

    for completion in $response; do
        type=${completion%%%%,*}
        value=${completion#*,}
        if [[ $type == 'dir' ]]; then
            COMPREPLY=()
            compopt -o dirnames
        elif [[ $type == 'file' ]]; then
            COMPREPLY=()
            compopt -o default
        elif [[ $type == 'plain' ]]; then
            COMPREPLY+=("$value")
            [[ $value == */ ]] && compopt -o nospace
        fi
    done

    return 0
}

%(complete_func)s_setup() {
    complete -o nosort -F %(complete_func)s %(prog_name)s
}

%(complete_func)s_setup;
"""

_SOURCE_ZSH = """\
#compdef %(prog_name)s

%(complete_func)s() {
    local -a completions
    local -a completions_nospace
    local -a completions_with_descriptions
    local -a response
    local prog=${(Q)words[1]}
    [[ $prog == '~/'* ]] && prog=$HOME/${prog#'~/'}

    response=("${(@f)$(env COMP_WORDS="${words[*]}" COMP_CWORD=$((CURRENT-1)) \
%(complete_var)s=zsh_complete "$prog" 2>/dev/null)}")

    for type key descr in ${response}; do
        if [[ "$type" == "plain" ]]; then
            if [[ "$descr" != "_" ]]; then
                completions_with_descriptions+=("$key":"$descr")
            elif [[ "$key" == */ ]]; then
                completions_nospace+=("$key")
            else
                completions+=("$key")
            fi
        elif [[ "$type" == "dir" ]]; then
            _path_files -/
        elif [[ "$type" == "file" ]]; then
            _path_files -f
        fi
    done

    if [ -n "$completions_with_descriptions" ]; then
        _describe -V unsorted completions_with_descriptions -U
    fi

    if [ -n "$completions" ]; then
        compadd -U -V unsorted -a completions
    fi

    if [ -n "$completions_nospace" ]; then
        compadd -U -S '' -V unsorted -a completions_nospace
    fi
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    # autoload from fpath, call function directly
    %(complete_func)s "$@"
else
    # eval/source/. command, register function for later
    compdef %(complete_func)s %(prog_name)s
fi
"""

_SOURCE_FISH = """\
function %(complete_func)s;
    set -l prog (commandline -opc)[1];
    set prog (string replace -r -- '^~/' "$HOME/" $prog);
    set -l cur (commandline -ct);
    set -l response (env %(complete_var)s=fish_complete COMP_WORDS=(commandline -cp) \
COMP_CWORD="$cur" $prog 2>/dev/null);

    for completion in $response;
        set -l metadata (string split -m 1 "," -- $completion);

        if test $metadata[1] = "dir";
            __fish_complete_directories $metadata[2];
        else if test $metadata[1] = "file";
            __fish_complete_path $metadata[2];
        else if test $metadata[1] = "plain";
            echo $metadata[2];
        end;
    end;
end;

complete --no-files --command %(prog_name)s --arguments "(%(complete_func)s)";
"""


def split_line(line: str, breaks: str = _DEFAULT_WORDBREAKS) -> tuple[list[str], str, int, str]:
    """Read a command line up to the cursor as bash does: ``(words, word, cut, quote)``.

    ``words`` are the complete words and ``word`` the one being typed, unquoted. Bash
    (readline) replaces the end of ``word`` from index ``cut``: after the last word break
    character that is not quoted, or after the quote still open. ``quote`` is that open
    quote (``'`` or ``"``), or ``""``.
    """
    stops = set(breaks) - set(" \t\n\"'")
    words: list[str] = []
    chars: list[str] | None = None  # the current word, None between words
    quote = ""
    cut = quote_cut = 0
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        i += 1
        if chars is None:
            if c in " \t\n":
                continue
            chars, cut = [], 0
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                chars.append(c)
        elif quote == '"':
            if c == '"':
                quote = ""
            elif c == "\\" and i < n and line[i] in '$`"\\':
                chars.append(line[i])
                i += 1
            elif c != "\\" or i < n:
                chars.append(c)
        elif c in " \t\n":
            words.append("".join(chars))
            chars = None
        elif c == "\\":
            if i < n:
                if line[i] != "\n":
                    chars.append(line[i])
                i += 1
        elif c in "'\"":
            quote = c
            quote_cut = len(chars)
        else:
            chars.append(c)
            if c in stops:
                cut = len(chars)
    if quote:
        cut = quote_cut
    return words, "".join(chars or []), cut, quote


def _whole_words(items: list[CompletionItem[Any]], incomplete: str) -> list[CompletionItem[Any]]:
    """Click completes ``--opt=va`` with the values alone; shells replace the whole word."""
    if not (incomplete.startswith("-") and "=" in incomplete):
        return items
    head = incomplete.partition("=")[0] + "="
    return [
        CompletionItem(head + str(item.value), type=item.type, help=item.help)
        if item.type == "plain"
        else item
        for item in items
    ]


_UNSAFE = re.compile(r"[^\w./=:,+@%^-]")


def _quote_for_bash(text: str, quote: str) -> str:
    """``text`` as bash must read it where the word being completed is (after ``quote``)."""
    if quote == "'":
        return text
    if quote == '"':
        return re.sub(r'([$`"\\])', r"\\\1", text)
    return _UNSAFE.sub(lambda m: "\\" + m.group(), text)


class XBashComplete(BashComplete):
    """Bash: the word rebuilt from ``COMP_LINE``, the answer cut at bash's word break."""

    source_template: ClassVar[str] = _SOURCE_BASH
    _from_line = False  # COMP_LINE given: the answer is cut where bash replaces
    _word = ""
    _cut = 0
    _quote = ""

    def get_completion_args(self) -> tuple[list[str], str]:
        line = os.environ.get("COMP_LINE")
        if line is None:  # click's protocol: COMP_WORDS and COMP_CWORD only
            return super().get_completion_args()
        point = os.environ.get("COMP_POINT", "")
        if point.isdigit():
            line = line[: int(point)]
        breaks = os.environ.get("COMP_WORDBREAKS", _DEFAULT_WORDBREAKS)
        words, self._word, self._cut, self._quote = split_line(line, breaks)
        self._from_line = True
        return words[1:], self._word

    def get_completions(self, args: list[str], incomplete: str) -> list[CompletionItem[Any]]:
        return _whole_words(super().get_completions(args, incomplete), incomplete)

    def format_completion(self, item: CompletionItem[Any]) -> str:
        if item.type != "plain" or not self._from_line:
            return super().format_completion(item)
        value, head = str(item.value), self._word[: self._cut]
        if value.startswith(head):
            value = value[len(head) :]
        return f"plain,{_quote_for_bash(value, self._quote)}"


class XZshComplete(ZshComplete):
    """Zsh: runs the command as typed; no space after a folder."""

    source_template: ClassVar[str] = _SOURCE_ZSH

    def get_completions(self, args: list[str], incomplete: str) -> list[CompletionItem[Any]]:
        return _whole_words(super().get_completions(args, incomplete), incomplete)


class XFishComplete(FishComplete):
    """Fish: runs the command as typed."""

    source_template: ClassVar[str] = _SOURCE_FISH

    def get_completions(self, args: list[str], incomplete: str) -> list[CompletionItem[Any]]:
        return _whole_words(super().get_completions(args, incomplete), incomplete)


for _cls in (XBashComplete, XZshComplete, XFishComplete):
    add_completion_class(_cls)
