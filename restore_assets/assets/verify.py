"""Verification helpers both sides share: tables present, row counts, psql transcripts."""

from __future__ import annotations

import fnmatch
import subprocess

import pandas as pd
from psycopg import sql

from restore_assets.resources.postgres import PostgresTarget, client_binary

USER_TABLES_SQL = """
SELECT n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_%%'
 ORDER BY 1, 2
"""


COLUMN_EXISTS_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass "
    "AND attname = %s AND NOT attisdropped)"
)
EXTENSION_SQL = "SELECT extversion FROM pg_extension WHERE extname = %s"


def find_object(conn, kind: str, name: str) -> str:
    """Where the connection's search_path finds a table/sequence, a `table.column` or an
    extension, as the application would resolve it; '' when absent."""
    if kind == "extension":
        row = conn.execute(EXTENSION_SQL, (name,)).fetchone()
        return f"{name} {row[0]}" if row else ""
    table, _, column = name.partition(".") if kind == "column" else (name, "", "")
    rel = conn.execute("SELECT to_regclass(%s)::text", (table,)).fetchone()[0] or ""
    if kind != "column" or not rel:
        return rel
    return f"{rel}.{column}" if conn.execute(COLUMN_EXISTS_SQL, (rel, column)).fetchone()[0] else ""


def psql_capture(target: PostgresTarget, *commands: str) -> str:
    """A transcript of read-only commands run through the real psql in one session (`-a` echoes
    each command before its output), for logs that look like the runbook's."""
    psql = client_binary("psql", target.settings.psql_bin)
    result = subprocess.run(
        [psql, "-X", "-a", "--pset=pager=off"],
        input="\n".join(commands) + "\n",
        env=target.client_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    return target.redact(f"-- {target.describe()}\n{result.stdout}{result.stderr}")


def user_tables(target: PostgresTarget) -> list[tuple[str, str]]:
    with target.connect(autocommit=True) as conn:
        return [(r[0], r[1]) for r in conn.execute(USER_TABLES_SQL).fetchall()]


def match_expected(patterns: tuple[str, ...], tables: list[tuple[str, str]]) -> pd.DataFrame:
    """One row per expected name or glob (`d_factor2_*`): which tables matched."""
    rows = []
    for pattern in patterns:
        found = [f"{s}.{t}" for s, t in tables if fnmatch.fnmatchcase(t, pattern)]
        rows.append({"expected": pattern, "present": bool(found), "found": ", ".join(found)})
    return pd.DataFrame(rows, columns=["expected", "present", "found"])


def count_rows(conn, tables: tuple[str, ...]) -> dict[str, int | None]:
    """Row counts of tables as the connection's search_path resolves them (None: absent)."""
    counts: dict[str, int | None] = {}
    for table in tables:
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
            counts[table] = None
            continue
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        counts[table] = conn.execute(query).fetchone()[0]
    return counts


def count_transcripts(target: PostgresTarget, tables, side: str, evidence, preamble=()) -> None:
    """`psql_count_<table>_<side>.log` for each table."""
    for table in tables:
        statement = f"SELECT count(*) FROM {sql.Identifier(table).as_string(None)};"
        evidence.write(f"psql_count_{table}_{side}.log", psql_capture(target, *preamble, statement))
