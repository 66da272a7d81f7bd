"""Flyway's commands — info, validate, baseline, migrate, repair — with Flyway's semantics on
PostgreSQL (flyway-compat.md). Works on one psycopg connection in autocommit mode; each
transactional migration gets its own transaction together with its history row."""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.errors import FlywayError, MigrationFailed
from restore_assets.flyway.history import (
    SCHEMA_MARKER_DESCRIPTION,
    HistoryRow,
    HistoryTable,
    lock_key,
)
from restore_assets.flyway.resolver import ResolvedMigration, resolve
from restore_assets.flyway.statements import Statement, split_statements
from restore_assets.flyway.version import Version

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.:\-]+)\}")
_RELATION = re.compile(r'relation "([^"]+)" does not exist')

# Objects that make a schema "non-empty" for baselineOnMigrate, extension members excluded.
SCHEMA_OBJECTS_SQL = """
SELECT
  (SELECT count(*) FROM pg_class c
    WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                        AND d.objid = c.oid AND d.deptype = 'e'))
+ (SELECT count(*) FROM pg_type t
    WHERE t.typnamespace = n.oid AND t.typtype <> 'c' AND t.typcategory <> 'A'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                        AND d.objid = t.oid AND d.deptype = 'e'))
+ (SELECT count(*) FROM pg_proc p
    WHERE p.pronamespace = n.oid
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                        AND d.objid = p.oid AND d.deptype = 'e'))
FROM pg_namespace n WHERE n.nspname = %s
"""


@dataclass(frozen=True)
class InfoRow:
    category: str
    version: str | None
    description: str
    type: str
    installed_on: dt.datetime | None
    state: str
    script: str = ""
    checksum: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "category": self.category,
            "version": self.version or "",
            "description": self.description,
            "type": self.type,
            "installed_on": self.installed_on.isoformat(sep=" ", timespec="seconds")
            if self.installed_on
            else "",
            "state": self.state,
        }


@dataclass
class MigrateResult:
    schemas_created: list[str] = field(default_factory=list)
    baselined: bool = False
    applied: list[HistoryRow] = field(default_factory=list)
    seconds: float = 0.0


class Flyway:
    """The engine. `connect` returns a new psycopg connection to the target database."""

    def __init__(
        self,
        config: FlywayConfig,
        connect: Callable[[], psycopg.Connection],
        log: Callable[[str], None] = lambda message: None,
        lock_wait_seconds: float = 600,
    ):
        self.config = config
        self._connect = connect
        self.log = log
        self.lock_wait_seconds = lock_wait_seconds

    # -- connection-level helpers ---------------------------------------------------------

    def _open(self) -> psycopg.Connection:
        conn = self._connect()
        conn.autocommit = True
        conn.add_notice_handler(lambda diag: None)  # NOTICEs ("already exists, skipping")
        return conn

    def _schemas(self, conn: psycopg.Connection) -> tuple[list[str], str]:
        default = self.config.default_schema
        schemas = list(self.config.schemas)
        if default is None:
            default = (
                schemas[0] if schemas else conn.execute("SELECT current_schema()").fetchone()[0]
            )
        if not schemas:
            schemas = [default]
        return schemas, default

    def _history(self, conn: psycopg.Connection) -> HistoryTable:
        return HistoryTable(self._schemas(conn)[1], self.config.table)

    def _lock(self, conn: psycopg.Connection, history: HistoryTable) -> int:
        key = lock_key(history.schema, history.table)
        deadline = time.monotonic() + self.lock_wait_seconds
        waited = False
        while not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            if not waited:
                self.log(f"waiting for the Flyway lock on {history.schema}.{history.table}")
                waited = True
            if time.monotonic() > deadline:
                raise FlywayError(
                    f"another Flyway (or restore_assets) holds the lock on "
                    f"{history.schema}.{history.table}; try again when it has finished"
                )
            time.sleep(0.2)
        return key

    @staticmethod
    def _unlock(conn: psycopg.Connection, key: int) -> None:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def _schema_exists(self, conn: psycopg.Connection, schema: str) -> bool:
        row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        return row is not None

    def _schema_empty(self, conn: psycopg.Connection, schema: str) -> bool:
        row = conn.execute(SCHEMA_OBJECTS_SQL, (schema,)).fetchone()
        return row is None or row[0] == 0

    def _installed_by(self, conn: psycopg.Connection) -> str:
        return self.config.installed_by or conn.execute("SELECT current_user").fetchone()[0]

    # -- state ----------------------------------------------------------------------------

    def resolved(self) -> list[ResolvedMigration]:
        return resolve(self.config)

    def history_rows(self) -> list[HistoryRow]:
        with self._open() as conn:
            return self._history(conn).rows(conn)

    def info(self) -> list[InfoRow]:
        with self._open() as conn:
            rows = self._history(conn).rows(conn)
        return build_info(self.config, self.resolved(), rows)

    def validate(self, *, pending_is_error: bool = True) -> list[str]:
        """Differences between the files and the history; empty means valid."""
        with self._open() as conn:
            rows = self._history(conn).rows(conn)
        return validation_errors(self.config, self.resolved(), rows, pending_is_error)

    # -- commands -------------------------------------------------------------------------

    def baseline(self) -> bool:
        """Write the baseline row; returns False when the same baseline is already there."""
        with self._open() as conn:
            history = self._history(conn)
            key = self._lock(conn, history)
            try:
                with conn.transaction():
                    return self._baseline(conn, history)
            finally:
                self._unlock(conn, key)

    def _baseline(self, conn: psycopg.Connection, history: HistoryTable) -> bool:
        if history.exists(conn):
            rows = history.rows(conn)
            baselines = [r for r in rows if r.type == "BASELINE"]
            others = [r for r in rows if r.type not in ("BASELINE", "SCHEMA")]
            if (
                len(baselines) == 1
                and not others
                and Version.parse(baselines[0].version or "0")
                == Version.parse(self.config.baseline_version)
                and baselines[0].description == self.config.baseline_description
            ):
                self.log(f"schema history already holds baseline {baselines[0].version}")
                return False
            if rows and (baselines or others):
                raise FlywayError(
                    f"Unable to baseline schema history table {history.schema}.{history.table} "
                    "as it already contains migrations"
                )
        else:
            self._create_history(conn, history)
        history.insert(
            conn,
            rank=history.next_rank(conn),
            version=self.config.baseline_version,
            description=self.config.baseline_description,
            type="BASELINE",
            script=self.config.baseline_description,
            checksum=None,
            installed_by=self._installed_by(conn),
            execution_time=0,
            success=True,
        )
        self.log(f"baselined {history.schema} at version {self.config.baseline_version}")
        return True

    def _create_history(self, conn: psycopg.Connection, history: HistoryTable) -> list[str]:
        """Create missing schemas (and the marker row for them) and the history table."""
        schemas, _ = self._schemas(conn)
        created = []
        for schema in schemas:
            if not self._schema_exists(conn, schema):
                if not self.config.create_schemas:
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
                installed_by=self._installed_by(conn),
                execution_time=0,
                success=True,
            )
        return created

    def migrate(self) -> MigrateResult:
        started = time.monotonic()
        result = MigrateResult()
        resolved = self.resolved()
        with self._open() as conn:
            history = self._history(conn)
            key = self._lock(conn, history)
            try:
                self._prepare_history(conn, history, result)
                rows = history.rows(conn)
                if self.config.validate_on_migrate:
                    errors = validation_errors(self.config, resolved, rows, pending_is_error=False)
                    if errors:
                        raise FlywayError("Validate failed:\n" + "\n".join(errors))
                failed = [r for r in rows if not r.success]
                if failed:
                    raise FlywayError(_failed_message(failed[0]))
                for migration in pending_migrations(self.config, resolved, rows):
                    result.applied.append(self._apply(conn, history, migration))
            finally:
                self._unlock(conn, key)
        result.seconds = round(time.monotonic() - started, 3)
        return result

    def _prepare_history(
        self, conn: psycopg.Connection, history: HistoryTable, result: MigrateResult
    ) -> None:
        if history.exists(conn):
            return
        schemas, _ = self._schemas(conn)
        non_empty = [
            s for s in schemas if self._schema_exists(conn, s) and not self._schema_empty(conn, s)
        ]
        if non_empty and not self.config.baseline_on_migrate:
            raise FlywayError(
                f"Found non-empty schema(s) {', '.join(non_empty)} but no schema history table. "
                "Use baseline() or set baselineOnMigrate to true to initialize the schema history "
                "table."
            )
        with conn.transaction():
            result.schemas_created = self._create_history(conn, history)
            if non_empty:
                self._baseline(conn, history)
                result.baselined = True

    def _apply(
        self, conn: psycopg.Connection, history: HistoryTable, migration: ResolvedMigration
    ) -> HistoryRow:
        text = migration.read_text(self.config.encoding)
        if self.config.placeholder_replacement:
            text = replace_placeholders(text, self._placeholders(conn, history, migration))
        statements = split_statements(text)
        transactional = _transactional(migration, statements, self.config.mixed)
        label = migration.version_text or migration.description
        self.log(
            f"Migrating schema {history.schema} to version {label} - {migration.description}"
            + ("" if transactional else " [non-transactional]")
        )
        installed_by = self._installed_by(conn)
        # Flyway puts the default schema first, ahead of whatever the path was.
        original_path = conn.execute("SHOW search_path").fetchone()[0]
        schema_first = f"{sql.Identifier(history.schema).as_string(conn)}, {original_path}"
        conn.execute("SELECT set_config('search_path', %s, false)", (schema_first,))
        values = dict(
            version=migration.version_text,
            description=migration.description,
            type=migration.type,
            script=migration.script,
            checksum=migration.checksum,
            installed_by=installed_by,
        )
        started = time.monotonic()
        try:
            if transactional:
                with conn.transaction():
                    self._execute(conn, migration, statements)
                    elapsed = int((time.monotonic() - started) * 1000)
                    rank = history.next_rank(conn)
                    history.insert(conn, rank=rank, execution_time=elapsed, success=True, **values)
            else:
                try:
                    self._execute(conn, migration, statements)
                except MigrationFailed:
                    # Autocommit work cannot be undone: record it as failed, as Flyway does.
                    elapsed = int((time.monotonic() - started) * 1000)
                    rank = history.next_rank(conn)
                    history.insert(conn, rank=rank, execution_time=elapsed, success=False, **values)
                    raise
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

    def _execute(
        self, conn: psycopg.Connection, migration: ResolvedMigration, statements: list[Statement]
    ) -> None:
        for statement in statements:
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
                message = (diag.message_primary or str(exc)).strip()
                relation = _RELATION.search(message)
                first = statement.code.splitlines()[0] if statement.code else ""
                raise MigrationFailed(
                    f"Migration {migration.script} failed at line {line}: "
                    f"ERROR: {message} (SQL State: {diag.sqlstate})\n  statement: {first}",
                    script=migration.script,
                    version=migration.version_text,
                    line=line,
                    sqlstate=diag.sqlstate,
                    relation=relation.group(1) if relation else None,
                ) from None

    def _placeholders(
        self, conn: psycopg.Connection, history: HistoryTable, migration: ResolvedMigration
    ) -> dict[str, str]:
        user, database = conn.execute("SELECT current_user, current_database()").fetchone()
        values = {k.lower(): v for k, v in self.config.placeholders.items()}
        values.update(
            {
                "flyway:defaultschema": history.schema,
                "flyway:user": user,
                "flyway:database": database,
                "flyway:timestamp": dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
                "flyway:filename": migration.path.name,
                "flyway:table": history.table,
                "flyway:workingdirectory": os.getcwd(),
            }
        )
        return values

    def repair(self) -> dict[str, list[str]]:
        """Delete failed rows; realign description/type/checksum of applied rows to the files."""
        resolved = {m.version: m for m in self.resolved() if m.version is not None}
        removed, realigned = [], []
        with self._open() as conn:
            history = self._history(conn)
            if not history.exists(conn):
                return {"removed": removed, "realigned": realigned}
            key = self._lock(conn, history)
            try:
                with conn.transaction():
                    for row in history.rows(conn):
                        if not row.success:
                            conn.execute(
                                sql.SQL('DELETE FROM {} WHERE "installed_rank" = %s').format(
                                    history.ident
                                ),
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
                            file.description,
                            file.type,
                        ):
                            conn.execute(
                                sql.SQL(
                                    'UPDATE {} SET "checksum" = %s, "description" = %s, '
                                    '"type" = %s WHERE "installed_rank" = %s'
                                ).format(history.ident),
                                (file.checksum, file.description, file.type, row.installed_rank),
                            )
                            realigned.append(row.version)
            finally:
                self._unlock(conn, key)
        return {"removed": removed, "realigned": realigned}


def _transactional(migration: ResolvedMigration, statements: list[Statement], mixed: bool) -> bool:
    kinds = {s.transactional for s in statements}
    if len(kinds) == 2 and not mixed:
        offending = next(s for s in statements if not s.transactional)
        raise FlywayError(
            f"Detected both transactional and non-transactional statements within the same "
            f"migration (even though mixed is false). Offending statement in {migration.script} "
            f"at line {offending.line}: {offending.code.splitlines()[0]}"
        )
    return False not in kinds  # mixed=true with both kinds runs the whole script in autocommit


def replace_placeholders(text: str, values: dict[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1).lower()
        if name not in values:
            raise FlywayError(
                f"No value provided for placeholder: ${{{match.group(1)}}}. "
                f"Set flyway.placeholders.{match.group(1)} or remove it from the migration"
            )
        return values[name]

    return _PLACEHOLDER.sub(substitute, text)


def _failed_message(row: HistoryRow) -> str:
    return (
        f"Detected failed migration to version {row.version} ({row.description}). "
        "Please remove any half-completed changes then run repair to fix the schema history "
        "(`restore-assets flyway repair`), then migrate again."
    )


def _baseline_version(rows: list[HistoryRow]) -> Version | None:
    for row in rows:
        if row.type == "BASELINE" and row.version:
            return Version.parse(row.version)
    return None


def _applied_versions(rows: list[HistoryRow]) -> dict[Version, HistoryRow]:
    return {
        Version.parse(r.version): r
        for r in rows
        if r.version is not None and r.type not in ("SCHEMA", "BASELINE")
    }


def pending_migrations(
    config: FlywayConfig, resolved: list[ResolvedMigration], rows: list[HistoryRow]
) -> list[ResolvedMigration]:
    """What migrate would apply, in order: new versions (out-of-order ones if allowed), then
    new or changed repeatables."""
    baseline = _baseline_version(rows)
    applied = _applied_versions(rows)
    highest = max([*applied, *([baseline] if baseline else [])], default=None)
    pending = []
    for m in resolved:
        if m.version is None:
            latest = [
                r
                for r in rows
                if r.version is None
                and r.type == m.type
                and r.description == m.description
                and r.success
            ]
            if not latest or latest[-1].checksum != m.checksum:
                pending.append(m)
            continue
        if m.version in applied or (baseline is not None and m.version <= baseline):
            continue
        if highest is not None and m.version < highest and not config.out_of_order:
            continue
        pending.append(m)
    versioned = sorted((m for m in pending if m.version is not None), key=lambda m: m.version)
    return versioned + [m for m in pending if m.version is None]


def validation_errors(
    config: FlywayConfig,
    resolved: list[ResolvedMigration],
    rows: list[HistoryRow],
    pending_is_error: bool,
) -> list[str]:
    errors = []
    baseline = _baseline_version(rows)
    applied = _applied_versions(rows)
    files = {m.version: m for m in resolved if m.version is not None}
    highest_file = max(files, default=None)
    highest_applied = max(applied, default=None)
    for row in rows:
        if not row.success:
            errors.append(_failed_message(row))
    for version, row in sorted(applied.items()):
        if baseline is not None and version <= baseline:
            continue
        file = files.get(version)
        if file is None:
            if highest_file is not None and version > highest_file:
                continue  # future: applied by a newer release, ignored by default
            errors.append(f"Detected applied migration not resolved locally: {row.version}.")
            continue
        if not row.success:
            continue
        if row.type != file.type:
            errors.append(
                f"Migration type mismatch for migration version {row.version}\n"
                f"-> Applied to database : {row.type}\n-> Resolved locally    : {file.type}"
            )
        if row.checksum is not None and file.checksum is not None and row.checksum != file.checksum:
            errors.append(
                f"Migration checksum mismatch for migration version {row.version}\n"
                f"-> Applied to database : {row.checksum}\n"
                f"-> Resolved locally    : {file.checksum}\n"
                "Either revert the changes to the migration, or run repair to update the schema "
                "history."
            )
        if row.description != file.description:
            errors.append(
                f"Migration description mismatch for migration version {row.version}\n"
                f"-> Applied to database : {row.description}\n"
                f"-> Resolved locally    : {file.description}"
            )
    for version, file in sorted(files.items()):
        if version in applied or (baseline is not None and version <= baseline):
            continue
        out_of_order = highest_applied is not None and version < highest_applied
        if out_of_order and not config.out_of_order:
            errors.append(
                f"Detected resolved migration not applied to database: {file.version_text} "
                f"({file.script}) is below the highest applied version {highest_applied}; "
                "set flyway.outOfOrder=true to apply it, or renumber it."
            )
        elif pending_is_error:
            errors.append(
                f"Detected resolved migration not applied to database: {file.version_text}."
            )
    if pending_is_error:
        for m in pending_migrations(config, resolved, rows):
            if m.version is None:
                errors.append(
                    f"Detected resolved repeatable migration not applied to database: "
                    f"{m.description}."
                )
    return errors


def _from_history(row: HistoryRow, state: str, category: str = "Versioned") -> InfoRow:
    return InfoRow(
        category,
        row.version,
        row.description,
        row.type,
        row.installed_on,
        state,
        row.script,
        row.checksum,
    )


def _from_file(m: ResolvedMigration, state: str, installed_on=None) -> InfoRow:
    category = "Repeatable" if m.repeatable else "Versioned"
    return InfoRow(
        category, m.version_text, m.description, m.type, installed_on, state, m.script, m.checksum
    )


def build_info(
    config: FlywayConfig, resolved: list[ResolvedMigration], rows: list[HistoryRow]
) -> list[InfoRow]:
    """Flyway's `info` table: schema marker, baseline, versions in order, then repeatables."""
    baseline = _baseline_version(rows)
    applied = _applied_versions(rows)
    files = {m.version: m for m in resolved if m.version is not None}
    highest_file = max(files, default=None)
    highest_applied = max(applied, default=None)
    pending = {m.script for m in pending_migrations(config, resolved, rows)}
    # SCHEMA and BASELINE rows are "synthetic" to Flyway: its info shows no category for them.
    head = [_from_history(r, "Success", "") for r in rows if r.type == "SCHEMA"]
    head += [_from_history(r, "Baseline", "") for r in rows if r.type == "BASELINE"]
    versioned: list[tuple[Version, InfoRow]] = []
    for version, row in applied.items():
        if not row.success:
            state = "Failed"
        elif version not in files:
            state = "Future" if highest_file is not None and version > highest_file else "Missing"
        elif row.installed_rank != _rank_order(rows, version):
            state = "Out of Order"
        else:
            state = "Success"
        versioned.append((version, _from_history(row, state)))
    for version, m in files.items():
        if version in applied:
            continue
        if baseline is not None and version <= baseline:
            state = "Below Baseline"
        elif m.script in pending or highest_applied is None:
            state = "Pending"
        else:
            state = "Ignored"
        versioned.append((version, _from_file(m, state)))
    repeatable = []
    for m in resolved:
        if m.version is not None:
            continue
        runs = [
            r
            for r in rows
            if r.version is None and r.type == m.type and r.description == m.description
        ]
        state = "Pending" if not runs else ("Outdated" if m.script in pending else "Success")
        repeatable.append(_from_file(m, state, runs[-1].installed_on if runs else None))
    versioned.sort(key=lambda item: item[0])
    return head + [row for _, row in versioned] + repeatable


def _rank_order(rows: list[HistoryRow], version: Version) -> int:
    """The rank the version would have if versions had been applied in order."""
    ordered = sorted(
        (r for r in rows if r.version is not None and r.type not in ("SCHEMA", "BASELINE")),
        key=lambda r: Version.parse(r.version),
    )
    ranks = sorted(r.installed_rank for r in ordered)
    for row, rank in zip(ordered, ranks, strict=True):
        if Version.parse(row.version) == version:
            return rank
    return -1
