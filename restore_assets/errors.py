"""One error hierarchy for the whole project, rooted in `RestoreError`.

Every error carries the CLI exit code of DESIGN.md's contract (0 ok · 1 failed · 2 Secrets
blocked · 3 configuration error or refused reset · 4 restored but its evidence not written ·
130/143 interrupted by SIGINT/SIGTERM), so the CLI needs a single `except` and a
Dagster failure can carry the same code. No Dagster import here: the core and the Flyway engine
raise these too.
"""

from __future__ import annotations

from restore_assets.redaction import first_line

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BLOCKED = 2
EXIT_CONFIG = 3
EXIT_UNRECORDED = 4


class RestoreError(RuntimeError):
    """Anything that stops a runbook step; the message says what to do."""

    exit_code = EXIT_FAILED


class ConfigError(RestoreError, ValueError):
    """A setting is unusable; the message names the variable."""

    exit_code = EXIT_CONFIG


class SecretsBlocked(RestoreError):
    """Secrets missing or unusable: nothing was touched (runbook §0). `problems`: each unusable
    file's relpath and why (what the request to Ops names)."""

    exit_code = EXIT_BLOCKED

    def __init__(self, message: str, problems: dict[str, str] | None = None):
        super().__init__(message)
        self.problems = problems or {}


class ResetRefused(RestoreError):
    """A non-empty external database and no consent to reset it."""

    exit_code = EXIT_CONFIG


class PreflightFailed(RestoreError):
    """The database cannot take this dump (unreachable, too old, missing extension)."""


class DatabaseUnusable(RestoreError):
    """A database cannot be reached or used (not a DB-API error: what the restore makes of one)."""


class UnsafeScriptError(RestoreError):
    """A Secrets file contains a psql meta-command (or a construct) that pg_dump never emits."""

    def __init__(self, relpath: str, line: int, command: str, why: str | None = None):
        self.relpath, self.line, self.command = relpath, line, command
        what = f"psql meta-command `{command}`" if why is None else command
        why = why or "pg_dump never writes it, and psql would execute it on this host"
        super().__init__(
            f"{relpath}:{line}: refused {what} — {why}. Ask Ops for a clean pg_dump file."
        )


class PsqlError(RestoreError):
    """psql stopped on an error; `relpath`/`line` are as psql reported them, `sqlstate` the
    server's code (None: psql's own error)."""

    def __init__(
        self,
        message: str,
        relpath: str | None = None,
        line: int | None = None,
        sqlstate: str | None = None,
    ):
        self.relpath, self.line, self.sqlstate = relpath, line, sqlstate
        super().__init__(message)


class TargetInUse(RestoreError):
    """Another session held a lock on the target longer than RESTORE_WAIT_SECONDS: the statement
    gave up and rolled back; the message names the sessions holding locks."""


class SyncError(RestoreError):
    """The Legacy → Modernized account sync could not complete (rolled back)."""


class EvidenceError(RestoreError):
    """The run's evidence cannot be written (its folder cannot be made): nothing restored yet."""


class EvidenceNotWritten(EvidenceError):
    """The database committed, then writing its evidence failed: the database is NOT as it was."""

    exit_code = EXIT_UNRECORDED

    def __init__(self, what: str, exc: BaseException):
        super().__init__(f"the {what} WAS restored; writing evidence failed: {exc}")


def worse_exit(current: int, new: int) -> int:
    """The exit code that says more: restored-but-unrecorded (4) > blocked (2) >
    refused/config (3) > failed (1) > ok (0)."""
    rank = {EXIT_OK: 0, EXIT_FAILED: 1, EXIT_CONFIG: 2, EXIT_BLOCKED: 3, EXIT_UNRECORDED: 4}
    return new if rank.get(new, 1) > rank.get(current, 0) else current


class UnexpectedError(RestoreError):
    """Not one of ours: a bug, a driver error. Said by `redaction.first_line`: a database error
    by its condition and names, never a value it quotes."""

    def __init__(self, exc: BaseException):
        super().__init__(f"unexpected error ({type(exc).__name__}): {first_line(exc)}")
