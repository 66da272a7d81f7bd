"""`flyway repair`: delete failed rows and realign applied rows to the files on disk."""

from __future__ import annotations

from psycopg import sql

from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.database import (
    Connect,
    Log,
    advisory_lock,
    history_table,
    open_connection,
)
from restore_assets.flyway.resolver import resolve
from restore_assets.flyway.version import Version


def repair(
    config: FlywayConfig, connect: Connect, *, log: Log, lock_wait_seconds: float
) -> dict[str, list[str]]:
    """Delete failed rows; realign description/type/checksum of applied rows to the files."""
    resolved = {m.version: m for m in resolve(config) if m.version is not None}
    removed, realigned = [], []
    with open_connection(connect) as conn:
        history = history_table(conn, config)
        if not history.exists(conn):
            return {"removed": removed, "realigned": realigned}
        with advisory_lock(conn, history, lock_wait_seconds, log), conn.transaction():
            for row in history.rows(conn):
                if not row.success:
                    conn.execute(
                        sql.SQL('DELETE FROM {} WHERE "installed_rank" = %s').format(history.ident),
                        (row.installed_rank,),
                    )
                    removed.append(row.version or row.description)
                    continue
                if row.type in ("SCHEMA", "BASELINE") or row.version is None:
                    continue
                file = resolved.get(Version.parse(row.version))
                if file is None:
                    continue
                if (row.checksum, row.description, row.type) != (
                    file.checksum,
                    file.stored_description,
                    file.type,
                ):
                    conn.execute(
                        sql.SQL(
                            'UPDATE {} SET "checksum" = %s, "description" = %s, '
                            '"type" = %s WHERE "installed_rank" = %s'
                        ).format(history.ident),
                        (file.checksum, file.stored_description, file.type, row.installed_rank),
                    )
                    realigned.append(row.version)
    return {"removed": removed, "realigned": realigned}
