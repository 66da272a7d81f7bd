"""Errors of the Flyway-compatible engine: part of the project's one hierarchy (exit code 1)."""

from __future__ import annotations

from restore_assets.errors import RestoreError


class FlywayError(RestoreError):
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
    ):
        super().__init__(message)
        self.script = script
        self.version = version
        self.line = line
        self.sqlstate = sqlstate
        self.relation = relation
