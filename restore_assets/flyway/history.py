"""The `flyway_schema_history` table: Flyway's exact DDL, its rows, and the advisory-lock key.

`HistoryRow` (the rows it reads) lives in `history_row`, so pure code can use it without psycopg.
"""

from __future__ import annotations

import dataclasses

import psycopg
from psycopg import sql

from restore_assets.flyway.history_row import HistoryRow, abbreviate_description, abbreviate_script

SCHEMA_MARKER_DESCRIPTION = "<< Flyway Schema Creation >>"
LOCK_BASE = 0x466C79776179

# Exactly the statements Flyway runs on PostgreSQL (flyway-compat.md).
CREATE_TABLE = """CREATE TABLE {table} (
    "installed_rank" INT NOT NULL,
    "version" VARCHAR(50),
    "description" VARCHAR(200) NOT NULL,
    "type" VARCHAR(20) NOT NULL,
    "script" VARCHAR(1000) NOT NULL,
    "checksum" INTEGER,
    "installed_by" VARCHAR(100) NOT NULL,
    "installed_on" TIMESTAMP NOT NULL DEFAULT now(),
    "execution_time" INTEGER NOT NULL,
    "success" BOOLEAN NOT NULL
)"""
ADD_PRIMARY_KEY = 'ALTER TABLE {table} ADD CONSTRAINT {pk} PRIMARY KEY ("installed_rank")'
CREATE_INDEX = 'CREATE INDEX {index} ON {table} ("success")'
SELECT_ROWS = (
    'SELECT "installed_rank", "version", "description", "type", "script", "checksum", '
    '"installed_by", "installed_on", "execution_time", "success" FROM {table} '
    'ORDER BY "installed_rank"'
)
INSERT_ROW = (
    'INSERT INTO {table} ("installed_rank", "version", "description", "type", "script", '
    '"checksum", "installed_by", "execution_time", "success") '
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def java_string_hash(text: str) -> int:
    """Java's `String.hashCode()` (UTF-16 code units, signed 32-bit overflow)."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i : i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def lock_key(schema: str, table: str) -> int:
    """Flyway's advisory-lock key for this history table, so it and we never run at once."""
    return LOCK_BASE + java_string_hash(f'"{schema}"."{table}"')


class HistoryTable:
    def __init__(self, schema: str, table: str):
        self.schema = schema
        self.table = table
        self.ident = sql.Identifier(schema, table)

    def exists(self, conn: psycopg.Connection) -> bool:
        name = self.ident.as_string(conn)
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]

    def create(self, conn: psycopg.Connection) -> None:
        conn.execute(sql.SQL(CREATE_TABLE).format(table=self.ident))
        conn.execute(
            sql.SQL(ADD_PRIMARY_KEY).format(table=self.ident, pk=sql.Identifier(f"{self.table}_pk"))
        )
        conn.execute(
            sql.SQL(CREATE_INDEX).format(
                table=self.ident, index=sql.Identifier(f"{self.table}_s_idx")
            )
        )

    def rows(self, conn: psycopg.Connection) -> list[HistoryRow]:
        if not self.exists(conn):
            return []
        cur = conn.execute(sql.SQL(SELECT_ROWS).format(table=self.ident))
        return [HistoryRow(*row) for row in cur.fetchall()]

    def next_rank(self, conn: psycopg.Connection) -> int:
        query = sql.SQL('SELECT COALESCE(MAX("installed_rank"), 0) + 1 FROM {}').format(self.ident)
        return conn.execute(query).fetchone()[0]

    def insert_row(self, conn: psycopg.Connection, row: HistoryRow) -> None:
        """`row` as it is, but installed_on: the table's default, now(), as Flyway leaves it."""
        fields = dataclasses.asdict(row)
        del fields["installed_on"]
        self.insert(conn, rank=fields.pop("installed_rank"), **fields)

    def insert(
        self,
        conn: psycopg.Connection,
        *,
        rank: int,
        version: str | None,
        description: str,
        type: str,
        script: str,
        checksum: int | None,
        installed_by: str,
        execution_time: int,
        success: bool,
    ) -> None:
        conn.execute(
            sql.SQL(INSERT_ROW).format(table=self.ident),
            (
                rank,
                version,
                abbreviate_description(description),
                type,
                abbreviate_script(script),
                checksum,
                installed_by,
                execution_time,
                success,
            ),
        )
