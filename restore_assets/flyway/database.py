"""Connection-level helpers every command shares: the connection as Flyway uses it (autocommit,
NOTICEs silenced), which schemas and history table the config means, the advisory lock with a
bounded wait, and the catalogue questions (does a schema exist, is it empty, who installs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg

from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.errors import FlywayError
from restore_assets.flyway.history import HistoryTable, lock_key
from restore_assets.flyway.history_row import HistoryRow
from restore_assets.flyway.locks import advisory_lock as pg_advisory_lock

Connect = Callable[[], psycopg.Connection]
Log = Callable[[str], None]

# PostgreSQLSchema.doEmpty (Flyway 10.17.3), word for word: tables, views, sequences (not
# partitioned tables, materialized views or foreign tables), types other than array and
# composite ones, and functions, extension members excluded.
SCHEMA_OBJECTS_SQL = """
SELECT EXISTS (
    SELECT c.oid FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_catalog.pg_depend d ON d.objid = c.oid AND d.deptype = 'e'
    WHERE  n.nspname = %(schema)s AND d.objid IS NULL AND c.relkind IN ('r', 'v', 'S', 't')
  UNION ALL
    SELECT t.oid FROM pg_catalog.pg_type t
    JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
    LEFT JOIN pg_catalog.pg_depend d ON d.objid = t.oid AND d.deptype = 'e'
    WHERE n.nspname = %(schema)s AND d.objid IS NULL AND t.typcategory NOT IN ('A', 'C')
  UNION ALL
    SELECT p.oid FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    LEFT JOIN pg_catalog.pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
    WHERE n.nspname = %(schema)s AND d.objid IS NULL
)
"""


def open_connection(connect: Connect) -> psycopg.Connection:
    """Autocommit, so each migration decides its own transaction; NOTICEs ("already exists,
    skipping") would only be noise."""
    conn = connect()
    conn.autocommit = True
    conn.add_notice_handler(lambda diag: None)
    return conn


def schemas(conn: psycopg.Connection, config: FlywayConfig) -> tuple[list[str], str]:
    """The managed schemas and the default one (SchemaHistoryFactory.prepareSchemas): the
    default is flyway.defaultSchema, else the first of flyway.schemas, else `current_schema()`;
    it leads the managed ones when they do not list it."""
    default = config.default_schema
    names = list(config.schemas)
    if default is None and names:
        default = names[0]
    elif default is None:
        # PostgreSQLConnection.doGetCurrentSchema: with no existing schema on the search_path,
        # Flyway takes the search_path text itself for the schema's name and creates it
        # (`app` for `search_path = app`; a schema named `"$user", app` for the default path
        # with `public` dropped: a Flyway quirk, kept so the history is where Flyway has it).
        query = "SELECT current_schema(), current_setting('search_path')"
        current, path = conn.execute(query).fetchone()
        default = current or path.strip()
        if not default:
            raise FlywayError(
                "Unable to determine current schema as search_path is empty. Set the current "
                "schema in currentSchema parameter of the JDBC URL or in Flyway's schemas "
                "property (set flyway.defaultSchema or flyway.schemas)"
            )
    if default not in names:
        names.insert(0, default)
    return names, default


def history_table(conn: psycopg.Connection, config: FlywayConfig) -> HistoryTable:
    """The history table lives in the default schema."""
    return HistoryTable(schemas(conn, config)[1], config.table)


def read_history(config: FlywayConfig, connect: Connect) -> list[HistoryRow]:
    """The history rows, on a connection of their own (none when the table does not exist)."""
    with open_connection(connect) as conn:
        return history_table(conn, config).rows(conn)


@contextmanager
def advisory_lock(
    conn: psycopg.Connection, history: HistoryTable, wait_seconds: float, log: Log
) -> Iterator[None]:
    """Flyway's own session lock on the history table, so it and we never migrate at once;
    waits at most `wait_seconds` for a holder to finish."""
    where = f"{history.schema}.{history.table}"
    with pg_advisory_lock(
        conn,
        lock_key(history.schema, history.table),
        wait_seconds=wait_seconds,
        busy=lambda: FlywayError(
            f"another Flyway (or restore_assets) holds the lock on {where}; "
            "try again when it has finished"
        ),
        on_wait=lambda: log(f"waiting for the Flyway lock on {where}"),
    ):
        yield


def schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    return row is not None


def schema_empty(conn: psycopg.Connection, schema: str) -> bool:
    """Empty as baselineOnMigrate means it (SCHEMA_OBJECTS_SQL)."""
    return not conn.execute(SCHEMA_OBJECTS_SQL, {"schema": schema}).fetchone()[0]


def installed_by(conn: psycopg.Connection, config: FlywayConfig) -> str:
    """flyway.installedBy, else the connected user, as Flyway records it."""
    return config.installed_by or conn.execute("SELECT current_user").fetchone()[0]
