"""Runbook §6: the three gates, as blocking checks on `gates/report`. Materialising the report
pulls the whole chain; each gate is made of named sub-checks with a reason."""

import time

import dagster
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from restore_assets import __version__
from restore_assets.i18n import _
from restore_assets.notifications import tell
from restore_assets.resources.config import RestoreConfig
from restore_assets.resources.database import PostgresResource
from restore_assets.resources.evidence import EvidenceResource
from restore_assets.runbook import notify
from restore_assets.runbook.gate_report import REPORT_FILES
from restore_assets.runbook.gates import run_gates

from .legacy import FACILITY_NUM
from .modernized import HISTORY
from .partitions import TARGETS
from .reports import DDL_INVENTORY, MISSING_OBJECTS
from .shell import GATES_REPORT, evidence_metadata, redacted_step, table
from .stops import recorded
from .sync import SYNC

REPORT = GATES_REPORT


def _tell_ops(settings, run_id: str, report, evidence: str) -> None:
    """The gates' verdict for Ops: failed names each failed gate and sub-check with its reason;
    passed is sent only when RESTORE_NOTIFY_ON asks for it."""
    if report.status == "passed":
        summary = ", ".join(f"{g.id} OK" for g in report.gates)
        tell(settings, lambda s: notify.passed_event(s, run_id, summary, evidence))
    else:
        reason = "; ".join(report.open_items)
        tell(settings, lambda s: notify.failed_event(s, run_id, "gates/report", reason, evidence))


@asset(
    key=REPORT,
    deps=[FACILITY_NUM, HISTORY, SYNC, DDL_INVENTORY, MISSING_OBJECTS],
    group_name="gates",
    description=_("§6: the gates. Materialising this pulls the whole chain."),
    check_specs=[
        AssetCheckSpec(
            "db_restore", asset=REPORT, blocking=True, description=_("§6.1 DB restore complete")
        ),
        AssetCheckSpec(
            "audit_capture", asset=REPORT, blocking=True, description=_("§6.2 audit capture ready")
        ),
        AssetCheckSpec(
            "jms_claim", asset=REPORT, blocking=True, description=_("§6.3 JMS/CLAIM may resume")
        ),
    ],
    partitions_def=TARGETS,
)
@redacted_step
def gates_report(
    context: AssetExecutionContext,
    restore: RestoreConfig,
    legacy_db: PostgresResource,
    modernized_db: PostgresResource,
    evidence: EvidenceResource,
):
    started = time.monotonic()
    store = evidence.for_run(context)
    with recorded(context, store, "gates/report"):
        settings = restore.settings()
        report = run_gates(settings, legacy_db.database, modernized_db.database, store)
        store.record_step(
            "versions",
            "info",
            {
                "restore_assets": __version__,
                "dagster": dagster.__version__,
                "targets": report.targets,
            },
        )
        store.record_step("gates/report", report.status, {g.id: g.summary() for g in report.gates})
        _tell_ops(settings, context.run.run_id, report, store.label)
        yield MaterializeResult(
            metadata={
                "status": report.status,
                "duration_s": round(time.monotonic() - started, 3),
                "gates": MetadataValue.md(report.markdown()),
                **evidence_metadata(store, *REPORT_FILES),
            }
        )
        for gate in report.gates:
            yield AssetCheckResult(
                check_name=gate.id,
                passed=gate.passed,
                description=gate.summary(),
                metadata={
                    "checks": table([c.as_dict() | {"skipped": c.skipped} for c in gate.checks])
                },
            )
