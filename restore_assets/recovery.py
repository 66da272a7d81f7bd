"""Crash-safe by construction (issue 8): a run that died never blocks a later one, and a run
told to stop (SIGINT/SIGTERM) stops cleanly and says so.

One run of a target at a time, but a run killed with SIGKILL (or lost with its machine) keeps
its status `STARTED` for ever: Dagster's own run monitoring cannot tell, because the default run
launcher has no worker health check, and a run executed in-process (the CLI) has no launcher at
all. So every run records its process on itself (host, pid and the kernel's start time of that
pid, so a reused pid is not mistaken for it); before waiting for its target, runs whose process
is gone are marked failed, saying why (and any concurrency slot they claimed is freed). The
wait itself is bounded, sleeps, and names the run it waits for.

Dagster turns SIGINT and SIGTERM into an interrupt of the running step (psql and pg_dump are
stopped on the way out, so the open transaction rolls back); `signals_received` tells the CLI
which one came, for the exit code the shell expects (130 / 143).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from restore_assets.errors import RestoreError
from restore_assets.notifications import tell_crashed

PROCESS_TAG = "restore_assets/process"
PARTITION_TAG = "dagster/partition"  # every run's target (named_targets; `default`)
_UNFINISHED = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
_HOLDER_EVERY_SECONDS = 5


class TargetBusy(RestoreError):
    """Another live run of the same target is still under way after the bounded wait."""


def process_identity(pid: int | None = None) -> str:
    """`host:pid:start-ticks` of a process (default: this one)."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def _start_ticks(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_gone(identity: str) -> bool:
    """True only when sure: the process ran on this host and no longer exists (or its pid now
    belongs to a younger process). A run from another host is never judged from here."""
    host, _, rest = identity.partition(":")
    pid, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit() or _start_ticks(os.getpid()) is None:
        return False  # another host, or no /proc here: never judged from here
    return _start_ticks(int(pid)) != ticks


def stamped(run_id: str, value: str) -> str:
    """A per-run tag's value as `<run id>@value`: whose it is travels with it (`own_tag`)."""
    return f"{run_id}@{value}"


def own_tag(run, key: str) -> str | None:
    """The value of the per-run tag `key` that `run` recorded itself, or None. Dagster copies a
    parent's tags into a re-execution: a value stamped with another run's id is the parent's
    (its process, its start, its stop), never this run's. A value without a stamp was recorded
    by an older version: the run's own unless the run is a re-execution."""
    value = run.tags.get(key)
    if value is None:
        return None
    run_id, at, rest = value.partition("@")
    if at and run_id == run.run_id:
        return rest
    if at and _RUN_ID.fullmatch(run_id):
        return None  # another run's: copied from a parent
    return None if run.parent_run_id else value


_RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def process_tag(run_id: str) -> dict[str, str]:
    """The tag that records this process as the one executing run `run_id`."""
    return {PROCESS_TAG: stamped(run_id, process_identity())}


def recorded_process(run) -> str | None:
    """`host:pid:start-ticks` of the process that recorded itself on `run`, or None (see
    `own_tag`: a process tag copied from a parent run is not this run's process)."""
    return own_tag(run, PROCESS_TAG)


def tag_run_process(context) -> None:
    """Record on the run the process that executes it (the run worker, or the CLI)."""
    mine = process_tag(context.run.run_id)
    if context.run.tags.get(PROCESS_TAG) != mine[PROCESS_TAG]:
        context.instance.add_run_tags(context.run.run_id, mine)


# A run records its process as its first step starts, seconds after it starts; one still
# without its own after this long (jobs.INSTANCE_CONFIG's run_monitoring start_timeout) is not
# a run about to record it.
UNSTAMPED_AFTER_SECONDS = 180.0


def _unstamped_process(record, after: float) -> str | None:
    """The process in a tag an older version wrote without a run id (`host:pid:ticks`) on a
    re-execution, where it may be the parent's, copied: the run's own process unless the run
    has recorded none for `after` seconds. Then, if that process is gone too, nothing of the
    run is alive on this host (the caller judges it as its own)."""
    value = record.dagster_run.tags.get(PROCESS_TAG, "")
    if not value or "@" in value:
        return None
    since = record.start_time or record.create_timestamp.timestamp()
    return value if time.time() - since >= after else None


def free_dead_runs(
    instance: DagsterInstance,
    log: Callable[[str], None],
    *,
    unstamped_after: float = UNSTAMPED_AFTER_SECONDS,
    told_elsewhere: Callable[[object], bool] = lambda run: False,
) -> list[str]:
    """Mark failed every unfinished run whose process is gone, so its target is free for the
    next run, and tell Ops — unless `told_elsewhere(run)`: the Secrets sensor tells of the
    restores it judges itself, with its retry decision (one message per crash). Returns the
    run ids it marked."""
    cleaned = []
    for record in instance.get_run_records(RunsFilter(statuses=_UNFINISHED)):
        run = record.dagster_run
        identity = recorded_process(run) or _unstamped_process(record, unstamped_after)
        if not identity or not process_gone(identity):
            continue
        message = (
            f"its process ({identity}) is gone: killed or crashed. Marked failed by "
            "restore_assets, so later runs of its target are not blocked; the target was left "
            "as the database's own rollback left it"
        )
        instance.report_run_failed(run, message)
        log(f"run {run.run_id[:8]} ({run.job_name}): {message}")
        if not told_elsewhere(run):
            tell_crashed(run, message)
        cleaned.append(run.run_id)
    return cleaned


def wait_for_target(
    instance: DagsterInstance,
    target: str,
    *,
    wait_seconds: float,
    log: Callable[[str], None],
    poll_seconds: float = 1.0,
) -> None:
    """Return once no other run of `target` is under way, marking dead runs failed first; raise
    `TargetBusy` naming the holder after `wait_seconds`. Sleeps between looks, never spins.
    (The daemon's queue keeps the same rule for the runs it starts: jobs.INSTANCE_CONFIG.)"""
    started = time.monotonic()
    last_said = None
    while True:
        free_dead_runs(instance, log)
        holder = _holder(instance, target)
        if holder is None:
            return
        waited = time.monotonic() - started
        described = f"target {target} held by {holder}"
        if waited >= wait_seconds:
            raise TargetBusy(
                f"{described} — still busy after {wait_seconds:.0f}s (RESTORE_WAIT_SECONDS). "
                "Wait for that run to end, or stop it; a run whose process died is freed "
                "automatically"
            )
        if last_said is None or time.monotonic() - last_said >= _HOLDER_EVERY_SECONDS:
            log(f"waiting {waited:.0f}s/{wait_seconds:.0f}s: {described}")
            last_said = time.monotonic()
        time.sleep(poll_seconds)


def _holder(instance: DagsterInstance, target: str) -> str | None:
    """A description of an unfinished run of `target`, or None."""
    runs = instance.get_runs(RunsFilter(statuses=_UNFINISHED, tags={PARTITION_TAG: target}))
    if not runs:
        return None
    run = runs[-1]  # the oldest: the one that started first
    process = recorded_process(run) or "process unknown"
    return f"run {run.run_id[:8]} ({run.job_name}, {run.status.value}, {process})"


def _interrupt(signo, frame):
    raise KeyboardInterrupt


@contextmanager
def signals_received() -> Iterator[list[int]]:
    """The SIGINT/SIGTERM numbers received during the block (filled in when it ends).

    Dagster's handler does not say which signal came, but Python writes the number of every
    handled signal to the wakeup fd. Until Dagster takes over, SIGTERM interrupts like SIGINT
    (nothing has been touched yet, and the exit code still says which)."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    received: list[int] = []
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.set_wakeup_fd(previous_fd)
        try:
            data = os.read(read_end, 1024)
        except BlockingIOError:
            data = b""
        received += [n for n in data if n in (signal.SIGINT, signal.SIGTERM)]
        os.close(read_end)
        os.close(write_end)
