"""Runbook §2: the materials to produce — `ddl_inventory.md` and `missing_objects.md`."""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, asset

from restore_assets.i18n import _
from restore_assets.resources.config import RestoreConfig
from restore_assets.resources.database import PostgresResource
from restore_assets.resources.evidence import EvidenceResource
from restore_assets.runbook import reports

from .legacy import FACILITY_NUM
from .modernized import HISTORY
from .partitions import TARGETS
from .shell import evidence_metadata, redacted_step, table
from .stops import recorded

DDL_INVENTORY = AssetKey(["reports", "ddl_inventory"])
MISSING_OBJECTS = AssetKey(["reports", "missing_objects"])


@asset(
    key=DDL_INVENTORY,
    deps=[HISTORY],
    group_name="reports",
    description=_(
        "§2: the baseline files (sha256, size, mode, dump versions) and the migrations "
        "on disk with their checksums and applied state."
    ),
    partitions_def=TARGETS,
)
@redacted_step
def ddl_inventory(
    context: AssetExecutionContext,
    restore: RestoreConfig,
    modernized_db: PostgresResource,
    evidence: EvidenceResource,
):
    store = evidence.for_run(context)
    with recorded(context, store, "reports/ddl_inventory"):
        inventory = reports.ddl_inventory(restore.settings(), modernized_db.database, store)
        return MaterializeResult(
            metadata={
                "baseline_files": table(inventory.files),
                "migrations": table(inventory.migrations),
                **evidence_metadata(store, "ddl_inventory.md"),
            }
        )


@asset(
    key=MISSING_OBJECTS,
    deps=[FACILITY_NUM, HISTORY],
    group_name="reports",
    description=_(
        "§2: every object the gates need, per side — present or missing, and where it "
        "comes from (baseline file or migration version)."
    ),
    partitions_def=TARGETS,
)
@redacted_step
def missing_objects(
    context: AssetExecutionContext,
    restore: RestoreConfig,
    legacy_db: PostgresResource,
    modernized_db: PostgresResource,
    evidence: EvidenceResource,
):
    store = evidence.for_run(context)
    with recorded(context, store, "reports/missing_objects"):
        settings = restore.settings()
        found = reports.missing_objects(settings, legacy_db.database, modernized_db.database, store)
        return MaterializeResult(
            metadata={
                "objects": table(found.rows),
                "missing": found.missing,
                **evidence_metadata(store, "missing_objects.md"),
            }
        )
