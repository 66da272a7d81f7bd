"""Runbook §3.3/§3.5 / §4.2-4.3: what a restored side must hold, checked on the database itself.

Names are resolved as the application resolves them (its search_path); row counts and `\\dt`
listings also go to the evidence as real psql transcripts.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from psycopg import sql

from restore_assets.flyway import Version
from restore_assets.flyway.history_row import HistoryRow
from restore_assets.pg.database import Database
from restore_assets.pg.transcripts import psql_transcript
from restore_assets.runbook.checks import Check
from restore_assets.runbook.evidence import EvidenceStore
from restore_assets.runbook.preflight import reading_lock
from restore_assets.settings import Checks

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
PATIENT_COUNT_SQL = "SELECT count(*) FROM d_patient WHERE facilityid = %s"
SET_PATH_SQL = "SELECT set_config('search_path', %s, false)"


APP_PATH_TAIL = '"$user", public'
SET_APP_PATH_PSQL = f'SET search_path TO :"schema", {APP_PATH_TAIL};'  # schema: a psql variable


def app_search_path(schema: str) -> str:
    """The application's search_path: the Flyway schema first (`opendolphin, "$user", public`)."""
    return f"{sql.Identifier(schema).as_string(None)}, {APP_PATH_TAIL}"


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


def user_tables(db: Database) -> list[tuple[str, str]]:
    with db.connect(autocommit=True) as conn:
        return [(r[0], r[1]) for r in conn.execute(USER_TABLES_SQL).fetchall()]


def matching(pattern: str, tables: Iterable[tuple[str, str]]) -> list[str]:
    """`schema.table` of every table whose name matches a name or glob (`d_factor2_*`)."""
    return [f"{s}.{t}" for s, t in tables if fnmatch.fnmatchcase(t, pattern)]


def count_rows(conn, tables: Sequence[str]) -> dict[str, int | None]:
    """Row counts of tables as the connection's search_path resolves them (None: absent)."""
    counts: dict[str, int | None] = {}
    for table in tables:
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
            counts[table] = None
            continue
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        counts[table] = conn.execute(query).fetchone()[0]
    return counts


# `\\dt` with no argument lists what the search_path shows: put every non-system schema on it,
# chosen by the server from its catalogue, so no name is ever typed into a meta-command.
DT_ALL_USER_SCHEMAS = (
    "SELECT set_config('search_path', string_agg(quote_ident(nspname), ', ' ORDER BY nspname), "
    'false) AS "schemas listed" FROM pg_namespace '
    "WHERE nspname !~ '^pg_' AND nspname <> 'information_schema';",
    "\\dt",
)


def write_dt_transcript(db: Database, evidence: EvidenceStore) -> None:
    """`psql_dt_<side>.log`: the tables of every user schema, as `\\dt` prints them."""
    text = psql_transcript(db, *DT_ALL_USER_SCHEMAS)
    evidence.write(f"psql_dt_{db.side}.log", text)


def write_count_transcripts(
    db: Database,
    tables: Sequence[str],
    evidence: EvidenceStore,
    search_path_schema: str | None = None,
    note: str = "",
    append: bool = False,
) -> None:
    """`psql_count_<table>_<side>.log` for each table (`append`: after what is there)."""
    save = evidence.append if append else evidence.write
    for table in tables:
        commands = ['SELECT count(*) FROM :"table";']
        variables: dict[str, object] = {"table": table}
        if search_path_schema:
            commands.insert(0, SET_APP_PATH_PSQL)
            variables["schema"] = search_path_schema
        text = psql_transcript(db, *commands, variables=variables, note=note, echo="queries")
        save(f"psql_count_{table}_{db.side}.log", text)


@dataclass
class Verification:
    """A side's verification: its checks, and the facts they were judged on."""

    checks: list[Check]
    counts: dict[str, int | None] = field(default_factory=dict)
    user_tables: int | None = None
    facts: dict[str, object] = field(default_factory=dict)

    def check(self, check_id: str) -> Check:
        return next(c for c in self.checks if c.id == check_id)


def verify_legacy(db: Database, expect: Checks, evidence: EvidenceStore) -> Verification:
    """§3.3/§3.5: expected tables, patients of the runbook's facility, the row counts."""
    with reading_lock(db):
        tables = user_tables(db)
        write_dt_transcript(db, evidence)
        expected = [
            {"expected": p, "present": bool(m), "found": ", ".join(m)}
            for p in expect.legacy_expected_tables
            for m in [matching(p, tables)]
        ]
        with db.connect(autocommit=True) as conn:
            counts = count_rows(conn, expect.legacy_count_tables)
            patients = None
            if conn.execute("SELECT to_regclass('d_patient')").fetchone()[0] is not None:
                patients = conn.execute(PATIENT_COUNT_SQL, (expect.patient_facility,)).fetchone()[0]
        write_count_transcripts(db, expect.legacy_count_tables, evidence)
        missing = [row["expected"] for row in expected if not row["present"]]
        absent = [t for t, n in counts.items() if n is None]
        facility = expect.patient_facility
        checks = [
            Check(
                "expected_tables",
                not missing,
                "all expected tables exist" if not missing else f"missing: {', '.join(missing)}",
                {"tables": expected},
            ),
            Check(
                "patient_count",
                patients is not None and patients > 0,
                f"{patients} patient(s) in facility {facility}"
                if patients is not None
                else "d_patient is missing",
                {"facility": facility, "patients": patients or 0},
            ),
            Check(
                "row_counts",
                not absent,
                "counted " + ", ".join(f"{t}={n}" for t, n in counts.items()),
                {"counts": counts},
            ),
        ]
        facts = {f"patients in facility {facility}": patients}
        return Verification(checks, counts, len(tables), facts)


# A COPY block's table as the dump names it, resolved by the server as psql resolved it: its
# catalogue name, and whether it is partitioned (rows in partitions). Today's pg_dump names every
# table with its schema (and sets search_path to ''); an older one names it bare, under its own
# `SET search_path = public, pg_catalog`, which the session's default path resolves alike.
RESOLVE_TABLE_SQL = """
SELECT n.nspname, c.relname, c.relkind = 'p'
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = to_regclass(%s)
"""
ROWS_VS_DUMP_FILE = "rows_vs_dump_{side}.md"


def rows_match_dump(db: Database, dumped: Mapping[str, int], evidence: EvidenceStore) -> Check:
    """Issue 23: every table holds the rows the seed's COPY blocks gave it (counted in intake's
    one pass over the seed), on either load path; the table goes to the evidence. Fewer rows
    fail it (rows lost: a trigger or rule that dropped them, a table missing). More pass,
    said: a COPY line is one row or an error, so only the seed's other statements (an INSERT)
    or a trigger add rows, and those are not counted."""
    rows = []
    with reading_lock(db), db.connect(autocommit=True) as conn:
        for name, expected in dumped.items():
            found = conn.execute(RESOLVE_TABLE_SQL, (name,)).fetchone()
            restored = None
            if found is not None:
                schema, table, partitioned = found
                only = sql.SQL("") if partitioned else sql.SQL("ONLY ")
                query = sql.SQL("SELECT count(*) FROM {}{}").format(
                    only, sql.Identifier(schema, table)
                )
                restored = conn.execute(query).fetchone()[0]
            rows.append({"table": name, "dump": expected, "restored": restored})
    lines = ["| table | rows in the dump | rows restored |", "| --- | ---: | ---: |"]
    lines += [f"| {r['table']} | {r['dump']} | {r['restored']} |" for r in rows]
    evidence.write(ROWS_VS_DUMP_FILE.format(side=db.side), "\n".join(lines) + "\n")
    if not rows:
        why = "the seed has no COPY block (rows an INSERT loads are not counted)"
        return Check("rows_match_dump", None, why, {"tables": rows})
    lost = [r for r in rows if r["restored"] is None or r["restored"] < r["dump"]]
    more = [r for r in rows if r not in lost and r["restored"] != r["dump"]]
    said = [f"{r['table']} (dump {r['dump']}, restored {r['restored']})" for r in lost + more]
    if lost:
        detail = "rows missing: " + ", ".join(said[: len(lost)])
    else:
        total = sum(r["dump"] for r in rows)
        detail = f"all {len(rows)} tables hold their COPY blocks' rows ({total} rows)"
    if more:
        detail += "; more than the COPY blocks (the seed's other statements): "
        detail += ", ".join(said[len(lost) :])
    return Check("rows_match_dump", not lost, detail, {"tables": rows})


def missing_versions(required: Sequence[str], rows: Sequence[HistoryRow]) -> list[str]:
    """Required Flyway versions without a successful history row (numeric comparison)."""
    successful = {Version.parse(r.version) for r in rows if r.version and r.success}
    return [v for v in required if Version.parse(v) not in successful]


def versions_check(check_id: str, required: Sequence[str], rows: Sequence[HistoryRow]) -> Check:
    """The one decision both the Modernized check and the db_restore gate report."""
    missing = missing_versions(required, rows)
    if not missing:
        return Check(check_id, True, f"successful versions include {', '.join(required)}")
    return Check(
        check_id,
        False,
        f"Flyway history lacks successful version(s) {', '.join(missing)}; look at "
        "flyway_schema_history, `restore-assets flyway repair`, then migrate again",
    )


def verify_modernized(
    db: Database,
    expect: Checks,
    schema: str,
    rows: Sequence[HistoryRow],
    evidence: EvidenceStore,
) -> Verification:
    """§4.2/§4.3, resolving names through the application's search_path."""
    with reading_lock(db):
        write_dt_transcript(db, evidence)
        with db.connect(autocommit=True) as conn:
            conn.execute(SET_PATH_SQL, (app_search_path(schema),))
            tables = {t: find_object(conn, "table", t) for t in expect.modern_expected_tables}
            columns = {c: find_object(conn, "column", c) for c in expect.modern_expected_columns}
            trgm = find_object(conn, "extension", "pg_trgm")
            counts = count_rows(conn, expect.legacy_count_tables)
        # Taken before §4.4 copies users over: said so, so 0 here and 12 after the sync never clash.
        note = "before the §4.4 account sync"
        write_count_transcripts(db, expect.legacy_count_tables, evidence, schema, note)
        missing_tables = [t for t, where in tables.items() if not where]
        missing_columns = [c for c, where in columns.items() if not where]
        checks = [
            versions_check("history_versions", expect.required_versions, rows),
            Check(
                "expected_tables",
                not missing_tables,
                "all present" if not missing_tables else f"missing: {', '.join(missing_tables)}",
                {"found": tables},
            ),
            Check(
                "expected_columns",
                not missing_columns,
                "all present" if not missing_columns else f"missing: {', '.join(missing_columns)}",
                {"found": columns},
            ),
            Check(
                "pg_trgm", bool(trgm), f"{trgm} installed" if trgm else "pg_trgm is missing (V0002)"
            ),
        ]
        return Verification(checks, counts)
