"""`flyway baseline`: mark an existing database as being at flyway.baselineVersion
(Flyway 10.17.3: Flyway.baseline, then DbBaseline.baseline)."""

from __future__ import annotations

import psycopg

from restore_assets.flyway.commands.schemas import create_schemas, create_table
from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.database import (
    Connect,
    Log,
    advisory_lock,
    history_table,
    open_connection,
)
from restore_assets.flyway.errors import FlywayError
from restore_assets.flyway.history import HistoryTable
from restore_assets.flyway.version import Version


def baseline(config: FlywayConfig, connect: Connect, *, log: Log, lock_wait_seconds: float) -> bool:
    """Write the baseline row; returns False when the same baseline is already there."""
    config.baseline()
    with open_connection(connect) as conn:
        history = history_table(conn, config)
        with advisory_lock(conn, history, lock_wait_seconds, log), conn.transaction():
            created = create_schemas(conn, config, history, baseline=True)
            if created and _marker(conn, history) is not None:
                log(f"created {', '.join(created)} and baselined at {config.baseline_version}")
                return True
            return write_baseline(conn, config, history, log)


def _marker(conn: psycopg.Connection, history: HistoryTable):
    return next((r for r in history.rows(conn) if r.type == "BASELINE"), None)


def write_baseline(
    conn: psycopg.Connection, config: FlywayConfig, history: HistoryTable, log: Log
) -> bool:
    """DbBaseline.baseline, in the caller's transaction and lock (migrate reuses it for
    baselineOnMigrate): a new table gets the baseline row; an existing one is a no-op if it holds
    the same baseline (version compared numerically, and description), else an error."""
    where = f"{history.schema}.{history.table}"
    version = config.baseline()
    if not history.exists(conn):
        create_table(conn, config, history, baseline=True)
        log(f"baselined {history.schema} at version {config.baseline_version}")
        return True
    rows = history.rows(conn)
    marker = _marker(conn, history)
    wanted = (config.baseline_version, config.baseline_description)
    if marker is not None:
        if (
            Version.parse(marker.version or "0") == version
            and marker.description == config.baseline_description
        ):
            log(f"schema history already holds baseline {marker.version}")
            return False
        raise FlywayError(
            f"Unable to baseline schema history table {where} with {wanted} as it has already "
            f"been baselined with ({marker.version}, {marker.description})"
        )
    if any(r.type == "SCHEMA" for r in rows) and version == Version.parse("0"):
        raise FlywayError(
            f"Unable to baseline schema history table {where} with version 0 as this version "
            "was used for schema creation"
        )
    if not rows:
        raise FlywayError(
            f"Unable to baseline schema history table {where} as it already exists, and is "
            "empty. Delete the schema history table, and run baseline again."
        )
    raise FlywayError(
        f"Unable to baseline schema history table {where} as it already contains migrations"
    )
