"""A side's restore as a run does it: the run's plan (written once, before any side touches its
target), intake of every side of the run (§0: all vetted before anything is touched), then this
side's all-or-nothing restore (§3.1-3.3 / §4.1), recorded in the evidence. The Dagster
asset only translates what these return, and tags its run with the vetted content in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from restore_assets.errors import EvidenceNotWritten
from restore_assets.pg.database import Database
from restore_assets.runbook.baseline_files import SecretFile
from restore_assets.runbook.evidence import EvidenceStore
from restore_assets.runbook.intake import intake
from restore_assets.runbook.plan import PLAN_FILE, build_plan
from restore_assets.runbook.restore import RestoreResult, restore_side
from restore_assets.settings import Settings


def vet_run(
    settings: Settings,
    sides: Sequence[str],
    db: Database,
    evidence: EvidenceStore,
    log: Callable[[str], None],
) -> tuple[list[SecretFile], float]:
    """The run's plan (first words, kept as `plan.md`), then intake of every side of the run:
    returns this side's vetted files and the seconds intake took. Raises `SecretsBlocked`."""
    if not evidence.path(PLAN_FILE).exists():  # whichever side's restore starts first
        plan = build_plan(settings, list(sides), {db.side: db})
        for line in plan.summary_lines():
            log(line)
        evidence.write(PLAN_FILE, plan.markdown())
    started = time.monotonic()
    files = intake(settings, sides, evidence).side(db.side)
    return files, round(time.monotonic() - started, 3)


def restore_and_record(
    step: str,
    settings: Settings,
    db: Database,
    files: list[SecretFile],
    evidence: EvidenceStore,
    log: Callable[[str], None],
    intake_seconds: float,
) -> RestoreResult:
    """The side's restore, then its line in the evidence. Failing to write that line after the
    target committed is `EvidenceNotWritten` (exit 4), never "failed, nothing happened"."""
    result = restore_side(db=db, settings=settings, files=files, evidence=evidence, log=log)
    try:
        evidence.record_step(
            step,
            "ok",
            {
                "target": result.target,
                "server": result.server_version,
                "connection": result.transport,
                "seconds": result.seconds,
                "backup": result.backup_summary,
                "schemas reset": result.reset_schemas,
                "role is superuser": result.superuser,
                **_sessions_summary(result),
                "load": result.load.describe() if result.load else "not run",
                "phases (s)": {"intake": intake_seconds, **result.phases},
            },
        )
    except OSError as exc:
        raise EvidenceNotWritten(db.describe(), exc) from None
    return result


def _sessions_summary(result: RestoreResult) -> dict[str, object]:
    """--terminate-sessions: who was ended before the reset (nothing when the option was off)."""
    if result.sessions_ended is None:
        return {}
    summary: dict[str, object] = {"sessions ended": result.sessions_ended or "none"}
    if result.sessions_not_ended:
        summary["sessions not ended"] = result.sessions_not_ended
    return summary
