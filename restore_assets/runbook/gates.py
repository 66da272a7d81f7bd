"""Runbook §6: the three gates — `db_restore`, `audit_capture`, `jms_claim` — each made of named
sub-checks with a reason, judged on the databases as they are now, and the gate report."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

import psycopg
from psycopg import sql

from restore_assets.errors import RestoreError
from restore_assets.flyway.history_row import HistoryRow
from restore_assets.pg.database import Database
from restore_assets.redaction import first_line
from restore_assets.runbook.checks import Check
from restore_assets.runbook.evidence import EvidenceStore
from restore_assets.runbook.facility_num import preview_facility_num
from restore_assets.runbook.flyway_adapter import load_flyway_config, native_engine
from restore_assets.runbook.gate_report import Gate, GateReport, write_report
from restore_assets.runbook.intake import SecretsStore
from restore_assets.runbook.migrate import history_summary
from restore_assets.runbook.preflight import reading_lock
from restore_assets.runbook.sync import missing_after_sync, sync_check
from restore_assets.runbook.verify import (
    SET_PATH_SQL,
    app_search_path,
    matching,
    user_tables,
    versions_check,
)
from restore_assets.settings import Checks, Settings

# Each gate's sub-checks, in report order: what the dry-run plan says would be evaluated
# (a test holds this list to a real gate report).
GATE_CHECKS = {
    "db_restore": (
        "legacy_query",
        "modernized_query",
        "flyway_versions",
        "facility_num_nextval",
        "facility_user_sync",
        "facility_api",
    ),
    "audit_capture": ("table_found", "insert_returning_id", "left_nothing_behind"),
    "jms_claim": (
        "db_restore_passed",
        "audit_capture_passed",
        "legacy_d_audit_event",
        "legacy_d_factor2_tables",
        "modernized_d_audit_event",
        "modernized_d_factor2_tables",
        "legacy_claim_item",
        "legacy_diagnosis_module",
    ),
}
AUDIT_COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.atthasdef OR a.attidentity <> ''
  FROM pg_attribute a
 WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
"""
RESOLVE_SQL = """
SELECT n.nspname, c.relname, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = to_regclass(%s)
"""
PROBE_ACTOR = "restore_assets:gate-probe"
LEGACY_READS = {
    "d_users": "SELECT count(*) FROM d_users",
    "d_facility": "SELECT count(*) FROM d_facility",
}
MODERNIZED_READS = {
    "d_users": "SELECT count(*) FROM d_users",
    "flyway_schema_history": "SELECT count(*) FROM flyway_schema_history",
}


def representative_read(
    check_id: str, db: Database, statements: Mapping[str, str], path: str | None = None
) -> Check:
    """A representative read on one side: every statement must succeed."""
    try:
        with db.connect(autocommit=True) as conn:
            if path:
                conn.execute(SET_PATH_SQL, (path,))
            counts = {name: conn.execute(q).fetchone()[0] for name, q in statements.items()}
            version = conn.execute("SHOW server_version").fetchone()[0]
    except (RestoreError, psycopg.Error) as exc:  # unreachable or refused: the gate reports it
        return Check(check_id, False, f"{db.describe()}: {first_line(exc)}")
    detail = ", ".join(f"{k}={v}" for k, v in counts.items())
    return Check(check_id, True, f"{db.describe()} (PostgreSQL {version}): {detail}")


def facility_api(url: str | None) -> Check:
    if not url:
        return Check("facility_api", None, "skipped (not configured: set RESTORE_FACILITY_API_URL)")
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - operator's URL
            status = response.status
    except (urllib.error.URLError, OSError) as exc:
        return Check("facility_api", False, f"{url}: {exc}")
    return Check("facility_api", 200 <= status < 300, f"{url}: HTTP {status}")


def db_restore_gate(
    expect: Checks,
    legacy: Database,
    modern: Database,
    schema: str,
    history: Sequence[HistoryRow],
    evidence: EvidenceStore,
) -> Gate:
    """§6.1: both sides answer, Flyway history complete, facility_num sane, accounts synced."""
    checks = [
        representative_read("legacy_query", legacy, LEGACY_READS),
        representative_read("modernized_query", modern, MODERNIZED_READS, app_search_path(schema)),
        versions_check("flyway_versions", expect.required_versions, history),
    ]
    try:
        checks.append(
            preview_facility_num(legacy, evidence, realign=False).check("facility_num_nextval")
        )
    except (RestoreError, psycopg.Error, OSError) as exc:  # its transcript is psql's, written
        detail = f"facility_num: {first_line(exc)}"
        checks.append(Check("facility_num_nextval", False, detail))
    try:
        checks.append(sync_check("facility_user_sync", missing_after_sync(legacy, modern)))
    except (RestoreError, psycopg.Error) as exc:
        checks.append(Check("facility_user_sync", False, first_line(exc)))
    checks.append(facility_api(expect.facility_api_url))
    return Gate("db_restore", checks)


def _probe_value(name: str, type_name: str):
    """A harmless value for a NOT NULL column the probe does not know by name."""
    if type_name.startswith(("character", "text")):
        return "gate-probe"
    if type_name in ("bigint", "integer", "smallint") or type_name.startswith("numeric"):
        return 0
    if type_name == "boolean":
        return False
    if type_name.startswith("timestamp") or type_name == "date":
        return sql.SQL("now()")
    if type_name in ("json", "jsonb"):
        return "{}"
    if type_name == "uuid":
        return sql.SQL("gen_random_uuid()")
    raise RestoreError(f"column {name} ({type_name}) is NOT NULL and the probe has no value for it")


def audit_capture_gate(modern: Database, schema: str) -> Gate:
    """§6.2: INSERT INTO d_audit_event (...) VALUES (...) RETURNING id, rolled back."""
    checks: list[Check] = []
    try:
        with modern.connect(autocommit=True) as conn:
            conn.execute(SET_PATH_SQL, (app_search_path(schema),))
            found = conn.execute(RESOLVE_SQL, ("d_audit_event",)).fetchone()
            if not found:
                return Gate(
                    "audit_capture", [Check("table_found", False, "d_audit_event is missing")]
                )
            table = sql.Identifier(found[0], found[1])
            checks.append(Check("table_found", True, f"d_audit_event is {found[0]}.{found[1]}"))
            count = sql.SQL("SELECT count(*) FROM {}").format(table)
            before = conn.execute(count).fetchone()[0]
            columns = conn.execute(AUDIT_COLUMNS_SQL, (found[2],)).fetchall()
            try:
                # force_rollback: the probe never leaves a row behind, whatever happens.
                with conn.transaction(force_rollback=True):
                    values = audit_values(conn, table, columns)
                    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
                        table,
                        sql.SQL(", ").join(sql.Identifier(c) for c in values),
                        sql.SQL(", ").join(
                            v if isinstance(v, sql.Composable) else sql.Literal(v)
                            for v in values.values()
                        ),
                    )
                    new_id = conn.execute(statement).fetchone()[0]
                checks.append(
                    Check(
                        "insert_returning_id",
                        True,
                        f"INSERT INTO d_audit_event ({', '.join(values)}) "
                        f"RETURNING id gave {new_id}",
                    )
                )
            except (RestoreError, psycopg.Error) as exc:  # the gate's subject: the INSERT
                detail = f"insert failed: {first_line(exc)}"
                checks.append(Check("insert_returning_id", False, detail))
            after = conn.execute(count).fetchone()[0]
    except (RestoreError, psycopg.Error) as exc:
        checks.append(Check("probe", False, first_line(exc)))
        return Gate("audit_capture", checks)
    checks.append(
        Check(
            "left_nothing_behind",
            before == after,
            f"rolled back: {before} row(s) before and after"
            if before == after
            else f"row count changed {before} -> {after}",
        )
    )
    return Gate("audit_capture", checks)


def audit_values(conn, table: sql.Identifier, columns) -> dict[str, object]:
    """Values the application would write, hashes chained as it chains them:
    payload_hash = sha256(payload),
    event_hash = sha256(previous_hash + payload_hash + epochMillis + actorId)."""
    names = {c[0] for c in columns}
    payload = json.dumps({"probe": "audit_capture", "by": "restore_assets"})
    payload_hash = hashlib.sha256(payload.encode()).hexdigest()
    previous_hash = None
    if "event_hash" in names and "id" in names:
        last = sql.SQL("SELECT event_hash FROM {} ORDER BY id DESC LIMIT 1").format(table)
        row = conn.execute(last).fetchone()
        previous_hash = row[0] if row else None
    millis = int(time.time() * 1000)
    chain = f"{previous_hash or ''}{payload_hash}{millis}{PROBE_ACTOR}"
    known = {
        "event_time": sql.SQL("now()"),
        "actor_id": PROBE_ACTOR,
        "actor_display_name": "restore_assets gate probe",
        "actor_role": "SYSTEM",
        "action": "GATE_PROBE",
        "resource": "gates/audit_capture",
        "payload": payload,
        "payload_hash": payload_hash,
        "previous_hash": previous_hash,
        "event_hash": hashlib.sha256(chain.encode()).hexdigest(),
    }
    values: dict[str, object] = {}
    for name, type_name, not_null, has_default in columns:
        if name in known and known[name] is not None:
            values[name] = known[name]
        elif not_null and not has_default:
            values[name] = _probe_value(name, type_name)
    return values


def jms_claim_gate(legacy: Database, modern: Database, earlier: list[Gate]) -> Gate:
    """§6.3: the earlier gates passed and the tables JMS/CLAIM/TRACE use exist on each side."""
    checks = [Check(f"{g.id}_passed", g.passed, g.summary()) for g in earlier]
    names = {"legacy": user_tables(legacy), "modernized": user_tables(modern)}
    for side, tables in names.items():
        for pattern, name in (
            ("d_audit_event", "d_audit_event"),
            ("d_factor2_*", "d_factor2_tables"),
        ):
            found = matching(pattern, tables)
            detail = f"{side}: {', '.join(found)}" if found else f"{side}: {pattern} missing"
            checks.append(Check(f"{side}_{name}", bool(found), detail))
    legacy_tables = {t for _, t in names["legacy"]}
    for table in ("claim_item", "diagnosis_module"):
        present = table in legacy_tables
        detail = f"legacy: {table} {'present' if present else 'missing'}"
        checks.append(Check(f"legacy_{table}", present, detail))
    return Gate("jms_claim", checks)


def run_gates(
    settings: Settings, legacy: Database, modern: Database, evidence: EvidenceStore
) -> GateReport:
    """All three gates, and the report files (gate_report.json/.md, table row, snippet)."""
    with reading_lock(legacy, modern):
        engine = native_engine(load_flyway_config(settings.flyway, modern), modern, lambda _: None)
        schema = engine.schemas()[1]
        history = engine.history_rows()
        db = db_restore_gate(settings.checks, legacy, modern, schema, history, evidence)
        audit = audit_capture_gate(modern, schema)
        jms = jms_claim_gate(legacy, modern, [db, audit])
        inputs = [f.as_evidence() for f in SecretsStore(settings.paths).inspect_all()]
        flyway = [row for row in history_summary(history) if row["type"] != "SCHEMA"]
        report = GateReport(
            [db, audit, jms], inputs, flyway, [legacy.describe(), modern.describe()], evidence.label
        )
        write_report(evidence, report)
        return report
