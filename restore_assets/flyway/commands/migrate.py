"""`flyway migrate`: create or baseline the history if needed, validate, then apply each pending
migration — a transactional one in one transaction together with its history row."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from restore_assets.flyway.commands.baseline import write_baseline
from restore_assets.flyway.commands.schemas import create_schemas, create_table
from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.database import (
    Connect,
    Log,
    advisory_lock,
    history_table,
    installed_by,
    open_connection,
    schema_empty,
    schema_exists,
    schemas,
)
from restore_assets.flyway.errors import FlywayError, MigrationFailed, missing_relation
from restore_assets.flyway.history import HistoryTable
from restore_assets.flyway.history_row import HistoryRow
from restore_assets.flyway.migration_info import MigrationInfoService, failed_migration_message
from restore_assets.flyway.placeholders import (
    for_file,
    placeholder_values,
    replace_placeholders,
    resolve_replaced,
)
from restore_assets.flyway.resolver import ResolvedMigration
from restore_assets.flyway.statements import Statement, is_transactional, split_statements

_OPEN = (TransactionStatus.INTRANS, TransactionStatus.INERROR)


@dataclass
class MigrateResult:
    """What one migrate did, for the caller's log and metadata."""

    schemas_created: list[str] = field(default_factory=list)
    baselined: bool = False
    applied: list[HistoryRow] = field(default_factory=list)
    seconds: float = 0.0


def migrate(
    config: FlywayConfig, connect: Connect, *, log: Log, lock_wait_seconds: float
) -> MigrateResult:
    started = time.monotonic()
    result = MigrateResult()
    with open_connection(connect) as conn:
        history = history_table(conn, config)
        placeholders = placeholder_values(conn, config, history)
        resolved = resolve_replaced(config, placeholders)
        with advisory_lock(conn, history, lock_wait_seconds, log):
            _prepare_history(conn, config, history, result, log)
            infos = MigrationInfoService(config, resolved, history.rows(conn))
            if config.validate_on_migrate:
                errors = infos.validate(pending_is_error=False)
                if errors:
                    raise FlywayError("Validate failed:\n" + "\n".join(errors))
            failed = infos.failed()
            if failed:
                raise FlywayError(failed_migration_message(failed[0]))
            for migration in infos.pending():
                applied = _apply(conn, config, history, migration, placeholders, log)
                result.applied.append(applied)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _prepare_history(
    conn: psycopg.Connection,
    config: FlywayConfig,
    history: HistoryTable,
    result: MigrateResult,
    log: Log,
) -> None:
    """Flyway.migrate before DbMigrate: create missing schemas (with the marker row), then, with
    no history table, refuse a non-empty schema unless baselineOnMigrate, and create the table."""
    with conn.transaction():
        if config.create_schemas:
            result.schemas_created = create_schemas(conn, config, history, baseline=False)
        if history.exists(conn):
            return
        names, _ = schemas(conn, config)
        non_empty = [s for s in names if schema_exists(conn, s) and not schema_empty(conn, s)]
        if non_empty and not config.baseline_on_migrate:
            raise FlywayError(
                f"Found non-empty schema(s) {', '.join(non_empty)} but no schema history table. "
                "Use baseline() or set baselineOnMigrate to true to initialize the schema "
                "history table."
            )
        if non_empty:
            result.baselined = write_baseline(conn, config, history, log)
        else:
            create_table(conn, config, history, baseline=False)


def _apply(
    conn: psycopg.Connection,
    config: FlywayConfig,
    history: HistoryTable,
    migration: ResolvedMigration,
    placeholders: dict[str, str],
    log: Log,
) -> HistoryRow:
    text = migration.read_text(config.encoding)
    if config.placeholder_replacement:
        text = replace_placeholders(text, for_file(placeholders, migration))
    try:
        statements = split_statements(text)
    except FlywayError as exc:
        raise FlywayError(f"Unable to parse statement in {migration.script}: {exc}") from None
    transactional = is_transactional(migration, statements, config.mixed)
    label = migration.version_text or migration.description
    log(
        f"Migrating schema {history.schema} to version {label} - {migration.description}"
        + ("" if transactional else " [non-transactional]")
    )
    user = installed_by(conn, config)
    # Flyway writes history on its own connection and resets the role before each migration
    # (PostgreSQLConnection.doRestoreOriginalState): a migration's SET ROLE must end with it.
    role = conn.execute("SELECT current_user").fetchone()[0]
    original_path = conn.execute("SHOW search_path").fetchone()[0]
    conn.execute("SELECT set_config('search_path', %s, false)", (_path(conn, history.schema),))
    values = dict(
        version=migration.version_text,
        description=migration.description,
        type=migration.type,
        script=migration.script,
        checksum=migration.checksum,
        installed_by=user,
    )
    started = time.monotonic()
    try:
        if transactional:
            try:
                _execute(conn, migration, statements, in_transaction=True)
                _set_role(conn, role)
                _begin_if_idle(conn)
                elapsed = int((time.monotonic() - started) * 1000)
                rank = history.next_rank(conn)
                history.insert(conn, rank=rank, execution_time=elapsed, success=True, **values)
                conn.execute("COMMIT")
            finally:
                # Left open by a failure (not by a lost connection, where ROLLBACK would only
                # hide the error).
                if conn.info.transaction_status in _OPEN:
                    conn.execute("ROLLBACK")
        else:
            try:
                _execute(conn, migration, statements)
            except MigrationFailed:
                _set_role(conn, role)
                # Autocommit work cannot be undone. Flyway 10 records it as failed only without
                # its transactional lock: with it (the default) the failed row is written inside
                # the lock's transaction and rolled back with it (DbMigrate.applyMigrations,
                # PostgreSQLAdvisoryLockTemplate.execute), so the next migrate runs it again.
                if not config.transactional_lock:
                    elapsed = int((time.monotonic() - started) * 1000)
                    rank = history.next_rank(conn)
                    history.insert(conn, rank=rank, execution_time=elapsed, success=False, **values)
                raise
            _set_role(conn, role)
            elapsed = int((time.monotonic() - started) * 1000)
            rank = history.next_rank(conn)
            history.insert(conn, rank=rank, execution_time=elapsed, success=True, **values)
    finally:
        conn.execute("SELECT set_config('search_path', %s, false)", (original_path,))
    return HistoryRow(
        installed_rank=rank,
        installed_on=None,
        execution_time=elapsed,
        success=True,
        **values,
    )


def _path(conn: psycopg.Connection, schema: str) -> str:
    """The search_path a migration runs with: PostgreSQLConnection.changeCurrentSchemaTo puts
    the default schema first (`"schema",<path>`) unless the path already starts with it or the
    schema does not exist."""
    original = conn.execute("SHOW search_path").fetchone()[0]
    if schema == original or original.startswith(schema + ",") or not schema_exists(conn, schema):
        return original
    quoted = sql.Identifier(schema).as_string(conn)
    return f"{quoted},{original}" if original.strip() else quoted


def _set_role(conn: psycopg.Connection, role: str) -> None:
    conn.execute("SELECT set_config('role', %s, false)", (role,))


def _begin_if_idle(conn: psycopg.Connection) -> None:
    """What the JDBC driver does before each statement with autocommit off: open a transaction
    if none is open. So a script's own COMMIT ends Flyway's transaction and the next statement
    starts another, which a later failure rolls back (the work before the COMMIT stays)."""
    if conn.info.transaction_status == TransactionStatus.IDLE:
        conn.execute("BEGIN")


def _execute(
    conn: psycopg.Connection,
    migration: ResolvedMigration,
    statements: list[Statement],
    *,
    in_transaction: bool = False,
) -> None:
    """Run the statements (`in_transaction`: as Flyway's TransactionalExecutionTemplate does, a
    transaction open around each); a failure names the script, the line and the missing
    relation, and a COMMIT in the script that kept part of the work."""
    committed_at = previous = None
    for statement in statements:
        if in_transaction:
            idle = conn.info.transaction_status == TransactionStatus.IDLE
            if idle and previous is not None and committed_at is None:
                committed_at = previous
            _begin_if_idle(conn)
        previous = statement.line
        try:
            if statement.copy_data is None:
                conn.execute(statement.sql, prepare=False)
            else:  # COPY ... FROM stdin: its data follows it in the file, as with Flyway
                with conn.cursor() as cur, cur.copy(statement.sql) as copy:
                    copy.write(statement.copy_data)
        except psycopg.Error as exc:
            diag = exc.diag
            position = diag.statement_position
            line = statement.line_of(int(position)) if position else statement.line
            first = statement.code.splitlines()[0] if statement.code else ""
            # The condition, never PostgreSQL's text: it can quote a row's value. The error
            # itself goes with it (`error`) for the caller to say more, by its own rule.
            condition = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", type(exc).__name__).lower()
            missing = diag.message_primary if diag.sqlstate == "42P01" else None  # names only
            kept = (
                f"\n  the script ended its transaction itself at line {committed_at} (COMMIT): "
                "what ran up to there stays; undo it by hand before the next migrate"
                if committed_at is not None
                else ""
            )
            raise MigrationFailed(
                f"Migration {migration.script} failed at line {line}: "
                f"ERROR: {condition} (SQL State: {diag.sqlstate})\n  statement: {first}{kept}",
                script=migration.script,
                version=migration.version_text,
                line=line,
                sqlstate=diag.sqlstate,
                relation=missing_relation(missing or ""),
                error=exc,
            ) from None
