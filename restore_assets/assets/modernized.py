"""Runbook §4: the Modernized database — baseline restore, Flyway baseline + migrate, checks."""

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    asset,
)

from restore_assets.i18n import _
from restore_assets.resources.config import RestoreConfig
from restore_assets.resources.database import PostgresResource
from restore_assets.resources.evidence import EvidenceResource
from restore_assets.resources.flyway import FlywayResource
from restore_assets.runbook.migrate import history_summary, run_flyway
from restore_assets.runbook.verify import verify_modernized
from restore_assets.settings import MODERN_SCHEMA_FILE

from .partitions import TARGETS
from .secrets import SECRET_KEYS
from .shell import check_results, evidence_metadata, redacted_step, table
from .side_run import restore_step
from .stops import recorded, stop_on_blocking_checks

SCHEMA = AssetKey(["modernized", "schema"])
HISTORY = AssetKey(["modernized", "flyway_history"])


@asset(
    key=SCHEMA,
    deps=[SECRET_KEYS[MODERN_SCHEMA_FILE]],
    group_name="modernized",
    description=_(
        "§4.1: reset `public` and the Flyway schema, apply the Modernized schema dump "
        "in one transaction."
    ),
    partitions_def=TARGETS,
)
@redacted_step
def modernized_schema(
    context: AssetExecutionContext,
    restore: RestoreConfig,
    modernized_db: PostgresResource,
    evidence: EvidenceResource,
):

    step = "modernized/schema"
    _, _, metadata = restore_step(context, step, restore, modernized_db, evidence)
    return MaterializeResult(metadata=metadata)


@asset(
    key=HISTORY,
    deps=[SCHEMA],
    group_name="modernized",
    description=_("§4.2: flyway baseline + migrate per flyway.conf; the history as a table."),
    check_specs=[
        AssetCheckSpec(
            "history_versions",
            asset=HISTORY,
            blocking=False,  # the gates report it, with the reason, rather than being skipped
            description=_("Flyway history has successful 0, 2, 3, 220, 221 (configurable)."),
        ),
        AssetCheckSpec(
            "expected_tables",
            asset=HISTORY,
            blocking=True,  # the gates cannot pass without them: the run must not look green
            description=_(
                "d_audit_event, d_factor2_credential, d_factor2_challenge, "
                "d_third_party_disclosure, phr_async_job resolve on the application search_path."
            ),
        ),
        AssetCheckSpec(
            "expected_columns",
            asset=HISTORY,
            blocking=True,
            description=_("d_document.admflag and d_module.performflag exist."),
        ),
        AssetCheckSpec("pg_trgm", asset=HISTORY, description=_("pg_trgm is installed (V0002).")),
    ],
    partitions_def=TARGETS,
)
@redacted_step
def modernized_flyway_history(
    context: AssetExecutionContext,
    restore: RestoreConfig,
    modernized_db: PostgresResource,
    flyway: FlywayResource,
    evidence: EvidenceResource,
):
    settings = restore.settings()
    db = modernized_db.database
    store = evidence.for_run(context)
    with recorded(context, store, "modernized/flyway_history"):
        step = run_flyway(settings, db, store, context.log.info, flyway.container_runner(context))
        verification = verify_modernized(db, settings.checks, step.schema, step.history, store)
        passed = all(c.passed for c in verification.checks)
        stop_on_blocking_checks(context, store, HISTORY, verification.checks)
        store.record_step(
            "modernized/flyway",
            "ok" if passed else "failed",
            {
                "runner": step.runner,
                "history_rows": len(step.history),
                "versions": [r.version for r in step.history if r.version],
            },
        )
        history = history_summary(step.history)
        counts = [{"table": t, "rows before sync": n} for t, n in verification.counts.items()]
        yield MaterializeResult(
            metadata={
                "history": table(history),
                "runner": step.runner,
                "duration_s": step.seconds,
                "row_counts_before_sync": table(counts),
                **evidence_metadata(store, "flyway_migrate.log", "psql_flyway_schema_history.log"),
            }
        )
        yield from check_results(verification.checks)
