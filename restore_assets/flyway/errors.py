"""Errors of the Flyway-compatible engine, rooted in its own `FlywayError` (as Flyway's
FlywayException): the engine is a library and knows nothing of the project using it. The project
takes them into its own hierarchy at its adapter (`runbook/flyway_adapter.py`)."""

from __future__ import annotations

import re

_RELATION = re.compile(r'relation "([^"]+)" does not exist')


def missing_relation(message: str) -> str | None:
    """The relation PostgreSQL says does not exist (42P01), for the "baseline missing" diagnosis."""
    found = _RELATION.search(message)
    return found.group(1) if found else None


class FlywayError(RuntimeError):
    """Anything that stops a Flyway command; the message says what to do."""


class MigrationFailed(FlywayError):
    """A migration's SQL failed; names the script and the line of the failing statement."""

    def __init__(
        self,
        message: str,
        *,
        script: str,
        version: str | None,
        line: int | None,
        sqlstate: str | None,
        relation: str | None = None,
        error: BaseException | None = None,
    ):
        super().__init__(message)
        # The database's own error, for the project to say in its own words: its text can
        # quote a row's value (22P02 `invalid input syntax for type integer: "…"`, a DETAIL),
        # so the message above never carries it.
        self.error = error
        self.script = script
        self.version = version
        self.line = line
        self.sqlstate = sqlstate
        self.relation = relation
