"""Translating runbook results into Dagster's terms, shared by the assets.

A core `Check` becomes an `AssetCheckResult`; rows become `MetadataValue.table`; a `RestoreError`
becomes a `Failure` carrying the CLI exit code, after the step and an "unreached" gate report are
written to the evidence folder, so a run stopped half-way still says why. `restore_step` is the
one restore both sides share: the plan, intake, then the core's `restore_side`, then its
metadata.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager

from dagster import (
    AssetCheckResult,
    AssetKey,
    AssetMaterialization,
    Failure,
    HookContext,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    failure_hook,
)

from restore_assets.errors import EXIT_BLOCKED, EvidenceNotWritten, RestoreError
from restore_assets.runbook.checks import Check
from restore_assets.runbook.evidence import EvidenceStore
from restore_assets.runbook.gate_report import unreached_report, write_report
from restore_assets.runbook.plan import PLAN_FILE, build_plan
from restore_assets.runbook.restore import restore_side

SIDES_TAG = "restore_assets/sides"
TARGET_TAG = "restore_assets/target"  # a named target of RESTORE_TARGETS
GATES_REPORT = AssetKey(["gates", "report"])
_TABLE_TYPES = {bool: "bool", int: "int", float: "float"}


def sides_of_run(context, own: str) -> list[str]:
    """All sides of this run are vetted before either touches anything (runbook §0)."""
    tagged = context.run.tags.get(SIDES_TAG)
    sides = tagged.split(",") if tagged else [own]
    return sides if own in sides else [*sides, own]


def table(rows: Sequence[Mapping[str, object]]) -> MetadataValue:
    """Rows as a Dagster table (typed columns; anything not a number or bool shown as text)."""
    columns = list(rows[0]) if rows else []

    def column_type(name: str) -> str:
        kinds = {type(r[name]) for r in rows if r[name] is not None}
        return _TABLE_TYPES.get(kinds.pop(), "string") if len(kinds) == 1 else "string"

    types = {c: column_type(c) for c in columns}

    def cell(value: object, kind: str) -> object:
        return value if value is None or kind != "string" else str(value)

    return MetadataValue.table(
        records=[TableRecord({c: cell(r[c], types[c]) for c in columns}) for r in rows],
        schema=TableSchema(columns=[TableColumn(c, types[c]) for c in columns]),
    )


def check_result(check: Check, asset_key: AssetKey | None = None) -> AssetCheckResult:
    metadata = {
        k: v if isinstance(v, str | int | float | bool) else MetadataValue.json(v)
        for k, v in check.data.items()
        if v is not None
    }
    return AssetCheckResult(
        asset_key=asset_key,
        check_name=check.id,
        passed=check.passed is not False,
        description=check.detail,
        metadata=metadata,
    )


def check_results(checks: Iterable[Check], asset_key: AssetKey | None = None):
    return [check_result(c, asset_key) for c in checks]


def evidence_metadata(evidence: EvidenceStore, *files: str) -> dict[str, MetadataValue]:
    paths = {name: MetadataValue.path(str(evidence.path(name))) for name in files}
    return {"evidence": MetadataValue.path(str(evidence.folder)), **paths}


def fail(
    context, evidence: EvidenceStore, step: str, exc: RestoreError, **metadata: object
) -> Failure:
    """Record the failed step (see `record_stop`) and return the Failure to raise."""
    status = "blocked" if exc.exit_code == EXIT_BLOCKED else "failed"
    error = evidence.redact(str(exc))  # Dagster stores the Failure: no password may be in it
    gates = record_stop(context, evidence, step, status, error)
    return Failure(
        description=error,
        metadata={
            "exit_code": exc.exit_code,
            "error": error,
            "gates": table(gates),
            "evidence": MetadataValue.path(str(evidence.folder)),
            **metadata,
        },
        allow_retries=False,
    )


def record_stop(
    context, evidence: EvidenceStore, step: str, status: str, error: str, instance=None
):
    """A run stopped at `step` (blocked, failed, interrupted): record the step, write the gate
    report (every gate not reached, naming the step), and tell Dagster the same about
    `gates/report` so its page never keeps an older "passed" (from a step: its context; from
    a hook: its `instance`; from the CLI after an interrupt: the instance). Returns the gate
    rows."""
    reason = f"not reached: {step} stopped the run: {error}"
    report = unreached_report(evidence.label, status, reason)
    try:
        evidence.record_step(step, status, {"error": error})
        write_report(evidence, report)
    except OSError as write_error:  # disk full, folder gone: Dagster still gets the reason
        logger = context.log if context is not None else None
        if logger is not None:
            logger.error(f"the evidence of this stop could not be written: {write_error}")
    gates = [{"id": g.id, "passed": False, "detail": g.summary()} for g in report.gates]
    event = AssetMaterialization(
        asset_key=GATES_REPORT,
        description=f"{status}: {step} stopped the run",
        metadata={"status": status, "stopped_by": step, "reason": error, "gates": table(gates)},
    )
    if context is not None and instance is None:
        context.log_event(event)
    else:
        from dagster import DagsterInstance

        (instance or DagsterInstance.get()).report_runless_asset_event(event)
    return gates


@failure_hook(required_resource_keys={"evidence"})
def record_unexpected_failure(context: HookContext) -> None:
    """A step that failed with anything but the Failure `fail` raises (which has recorded its
    stop already) — a bug, an unexpected driver error — is recorded as a stop too, so the
    gate report and `gates/report` never keep an older "passed"."""
    if isinstance(context.op_exception, Failure):
        return
    run = context.instance.get_run_by_id(context.run_id)
    evidence = context.resources.evidence.for_dagster_run(run, context.instance)
    exc = context.op_exception
    first_line = (str(exc).strip().splitlines() or [""])[0]  # a DETAIL line may quote a row
    error = evidence.redact(f"unexpected {type(exc).__name__}: {first_line}")
    step = context.step_key.replace("__", "/")
    record_stop(context, evidence, step, "failed", error, instance=context.instance)


@contextmanager
def after_commit(context, evidence: EvidenceStore, step: str, target):
    """Evidence written after the target committed: failing there must say the target WAS
    restored (its own exit code), never read as "failed, nothing happened"."""
    try:
        yield
    except OSError as exc:
        error = EvidenceNotWritten(target.describe(), exc)
        raise fail(context, evidence, step, error, target=target.describe()) from None


def write_plan(context, evidence: EvidenceStore, settings, sides: list[str], target) -> None:
    """The run's first words: the dry-run plan of every side of the run, logged and kept as
    `plan.md`, written once, by whichever side's restore starts first (before either touches
    its target). Cheap after the observation: the files' sha256 come from the cache."""
    if evidence.path(PLAN_FILE).exists():
        return
    name = settings.target_name or "default"
    plan = build_plan(settings, sides, name, targets={target.side: target})
    for line in plan.summary_lines():
        context.log.info(evidence.redact(line))
    evidence.write(PLAN_FILE, plan.markdown())


def restore_step(context, step: str, db, secrets, evidence_store):
    """The plan, then intake (every side of the run) → the side's all-or-nothing restore,
    recorded in the evidence; returns the core result, the evidence store and the asset
    metadata."""
    target = db.target
    evidence = evidence_store.for_run(context)
    settings = secrets.config.settings()
    sides = sides_of_run(context, target.side)
    try:
        write_plan(context, evidence, settings, sides, target)
        started = time.monotonic()
        files = secrets.intake(sides, evidence).side(target.side)
        intake_seconds = round(time.monotonic() - started, 3)
        result = restore_side(
            target=target,
            settings=settings,
            files=files,
            evidence=evidence,
            log=context.log.info,
        )
    except RestoreError as exc:
        raise fail(context, evidence, step, exc, target=target.describe()) from None
    with after_commit(context, evidence, step, target):
        evidence.record_step(
            step,
            "ok",
            {
                "target": result.target,
                "server": result.server_version,
                "seconds": result.seconds,
                "backup": result.backup_summary,
                "schemas reset": result.reset_schemas,
                "role is superuser": result.superuser,
                "phases (s)": {"intake": intake_seconds, **result.phases},
            },
        )
    metadata = {
        "target": result.target,
        "server_version": result.server_version,
        "inputs": table([f.as_evidence() for f in result.files]),
        "schemas_reset": ", ".join(result.reset_schemas),
        "objects_before": table(
            [{"schema": s, "objects": n} for s, n in result.content_before.items()]
        ),
        "backup": result.backup_summary,
        "role_is_superuser": result.superuser,
        "psql_output_lines": result.psql_output_lines,
        "duration_s": result.seconds,
        **evidence_metadata(evidence, result.psql_log.name),
    }
    return result, evidence, metadata
