"""Splitting a migration into statements (as Flyway's parser does) so each can be executed on its
own, errors point at a line, and statements that cannot run in a transaction are recognised."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from restore_assets.flyway.errors import FlywayError
from restore_assets.flyway.lexer import FLYWAY_POSTGRES, Lexer, Span, split_lines

if TYPE_CHECKING:
    from restore_assets.flyway.resolver import ResolvedMigration

# The statements Flyway 10.17.3 runs outside a transaction
# (PostgreSQLParser.detectCanExecuteInTransaction): patterns Java `matches()` against the
# statement's first keywords, each added in turn (Parser.getNextStatement's
# simplifiedStatement): only words outside parentheses, comments and quotes, upper-cased, at
# most TRANSACTIONAL_DETECTION_CUTOFF of them. Not REINDEX ... CONCURRENTLY: Flyway runs it in a
# transaction, where PostgreSQL refuses it.
_NON_TRANSACTIONAL = re.compile(
    r"(?:CREATE|DROP) (?:DATABASE|TABLESPACE|SUBSCRIPTION)"
    r"|ALTER SYSTEM"
    r"|(?:CREATE|DROP)(?: UNIQUE)? INDEX CONCURRENTLY"
    r"|REINDEX(?: VERBOSE)? (?:SCHEMA|DATABASE|SYSTEM)"
    r"|VACUUM"
    r"|DISCARD ALL"
)
TRANSACTIONAL_DETECTION_CUTOFF = 10  # Parser.getTransactionalDetectionCutoff
# What Parser.readToken passes over or reads as one token before the next word: blanks, a `--`
# comment, quotes (`E'...'` with backslash escapes), dollar quotes; `/*` comments nest and are
# handled apart. A word (readKeyword, plus `.part`s) is a keyword only if all letters or `_`.
_SKIP = re.compile(
    r"""\s+|--[^\r\n]*|[eE]'(?:[^'\\]|\\[\s\S]|'')*'?|'(?:[^']|'')*'?|"(?:[^"]|"")*"?"""
    r"|(\$(?:[^\W\d]\w*)?\$)[\s\S]*?(?:\1|$)"
)
_WORD = re.compile(r"""[^\W\d][\w$]*(?:\.(?:"[^"]*"|[\w$]+))*""")
_COMMENT_MARK = re.compile(r"/\*|\*/")


def leading_keywords(code: str, limit: int = TRANSACTIONAL_DETECTION_CUTOFF) -> list[str]:
    """The first `limit` keywords of a statement outside parentheses, upper-cased, as Flyway's
    parser collects them."""
    words: list[str] = []
    depth, i, n = 0, 0, len(code)
    while i < n and len(words) < limit:
        if code.startswith("/*", i):
            level, i = 1, i + 2
            while level and (mark := _COMMENT_MARK.search(code, i)):
                level += 1 if mark.group() == "/*" else -1
                i = mark.end()
            if level:
                break
            continue
        if (skip := _SKIP.match(code, i)) and skip.end() > i:
            i = skip.end()
            continue
        if (word := _WORD.match(code, i)) is not None:
            text = word.group()
            if depth == 0 and all(c.isalpha() or c == "_" for c in text):
                words.append(text.upper())
            i = word.end()
            continue
        depth += {"(": 1, ")": -1}.get(code[i], 0)
        i += 1
    return words


def runs_in_transaction(code: str) -> bool:
    """False when some first keywords of `code` are one of Flyway's non-transactional forms."""
    words = leading_keywords(code)
    return not any(
        _NON_TRANSACTIONAL.fullmatch(" ".join(words[:k])) for k in range(1, len(words) + 1)
    )


@dataclass(frozen=True)
class Statement:
    sql: str
    line: int  # line of the statement's first character in the file (1-based)
    code_start: int = 0  # where in `sql` the code starts, after leading comments and blanks
    copy_data: str | None = None  # the data lines of COPY ... FROM stdin, to send with it

    @property
    def transactional(self) -> bool:
        return runs_in_transaction(self.code)

    @property
    def code(self) -> str:
        """The statement without leading comments and whitespace."""
        return self.sql[self.code_start :]

    def line_of(self, position: int) -> int:
        """File line of a 1-based character position inside this statement (server errors)."""
        return self.line + self.sql[: max(position - 1, 0)].count("\n")


def split_statements(text: str) -> list[Statement]:
    """Statements separated by `;` outside quotes, comments, parentheses and BEGIN ATOMIC
    bodies, COPY ... FROM stdin with its data; statements of comments only are dropped. A
    statement left open at the end (Parser.getNextStatement) is refused before any runs."""
    lexer = Lexer(FLYWAY_POSTGRES)
    spans = [span for line in split_lines(text) for span in lexer.feed(line)]
    if (line := lexer.incomplete_at) is not None:
        raise FlywayError(
            f"Incomplete statement at line {line}: parentheses or a BEGIN ATOMIC body are "
            "still open at the end of the script (Flyway's parser takes every `$` for a dollar "
            "quote, so a `$1` parameter in a BEGIN ATOMIC body swallows the rest: write the "
            "body between $$ quotes instead)"
        )
    return [_statement(text, span) for span in spans + lexer.finish()]


def _statement(text: str, span: Span) -> Statement:
    assert isinstance(span, Span)  # the Flyway dialect has no meta-commands
    data = None if span.copy_data is None else text[slice(*span.copy_data)]
    return Statement(text[span.start : span.end], span.line, span.code - span.start, data)


def is_transactional(
    migration: ResolvedMigration, statements: list[Statement], mixed: bool
) -> bool:
    """Whether the script runs in one transaction; mixing both kinds is refused unless `mixed`,
    as Flyway refuses it."""
    kinds = {s.transactional for s in statements}
    if len(kinds) == 2 and not mixed:
        offending = next(s for s in statements if not s.transactional)
        raise FlywayError(
            f"Detected both transactional and non-transactional statements within the same "
            f"migration (even though mixed is false). Offending statement in {migration.script} "
            f"at line {offending.line}: {offending.code.splitlines()[0]}"
        )
    return False not in kinds  # mixed=true with both kinds runs the whole script in autocommit
