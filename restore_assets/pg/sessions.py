"""Other sessions on a database, as the server reports them: who is connected (`plan`), who
holds the locks a bounded wait gave up on (the error names them), and ending them on request
(`--terminate-sessions`). Every name here (application_name, a table) comes from outside and is
escaped before it reaches a line."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg

from restore_assets.redaction import escaped

# The project's own sessions say so in their application_name (`Database.conninfo`).
OWN_APPLICATION = "restore_assets:%"

_COLUMNS = """
SELECT a.pid, a.application_name, a.usename, host(a.client_addr), a.backend_start,
       a.xact_start, a.state, a.state_change
"""

# Client sessions of this database but our own backend (others' columns are NULL to a role
# without pg_read_all_stats: said as "unknown").
CONNECTED_SQL = (
    _COLUMNS
    + """ , '{}'::text[]
  FROM pg_stat_activity a
 WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
   AND a.backend_type = 'client backend'
 ORDER BY a.backend_start, a.pid
"""
)

# Sessions holding a granted lock in this database (on a table, a row's transaction, an object):
# what a DROP or an UPDATE waits for. Advisory locks are left out (the project's own target lock)
# and so is each session's lock on its own virtual transaction id.
HOLDERS_SQL = (
    _COLUMNS
    + """ , array_remove(array_agg(DISTINCT l.relation::regclass::text), NULL)
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE a.datname = current_database() AND l.pid <> pg_backend_pid() AND l.granted
   AND l.locktype NOT IN ('advisory', 'virtualxid')
   AND (l.database IS NULL OR l.database = (SELECT oid FROM pg_database
                                             WHERE datname = current_database()))
 GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
 ORDER BY a.backend_start, a.pid
"""
)


@dataclass(frozen=True)
class Session:
    pid: int
    application_name: str | None
    user: str | None
    client_addr: str | None
    backend_start: dt.datetime | None
    xact_start: dt.datetime | None
    state: str | None
    state_change: dt.datetime | None
    relations: tuple[str, ...] = ()

    @property
    def application(self) -> str:
        return escaped(self.application_name) if self.application_name else "no application_name"

    def describe(self) -> str:
        """`'wildfly' (user opendolphin from 10.0.0.5, idle in transaction since 17:02:11 UTC,
        in a transaction since 17:01:58 UTC, connected since …, server pid 4242, locks d_users)`"""
        parts = [
            f"user {escaped(self.user) if self.user else 'unknown'}"
            f" from {self.client_addr or 'a local socket'}",
            f"{self.state or 'state unknown'} since {_when(self.state_change)}",
        ]
        if self.xact_start is not None:
            parts.append(f"in a transaction since {_when(self.xact_start)}")
        parts.append(f"connected since {_when(self.backend_start)}")
        parts.append(f"server pid {self.pid}")
        if self.relations:
            shown = ", ".join(escaped(r) for r in self.relations[:5])
            more = f" and {len(self.relations) - 5} more" if len(self.relations) > 5 else ""
            parts.append(f"locks {shown}{more}")
        return f"'{self.application}' ({', '.join(parts)})"


def _when(moment: dt.datetime | None) -> str:
    if moment is None:
        return "unknown"
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _sessions(conn: psycopg.Connection, query: str) -> list[Session]:
    return [
        Session(pid, app, user, addr, start, xact, state, change, tuple(relations or ()))
        for pid, app, user, addr, start, xact, state, change, relations in conn.execute(
            query
        ).fetchall()
    ]


def connected(conn: psycopg.Connection) -> list[Session]:
    """Every other client session connected to `conn`'s database now."""
    return _sessions(conn, CONNECTED_SQL)


def lock_holders(conn: psycopg.Connection) -> list[Session]:
    """The other sessions holding a lock in `conn`'s database now."""
    return _sessions(conn, HOLDERS_SQL)


def described(sessions: list[Session]) -> str:
    return "; ".join(s.describe() for s in sessions) if sessions else "none"


@dataclass(frozen=True)
class Ended:
    """What `terminate_others` did: the sessions ended, and those the role may not end."""

    ended: list[Session]
    refused: list[tuple[Session, str]]


def terminate_others(conn: psycopg.Connection, wait_ms: int) -> Ended:
    """End every other client session of `conn`'s database but the project's own (their
    application_name starts with `restore_assets:`: a reader waiting for the target's lock),
    waiting up to `wait_ms` for each to go. One the role may not signal (another role's, without
    pg_signal_backend) is kept in `refused` with the server's reason; the bounded lock wait
    still holds for it."""
    ended: list[Session] = []
    refused: list[tuple[Session, str]] = []
    for session in connected(conn):
        if session.application_name and session.application_name.startswith("restore_assets:"):
            continue
        try:
            gone = conn.execute(
                "SELECT pg_terminate_backend(%s, %s)", (session.pid, wait_ms)
            ).fetchone()[0]
        except psycopg.errors.InsufficientPrivilege:
            refused.append((session, "this role may not end it (grant it pg_signal_backend)"))
            continue
        if gone:
            ended.append(session)
        else:
            refused.append((session, f"still there after {wait_ms} ms"))
    return Ended(ended, refused)
