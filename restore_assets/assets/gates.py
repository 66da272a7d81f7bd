"""Runbook §6: the three gates, as blocking checks on `gates/report`. Materialising the report
pulls the whole chain; each gate is made of named sub-checks with a human detail."""

import hashlib
import json
import time
import urllib.error
import urllib.request

import dagster
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
)
from psycopg import sql

from restore_assets import __version__
from restore_assets.flyway import Version
from restore_assets.gate_report import Gate, GateReport, SubCheck, write_report
from restore_assets.resources.environment import RestoreEnvironment, record_step
from restore_assets.resources.flyway_runner import load_flyway_config, native_engine
from restore_assets.resources.postgres import PostgresTarget
from restore_assets.resources.secrets_store import SIDE_FILES, SecretsStore
from restore_assets.settings import Settings

from .legacy import FACILITY_NUM, preview_facility_num
from .modernized import HISTORY, app_search_path
from .reports import DDL_INVENTORY, MISSING_OBJECTS
from .sync import SYNC, missing_after_sync
from .verify import user_tables

REPORT = AssetKey(["gates", "report"])
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


def _query(check_id: str, target: PostgresTarget, statements: dict[str, str], path=None):
    """A representative read on one side: every statement must succeed."""
    try:
        with target.connect(autocommit=True) as conn:
            if path:
                conn.execute("SELECT set_config('search_path', %s, false)", (path,))
            counts = {name: conn.execute(q).fetchone()[0] for name, q in statements.items()}
            version = conn.execute("SHOW server_version").fetchone()[0]
    except Exception as exc:  # noqa: BLE001 - the gate reports it
        return SubCheck(check_id, False, target.redact(f"{target.describe()}: {exc}".strip()))
    detail = ", ".join(f"{k}={v}" for k, v in counts.items())
    return SubCheck(check_id, True, f"{target.describe()} (PostgreSQL {version}): {detail}")


def _facility_api(url: str | None) -> SubCheck:
    if not url:
        return SubCheck(
            "facility_api", None, "skipped (not configured: set RESTORE_FACILITY_API_URL)"
        )
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - operator's URL
            status = response.status
    except (urllib.error.URLError, OSError) as exc:
        return SubCheck("facility_api", False, f"{url}: {exc}")
    return SubCheck("facility_api", 200 <= status < 300, f"{url}: HTTP {status}")


def db_restore_gate(settings: Settings, legacy, modern, schema: str, history, evidence) -> Gate:
    successful = {Version.parse(r.version) for r in history if r.version and r.success}
    missing = [v for v in settings.required_versions if Version.parse(v) not in successful]
    checks = [
        _query(
            "legacy_query",
            legacy,
            {
                "d_users": "SELECT count(*) FROM d_users",
                "d_facility": "SELECT count(*) FROM d_facility",
            },
        ),
        _query(
            "modernized_query",
            modern,
            {
                "d_users": "SELECT count(*) FROM d_users",
                "flyway_schema_history": "SELECT count(*) FROM flyway_schema_history",
            },
            app_search_path(schema),
        ),
        SubCheck(
            "flyway_versions",
            not missing,
            f"successful versions include {', '.join(settings.required_versions)}"
            if not missing
            else f"Flyway history lacks successful version(s) {', '.join(missing)}",
        ),
    ]
    try:
        state = preview_facility_num(legacy, evidence, realign=False)
        highest = state.get("max_facility_number")
        behind = highest is not None and state["next_value"] <= highest
        ok = bool(state["exists"] and state["put_back"] and not behind)
        if not state["exists"]:
            detail = "facility_num is missing on Legacy"
        elif behind:
            detail = (
                f"facility_num would give {state['next_value']}, but facility number {highest} "
                "already exists; materialise legacy/facility_num to realign it"
            )
        else:
            detail = f"nextval gives {state['preview_nextval']} (previewed, put back)"
    except Exception as exc:  # noqa: BLE001
        ok, detail = False, f"facility_num: {exc}"
    checks.append(SubCheck("facility_num_nextval", ok, detail))
    try:
        absent = missing_after_sync(legacy, modern)
        checks.append(
            SubCheck(
                "facility_user_sync",
                not absent,
                "every Legacy facility and user is on Modernized"
                if not absent
                else f"not synced: {', '.join(absent[:5])}",
            )
        )
    except Exception as exc:  # noqa: BLE001
        checks.append(SubCheck("facility_user_sync", False, str(exc)))
    checks.append(_facility_api(settings.facility_api_url))
    return Gate("db_restore", checks)


def _probe_value(name: str, type_name: str):
    """A harmless value for a NOT NULL column the probe does not know by name."""
    if type_name.startswith(("character", "text")):
        return "gate-probe"
    if type_name in ("bigint", "integer", "smallint", "numeric") or type_name.startswith("numeric"):
        return 0
    if type_name == "boolean":
        return False
    if type_name.startswith("timestamp") or type_name == "date":
        return sql.SQL("now()")
    if type_name in ("json", "jsonb"):
        return "{}"
    if type_name == "uuid":
        return sql.SQL("gen_random_uuid()")
    raise ValueError(f"column {name} ({type_name}) is NOT NULL and the probe has no value for it")


def audit_capture_gate(modern: PostgresTarget, schema: str) -> Gate:
    """§6.2: INSERT INTO d_audit_event (...) VALUES (...) RETURNING id, rolled back."""
    checks: list[SubCheck] = []
    try:
        with modern.connect(autocommit=True) as conn:
            conn.execute("SELECT set_config('search_path', %s, false)", (app_search_path(schema),))
            found = conn.execute(RESOLVE_SQL, ("d_audit_event",)).fetchone()
            if not found:
                return Gate(
                    "audit_capture", [SubCheck("table_found", False, "d_audit_event is missing")]
                )
            table = sql.Identifier(found[0], found[1])
            checks.append(SubCheck("table_found", True, f"d_audit_event is {found[0]}.{found[1]}"))
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
                    SubCheck(
                        "insert_returning_id",
                        True,
                        f"INSERT INTO d_audit_event ({', '.join(values)}) "
                        f"RETURNING id gave {new_id}",
                    )
                )
            except Exception as exc:  # noqa: BLE001 - the gate's subject
                checks.append(SubCheck("insert_returning_id", False, f"insert failed: {exc}"))
            after = conn.execute(count).fetchone()[0]
    except Exception as exc:  # noqa: BLE001
        checks.append(SubCheck("probe", False, modern.redact(str(exc))))
        return Gate("audit_capture", checks)
    checks.append(
        SubCheck(
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


def jms_claim_gate(settings, legacy, modern, schema, earlier: list[Gate]) -> Gate:
    checks = [SubCheck(f"{g.id}_passed", g.passed, g.summary()) for g in earlier]
    sides = {"legacy": (legacy, None), "modernized": (modern, app_search_path(schema))}
    for side, (target, _) in sides.items():
        names = [t for _, t in user_tables(target)]
        for wanted in ("d_audit_event", "d_factor2_"):
            found = [
                n for n in names if n == wanted or (wanted.endswith("_") and n.startswith(wanted))
            ]
            label = wanted if not wanted.endswith("_") else "d_factor2_*"
            checks.append(
                SubCheck(
                    f"{side}_{label.replace('*', 'tables')}",
                    bool(found),
                    f"{side}: {', '.join(found)}" if found else f"{side}: {label} missing",
                )
            )
    legacy_tables = {t for _, t in user_tables(legacy)}
    for table in ("claim_item", "diagnosis_module"):
        checks.append(
            SubCheck(
                f"legacy_{table}",
                table in legacy_tables,
                f"legacy: {table} present"
                if table in legacy_tables
                else f"legacy: {table} missing",
            )
        )
    return Gate("jms_claim", checks)


@asset(
    key=REPORT,
    deps=[FACILITY_NUM, HISTORY, SYNC, DDL_INVENTORY, MISSING_OBJECTS],
    group_name="gates",
    description="§6: the gates. Materialising this pulls the whole chain.",
    check_specs=[
        AssetCheckSpec(
            "db_restore", asset=REPORT, blocking=True, description="§6.1 DB restore complete"
        ),
        AssetCheckSpec(
            "audit_capture", asset=REPORT, blocking=True, description="§6.2 audit capture ready"
        ),
        AssetCheckSpec(
            "jms_claim", asset=REPORT, blocking=True, description="§6.3 JMS/CLAIM may resume"
        ),
    ],
)
def gates_report(context: AssetExecutionContext, restore: RestoreEnvironment):
    started = time.monotonic()
    settings = restore.settings()
    legacy, modern = restore.target("legacy"), restore.target("modernized")
    evidence = restore.evidence(context)
    config = load_flyway_config(settings, modern)
    schema = config.default_schema or (config.schemas[0] if config.schemas else "public")
    history = native_engine(config, modern, context.log.info).history_rows()
    db = db_restore_gate(settings, legacy, modern, schema, history, evidence)
    audit = audit_capture_gate(modern, schema)
    jms = jms_claim_gate(settings, legacy, modern, schema, [db, audit])
    store = SecretsStore(settings)
    inputs = [
        {k: v for k, v in store.inspect(rel).as_evidence().items()}
        for side in SIDE_FILES
        for rel in SIDE_FILES[side]
    ]
    flyway = [
        {
            "version": r.version,
            "description": r.description,
            "type": r.type,
            "script": r.script,
            "checksum": r.checksum,
            "success": r.success,
        }
        for r in history
        if r.type != "SCHEMA"
    ]
    report = GateReport(
        [db, audit, jms], inputs, flyway, [legacy.describe(), modern.describe()], evidence.folder
    )
    files = write_report(evidence, report)
    record_step(
        evidence,
        "versions",
        {
            "status": "info",
            "restore_assets": __version__,
            "dagster": dagster.__version__,
            "targets": ", ".join(report.targets),
        },
    )
    record_step(
        evidence,
        "gates/report",
        {"status": report.status, **{g.id: g.summary() for g in report.gates}},
    )
    yield MaterializeResult(
        metadata={
            "status": report.status,
            "duration_s": round(time.monotonic() - started, 3),
            "gates": MetadataValue.md(report.markdown()),
            "evidence": MetadataValue.path(str(evidence.folder)),
            **{name: MetadataValue.path(str(evidence.path(name))) for name in files},
        }
    )
    for gate in report.gates:
        yield AssetCheckResult(
            check_name=gate.id,
            passed=gate.passed,
            description=gate.summary(),
            metadata={"checks": MetadataValue.json([c.as_dict() for c in gate.checks])},
        )
