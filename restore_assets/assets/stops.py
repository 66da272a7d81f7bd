"""How a stopped run says why, everywhere at once: a `RestoreError` becomes a `Failure` carrying
the CLI exit code, after the step and an "unreached" gate report are written to the evidence and
`gates/report`'s checks in the run are failed with the same reason; a blocking check of a side
that failed, and an unexpected error (the failure hook), are recorded the same way.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from pathlib import Path

from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    DagsterEvent,
    DagsterEventType,
    Failure,
    HookContext,
    MetadataValue,
    failure_hook,
)

from restore_assets.errors import (
    EXIT_BLOCKED,
    EvidenceNotWritten,
    RestoreError,
    UnexpectedError,
)
from restore_assets.notifications import run_settings, tell
from restore_assets.recovery import stamped
from restore_assets.redaction import traceback_text
from restore_assets.runbook import notify
from restore_assets.runbook.evidence import EvidenceStore
from restore_assets.runbook.gate_report import record_stop as record_stop_in_evidence
from restore_assets.runbook.gate_report import unreached_report
from restore_assets.runbook.ops_request import not_received_line
from restore_assets.settings import Settings
from restore_assets.started_by import started_by

from .shell import (
    GATES_REPORT,
    INTERRUPTED_TAG,
    PARTITION_TAG,
    redacted_metadata,
    table,
)


def fail(
    context, evidence: EvidenceStore, step: str, exc: RestoreError, **metadata: object
) -> Failure:
    """Record the failed step (see `record_stop`) and return the Failure to raise."""
    status = "blocked" if exc.exit_code == EXIT_BLOCKED else "failed"
    # The boundary of a step's failures: Dagster stores the Failure, the CLI prints it.
    error = evidence.redact(str(exc))
    problems = getattr(exc, "problems", None)  # SecretsBlocked: what Ops is asked for
    gates = record_stop(context, evidence, step, status, error, problems=problems)
    metadata = {
        "exit_code": exc.exit_code,
        "error": error,
        "gates": table(gates),
        "evidence": MetadataValue.path(str(evidence.folder)),
        **metadata,
    }
    return Failure(
        description=error,
        metadata=redacted_metadata(metadata, evidence.redact),
        allow_retries=False,
    )


def record_stop(
    context,
    evidence: EvidenceStore,
    step: str,
    status: str,
    error: str,
    instance=None,
    run=None,
    problems: dict[str, str] | None = None,
):
    """A run stopped at `step` (blocked, failed, interrupted): record the step, write the gate
    report (every gate not reached, naming each step that stopped and why), and record the
    same in the run itself — a `gates/report` materialization and its three checks, failed
    with that reason — so neither the UI nor the CLI ever keeps an older "passed" or shows a
    bare "execution failed"; then tell Ops (blocked: the files in `problems`; failed). From a
    step: its context; from a hook or the CLI: `instance` and `run`. Returns the gate rows."""
    instance = instance or context.instance
    run = run or context.run
    if status == "interrupted":  # a person's stop: the sensor must not start it again
        instance.add_run_tags(run.run_id, {INTERRUPTED_TAG: stamped(run.run_id, step)})
    settings = run_settings(context) if status in ("blocked", "failed") else None
    note = not_received_line(settings) if settings and status == "blocked" else None
    try:
        # Locked until the run holds the report too: both sides may stop at once, in two
        # processes, and the last word (file and run) must name them both.
        with evidence.steps_locked() as steps:
            report = record_stop_in_evidence(evidence, steps, step, status, error, note)
            _report_gates(context, instance, run, report, step, error, evidence.redact)
    except OSError as write_error:  # disk full, folder gone: Dagster still gets the reason
        report = unreached_report(evidence.label, {step: (status, error)}, note)
        _report_gates(context, instance, run, report, step, error, evidence.redact)
        if context is not None and hasattr(context, "log"):
            context.log.error(f"the evidence of this stop could not be written: {write_error}")
    if status == "blocked" and problems:
        tell(settings, lambda s: notify.blocked_event(s, problems, evidence.label))
    elif status in ("blocked", "failed"):
        tell(settings, lambda s: notify.failed_event(s, run.run_id, step, error, evidence.label))
    return [{"id": g.id, "passed": False, "detail": g.summary()} for g in report.gates]


def _report_gates(context, instance, run, report, step: str, error: str, redact) -> None:
    """gates/report in the run: a materialization saying the run stopped (never an older
    "passed") and its three checks failed with the reason. From a step, logged by the step
    (the UI ties them together); from the hook or after an interrupt, reported to the run.
    Redacted here: Dagster stores them, whoever recorded the stop."""
    partition = run.tags.get(PARTITION_TAG)
    stopped = AssetMaterialization(
        asset_key=GATES_REPORT,
        description=redact(f"{report.status}: {report.gates[0].summary()}"),
        metadata={"status": report.status, "stopped_by": step, "reason": redact(error)},
        partition=partition,
    )
    evaluations = [
        AssetCheckEvaluation(
            asset_key=GATES_REPORT,
            check_name=gate.id,
            passed=False,
            description=redact(gate.summary()),
            metadata=redacted_metadata(
                {"checks": table([c.as_dict() for c in gate.checks])}, redact
            ),
            partition=partition,
        )
        for gate in report.gates
    ]
    if hasattr(context, "log_event"):
        for event in (stopped, *evaluations):
            context.log_event(event)
        return
    instance.report_runless_asset_event(stopped)
    for evaluation in evaluations:
        kind = DagsterEventType.ASSET_CHECK_EVALUATION.value
        event = DagsterEvent(kind, job_name=run.job_name, event_specific_data=evaluation)
        instance.report_dagster_event(event, run.run_id)


@failure_hook(required_resource_keys={"evidence"})
def record_unexpected_failure(context: HookContext) -> None:
    """A step that failed outside its `recorded` body (a resource, an IO manager) with anything
    but an outcome the step has recorded itself — the Failure `fail` raises, a blocking check
    that failed — is recorded as a stop too, so the gate report and `gates/report` never keep
    an older "passed". (Dagster's implicit "Materialize all" job has no hook: `recorded`.)"""
    if isinstance(context.op_exception, Failure) or _failed_blocking_checks(context):
        return
    exc = context.op_exception
    run = context.instance.get_run_by_id(context.run_id)
    evidence = context.resources.evidence.for_dagster_run(run, context.instance)
    error = str(UnexpectedError(exc))  # recorded (so redacted) by record_stop
    key = context.step_key  # an asset's op (`modernized__schema`) or the Legacy multi-asset's
    step = key.replace("__", "/") if "__" in key else key.replace("_", "/", 1)
    record_stop(context, evidence, step, "failed", error, instance=context.instance, run=run)


def _failed_blocking_checks(context: HookContext) -> bool:
    """Whether the step failed because a blocking check of its own failed (the gates' verdicts,
    a side's required tables): an outcome the step recorded itself."""
    records = context.instance.get_records_for_run(
        context.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    return any(
        r.event_log_entry.step_key == context.step_key
        and not r.event_log_entry.dagster_event.asset_check_evaluation_data.passed
        and r.event_log_entry.dagster_event.asset_check_evaluation_data.blocking
        for r in records
    )


def stop_on_blocking_checks(context, evidence: EvidenceStore, key: AssetKey, checks) -> None:
    """The target committed, but a blocking check of `key` failed (a required table or column
    is missing, so the gates cannot pass): record the stop naming that check, before Dagster
    fails the step on it — the run must not look successful, nor the evidence say "ok"."""
    blocking = {s.name for s in context.assets_def.check_specs if s.blocking and s.asset_key == key}
    failed = [c for c in checks if c.id in blocking and c.passed is False]
    if failed:
        error = "; ".join(f"check {c.id} failed: {c.detail}" for c in failed)
        error += " (the target was restored; the gates cannot pass without these)"
        record_stop(context, evidence, key.to_user_string(), "failed", error)


@contextmanager
def after_commit(context, evidence: EvidenceStore, step: str, db):
    """Evidence written after the target committed: failing there must say the target WAS
    restored (its own exit code), never read as "failed, nothing happened"."""
    try:
        yield
    except OSError as exc:
        error = EvidenceNotWritten(db.describe(), exc)
        raise fail(context, evidence, step, error, target=db.describe()) from None


@contextmanager
def recorded(context, evidence: EvidenceStore, step: str):
    """A step's body: whatever stops it is recorded as the stop it is, inside the step, so it
    holds whoever launched the run (the implicit "Materialize all" job has no hook) — a
    `RestoreError` with its exit code, anything else as an unexpected error (first line only)."""
    try:
        yield
    except Failure:
        raise  # recorded already
    except RestoreError as exc:
        raise fail(context, evidence, step, exc) from None
    except Exception as exc:  # noqa: BLE001 - must catch anything: a bug or a library's error
        # stops the run too, and only this step can record it (first line only, redacted).
        # Not `from exc`: Dagster would store (and print) the cause's own text unredacted; its
        # traceback goes with the Failure's metadata instead (each exception said by
        # `redaction.describe`: a database error never by the values it quotes), redacted.
        trace = MetadataValue.text(traceback_text(exc))
        raise fail(context, evidence, step, UnexpectedError(exc), traceback=trace) from None


def interrupt_reason(signo: int) -> str:
    name = signal.Signals(signo).name
    return (
        f"interrupted by {name}: psql/pg_dump were stopped and the open transaction rolled back; "
        "steps listed as ok before this had finished"
    )


def record_interrupt(
    settings: Settings,
    instance,
    run,
    folder: str | None,
    signo: int | None,
    reason: str | None = None,
) -> None:
    """A run stopped by SIGINT/SIGTERM: say so in the evidence and in the run (the exit code is
    128 + the signal's number, as a shell reports a process killed by it). `reason`: who sent
    it, when not a person (run monitoring over the maximum runtime)."""
    if not folder:
        return
    store = EvidenceStore(
        Path(folder), settings.redactor, settings.paths.artifacts_dir, None, started_by(run.tags)
    )
    said = reason or interrupt_reason(signo)
    record_stop(None, store, "run", "interrupted", said, instance, run)


def over_max_runtime_reason(seconds: str) -> str:
    return (
        f"stopped by Dagster's run monitoring: over its maximum runtime of {seconds} s "
        "(RESTORE_MAX_RUNTIME_SECONDS); psql/pg_dump were stopped and the open transaction "
        "rolled back; steps listed as ok before this had finished. Not retried by itself: "
        "`restore-assets run`, or raise the limit if the delivery is that large"
    )
