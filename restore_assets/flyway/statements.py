"""Splitting a migration into statements (as Flyway's parser does) so each can be executed on its
own, errors point at a line, and statements that cannot run in a transaction are recognised."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")
_BEGIN_ATOMIC = re.compile(r"\bBEGIN\s+ATOMIC\b", re.IGNORECASE)
_END = re.compile(r"\bEND\b", re.IGNORECASE)
# flyway-compat.md: statements PostgreSQL refuses inside a transaction block.
_NON_TRANSACTIONAL = re.compile(
    r"^(?:CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY"
    r"|DROP\s+INDEX\s+CONCURRENTLY"
    r"|REINDEX\s+(?:\(.*?\)\s*)?(?:SCHEMA|DATABASE|SYSTEM)\b"
    r"|REINDEX\s+.*\bCONCURRENTLY\b"
    r"|(?:CREATE|DROP)\s+(?:DATABASE|TABLESPACE|SUBSCRIPTION)\b"
    r"|ALTER\s+SYSTEM\b"
    r"|VACUUM\b"
    r"|DISCARD\s+ALL\b)",
    re.IGNORECASE | re.DOTALL,
)
_LEADING_NOISE = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)+", re.DOTALL)


@dataclass(frozen=True)
class Statement:
    sql: str
    line: int  # line of the statement's first character in the file (1-based)

    @property
    def transactional(self) -> bool:
        return not _NON_TRANSACTIONAL.match(self.code)

    @property
    def code(self) -> str:
        """The statement without leading comments and whitespace."""
        return _LEADING_NOISE.sub("", self.sql)

    def line_of(self, position: int) -> int:
        """File line of a 1-based character position inside this statement (server errors)."""
        return self.line + self.sql[: max(position - 1, 0)].count("\n")


def split_statements(text: str) -> list[Statement]:
    """Statements separated by `;` outside quotes, dollar quotes, comments and BEGIN ATOMIC
    bodies. Empty statements (only comments) are dropped."""
    statements: list[Statement] = []
    i, n = 0, len(text)
    start = 0
    atomic_depth = 0
    while i < n:
        ch = text[i]
        if ch == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif ch == "/" and text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif ch == "'":
            escaped = i > 0 and text[i - 1] in "eE" and not _word_char(text, i - 2)
            i += 1
            while i < n:
                if escaped and text[i] == "\\":
                    i += 2
                    continue
                if text[i] == "'":
                    if text.startswith("''", i):
                        i += 2
                        continue
                    break
                i += 1
            i += 1
        elif ch == '"':
            end = text.find('"', i + 1)
            i = n if end < 0 else end + 1
        elif ch == "$" and not _word_char(text, i - 1) and (m := _DOLLAR_TAG.match(text, i)):
            end = text.find(m.group(0), m.end())
            i = n if end < 0 else end + len(m.group(0))
        elif ch in "bB" and not _word_char(text, i - 1) and _BEGIN_ATOMIC.match(text, i):
            atomic_depth += 1
            i = _BEGIN_ATOMIC.match(text, i).end()
        elif atomic_depth and ch in "eE" and not _word_char(text, i - 1) and _END.match(text, i):
            atomic_depth -= 1
            i += 3
        elif ch == ";" and not atomic_depth:
            _add(statements, text, start, i + 1)
            start = i = i + 1
        else:
            i += 1
    _add(statements, text, start, n)
    return statements


def _word_char(text: str, index: int) -> bool:
    return index >= 0 and (text[index].isalnum() or text[index] in "_$")


def _add(statements: list[Statement], text: str, start: int, end: int) -> None:
    chunk = text[start:end]
    stripped = _LEADING_NOISE.sub("", chunk).strip().rstrip(";").strip()
    if not stripped:
        return
    offset = len(chunk) - len(chunk.lstrip())
    line = text.count("\n", 0, start + offset) + 1
    statements.append(Statement(chunk.strip(), line))
