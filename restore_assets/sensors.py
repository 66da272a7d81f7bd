"""The sensor that starts restores by itself when the Secrets land (runbook §0 unattended).

It translates `runbook.watch.look` into run requests: both sides new → `restore_all` (both
restores, the account sync, the gates); one side → that side's job. `run_key` carries the
content, so unchanged files never ask again. Encrypted ZIPs in `<Secrets>/inbox/` are unpacked
first (`runbook.inbox`) once settled. The skip reason says exactly what it waits for and what was
unpacked or refused, and `baseline_search.log` in the evidence root gets a line whenever that
changes.
"""

import datetime as dt
import json
import os

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_status_sensor,
    sensor,
)

from restore_assets.assets.secrets import watched_root
from restore_assets.assets.shell import SIDES_TAG
from restore_assets.jobs import (
    ALL_JOB,
    FOLLOWUP_JOB,
    JOBS_BY_SIDE,
    all_jobs,
    restore_followup_job,
    restore_legacy_job,
    restore_modernized_job,
)
from restore_assets.recovery import free_dead_runs
from restore_assets.resources.secrets import SecretsResource
from restore_assets.runbook.evidence import EVIDENCE_SUBDIR
from restore_assets.runbook.files import append_private
from restore_assets.runbook.inbox import unpack_inbox
from restore_assets.runbook.watch import WatchState, look
from restore_assets.settings import SIDES

INTERVAL_VARIABLE = "RESTORE_SENSOR_INTERVAL_SECONDS"


def _interval() -> int:
    raw = os.environ.get(INTERVAL_VARIABLE) or "30"
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{INTERVAL_VARIABLE}={raw!r} is not a number of seconds (e.g. 30)")
    return int(raw)


@sensor(
    jobs=[job for job in all_jobs if job.name != FOLLOWUP_JOB],
    minimum_interval_seconds=_interval(),
    default_status=DefaultSensorStatus.RUNNING,
    description=f"Watches the Secrets store `{watched_root()}`; restores a side when its files "
    "have landed, settled and passed intake; both sides → the whole chain with the sync and the "
    "gates.",
)
def secrets_sensor(context: SensorEvaluationContext, secrets: SecretsResource):
    # A run that died (SIGKILL, OOM, reboot) must not hold its pool slot for ever.
    free_dead_runs(context.instance, context.log.info)
    previous = WatchState.from_json(json.loads(context.cursor) if context.cursor else None)
    # Encrypted deliveries first: what they unpack is then seen (and settles) like a copied file.
    inbox = unpack_inbox(secrets.config.settings(), previous.inbox)
    seen = look(secrets.store(), previous)
    seen.state.inbox = {r.name: r.seen for r in inbox if r.seen}
    requests = []
    if len(seen.restore) == len(SIDES):
        key = "|".join(seen.restore[side] for side in SIDES)
        requests.append(
            RunRequest(
                run_key=f"{ALL_JOB}:{key}", job_name=ALL_JOB, tags={SIDES_TAG: ",".join(SIDES)}
            )
        )
    else:
        for side, key in seen.restore.items():
            requests.append(
                RunRequest(
                    run_key=f"{side}:{key}", job_name=JOBS_BY_SIDE[side], tags={SIDES_TAG: side}
                )
            )
    status = "; ".join(
        [r.line() for r in inbox]
        + [seen.status if not requests else "requested: " + ", ".join(r.job_name for r in requests)]
    )
    if status != previous.status:
        _log(secrets, f"{secrets.store().root}: {status}")
    seen.state.status = status
    cursor = json.dumps(seen.state.as_json())
    if requests:
        return SensorResult(run_requests=requests, cursor=cursor)
    return SensorResult(
        skip_reason=SkipReason(f"watching {secrets.store().root}: {status}"), cursor=cursor
    )


def _log(secrets: SecretsResource, line: str) -> None:
    """A line in `<artifacts>/parity-manual/db-restore/baseline_search.log` per state change."""
    folder = secrets.config.settings().artifacts_dir / EVIDENCE_SUBDIR
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    append_private(folder / "baseline_search.log", f"{stamp} {line}\n")


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[restore_legacy_job, restore_modernized_job],
    request_job=restore_followup_job,
    default_status=DefaultSensorStatus.RUNNING,
    description="When one side was restored on its own and the other side has been restored "
    "before, the account sync and the gates follow without a click.",
)
def followup_sensor(context: RunStatusSensorContext):
    restored = context.dagster_run.job_name
    other = next(job for job in JOBS_BY_SIDE.values() if job != restored)
    latest = context.instance.get_runs(
        filters=RunsFilter(job_name=other, statuses=[DagsterRunStatus.SUCCESS]), limit=1
    ) or context.instance.get_runs(
        filters=RunsFilter(job_name=ALL_JOB, statuses=[DagsterRunStatus.SUCCESS]), limit=1
    )
    if not latest:
        return SkipReason(f"{restored} succeeded; the other side was never restored: no gates yet")
    return RunRequest(run_key=f"{FOLLOWUP_JOB}:{context.dagster_run.run_id}")
