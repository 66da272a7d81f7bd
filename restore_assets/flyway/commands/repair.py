"""`flyway repair` as Flyway 10.17.3's DbRepair: delete failed rows, mark applied migrations
whose file is gone as deleted (a DELETE row each), realign applied rows to the files on disk."""

from __future__ import annotations

from psycopg import sql

from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.database import (
    Connect,
    Log,
    advisory_lock,
    history_table,
    installed_by,
    open_connection,
)
from restore_assets.flyway.migration_info import MigrationInfoService
from restore_assets.flyway.placeholders import placeholder_values, resolve_replaced


def repair(
    config: FlywayConfig, connect: Connect, *, log: Log, lock_wait_seconds: float
) -> dict[str, list[str]]:
    """What was done: failed rows removed, missing migrations deleted, applied rows realigned."""
    done: dict[str, list[str]] = {"removed": [], "deleted": [], "realigned": []}
    with open_connection(connect) as conn:
        history = history_table(conn, config)
        resolved = resolve_replaced(config, placeholder_values(conn, config, history))
        if not history.exists(conn):
            return done
        with advisory_lock(conn, history, lock_wait_seconds, log), conn.transaction():
            for row in history.rows(conn):
                if not row.success:
                    conn.execute(
                        sql.SQL('DELETE FROM {} WHERE "installed_rank" = %s').format(history.ident),
                        (row.installed_rank,),
                    )
                    done["removed"].append(row.version or row.description)
            rows = history.rows(conn)
            infos = MigrationInfoService(config, resolved, rows)
            # JdbcTableSchemaHistory.delete: a copy of the row, type DELETE, at the next rank.
            rank = rows[-1].installed_rank + 1 if rows else 1
            user = installed_by(conn, config)
            for row in infos.gone():
                history.insert(
                    conn,
                    rank=rank,
                    version=row.version,
                    description=row.description,
                    type="DELETE",
                    script=row.script,
                    checksum=row.checksum,
                    installed_by=user,
                    execution_time=0,
                    success=row.success,
                )
                rank += 1
                done["deleted"].append(row.version or row.description)
            # DbRepair.alignAppliedMigrationsWithResolvedMigrations: versioned rows take the
            # file's description, type and checksum; a repeatable's row only when it holds the
            # checksum without placeholder replacement (checksumMatchesWithoutBeingIdentical).
            for row, file in infos.realignable():
                if row.version is None:
                    stale = (
                        row.checksum == file.equivalent_checksum and row.checksum != file.checksum
                    )
                else:
                    stale = (row.checksum, row.description, row.type) != (
                        file.checksum,
                        file.stored_description,
                        file.type,
                    )
                if stale:
                    conn.execute(
                        sql.SQL(
                            'UPDATE {} SET "description" = %s, "type" = %s, "checksum" = %s '
                            'WHERE "installed_rank" = %s'
                        ).format(history.ident),
                        (file.stored_description, file.type, file.checksum, row.installed_rank),
                    )
                    done["realigned"].append(row.version or row.description)
    return done
