"""Runbook §3: the Legacy database — restore, `facility_num`, and the verifications.

`legacy/schema` and `legacy/seed` come from one psql transaction (reset + schema + seed), so they
are one multi-asset: either both are materialised or the database is exactly as it was.
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)
from psycopg import sql

from restore_assets.resources.environment import (
    RestoreEnvironment,
    record_step,
)
from restore_assets.resources.evidence import EvidenceStore
from restore_assets.resources.postgres import PostgresTarget
from restore_assets.settings import LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE

from .secrets import SECRET_KEYS
from .steps import restore_step
from .verify import count_rows, count_transcripts, match_expected, psql_capture, user_tables

SIDE = "legacy"
SCHEMA = AssetKey(["legacy", "schema"])
SEED = AssetKey(["legacy", "seed"])
FACILITY_NUM = AssetKey(["legacy", "facility_num"])
FACILITY_PREFIX = "1.3.6.1.4.1.9414.72."

PATIENT_COUNT_SQL = "SELECT count(*) FROM d_patient WHERE facilityid = %s"
SEQUENCE_STATE_SQL = "SELECT last_value, is_called FROM facility_num"
SEQUENCE_INCREMENT_SQL = (
    "SELECT increment_by FROM pg_sequences WHERE sequencename = 'facility_num' "
    "AND schemaname = ANY (current_schemas(false))"
)
MAX_FACILITY_SQL = r"""
SELECT max((regexp_match(facilityid, '^1\.3\.6\.1\.4\.1\.9414\.72\.(\d+)$'))[1]::bigint)
  FROM d_facility
"""


@multi_asset(
    specs=[
        AssetSpec(
            SCHEMA,
            deps=[SECRET_KEYS[LEGACY_SCHEMA_FILE]],
            group_name="legacy",
            description="§3.1-3.2: reset `public` (and every schema the dump creates), apply the "
            "Legacy schema dump.",
        ),
        AssetSpec(
            SEED,
            deps=[SCHEMA, SECRET_KEYS[LEGACY_SEED_FILE]],
            group_name="legacy",
            description="§3.4: the Legacy seed, in the same transaction as the schema.",
        ),
    ],
    check_specs=[
        AssetCheckSpec(
            "expected_tables",
            asset=SCHEMA,
            blocking=False,  # the gates report it, with the reason, rather than being skipped
            description="§3.4/§6.3: d_users, d_audit_event, d_factor2_*, claim_item, "
            "diagnosis_module exist (configurable).",
        ),
        AssetCheckSpec(
            "patient_count",
            asset=SEED,
            description="§3.4: patients of facility 1.3.6.1.4.1.9414.72.103 are present.",
        ),
        AssetCheckSpec(
            "row_counts",
            asset=SEED,
            description="§3.5: row counts of d_users, d_audit_event, d_factor2_credential.",
        ),
    ],
    pool="restore_legacy",
)
def legacy_restore(context: AssetExecutionContext, restore: RestoreEnvironment):
    settings = restore.settings()
    target = restore.target(SIDE)
    evidence = restore.evidence(context)
    report, metadata = restore_step(context, restore, SIDE, "legacy/restore", "legacy_psql.log")
    tables = user_tables(target)
    evidence.write(
        "psql_dt_legacy.log",
        psql_capture(target, *(f"\\dt {schema}.*" for schema in report.reset_schemas)),
    )
    expected = match_expected(settings.legacy_expected_tables, tables)
    counts, patients = _counts(target, settings.legacy_count_tables, settings.patient_facility)
    count_transcripts(target, settings.legacy_count_tables, SIDE, evidence)
    yield MaterializeResult(asset_key=SCHEMA, metadata={**metadata, "tables": len(tables)})
    yield MaterializeResult(
        asset_key=SEED,
        metadata={
            "target": report.target,
            "row_counts": MetadataValue.json(counts),
            "patients": patients,
            "evidence": metadata["evidence"],
        },
    )
    missing = expected[~expected["present"]]["expected"].tolist()
    yield AssetCheckResult(
        asset_key=SCHEMA,
        check_name="expected_tables",
        passed=not missing,
        severity=AssetCheckSeverity.ERROR,
        description="all expected tables exist" if not missing else f"missing: {missing}",
        metadata={"tables": MetadataValue.md(expected.to_markdown(index=False))},
    )
    yield AssetCheckResult(
        asset_key=SEED,
        check_name="patient_count",
        passed=patients is not None and patients > 0,
        description=f"{patients} patient(s) for facility {settings.patient_facility}",
        metadata={"facility": settings.patient_facility, "patients": patients or 0},
    )
    absent = [t for t, n in counts.items() if n is None]
    yield AssetCheckResult(
        asset_key=SEED,
        check_name="row_counts",
        passed=not absent,
        description="counted " + ", ".join(f"{t}={n}" for t, n in counts.items()),
        metadata={"counts": MetadataValue.json(counts)},
    )


def _counts(
    target: PostgresTarget, tables: tuple[str, ...], facility: str
) -> tuple[dict[str, int | None], int | None]:
    """Row counts (None where the table is absent) and the facility's patient count."""
    with target.connect(autocommit=True) as conn:
        counts = count_rows(conn, tables)
        patients = None
        if conn.execute("SELECT to_regclass('d_patient')").fetchone()[0] is not None:
            patients = conn.execute(PATIENT_COUNT_SQL, (facility,)).fetchone()[0]
    return counts, patients


def preview_facility_num(
    target: PostgresTarget, evidence: EvidenceStore, realign: bool = True
) -> dict[str, object]:
    """§3.3: `nextval` works, the preview consumes nothing, and the sequence is past every
    facility number already issued (else, with `realign`, `ALTER SEQUENCE ... RESTART WITH
    max+1`; the gate only looks)."""
    with target.connect(autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('facility_num')").fetchone()[0] is None:
            return {"exists": False}
        last_value, is_called = conn.execute(SEQUENCE_STATE_SQL).fetchone()
        increment = conn.execute(SEQUENCE_INCREMENT_SQL).fetchone()[0]
        max_facility = conn.execute(MAX_FACILITY_SQL).fetchone()[0]
        try:
            preview = conn.execute("SELECT nextval('facility_num')").fetchone()[0]
        finally:
            # Put it back exactly: the runbook's log shows setval(..., 103) after the preview.
            conn.execute("SELECT setval('facility_num', %s, %s)", (last_value, is_called))
        restored = conn.execute(SEQUENCE_STATE_SQL).fetchone()
        realigned_to = None
        if realign and max_facility is not None and max_facility >= preview:
            realigned_to = max_facility + 1
            conn.execute(
                sql.SQL("ALTER SEQUENCE facility_num RESTART WITH {}").format(
                    sql.Literal(realigned_to)
                )
            )
        after = conn.execute(SEQUENCE_STATE_SQL).fetchone()
    evidence.write(
        "psql_nextval_facility_num_legacy.log",
        f"-- {target.describe()}\n"
        f"=> SELECT last_value, is_called FROM facility_num;\n {last_value} | {_b(is_called)}\n"
        f"=> SELECT nextval('facility_num');\n nextval\n---------\n {preview}\n(1 row)\n",
    )
    setval_log = (
        f"-- {target.describe()}\n"
        f"=> SELECT setval('facility_num', {last_value}, {_b(is_called, long=True)});\n"
        f" setval\n--------\n {last_value}\n(1 row)\n"
        f"=> SELECT last_value, is_called FROM facility_num;\n {restored[0]} | {_b(restored[1])}\n"
    )
    if realigned_to is not None:
        setval_log += (
            f"-- highest facility number in d_facility is {max_facility} >= next value {preview}\n"
            f"=> ALTER SEQUENCE facility_num RESTART WITH {realigned_to};\nALTER SEQUENCE\n"
            f"=> SELECT last_value, is_called FROM facility_num;\n {after[0]} | {_b(after[1])}\n"
        )
    evidence.write("psql_setval_facility_num_legacy.log", setval_log)
    next_value = after[0] + (increment if after[1] else 0)
    return {
        "exists": True,
        "before": {"last_value": last_value, "is_called": is_called},
        "preview_nextval": preview,
        "put_back": restored == (last_value, is_called),
        "max_facility_number": max_facility,
        "realigned_to": realigned_to,
        "after": {"last_value": after[0], "is_called": after[1]},
        "next_value": next_value,
        "next_facility_id": f"{FACILITY_PREFIX}{next_value}",
    }


def _b(value: bool, long: bool = False) -> str:
    return ("true" if value else "false") if long else ("t" if value else "f")


@asset(
    key=FACILITY_NUM,
    deps=[SEED],
    group_name="legacy",
    description="§3.3: the facility_num sequence exists, nextval works (previewed, put back), "
    "and it is past the highest facility number.",
    check_specs=[
        AssetCheckSpec(
            "nextval_works",
            asset=FACILITY_NUM,
            blocking=False,  # the gates report it, with the reason, rather than being skipped
            description="nextval gives a value, the preview consumed nothing, and the next "
            "facility id is not already taken.",
        )
    ],
    pool="restore_legacy",
)
def legacy_facility_num(context: AssetExecutionContext, restore: RestoreEnvironment):
    target = restore.target(SIDE)
    evidence = restore.evidence(context)
    state = preview_facility_num(target, evidence)
    ok = bool(
        state["exists"]
        and state["put_back"]
        and (
            state["max_facility_number"] is None
            or state["next_value"] > state["max_facility_number"]
        )
    )
    if not state["exists"]:
        detail = "sequence facility_num does not exist; it only comes from the Legacy baseline"
    elif state["realigned_to"] is not None:
        detail = (
            f"realigned: highest facility number {state['max_facility_number']} was not below "
            f"nextval {state['preview_nextval']}; RESTART WITH {state['realigned_to']}"
        )
    else:
        detail = f"nextval previewed {state['preview_nextval']} and put back; next id " + str(
            state["next_facility_id"]
        )
    record_step(
        evidence, "legacy/facility_num", {"status": "ok" if ok else "failed", "detail": detail}
    )
    yield MaterializeResult(
        metadata={
            "facility_num": MetadataValue.json(state),
            "evidence": MetadataValue.path(str(evidence.folder)),
        }
    )
    yield AssetCheckResult(
        check_name="nextval_works",
        passed=ok,
        description=detail,
        metadata={"preview_nextval": state.get("preview_nextval") or 0},
    )
