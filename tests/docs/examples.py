"""The shell examples of the documentation: every fenced ``bash`` block of README.md and docs/*.md,
page by page, in document order.

A block is a list of command lines (a trailing backslash continues a line; ``#`` starts a comment).
A block that cannot run on a CPU machine with the bundled data says so on the line just before its
fence: ``<!-- example: not run (needs a GPU) -->``. The block after the README's
``<!-- ci:test-command -->`` marker is the test command itself and is never run by the tests.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))

NOT_RUN = re.compile(r"^\s*<!--\s*example:\s*not run\s*\((?P<reason>.+)\)\s*-->\s*$")
CI_MARKER = "<!-- ci:test-command -->"
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
#: what the tests can run: the command line, and Python scripts or modules
PROGRAMS = ("diffprobe", "python")
_OPERATORS = set("|&;<>()")


@dataclass(frozen=True)
class Command:
    """One command line of a block: where it starts and its arguments (as a POSIX shell splits them)."""

    line: int
    text: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Block:
    """One fenced bash block: its page, the line of its opening fence, its commands, and the reason
    it is not run (None: it is run)."""

    page: str
    line: int
    commands: tuple[Command, ...]
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def split_command(text: str, where: str) -> tuple[str, ...]:
    """``text`` split as a POSIX shell would, refusing what only a shell could run: pipes, redirects,
    several commands, variables and unquoted patterns (write those blocks another way, or mark them).

    Raises:
        ValueError: naming the page and line.
    """
    if "$" in text:
        raise ValueError(f"{where}: a shell variable or prompt ('$') in {text!r}: examples are plain commands")
    raw = shlex.shlex(text, posix=False, punctuation_chars=True)
    raw.whitespace_split = True
    raw.commenters = "#"
    for tok in raw:
        if set(tok) <= _OPERATORS:
            raise ValueError(f"{where}: shell operator {tok!r} in {text!r}: one plain command per line")
        if tok[:1] not in "'\"" and any(c in tok for c in "*?["):
            raise ValueError(f"{where}: unquoted pattern {tok!r} in {text!r}: quote it so that the shell leaves it alone")
    return tuple(shlex.split(text, comments=True))


def blocks_of(page: Path) -> list[Block]:
    """Every ``bash`` block of ``page`` in document order."""
    name = page.relative_to(ROOT).as_posix()
    lines = page.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, fence, lang = i, m["fence"], m["lang"]
        i += 1
        body: list[tuple[int, str]] = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append((i + 1, lines[i]))
            i += 1
        i += 1
        if lang != "bash":
            continue
        before = lines[start - 1] if start else ""
        marker = NOT_RUN.match(before)
        reason = marker["reason"] if marker else ("the CI test command (the whole suite)" if CI_MARKER in before else None)
        out.append(Block(name, start + 1, tuple(_commands(body, f"{name}:{start + 1}")), reason))
    return out


def _commands(body: list[tuple[int, str]], where: str) -> list[Command]:
    cmds: list[Command] = []
    pending: list[str] = []
    first = 0
    for number, text in body:
        if not pending:
            first = number
        if text.rstrip().endswith("\\"):
            pending.append(text.rstrip()[:-1])
            continue
        joined = " ".join([*pending, text]).strip()
        pending = []
        if not joined or joined.startswith("#"):
            continue
        cmds.append(Command(first, joined, ()))
    return cmds


def parsed(block: Block) -> list[Command]:
    """The block's commands with their arguments (only for blocks that run).

    Raises:
        ValueError: a command the tests cannot run (not ``diffprobe``/``python``, or shell syntax).
    """
    out = []
    for c in block.commands:
        where = f"{block.page}:{c.line}"
        argv = split_command(c.text, where)
        if argv[0] not in PROGRAMS:
            raise ValueError(f"{where}: {argv[0]!r} is not run by the tests (only {', '.join(PROGRAMS)}): "
                             "mark the block <!-- example: not run (why) --> or rewrite it")  # fmt: skip
        out.append(Command(c.line, c.text, argv))
    return out


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks_of(page)]
