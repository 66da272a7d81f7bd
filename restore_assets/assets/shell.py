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
    AssetCheckEvaluation,
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
from dagster._core.errors import DagsterAssetCheckFailedError
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData

from restore_assets.errors import EXIT_BLOCKED, EvidenceNotWritten, RestoreError
from restore_assets.runbook.checks import Check
from restore_assets.runbook.evidence import EvidenceStore
from restore_assets.runbook.gate_report import record_stop as record_stop_in_evidence
from restore_assets.runbook.gate_report import unreached_report
from restore_assets.runbook.plan import PLAN_FILE, build_plan
from restore_assets.runbook.restore import restore_side
from restore_assets.runbook.watch import content_key
from restore_assets.settings import SIDES

SIDES_TAG = "restore_assets/sides"
TARGET_TAG = "restore_assets/target"  # a named target of RESTORE_TARGETS
GATES_REPORT = AssetKey(["gates", "report"])
PARTITION_TAG = "dagster/partition"
RESTORE_KEYS = {side: AssetKey([side, "schema"]) for side in SIDES}  # each side's restore step


def restored_tag(side: str) -> str:
    """On every run that restores `side`: the target's name (`default`: the environment's)."""
    return f"restore_assets/restored.{side}"


def content_tag(side: str) -> str:
    """On every run that restores `side`: the content key of the files it vetted."""
    return f"restore_assets/content.{side}"


def restore_tags(side: str, target: str | None, key: str) -> dict[str, str]:
    """What a run restoring `side` says about it, so the sensor can tell from the instance
    which content each target last restored and how that ended, whoever launched the run."""
    return {restored_tag(side): target or "default", content_tag(side): key}


_TABLE_TYPES = {bool: "bool", int: "int", float: "float"}


def sides_of_run(context, own: str) -> list[str]:
    """All sides of this run are vetted before either touches anything (runbook §0), and one
    Ops request names every missing file of every side: the sides the run's tag names (the
    CLI, the jobs), else those whose restore the run selected ("Materialize all" in the UI)."""
    tagged = context.run.tags.get(SIDES_TAG)
    if tagged:
        sides = tagged.split(",")
    else:
        selected = context.run.asset_selection or context.job_def.asset_layer.selected_asset_keys
        sides = [side for side in SIDES if RESTORE_KEYS[side] in selected]
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
    context, evidence: EvidenceStore, step: str, status: str, error: str, instance=None, run=None
):
    """A run stopped at `step` (blocked, failed, interrupted): record the step, write the gate
    report (every gate not reached, naming each step that stopped and why), and record the
    same in the run itself — a `gates/report` materialization and its three checks, failed
    with that reason — so neither the UI nor the CLI ever keeps an older "passed" or shows a
    bare "execution failed". From a step: its context; from a hook or the CLI: `instance` and
    `run`. Returns the gate rows."""
    try:
        report = record_stop_in_evidence(evidence, step, status, error)
    except OSError as write_error:  # disk full, folder gone: Dagster still gets the reason
        report = unreached_report(evidence.label, {step: (status, error)})
        if context is not None and hasattr(context, "log"):
            context.log.error(f"the evidence of this stop could not be written: {write_error}")
    instance = instance or context.instance
    run = run or context.run
    gates = [{"id": g.id, "passed": False, "detail": g.summary()} for g in report.gates]
    report_into_run(
        instance,
        run,
        AssetMaterialization(
            asset_key=GATES_REPORT,
            description=f"{report.status}: {report.gates[0].summary()}",
            metadata={"status": report.status, "stopped_by": step, "reason": error},
            partition=run.tags.get(PARTITION_TAG),
        ),
    )
    for gate in report.gates:
        report_into_run(
            instance,
            run,
            AssetCheckEvaluation(
                asset_key=GATES_REPORT,
                check_name=gate.id,
                passed=False,
                description=gate.summary(),
                metadata={"checks": table([c.as_dict() for c in gate.checks])},
                partition=run.tags.get(PARTITION_TAG),
            ),
        )
    return gates


def report_into_run(instance, run, event: AssetMaterialization | AssetCheckEvaluation) -> None:
    """An event about another asset than the step's own, stored in `run`'s event log: the UI
    shows it on that run, and the CLI reads its outcome from there."""
    if isinstance(event, AssetCheckEvaluation):
        kind, data = DagsterEventType.ASSET_CHECK_EVALUATION, event
    else:
        kind, data = DagsterEventType.ASSET_MATERIALIZATION, StepMaterializationData(event)
    instance.report_dagster_event(
        DagsterEvent(kind.value, job_name=run.job_name, event_specific_data=data), run.run_id
    )


@failure_hook(required_resource_keys={"evidence"})
def record_unexpected_failure(context: HookContext) -> None:
    """A step that failed with anything but an outcome the step has recorded itself — the
    Failure `fail` raises, a blocking check that failed (the gates' verdicts, a side's
    required tables) — is a bug or an unexpected driver error: it is recorded as a stop too,
    so the gate report and `gates/report` never keep an older "passed"."""
    exc = context.op_exception
    if isinstance(exc, Failure | DagsterAssetCheckFailedError):
        return
    run = context.instance.get_run_by_id(context.run_id)
    evidence = context.resources.evidence.for_dagster_run(run, context.instance)
    first_line = (str(exc).strip().splitlines() or [""])[0]  # a DETAIL line may quote a row
    error = evidence.redact(f"unexpected error ({type(exc).__name__}): {first_line}")
    key = context.step_key  # an asset's op (`modernized__schema`) or the Legacy multi-asset's
    step = key.replace("__", "/") if "__" in key else key.replace("_", "/", 1)
    record_stop(context, evidence, step, "failed", error, instance=context.instance, run=run)


def stop_on_blocking_checks(context, evidence: EvidenceStore, key: AssetKey, checks) -> None:
    """The target committed, but a blocking check of `key` failed (a required table or column
    is missing, so the gates cannot pass): record the stop naming that check, before Dagster
    fails the step on it — the run must not look successful, nor the evidence say "ok"."""
    blocking = {s.name for s in context.assets_def.check_specs if s.blocking and s.asset_key == key}
    failed = [c for c in checks if c.id in blocking and c.passed is False]
    if failed:
        error = "; ".join(f"check {c.id} failed: {c.detail}" for c in failed)
        error += " (the target was restored; the gates cannot pass without these)"
        record_stop(context, evidence, key.to_user_string(), "failed", evidence.redact(error))


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
        tags = restore_tags(target.side, settings.target_name, content_key(files))
        context.instance.add_run_tags(context.run.run_id, tags)
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
