"""The restore step both sides share as Dagster code: run `restore_side`, record the outcome in
the evidence folder, and describe it as asset metadata."""

import pandas as pd
from dagster import MetadataValue

from restore_assets.errors import RestoreError
from restore_assets.resources.environment import (
    RestoreEnvironment,
    fail,
    record_step,
    sides_of_run,
)
from restore_assets.restore import RestoreReport, intake, restore_side


def restore_step(
    context,
    restore: RestoreEnvironment,
    side: str,
    step: str,
    log_name: str,
    extra_reset_schemas=(),
    **summary,
) -> tuple[RestoreReport, dict]:
    """Intake → preflight → consent → backup → one psql transaction; a failure becomes a Dagster
    Failure carrying the exit code, with the evidence and gate report written."""
    settings = restore.settings()
    target = restore.target(side)
    evidence = restore.evidence(context)
    try:
        files = intake(settings, sides_of_run(context, side), evidence)[side]
        report = restore_side(
            side=side,
            target=target,
            settings=settings,
            files=files,
            evidence=evidence,
            log_name=log_name,
            extra_reset_schemas=extra_reset_schemas,
            log=context.log.info,
        )
    except RestoreError as exc:
        record_step(evidence, step, {"status": "failed", "error": str(exc)})
        raise fail(exc, evidence, step, target=target.describe()) from None
    backup = (
        f"{report.backup['path']} (sha256 {report.backup['sha256']})"
        if report.backup
        else "not needed (target was empty)"
    )
    record_step(
        evidence,
        step,
        {
            "status": "ok",
            "target": report.target,
            "server": report.server_version,
            "seconds": report.seconds,
            **summary,
            "backup": backup,
        },
    )
    metadata = {
        "target": report.target,
        "server_version": report.server_version,
        "inputs": MetadataValue.md(
            pd.DataFrame([f.as_evidence() for f in report.files]).to_markdown(index=False)
        ),
        "schemas_reset": ", ".join(report.reset_schemas),
        "objects_before": MetadataValue.json(report.content_before),
        "backup": MetadataValue.json(report.backup or {"taken": False, "reason": "empty"}),
        "psql_log": MetadataValue.path(str(report.psql_log)),
        "psql_output_lines": report.psql_output_lines,
        "duration_s": report.seconds,
        "evidence": MetadataValue.path(str(evidence.folder)),
    }
    return report, metadata
