"""Splitting a migration into statements (as Flyway's parser does) so each can be executed on its
own, errors point at a line, and statements that cannot run in a transaction are recognised."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from restore_assets.flyway.errors import FlywayError
from restore_assets.flyway.lexer import FLYWAY_POSTGRES, Span, lex, split_lines

if TYPE_CHECKING:
    from restore_assets.flyway.resolver import ResolvedMigration

# The statements Flyway 10.17.3 runs outside a transaction
# (PostgreSQLParser.detectCanExecuteInTransaction, on the keywords outside parentheses). Not
# REINDEX ... CONCURRENTLY: Flyway runs it in a transaction, where PostgreSQL refuses it.
_NON_TRANSACTIONAL = re.compile(
    r"^(?:CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY"
    r"|DROP\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY"
    r"|REINDEX\s+(?:\(.*?\)\s*|VERBOSE\s+)?(?:SCHEMA|DATABASE|SYSTEM)\b"
    r"|(?:CREATE|DROP)\s+(?:DATABASE|TABLESPACE|SUBSCRIPTION)\b"
    r"|ALTER\s+SYSTEM\b"
    r"|VACUUM\b"
    r"|DISCARD\s+ALL\b)",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True)
class Statement:
    sql: str
    line: int  # line of the statement's first character in the file (1-based)
    code_start: int = 0  # where in `sql` the code starts, after leading comments and blanks
    copy_data: str | None = None  # the data lines of COPY ... FROM stdin, to send with it

    @property
    def transactional(self) -> bool:
        return not _NON_TRANSACTIONAL.match(self.code)

    @property
    def code(self) -> str:
        """The statement without leading comments and whitespace."""
        return self.sql[self.code_start :]

    def line_of(self, position: int) -> int:
        """File line of a 1-based character position inside this statement (server errors)."""
        return self.line + self.sql[: max(position - 1, 0)].count("\n")


def split_statements(text: str) -> list[Statement]:
    """Statements separated by `;` outside quotes, comments, parentheses and BEGIN ATOMIC
    bodies, COPY ... FROM stdin with its data; statements of comments only are dropped."""
    return [_statement(text, span) for span in lex(split_lines(text), FLYWAY_POSTGRES)]


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
