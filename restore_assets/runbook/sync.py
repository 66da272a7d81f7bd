"""Runbook §4.4: copy facilities and users from Legacy to Modernized.

Streamed with COPY out of the Legacy connection into a staging table on the Modernized one, then
one upsert per table on the natural key, all in one Modernized transaction. The two databases never
share `facility_num`: the Modernized sequence is read before and after and must not move.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from restore_assets.errors import SyncError
from restore_assets.pg.database import Database
from restore_assets.redaction import first_line
from restore_assets.runbook.checks import Check
from restore_assets.runbook.evidence import EvidenceStore
from restore_assets.runbook.preflight import reading_lock
from restore_assets.runbook.verify import write_count_transcripts
from restore_assets.settings import Checks

FACILITY_NUM_STATE_SQL = "SELECT last_value, is_called FROM facility_num"
COLUMNS_SQL = """
SELECT a.attname FROM pg_attribute a
 WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
"""


@dataclass(frozen=True)
class SyncTable:
    """How one table is matched across the two databases."""

    name: str
    key: tuple[str, ...]  # natural key
    # Foreign keys by id are remapped through the parent's natural key:
    # column -> (parent table, parent natural key column).
    remap: tuple[tuple[str, str, str], ...] = ()
    unique_key: bool = True  # False: no unique index, insert only missing rows


SYNC_TABLES = {
    "d_facility": SyncTable("d_facility", ("facilityid",)),
    "d_users": SyncTable("d_users", ("userid",), (("facility_id", "d_facility", "facilityid"),)),
    "d_roles": SyncTable(
        "d_roles", ("user_id", "c_role"), (("c_user", "d_users", "userid"),), unique_key=False
    ),
}


def columns_of(conn, table: str) -> list[str]:
    return [r[0] for r in conn.execute(COLUMNS_SQL, (table,)).fetchall()]


def _export_query(table: SyncTable, columns: list[str]) -> sql.Composed:
    """SELECT the table's columns plus, for each remapped id, the parent's natural key."""
    select = [sql.SQL("t.{}").format(sql.Identifier(c)) for c in columns]
    joins = []
    for index, (column, parent, parent_key) in enumerate(table.remap):
        alias = sql.Identifier(f"p{index}")
        select.append(sql.SQL("{}.{}").format(alias, sql.Identifier(parent_key)))
        joins.append(
            sql.SQL("LEFT JOIN {} {} ON {}.id = t.{}").format(
                sql.Identifier(parent), alias, alias, sql.Identifier(column)
            )
        )
    return sql.SQL("SELECT {} FROM {} t {} ORDER BY t.id").format(
        sql.SQL(", ").join(select), sql.Identifier(table.name), sql.SQL(" ").join(joins)
    )


def _upsert(table: SyncTable, columns: list[str], stage: str) -> sql.Composed:
    values = []
    for column in columns:
        remap = next((r for r in table.remap if r[0] == column), None)
        if remap is None:
            values.append(sql.SQL("s.{}").format(sql.Identifier(column)))
        else:
            _, parent, parent_key = remap
            values.append(
                sql.SQL("(SELECT p.id FROM {} p WHERE p.{} = s.{})").format(
                    sql.Identifier(parent),
                    sql.Identifier(parent_key),
                    sql.Identifier(f"__key_{column}"),
                )
            )
    insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} s").format(
        sql.Identifier(table.name),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(values),
        sql.Identifier(stage),
    )
    if not table.unique_key:
        match = sql.SQL(" AND ").join(
            sql.SQL("m.{} = s.{}").format(sql.Identifier(k), sql.Identifier(k)) for k in table.key
        )
        return insert + sql.SQL(" WHERE NOT EXISTS (SELECT 1 FROM {} m WHERE {})").format(
            sql.Identifier(table.name), match
        )
    updates = [c for c in columns if c not in table.key and c != "id"]
    return insert + sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(
        sql.SQL(", ").join(map(sql.Identifier, table.key)),
        sql.SQL(", ").join(
            sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
            for c in updates
        ),
    )


@dataclass
class SyncResult:
    """Per table: rows copied from Legacy, rows written on Modernized, rows there now."""

    tables: dict[str, dict[str, int]]
    facility_num_modernized: tuple[int, bool]
    seconds: float = 0.0
    missing: list[str] = field(default_factory=list)

    def check(self) -> Check:
        return sync_check("facilities_present", self.missing)


def sync_check(check_id: str, missing: Sequence[str]) -> Check:
    """The one verdict on §4.4 (the sync's own check and the db_restore gate)."""
    if not missing:
        return Check(check_id, True, "every Legacy facility and user is on Modernized")
    shown = ", ".join(missing[:10]) + (" …" if len(missing) > 10 else "")
    return Check(
        check_id, False, f"{len(missing)} missing on Modernized: {shown}", {"missing": len(missing)}
    )


def sync_facility_users(
    expect: Checks,
    legacy: Database,
    modern: Database,
    evidence: EvidenceStore,
    schema: str,
) -> SyncResult:
    """§4.4 as the chain runs it: copy, check every account arrived, and add the Modernized
    counts after the sync to the count transcripts (below the "before" ones)."""
    with reading_lock(legacy, modern):
        started = time.monotonic()
        try:
            result = sync_tables(legacy, modern, expect.sync_tables)
        except psycopg.Error as exc:  # a database error, rolled back: say so
            raise SyncError(f"account sync failed and was rolled back: {first_line(exc)}") from None
        result.seconds = round(time.monotonic() - started, 3)
        result.missing = missing_after_sync(legacy, modern)
        note = "after the §4.4 account sync"
        write_count_transcripts(
            modern, expect.legacy_count_tables, evidence, schema, note, append=True
        )
        return result


def sync_tables(legacy: Database, modern: Database, names: Sequence[str]) -> SyncResult:
    """Copy `names` (in dependency order) Legacy → Modernized in one Modernized transaction."""
    tables = [SYNC_TABLES[n] for n in SYNC_TABLES if n in names]
    report: dict[str, dict[str, int]] = {}
    with legacy.connect(autocommit=True) as src, modern.connect(autocommit=True) as dst:
        before = dst.execute(FACILITY_NUM_STATE_SQL).fetchone()
        with dst.transaction():
            for table in tables:
                common = [
                    c for c in columns_of(src, table.name) if c in columns_of(dst, table.name)
                ]
                stage = f"stage_{table.name}"
                keys = [f"__key_{column}" for column, _, _ in table.remap]
                dst.execute(
                    sql.SQL(
                        "CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA"
                    ).format(
                        sql.Identifier(stage),
                        sql.SQL(", ").join(map(sql.Identifier, common)),
                        sql.Identifier(table.name),
                    )
                )
                for key in keys:
                    dst.execute(
                        sql.SQL("ALTER TABLE {} ADD COLUMN {} text").format(
                            sql.Identifier(stage), sql.Identifier(key)
                        )
                    )
                copy_out = sql.SQL("COPY ({}) TO STDOUT").format(_export_query(table, common))
                copy_in = sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(stage), sql.SQL(", ").join(map(sql.Identifier, common + keys))
                )
                with src.cursor().copy(copy_out) as out, dst.cursor().copy(copy_in) as into:
                    while data := out.read():
                        into.write(data)
                staged = dst.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(stage))
                ).fetchone()[0]
                rows_in = dst.execute(_upsert(table, common, stage)).rowcount
                total = dst.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table.name))
                ).fetchone()[0]
                report[table.name] = {"copied": staged, "written": rows_in, "rows_now": total}
            after = dst.execute(FACILITY_NUM_STATE_SQL).fetchone()
            if after != before:
                raise SyncError(
                    f"the Modernized facility_num moved from {before} to {after} during the sync; "
                    "the two databases must not share it (runbook §4.4)"
                )
    return SyncResult(report, (int(before[0]), bool(before[1])))


def missing_after_sync(legacy: Database, modern: Database) -> list[str]:
    """Legacy facility ids and user ids that the Modernized side does not have."""
    query = "SELECT facilityid FROM d_facility UNION ALL SELECT userid FROM d_users"
    with legacy.connect(autocommit=True) as src, modern.connect(autocommit=True) as dst:
        wanted = {r[0] for r in src.execute(query).fetchall()}
        have = {r[0] for r in dst.execute(query).fetchall()}
    return sorted(wanted - have)
