"""`make ui` stops on Ctrl-C or SIGTERM within 10 s, nothing left behind, a run in progress rolled
back and recorded as `interrupted` (issue 18).

`dagster dev` (1.13) alone does not: on SIGTERM (and on the interrupt its children get through
their shutdown pipes) it tells the webserver and the daemon to stop and asks the code server to
shut down, then waits up to 60 s for each. The code server shuts down only once its runs have
finished, so a restore in progress goes on unwatched (psql still loading, the code server and the
run worker orphaned); the webserver waits for the browser's open connections unless it gets a
second SIGINT; and a run worker that is interrupted records no `interrupted` in its evidence.

So `restore-assets ui` keeps `dagster dev` as a child in its own session (a terminal's Ctrl-C
reaches only this process) and, on SIGINT, SIGTERM or SIGHUP, stops it in order:

1. each run in progress (a run whose recorded process is in the tree): SIGTERM to that process
   alone, as `kill` to a CLI run: it stops psql itself and the transaction rolls back; up to
   `RUNS_S` for those processes to exit;
2. SIGINT to dagster dev's whole process group, as a terminal's Ctrl-C: every process its own
   orderly shutdown (the webserver gets it twice and stops waiting for connections);
3. `GRACE_S` after the signal, SIGTERM to whatever of the tree is left; at `KILL_S`, SIGKILL.

The tree is every process of the child's session or group and every descendant of it, recorded
before each step by walking /proc (by pid and start time, so a reused pid is never signalled).
The embedded PostgreSQL server is not in it: it detaches, and the last process using it stops it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

RUNS_S = 4.0  # run workers: SIGTERM, then this long at most for them to roll back and exit
GRACE_S = 6.0  # from the signal: dagster dev's own shutdown, then SIGTERM to what is left
KILL_S = 8.0  # from the signal: SIGKILL to what is still left
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_POLL_S = 0.1
_NOT_OURS = {"postgres"}  # the embedded server: detached, stopped by the last process using it


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    start: str  # clock ticks since boot: with the pid, the process's identity
    comm: str


def processes() -> dict[int, Proc]:
    """Every live process (zombies left out), from /proc."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] in ("Z", "X"):
            continue
        pid = int(entry.name)
        found[pid] = Proc(pid, int(fields[1]), int(fields[2]), int(fields[3]), fields[19], comm)
    return found


def tree(leader: int) -> dict[int, Proc]:
    """The processes of `leader`'s session or group, and every descendant of it."""
    procs = processes()
    members = {pid: p for pid, p in procs.items() if leader in (p.sid, p.pgid)}
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    todo = [leader]
    while todo:
        for pid in children.get(todo.pop(), []):
            if pid not in members:
                members[pid] = procs[pid]
                todo.append(pid)
    return {pid: p for pid, p in members.items() if p.comm not in _NOT_OURS}


def alive(known: Iterable[Proc]) -> list[Proc]:
    """Those of `known` still running (the same pid and start time)."""
    now = processes()
    return [p for p in known if p.pid in now and now[p.pid].start == p.start]


def send(known: Iterable[Proc], signo: int) -> None:
    for proc in alive(known):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signo)


def run_workers(instance, members: dict[int, Proc]) -> dict[str, Proc]:
    """Run id → the process executing it, for the unfinished runs of `instance` whose recorded
    process (`restore_assets/process`, written at each step's start) is one of `members`."""
    from dagster import DagsterRunStatus, RunsFilter

    from restore_assets.recovery import PROCESS_TAG

    unfinished = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
    found = {}
    for record in instance.get_run_records(RunsFilter(statuses=unfinished)):
        host, _, rest = record.dagster_run.tags.get(PROCESS_TAG, "").partition(":")
        pid, _, start = rest.partition(":")
        proc = members.get(int(pid)) if pid.isdigit() else None
        if host == socket.gethostname() and proc is not None and proc.start == start:
            found[record.dagster_run.run_id] = proc
    return found


def say(message: str) -> None:
    print(f"restore-assets ui: {message}", file=sys.stderr, flush=True)


def supervise(command: list[str], instance, settings) -> int:
    """Run `command` (dagster dev) in its own session until it exits (its exit code) or a stop
    signal comes: then stop it as the module says, record the runs it stopped as interrupted
    and return 128 + the signal's number."""
    received: list[int] = []
    previous = {s: signal.signal(s, lambda n, _: received.append(n)) for s in STOP_SIGNALS}
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        while child.poll() is None and not received:
            time.sleep(0.2)
        if not received:  # dagster dev ended by itself: nothing of it may stay behind either
            _end(child, tree(child.pid), time.monotonic() - GRACE_S)
            return child.returncode
        signo = received[0]
        record_interrupted(instance, settings, stop(child, signo, instance), signo)
        return 128 + signo
    finally:
        for signo, handler in previous.items():
            signal.signal(signo, handler)


def record_interrupted(instance, settings, run_ids: list[str], signo: int) -> None:
    """Each run told to stop says `interrupted` in its evidence and in Dagster, as a CLI run
    stopped by the same signal does; one that did not end by itself is marked failed; the pool
    slots of runs whose process is gone are freed."""
    from restore_assets.cli import interrupt_reason, record_interrupt
    from restore_assets.recovery import free_dead_runs
    from restore_assets.resources.evidence import EVIDENCE_FOLDER_TAG

    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        folder = run.tags.get(EVIDENCE_FOLDER_TAG)
        record_interrupt(settings, instance, run, folder, signo)
        reason = f"{interrupt_reason(signo)} (`restore-assets ui` was stopped)"
        instance.report_engine_event(reason, run)
        if not instance.get_run_by_id(run_id).is_finished:
            instance.report_run_failed(run, reason)
        say(f"run {run_id[:8]} ({run.job_name}): {reason}")
        if folder:
            say(f"evidence: {folder}")
    free_dead_runs(instance, say)


def stop(child: subprocess.Popen, signo: int, instance) -> list[str]:
    """Stop dagster dev and every process of it, runs first; the run ids told to stop."""
    began = time.monotonic()
    name = signal.Signals(signo).name
    seen = tree(child.pid)
    told: dict[str, Proc] = {}
    while True:  # runs started meanwhile are told too
        members = tree(child.pid)
        seen.update(members)
        for run_id, proc in run_workers(instance, members).items():
            if run_id not in told:
                say(f"{name}: run {run_id[:8]} stops first (SIGTERM to its process {proc.pid})")
                send([proc], signal.SIGTERM)
                told[run_id] = proc
        if not alive(told.values()) or time.monotonic() - began >= RUNS_S:
            break
        time.sleep(_POLL_S * 2.5)
    say(f"{name}: stopping dagster dev (webserver, daemon, code server)")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGINT)
    _end(child, seen, began)
    say(f"stopped in {time.monotonic() - began:.1f}s")
    return list(told)


def _end(child: subprocess.Popen, seen: dict[int, Proc], began: float) -> None:
    """Wait for the tree to end; SIGTERM at `GRACE_S` after `began`, SIGKILL at `KILL_S`."""
    escalations = [(GRACE_S, signal.SIGTERM), (KILL_S, signal.SIGKILL), (KILL_S + 1.0, None)]
    while True:
        child.poll()
        seen.update(tree(child.pid))
        left = alive(seen.values())
        if not left:
            break
        if time.monotonic() - began >= escalations[0][0]:
            after, signo = escalations.pop(0)
            if signo is None:
                say(f"still running after {after:.0f}s: {sorted(p.pid for p in left)}")
                break
            say(f"{signal.Signals(signo).name} to {', '.join(f'{p.comm}[{p.pid}]' for p in left)}")
            send(left, signo)
        time.sleep(_POLL_S)
    child.wait()
