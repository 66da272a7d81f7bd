"""Before anything is dropped: the server is reachable, not older than the dump's pg_dump, has the
extensions the dump creates; and only one restore per target runs at a time."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path, PurePosixPath

from restore_assets.errors import PreflightFailed, RestoreError
from restore_assets.files import below
from restore_assets.flyway.locks import advisory_lock
from restore_assets.pg.clients import major_version, parse_major
from restore_assets.pg.database import Database
from restore_assets.runbook.baseline_files import SecretFile

# One restore per target at a time; the key is ours, Flyway's differs (flyway-compat.md).
RESTORE_LOCK_KEY = 0x52657374_6F7265  # "Restore"


def preflight(db: Database, files: list[SecretFile], extensions: list[str]) -> int:
    """Returns the server's `server_version_num`; raises `PreflightFailed` saying what to do."""
    try:
        version_num = db.server_version_num()
    except RestoreError as exc:
        raise PreflightFailed(str(exc)) from None
    server_major = major_version(version_num)
    for f in files:
        dump_major = parse_major(f.dumped_by or "")
        if dump_major is not None and dump_major > server_major:
            raise PreflightFailed(
                f"{f.relpath} was written by pg_dump {f.dumped_by}, newer than the "
                f"{db.describe()} server (PostgreSQL {server_major}); its output "
                f"(e.g. `SET transaction_timeout`) may not load. Use a server >= {dump_major} or "
                "ask Ops for a dump made with a matching pg_dump."
            )
    if extensions:
        with db.connect(autocommit=True) as conn:
            available = {
                r[0] for r in conn.execute("SELECT name FROM pg_available_extensions").fetchall()
            }
        missing = sorted(set(extensions) - available)
        if missing:
            raise PreflightFailed(
                f"the baseline needs extension(s) {', '.join(missing)}, which the "
                f"{db.describe()} server does not have; install them on the server first"
            )
    return version_num


@contextmanager
def restore_lock(
    db: Database,
    wait_seconds: float | None = None,
    log: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """The target's lock, held exclusively: two restores never overlap, and no verification
    or gate reads the target half-way through one (they hold it shared)."""
    with _database_lock(db, wait_seconds, shared=False, what="restore", log=log):
        yield


@contextmanager
def reading_lock(*dbs: Database, wait_seconds: float | None = None) -> Iterator[None]:
    """The databases' locks, shared: verifications, the sync and the gates of any number of runs
    (from any state directory) may read at once, never while a restore drops and reloads."""
    with ExitStack() as stack:
        for db in dbs:
            stack.enter_context(_database_lock(db, wait_seconds, shared=True, what="check"))
        yield


@contextmanager
def _database_lock(
    db: Database,
    wait_seconds: float | None,
    shared: bool,
    what: str,
    log: Callable[[str], None] | None = None,
):
    if wait_seconds is None:
        wait_seconds = db.pg.wait_seconds
    log = log or logging.getLogger(__name__).warning  # stderr: the CLI's, the run's compute log
    with db.connect(autocommit=True) as conn:
        with advisory_lock(
            conn,
            RESTORE_LOCK_KEY,
            wait_seconds=wait_seconds,
            shared=shared,
            on_wait=lambda: log(
                f"the {db.describe()} is locked by {_lock_holders(conn)}: this {what} "
                f"waits for it, at most {wait_seconds:.0f}s (RESTORE_WAIT_SECONDS)"
            ),
            busy=lambda: PreflightFailed(
                f"the {db.describe()} is still locked after {wait_seconds:.0f}s "
                f"(RESTORE_WAIT_SECONDS) by {_lock_holders(conn)} (a {what} waits for a "
                "restore to finish); try again later, or end that session"
            ),
        ):
            yield


def _lock_holders(conn) -> str:
    """Who holds the target's lock, as the server sees it (a dead client's session is gone
    from the server, and its lock with it: only live sessions can hold it)."""
    high, low = (RESTORE_LOCK_KEY >> 32) & 0xFFFFFFFF, RESTORE_LOCK_KEY & 0xFFFFFFFF
    rows = conn.execute(
        "SELECT a.pid, a.application_name, a.client_addr, a.backend_start, l.mode"
        "  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()"
        "   AND l.classid::bigint = %s AND l.objid::bigint = %s",
        (high, low),
    ).fetchall()
    if not rows:
        return "a session that has just ended"
    return "; ".join(
        f"server pid {pid} ({app or 'no application_name'}, {addr or 'local'}, since "
        f"{start:%Y-%m-%d %H:%M:%S %Z}, {mode})"
        for pid, app, addr, start, mode in rows
    )


def inside_secrets(path: Path, secrets_dir: Path) -> PurePosixPath:
    """Dumps (they may hold medical data) are only ever written inside the Secrets root: `path`
    relative to it, by its words (`Folder.walk` then refuses any link on the way)."""
    relpath = below(path, secrets_dir)
    if relpath is None or not relpath.parts:
        raise PreflightFailed(
            f"refusing to write a dump to {path}: dumps stay inside the Secrets root {secrets_dir}"
        )
    return relpath
