"""Flyway's DbSchemas step and the history table's creation, shared by baseline and migrate.

Flyway 10.17.3, DbSchemas.create(baseline): create the missing schemas; if it created any, create
the history table (with the baseline row when called by `baseline`) and then add the marker row
naming the created schemas. JdbcTableSchemaHistory.calculateInstalledRank gives that marker rank
0 in an empty table, else the next rank: so `baseline` into a new schema writes BASELINE at rank 1
and SCHEMA at rank 2, `migrate` writes SCHEMA at rank 0."""

from __future__ import annotations

import psycopg
from psycopg import sql

from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.database import installed_by, schema_exists, schemas
from restore_assets.flyway.history import SCHEMA_MARKER_DESCRIPTION, HistoryTable
from restore_assets.flyway.history_row import baseline_row


def create_schemas(
    conn: psycopg.Connection, config: FlywayConfig, history: HistoryTable, *, baseline: bool
) -> list[str]:
    """Create missing schemas; if any, the history table and the marker row for them."""
    names, _ = schemas(conn, config)
    created = []
    for schema in names:
        if not schema_exists(conn, schema):
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            created.append(schema)
    if created:
        if not history.exists(conn):
            create_table(conn, config, history, baseline=baseline)
        rows = history.rows(conn)
        history.insert(
            conn,
            rank=rows[-1].installed_rank + 1 if rows else 0,
            version=None,
            description=SCHEMA_MARKER_DESCRIPTION,
            type="SCHEMA",
            script=",".join(_quoted(s) for s in created),
            checksum=None,
            installed_by=installed_by(conn, config),
            execution_time=0,
            success=True,
        )
    return created


def _quoted(schema: str) -> str:
    """PostgreSQLDatabase.doQuote, as the marker row names the created schemas."""
    return '"' + schema.replace('"', '""') + '"'


def create_table(
    conn: psycopg.Connection, config: FlywayConfig, history: HistoryTable, *, baseline: bool
) -> None:
    """JdbcTableSchemaHistory.create: the table, with the baseline row at rank 1 if `baseline`
    (PostgreSQLDatabase.getCreateScript)."""
    history.create(conn)
    if baseline:
        by = installed_by(conn, config)
        history.insert_row(
            conn, baseline_row(config.baseline_version, config.baseline_description, by)
        )
