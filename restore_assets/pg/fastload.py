"""The fast load (issue 23): the seed into bare tables, then every index and key built once.

Two SQL files of the project's own (`sql/fastload_defer.sql`, `sql/fastload_rebuild.sql`) run in
the restore's psql session, between the Secrets files, in its one transaction: the first, after
the schema, records every index and PK/UNIQUE/EXCLUDE/FK constraint as the server prints it and
drops them (or, for what it does not handle, drops nothing: the runbook's order); the second,
after the seed, builds them again and compares a fingerprint of the catalogue with the one taken
before. Any failure in either rolls the whole transaction back; the restore then runs the
runbook's order (`runbook/restore.py`): never worse than psql.

Which way ran is read from the one line each file prints, led by a random token written into
that file only: a Secrets file runs in the same session and may print anything, but cannot know
the token before our line is printed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from importlib import resources

from restore_assets.errors import PsqlError
from restore_assets.pg.session import OwnScript
from restore_assets.redaction import sqlstate_message

DEFER_FILE = "fastload-defer.sql"
REBUILD_FILE = "fastload-rebuild.sql"
_TOKEN = "@NONCE@"  # in the shipped files: where each run's token goes
_REBUILD_FAILED = "failed "  # the rebuild's line when a statement failed: `failed <SQLSTATE>: …`


@dataclass(frozen=True)
class LoadPath:
    """Which load ran, and why (what the evidence says)."""

    path: str  # "fast", "plain" ("unknown": committed, a line of ours not seen)
    why: str

    def describe(self) -> str:
        return f"{self.path} ({self.why})"


def _sql(name: str) -> str:
    return resources.files("restore_assets.pg").joinpath("sql", name).read_text(encoding="utf-8")


@dataclass
class FastLoad:
    """One fast load: its two scripts (each with a token of its own) and what they printed."""

    defer_token: str = field(default_factory=lambda: secrets.token_hex(16))
    rebuild_token: str = field(default_factory=lambda: secrets.token_hex(16))
    deferred: str | None = None  # the defer script's line: `fast: …` or `plain: …`
    rebuilt: str | None = None  # the rebuild script's line

    def defer_script(self) -> OwnScript:
        return OwnScript(DEFER_FILE, _sql("fastload_defer.sql").replace(_TOKEN, self.defer_token))

    def rebuild_script(self) -> OwnScript:
        text = _sql("fastload_rebuild.sql").replace(_TOKEN, self.rebuild_token)
        return OwnScript(REBUILD_FILE, text)

    def watch(self, line: str) -> None:
        """psql's output, line by line: keep the first line led by each token (the first is
        ours: nothing else can know the token before it is printed)."""
        said = line.strip()
        if self.deferred is None and said.startswith(self.defer_token + " "):
            self.deferred = said.removeprefix(self.defer_token + " ")
        elif self.rebuilt is None and said.startswith(self.rebuild_token + " "):
            self.rebuilt = said.removeprefix(self.rebuild_token + " ")

    def outcome(self) -> LoadPath:
        """After psql committed: which load ran. `fast` only when both scripts said so; never a
        failure (the target did commit), `unknown` if a line is missing."""
        if self.deferred is None or self.rebuilt is None:
            return LoadPath("unknown", "the fast load's scripts printed no outcome")
        if self.deferred.startswith("fast:") and self.rebuilt.startswith("fast:"):
            return LoadPath(
                "fast",
                f"{self.deferred.removeprefix('fast: ')}; {self.rebuilt.removeprefix('fast: ')}",
            )
        return LoadPath(
            "plain",
            "the runbook's order in the same session: " + self.deferred.removeprefix("plain: "),
        )

    def own_failure(self, exc: PsqlError) -> str | None:
        """Why the fast load's own SQL stopped psql (None: a Secrets file or psql stopped it,
        and the runbook's order would stop the same way)."""
        if exc.relpath not in (DEFER_FILE, REBUILD_FILE):
            return None
        if self.rebuilt and self.rebuilt.startswith(_REBUILD_FAILED):
            code, _, what = self.rebuilt.removeprefix(_REBUILD_FAILED).partition(": ")
            if code == "RA001":
                return what
            return f"{_said(code)} {what}"
        return f"{exc.relpath}: {_said(exc.sqlstate) if exc.sqlstate else 'psql stopped'}"


def _said(sqlstate: str) -> str:
    try:
        return sqlstate_message(sqlstate)
    except ValueError:
        return "an error without a SQLSTATE"
