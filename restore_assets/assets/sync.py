"""Runbook §4.4: facilities, users and roles copied Legacy → Modernized."""

from dagster import AssetCheckSpec, AssetExecutionContext, AssetKey, MaterializeResult, asset

from restore_assets.i18n import _
from restore_assets.resources.config import RestoreConfig
from restore_assets.resources.database import PostgresResource
from restore_assets.resources.evidence import EvidenceResource
from restore_assets.runbook.migrate import flyway_schemas
from restore_assets.runbook.sync import sync_facility_users as run_sync

from .legacy import FACILITY_NUM
from .modernized import HISTORY
from .partitions import TARGETS
from .shell import check_result, evidence_metadata, redacted_step, table
from .stops import recorded

SYNC = AssetKey(["sync", "facility_users"])


@asset(
    key=SYNC,
    deps=[FACILITY_NUM, HISTORY],
    group_name="sync",
    description=_(
        "§4.4: facilities, users and roles copied Legacy → Modernized (upsert on natural "
        "keys, idempotent); the Modernized facility_num untouched."
    ),
    check_specs=[
        AssetCheckSpec(
            "facilities_present",
            asset=SYNC,
            blocking=False,  # the gates report it, with the reason, rather than being skipped
            description=_("every Legacy facilityid and userid exists on the Modernized side."),
        )
    ],
    partitions_def=TARGETS,
)
@redacted_step
def sync_facility_users(
    context: AssetExecutionContext,
    restore: RestoreConfig,
    legacy_db: PostgresResource,
    modernized_db: PostgresResource,
    evidence: EvidenceResource,
):
    settings = restore.settings()
    store = evidence.for_run(context)
    with recorded(context, store, "sync/facility_users"):
        modern = modernized_db.database
        schema = flyway_schemas(settings.flyway, modern)[1]
        result = run_sync(settings.checks, legacy_db.database, modern, store, schema)
        check = result.check()
        store.record_step(
            "sync/facility_users",
            "ok" if check.passed else "failed",
            {
                **result.tables,
                "Modernized facility_num (unchanged)": {
                    "last_value": result.facility_num_modernized[0],
                    "is_called": result.facility_num_modernized[1],
                },
            },
        )
        rows = [{"table": name, **counts} for name, counts in result.tables.items()]
        last_value, is_called = result.facility_num_modernized
        yield MaterializeResult(
            metadata={
                "tables": table(rows),
                "modernized_facility_num": f"last_value {last_value}, is_called {is_called} "
                "(unchanged)",
                "duration_s": result.seconds,
                **evidence_metadata(store),
            }
        )
        yield check_result(check)
