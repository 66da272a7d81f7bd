"""`flyway baseline`: mark an existing database as being at flyway.baselineVersion."""

from __future__ import annotations

import psycopg

from restore_assets.flyway.commands.schemas import create_history
from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.database import (
    Connect,
    Log,
    advisory_lock,
    history_table,
    installed_by,
    open_connection,
)
from restore_assets.flyway.errors import FlywayError
from restore_assets.flyway.history import HistoryTable
from restore_assets.flyway.version import Version


def baseline(config: FlywayConfig, connect: Connect, *, log: Log, lock_wait_seconds: float) -> bool:
    """Write the baseline row; returns False when the same baseline is already there."""
    with open_connection(connect) as conn:
        history = history_table(conn, config)
        with advisory_lock(conn, history, lock_wait_seconds, log), conn.transaction():
            return write_baseline(conn, config, history, log)


def write_baseline(
    conn: psycopg.Connection, config: FlywayConfig, history: HistoryTable, log: Log
) -> bool:
    """The baseline row, in the caller's transaction and lock; migrate reuses it for
    baselineOnMigrate."""
    if history.exists(conn):
        rows = history.rows(conn)
        baselines = [r for r in rows if r.type == "BASELINE"]
        others = [r for r in rows if r.type not in ("BASELINE", "SCHEMA")]
        if (
            len(baselines) == 1
            and not others
            and Version.parse(baselines[0].version or "0") == Version.parse(config.baseline_version)
            and baselines[0].description == config.baseline_description
        ):
            log(f"schema history already holds baseline {baselines[0].version}")
            return False
        if rows and (baselines or others):
            raise FlywayError(
                f"Unable to baseline schema history table {history.schema}.{history.table} "
                "as it already contains migrations"
            )
    else:
        create_history(conn, config, history)
    history.insert(
        conn,
        rank=history.next_rank(conn),
        version=config.baseline_version,
        description=config.baseline_description,
        type="BASELINE",
        script=config.baseline_description,
        checksum=None,
        installed_by=installed_by(conn, config),
        execution_time=0,
        success=True,
    )
    log(f"baselined {history.schema} at version {config.baseline_version}")
    return True
