"""Runbook §3: the Legacy database — restore, `facility_num`, and the verifications.

`legacy/schema` and `legacy/seed` come from one psql transaction (reset + schema + seed), so they
are one multi-asset: either both are materialised or the database is exactly as it was.
"""

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    MaterializeResult,
    asset,
    multi_asset,
)

from restore_assets.i18n import _
from restore_assets.resources.config import RestoreConfig
from restore_assets.resources.database import PostgresResource
from restore_assets.resources.evidence import EvidenceResource
from restore_assets.runbook.facility_num import preview_facility_num
from restore_assets.runbook.verify import rows_match_dump, verify_legacy
from restore_assets.settings import LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE

from .partitions import TARGETS
from .secrets import SECRET_KEYS
from .shell import check_result, evidence_metadata, redacted_step, table
from .side_run import restore_step
from .stops import after_commit, recorded, stop_on_blocking_checks

SCHEMA = AssetKey(["legacy", "schema"])
SEED = AssetKey(["legacy", "seed"])
FACILITY_NUM = AssetKey(["legacy", "facility_num"])


@multi_asset(
    specs=[
        AssetSpec(
            SCHEMA,
            deps=[SECRET_KEYS[LEGACY_SCHEMA_FILE]],
            group_name="legacy",
            description=_(
                "§3.1-3.2: reset `public` (and every schema the dump creates), apply the "
                "Legacy schema dump."
            ),
        ),
        AssetSpec(
            SEED,
            deps=[SCHEMA, SECRET_KEYS[LEGACY_SEED_FILE]],
            group_name="legacy",
            description=_("§3.3: the Legacy seed, in the same transaction as the schema."),
        ),
    ],
    check_specs=[
        AssetCheckSpec(
            "expected_tables",
            asset=SCHEMA,
            blocking=True,  # the gates cannot pass without them: the run must not look green
            description=_(
                "§3.3/§6.3: d_users, d_audit_event, d_factor2_*, claim_item, "
                "diagnosis_module exist (configurable)."
            ),
        ),
        AssetCheckSpec(
            "patient_count",
            asset=SEED,
            description=_("§3.3: patients of facility 1.3.6.1.4.1.9414.72.103 are present."),
        ),
        AssetCheckSpec(
            "row_counts",
            asset=SEED,
            description=_("§3.5: row counts of d_users, d_audit_event, d_factor2_credential."),
        ),
        AssetCheckSpec(
            "rows_match_dump",
            asset=SEED,
            blocking=True,  # a table short of its seed rows: the data did not arrive
            description=_(
                "Every table holds the rows the seed's COPY blocks gave it (counted "
                "while intake read the seed); fewer fail it, more are named."
            ),
        ),
    ],
    partitions_def=TARGETS,
)
@redacted_step
def legacy_restore(
    context: AssetExecutionContext,
    restore: RestoreConfig,
    legacy_db: PostgresResource,
    evidence: EvidenceResource,
):
    result, store, metadata = restore_step(context, "legacy/restore", restore, legacy_db, evidence)
    settings = restore.settings()
    step = "legacy/restore"
    with recorded(context, store, step), after_commit(context, store, step, legacy_db.database):
        verification = verify_legacy(legacy_db.database, settings.checks, store)
        dumped = {t: n for f in result.files for t, n in f.copy_rows.items()}
        arrived = rows_match_dump(legacy_db.database, dumped, store)
        stop_on_blocking_checks(context, store, SCHEMA, verification.checks)
        stop_on_blocking_checks(context, store, SEED, [arrived])
    yield MaterializeResult(
        asset_key=SCHEMA, metadata={**metadata, "tables": verification.user_tables}
    )
    counts = [{"table": t, "rows": n} for t, n in verification.counts.items()]
    yield MaterializeResult(
        asset_key=SEED,
        metadata={
            "target": result.target,
            "row_counts": table(counts),
            "rows_vs_dump": table(arrived.data["tables"]),
            "load": metadata["load"],
            **verification.facts,
            "evidence": metadata["evidence"],
        },
    )
    yield check_result(verification.check("expected_tables"), SCHEMA)
    yield check_result(verification.check("patient_count"), SEED)
    yield check_result(verification.check("row_counts"), SEED)
    yield check_result(arrived, SEED)


@asset(
    key=FACILITY_NUM,
    deps=[SEED],
    group_name="legacy",
    description=_(
        "§3.2 step 3: the facility_num sequence exists, nextval works (previewed, put "
        "back), and it is past the highest facility number."
    ),
    check_specs=[
        AssetCheckSpec(
            "nextval_works",
            asset=FACILITY_NUM,
            blocking=False,  # the gates report it, with the reason, rather than being skipped
            description=_(
                "nextval gives a value, the preview consumed nothing, and the next "
                "facility id is not already taken."
            ),
        )
    ],
    partitions_def=TARGETS,
)
@redacted_step
def legacy_facility_num(
    context: AssetExecutionContext, legacy_db: PostgresResource, evidence: EvidenceResource
):
    store = evidence.for_run(context)
    with recorded(context, store, "legacy/facility_num"):
        state = preview_facility_num(legacy_db.database, store)
        check = state.check("nextval_works")
        store.record_step(
            "legacy/facility_num", "ok" if check.passed else "failed", {"detail": check.detail}
        )
        summary = [{"fact": k, "value": v} for k, v in state.summary().items()]
        yield MaterializeResult(
            metadata={
                "facility_num": table(summary),
                **evidence_metadata(
                    store,
                    "psql_nextval_facility_num_legacy.log",
                    "psql_setval_facility_num_legacy.log",
                ),
            }
        )
        yield check_result(check)
