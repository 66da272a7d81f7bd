"""Flyway's DbSchemas step, shared by baseline and migrate: create the missing schemas (if
flyway.createSchemas allows), the history table, and the marker row naming what was created."""

from __future__ import annotations

import psycopg
from psycopg import sql

from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.database import installed_by, schema_exists, schemas
from restore_assets.flyway.errors import FlywayError
from restore_assets.flyway.history import SCHEMA_MARKER_DESCRIPTION, HistoryTable


def create_history(
    conn: psycopg.Connection, config: FlywayConfig, history: HistoryTable
) -> list[str]:
    """Create missing schemas (and the marker row for them) and the history table."""
    names, _ = schemas(conn, config)
    created = []
    for schema in names:
        if not schema_exists(conn, schema):
            if not config.create_schemas:
                raise FlywayError(
                    f"schema {schema!r} does not exist and flyway.createSchemas is false"
                )
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            created.append(schema)
    history.create(conn)
    if created:
        history.insert(
            conn,
            rank=0,
            version=None,
            description=SCHEMA_MARKER_DESCRIPTION,
            type="SCHEMA",
            script=",".join(f'"{s}"' for s in created),
            checksum=None,
            installed_by=installed_by(conn, config),
            execution_time=0,
            success=True,
        )
    return created
