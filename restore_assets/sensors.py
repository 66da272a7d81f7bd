"""The sensor that starts restores by itself when the Secrets land (runbook §0 unattended).

It translates `runbook.watch.look` into run requests: both sides new → `restore_all` (both
restores, the account sync, the gates); one side → that side's job. `run_key` carries the
content, so unchanged files never ask again. Encrypted ZIPs in `<Secrets>/inbox/` are unpacked
first (`runbook.inbox`) once settled. The skip reason says exactly what it waits for and what was
unpacked or refused, and `baseline_search.log` in the evidence root gets a line whenever that
changes.

Bad days (issue 21): a restore whose process died is requested again, at most
RESTORE_CRASH_RETRIES times in a row for the same content (`ended_as` tells a death from a
failure or a stop; `crashes_seen` is where each is known with its outcome). Every run the
sensors request carries `dagster/max_runtime` (`run_bounds`): the daemon's run monitoring stops
it, and `max_runtime_sensor` writes that stop into its evidence. Dagster's own run retries are
not used: they would retry a run stopped over its maximum runtime as if it had died.
"""

import datetime as dt
import hashlib
import json

from dagster import (
    AddDynamicPartitionsRequest,
    AssetObservation,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterRunStatus,
    DefaultSensorStatus,
    MetadataValue,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from restore_assets.assets.partitions import TARGETS
from restore_assets.assets.secrets import DATA_VERSION_TAG, INBOX_TAG, SECRET_KEYS, watched_root
from restore_assets.assets.shell import (
    INTERRUPTED_TAG,
    PARTITION_TAG,
    RESTORE_KEYS,
    SIDES_TAG,
    content_tag,
    redacted_metadata,
    restore_tags,
    restored_tag,
)
from restore_assets.assets.stops import over_max_runtime_reason, record_interrupt
from restore_assets.errors import ConfigError
from restore_assets.files import append_private
from restore_assets.jobs import (
    ALL_JOB,
    FOLLOWUP_JOB,
    INTAKE_JOB,
    JOBS_BY_SIDE,
    all_jobs,
    keep_instance_private,
    restore_all_job,
    restore_followup_job,
    restore_legacy_job,
    restore_modernized_job,
)
from restore_assets.named_targets import labelled, load_targets
from restore_assets.notifications import tell, tell_about_secrets, tell_crashed
from restore_assets.recovery import free_dead_runs, own_tag
from restore_assets.redaction import escaped
from restore_assets.resources.evidence import EVIDENCE_FOLDER_TAG
from restore_assets.runbook import notify
from restore_assets.runbook.baseline_files import SIDE_FILES
from restore_assets.runbook.evidence import evidence_root
from restore_assets.runbook.inbox import look_at_inbox
from restore_assets.runbook.intake import SecretsStore
from restore_assets.runbook.watch import (
    Crash,
    LastRestore,
    WatchState,
    content_key,
    crash_of,
    look,
    missing_since,
    why_not_restore,
)
from restore_assets.settings import (
    DEFAULT_SENSOR_INTERVAL_SECONDS,
    DEFAULT_TARGET,
    SIDES,
    Settings,
    load_settings,
)
from restore_assets.started_by import sensor_tag


def _interval() -> int:
    """RESTORE_SENSOR_INTERVAL_SECONDS, read with every other setting. A bad setting must not
    stop the code location from loading: then the default, and every tick of the sensor reports
    the configuration error naming the variable, as it does for any other bad value."""
    try:
        return load_settings().sensor.interval_seconds
    except ConfigError:
        return DEFAULT_SENSOR_INTERVAL_SECONDS


@sensor(
    jobs=[job for job in all_jobs if job.name != FOLLOWUP_JOB],
    minimum_interval_seconds=_interval(),
    default_status=DefaultSensorStatus.RUNNING,
    description=f"Watches the Secrets store `{watched_root()}`; restores a side when its files "
    "have landed, settled and passed intake; both sides → the whole chain with the sync and the "
    "gates.",
)
def secrets_sensor(context: SensorEvaluationContext):
    keep_instance_private(context.instance)  # a daemon started by hand has the caller's umask
    # A run that died (SIGKILL, OOM, reboot) must not hold its target for ever. Ops hear of a
    # side's restore from crashes_seen below, with whether it is retried; of other runs here.
    free_dead_runs(context.instance, context.log.info, told_elsewhere=_judged_here)
    cursor = json.loads(context.cursor) if context.cursor else {}
    # Cursors written before every target was named held the environment's target's state.
    previous = cursor.get("targets", {DEFAULT_TARGET: cursor} if cursor else {})
    targets = load_targets(load_settings())
    known = set(context.instance.get_dynamic_partitions(TARGETS.name))
    requests, statuses, states, observations, crashed = [], [], {}, [], []
    for name, settings in targets.items():
        # A target registered by this tick is observed from the next one.
        found, status, state, observed, died = _watch(
            context.instance, settings, WatchState.from_json(previous.get(name)), name in known
        )
        requests += found
        observations += observed
        crashed += died
        statuses.append(f"[{name}] {status}" if labelled(settings) else status)
        states[name] = state.as_json()
    crashes_seen(context, crashed)
    new_cursor = json.dumps({"targets": states})
    new = [name for name in targets if name not in known]  # the UI can launch each target
    partitions = [AddDynamicPartitionsRequest(TARGETS.name, new)] if new else []
    if requests:
        return SensorResult(
            run_requests=requests,
            cursor=new_cursor,
            dynamic_partitions_requests=partitions,
            asset_events=observations,
        )
    return SensorResult(
        skip_reason=SkipReason("; ".join(statuses)),
        cursor=new_cursor,
        dynamic_partitions_requests=partitions,
        asset_events=observations,
    )


def _watch(
    instance, settings: Settings, previous: WatchState, observe: bool = True
) -> tuple[list[RunRequest], str, WatchState, list[AssetObservation], list[Crash]]:
    """One target's look: its run requests, what it waits for, the next cursor, the
    observations of the files whose status changed, and the restores whose process died that
    it retries or gives up on."""
    target = settings.target_name
    store = SecretsStore(settings.paths)
    seen = look(store, previous)
    seen.state.observed = dict(previous.observed)
    observations = observed_files(settings, seen.files, seen.state.observed) if observe else []
    # Ops is told once per missing content, and again if still missing after the waiting hours.
    since, missing = missing_since(seen.problems, previous.missing_since, dt.datetime.now(dt.UTC))
    seen.state.missing_since = since
    tell_about_secrets(settings, seen.problems, since)
    # Encrypted deliveries: unpacked by the intake run once settled; what they unpack is then
    # seen (and settles) like a copied file. A tick only looks (lstat, cached hashes).
    seen.state.inbox, zips = look_at_inbox(settings, previous.inbox)
    inbox_lines = [
        f"inbox/{escaped(name)}: new or still arriving ({size} bytes); next look"
        for name, (size, _) in seen.state.inbox.items()
        if name not in zips
    ]
    if zips and settings.intake.zip_password is None:
        inbox_lines.append(f"inbox: {len(zips)} ZIP(s) wait: SECRETS_ZIP_PASSWORD is not set")
        zips = {}
    intake, intake_wait = intake_request(instance, settings, zips, seen)
    if intake_wait:
        inbox_lines.append(intake_wait)
    lasts = {side: last_restore(instance, side, target) for side in seen.settled}
    retries = settings.sensor.crash_retries
    found = {
        side: crash_of(target, side, key, lasts[side], retries)
        for side, key in seen.settled.items()
    }
    crashes = {side: crash for side, crash in found.items() if crash}
    waits = {
        side: why_not_restore(side, key, lasts[side], crashes.get(side))
        for side, key in seen.settled.items()
    }
    restore = {side: key for side, key in seen.settled.items() if not waits[side]}
    if seen.unread:  # the intake run reads one side: both sides then go together
        waits |= {
            side: f"{side}: waits for the intake run's read of the other side" for side in restore
        }
        restore = {}
    # A chain that failed as a whole is run again as a whole when corrected files for one of
    # its sides arrive: the other side's unchanged content failed only with it.
    failed_with = {lasts[side].run_id for side in restore if lasts[side]}
    for side, key in seen.settled.items():
        last = lasts[side]
        if side not in restore and last and last.state == "failed" and last.run_id in failed_with:
            restore[side], waits[side] = key, None
    reasons = list(seen.reasons) + [why for why in waits.values() if why]
    after = [lasts[side].run_id[:8] if lasts[side] else "none" for side in SIDES if side in restore]
    requests = []
    if restore:
        sides = [side for side in SIDES if side in restore]
        job = ALL_JOB if len(sides) == len(SIDES) else JOBS_BY_SIDE[sides[0]]
        # The run key names the content and the restore it follows: the same content delivered
        # again after another one (A, B, A) is a new request, a second tick asking for the
        # same one is not.
        key = "|".join(restore[side] for side in sides)
        tags = {SIDES_TAG: ",".join(sides), **sensor_tag("secrets_sensor")} | run_bounds(settings)
        for side in sides:  # queued, it already counts as this content's restore
            tags |= restore_tags(side, target, restore[side])
        retried = [crashes[side] for side in sides if side in crashes]
        if retried:  # the UI shows which try this is, and of which run
            tags[CRASH_RETRY_TAG] = "; ".join(crash.describe() for crash in retried)
        requests.append(
            RunRequest(
                run_key=f"{target}:{job}:{key}:after:{','.join(after)}",
                job_name=job,
                partition_key=target,
                tags=tags,
            )
        )
    if intake:
        requests.append(intake)
        inbox_lines += [f"inbox/{escaped(n)}: settled; the intake run unpacks it" for n in zips]
    # The tick's boundary: its skip reason, cursor and baseline_search.log lines are redacted.
    status = settings.redactor(
        "; ".join(
            ([missing] if missing else [])
            + inbox_lines
            + reasons
            + (["requested: " + ", ".join(r.job_name for r in requests)] if requests else [])
        )
    )
    if status != previous.status:
        _log(settings, f"{store.root}: {status}")
    seen.state.status = status
    died = list({crash.run_id: crash for crash in crashes.values()}.values())  # once per run
    return requests, f"watching {store.root}: {status}", seen.state, observations, died


def observed_files(
    settings: Settings, files: dict[str, tuple[str, str]], observed: dict[str, str]
) -> list[AssetObservation]:
    """An observation of each `secrets/*` file whose status changed since the last one
    (`observed`, updated): the UI shows "missing" or "changed" as soon as a tick sees it, not
    an old "Observed". A read file's data version is its sha256, as a run observes it."""
    events = []
    for relpath, (status, sha256) in files.items():
        if observed.get(relpath) == status:
            continue
        observed[relpath] = status
        metadata = {
            "path": MetadataValue.path(str(settings.paths.secrets_dir / relpath)),
            "status": status,
            "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "observed_by": "secrets_sensor",
        }
        # New, still arriving or not read yet: no content known, so no data version.
        unknown = status in ("changed", "unread")
        tags = {} if unknown else {DATA_VERSION_TAG: sha256 or f"unusable: {status}"}
        events.append(
            AssetObservation(
                asset_key=SECRET_KEYS[relpath],
                partition=settings.target_name,
                tags=tags,
                metadata=redacted_metadata(metadata, settings.redactor),
            )
        )
    return events


def _judged_here(run) -> bool:
    """A side's restore: its crash is judged by this sensor's look (crash_of, crashes_seen)."""
    return run.job_name in (*JOBS_BY_SIDE.values(), ALL_JOB)


def crashes_seen(context, crashes: list[Crash]) -> list[Crash]:
    """The restores whose process died that this tick saw, one per run: each retried (retry n
    of RESTORE_CRASH_RETRIES, requested in this tick) or left failed for good. The one place
    where a crash and what is done about it are known together (issue 21's "crashed" message
    goes from here; a run is seen again on later ticks until its retry is queued, or for as
    long as it stays failed, so a message is sent once per run and outcome)."""
    for crash in crashes:  # one not retried any more is in every tick's skip reason instead
        if crash.retried:
            context.log.warning(crash.describe())
        run = context.instance.get_run_by_id(crash.run_id)
        if run is not None:  # told once per run (free_dead_runs leaves these to this look)
            tell_crashed(
                run, "its process died: no step failed, nobody stopped it", crash.describe()
            )
    return crashes


def run_bounds(settings: Settings) -> dict[str, str]:
    """The tags that bound a run the sensors request: Dagster's run monitoring fails it, and
    stops its process (psql with it: the transaction rolls back), after
    RESTORE_MAX_RUNTIME_SECONDS (0: no tag, no limit)."""
    seconds = settings.sensor.max_runtime_seconds
    return {MAX_RUNTIME_TAG: str(seconds)} if seconds else {}


MAX_RUNTIME_TAG = "dagster/max_runtime"
CRASH_RETRY_TAG = "restore_assets/crash_retry"  # on a run requested again after a crash
INTAKE_STATE_TAG = "restore_assets/intake_state"  # the state an intake run was asked to read
INTAKE_TRIES = 2  # a state still unread after two finished intake runs is not asked again


def intake_request(
    instance, settings: Settings, zips: dict[str, list[int]], seen
) -> tuple[RunRequest | None, str | None]:
    """The intake run for what a tick must not do itself (unpack settled ZIPs, read a large
    new delivery), or why none is asked: one is under way, or two already ran for this very
    state and it is still unread (their logs say why). Its run key is the state and the try."""
    unread = {rel: seen.state.seen[rel] for side in seen.unread for rel in SIDE_FILES[side]}
    if not zips and not unread:
        return None, None
    target = settings.target_name
    state = json.dumps({"zips": zips, "unread": unread}, sort_keys=True)
    digest = hashlib.sha256(state.encode()).hexdigest()[:16]
    tags = {PARTITION_TAG: target, INTAKE_STATE_TAG: digest}
    tried = instance.get_runs(RunsFilter(job_name=INTAKE_JOB, tags=tags))
    if any(run.status in _RUNNING for run in tried):
        return None, f"the intake run {tried[0].run_id[:8]} is reading; next look"
    if len(tried) >= INTAKE_TRIES:
        runs = ", ".join(run.run_id[:8] for run in tried)
        return None, f"intake runs {runs} did not read this delivery: see their logs"
    request = RunRequest(
        run_key=f"{target}:{INTAKE_JOB}:{digest}:{len(tried) + 1}",
        job_name=INTAKE_JOB,
        partition_key=target,
        tags={INTAKE_STATE_TAG: digest, INBOX_TAG: json.dumps(zips)} | run_bounds(settings),
    )
    return request, None


_RUNNING = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]
_INTERRUPTS = ("DagsterExecutionInterruptedError", "KeyboardInterrupt")
FAILURE = DagsterRunStatus.FAILURE


def last_restore(instance, side: str, target: str) -> LastRestore | None:
    """The latest run that restored (or is restoring) `side` of `target`, whoever launched it
    (CLI, UI, sensor): each restore step tags its run with the content it vetted
    (`shell.restore_tags`); a run not started yet is known by what it selected."""
    for run in instance.get_runs(RunsFilter(statuses=_RUNNING)):
        if _restores(run, side, target):
            return LastRestore(run.run_id, run.tags.get(content_tag(side)), "running")
    restored = {restored_tag(side): target}
    runs = instance.get_runs(RunsFilter(tags=restored), limit=1)
    run, content = (runs[0], runs[0].tags.get(content_tag(side))) if runs else (None, None)
    if run is None:
        run, content = _restored_before_tags(instance, side, target)
    if run is None:
        return None
    state = ended_as(instance, run)
    if state != "crashed":
        return LastRestore(run.run_id, content, state)
    # How many of this content's latest runs died in a row, this one included: the retries.
    same = instance.get_runs(RunsFilter(tags=restore_tags(side, target, content or "")), limit=20)
    crashes = next((n for n, r in enumerate(same) if ended_as(instance, r) != "crashed"), len(same))
    return LastRestore(run.run_id, content, "crashed", max(crashes, 1))


def ended_as(instance, run) -> str:
    """How a run that ended did: "passed"; "stopped" (interrupted, canceled, or stopped by run
    monitoring over its maximum runtime); "failed" (a step or check failed: Secrets refused, a
    gate, an error); else "crashed" (its process died: nothing failed, nobody stopped it)."""
    if run.status == DagsterRunStatus.SUCCESS:
        return "passed"
    if run.status == DagsterRunStatus.CANCELED or own_tag(run, INTERRUPTED_TAG):
        return "stopped"
    # Run monitoring (maximum runtime) and the UI's Terminate say "canceling" first, and mark
    # the run failed before its step has even seen the interrupt: stopped, never a crash.
    if instance.get_records_for_run(run.run_id, of_type=DagsterEventType.RUN_CANCELING).records:
        return "stopped"
    failures = instance.get_records_for_run(
        run.run_id, of_type=DagsterEventType.STEP_FAILURE
    ).records
    errors = [r.event_log_entry.dagster_event.step_failure_data.error for r in failures]
    if any(e is None or e.cls_name not in _INTERRUPTS for e in errors):
        return "failed"
    if errors:
        return "stopped"  # SIGINT/SIGTERM reached a step
    return "crashed"


def _restores(run, side: str, target: str) -> bool:
    """Whether an unfinished run restores `side` of `target`: by its tags once its restore
    step started, else (queued from the UI, "Materialize all") by what it selected."""
    if restored_tag(side) in run.tags:
        return run.tags[restored_tag(side)] == target
    if run.tags.get(PARTITION_TAG) != target:
        return False
    if run.asset_selection:
        return RESTORE_KEYS[side] in run.asset_selection
    return run.job_name in (JOBS_BY_SIDE[side], ALL_JOB)


def _restored_before_tags(instance, side: str, target: str):
    """Runs recorded before restore steps tagged their runs: the side's last materialization,
    whose `inputs` table holds the sha256 of the files it restored. (None, None) if none.
    (Then the environment's target was not partitioned: its records have no partition.)"""
    partitions = None if target == DEFAULT_TARGET else [target]
    records = instance.fetch_materializations(
        AssetRecordsFilter(RESTORE_KEYS[side], asset_partitions=partitions), limit=1
    ).records
    if not records:
        return None, None
    inputs = records[0].asset_materialization.metadata.get("inputs")
    sha = {r.data["path"]: r.data["sha256"] for r in inputs.value.records} if inputs else {}
    if any(not sha.get(relpath) for relpath in SIDE_FILES[side]):
        return None, None
    content = content_key(sha[relpath] for relpath in SIDE_FILES[side])
    return instance.get_run_by_id(records[0].run_id), content


def _log(settings: Settings, line: str) -> None:
    """A line in `<artifacts>/parity-manual/db-restore/[<target>/]baseline_search.log` per
    state change (mode 600, like all evidence)."""
    folder = evidence_root(settings)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # From the artifacts root, as the run's evidence: never through a link on the way.
    text = f"{stamp} {line}\n"
    append_private(folder / "baseline_search.log", text, root=settings.paths.artifacts_dir)


@run_failure_sensor(
    monitored_jobs=[
        restore_legacy_job,
        restore_modernized_job,
        restore_all_job,
        restore_followup_job,
    ],
    default_status=DefaultSensorStatus.RUNNING,
    description="A run that run monitoring stopped over its maximum runtime "
    "(RESTORE_MAX_RUNTIME_SECONDS) says so in its evidence and on gates/report.",
)
def max_runtime_sensor(context: RunFailureSensorContext):
    run = context.dagster_run
    seconds = run.tags.get(MAX_RUNTIME_TAG)
    canceling = context.instance.get_records_for_run(
        run.run_id, of_type=DagsterEventType.RUN_CANCELING
    ).records
    said = " ".join(r.event_log_entry.message or "" for r in canceling)
    if not seconds or "maximum runtime" not in said or own_tag(run, INTERRUPTED_TAG):
        return SkipReason(f"run {run.run_id[:8]} did not run over its maximum runtime")
    settings = load_targets(load_settings()).get(run.tags.get(PARTITION_TAG, ""))
    if settings is None:
        return SkipReason(f"run {run.run_id[:8]}: its target is no longer configured")
    folder = run.tags.get(EVIDENCE_FOLDER_TAG)
    reason = over_max_runtime_reason(seconds)
    record_interrupt(settings, context.instance, run, folder, None, reason)
    # Never retried (a stop, not a crash): Ops are told, or the target stays as it was unsaid.
    tell(settings, lambda s: notify.failed_event(s, run.run_id, "run", reason, folder))
    return SkipReason(f"run {run.run_id[:8]}: {reason}")


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
    target = context.dagster_run.tags.get(PARTITION_TAG)
    if target is None:
        return SkipReason(f"{restored} ran for no target (a run from before targets were named)")
    other = next(job for job in JOBS_BY_SIDE.values() if job != restored)
    success = [DagsterRunStatus.SUCCESS]
    same_target = {PARTITION_TAG: target}
    latest = context.instance.get_runs(
        filters=RunsFilter(job_name=other, statuses=success, tags=same_target), limit=1
    ) or context.instance.get_runs(
        filters=RunsFilter(job_name=ALL_JOB, statuses=success, tags=same_target), limit=1
    )
    if not latest:
        return SkipReason(f"{restored} succeeded; the other side was never restored: no gates yet")
    settings = load_targets(load_settings()).get(target)
    return RunRequest(
        run_key=f"{FOLLOWUP_JOB}:{context.dagster_run.run_id}",
        partition_key=target,
        tags=run_bounds(settings) if settings else {},
    )
