"""`make ui` stops on Ctrl-C or SIGTERM within 10 s, nothing left behind, a run in progress rolled
back and recorded as `interrupted` (issue 18).

`dagster dev` (1.13) alone does not: on SIGTERM (and on the interrupt its children get through
their shutdown pipes) it tells the webserver and the daemon to stop and asks the code server to
shut down, then waits up to 60 s for each. The code server shuts down only once its runs have
finished, so a restore in progress goes on unwatched (psql still loading, the code server and the
run worker orphaned, the embedded server up); the webserver (uvicorn) may wait for a browser's
open connections unless it gets a second SIGINT; and an interrupted run worker records no
`interrupted` in its evidence.

So `restore-assets ui` keeps `dagster dev` as a child in its own session (a terminal's Ctrl-C
reaches only this process) and, on SIGINT, SIGTERM or SIGHUP, stops it in order:

1. the daemon is paused (SIGSTOP: no sensor tick asks for a run again because it failed, no
   queued run starts), and each run in progress (a run whose recorded process is in the tree)
   gets SIGTERM, that process alone, as `kill` to a CLI run: it stops psql itself, the
   transaction rolls back, the run ends failed;
2. at once, SIGINT to every other process of the tree, as a terminal's Ctrl-C (the webserver
   gets it twice, with dagster dev's own, and stops waiting for connections); the run workers
   and the processes under them get no second signal, which could cut their clean-up short;
3. once the runs have ended, at the latest `GRACE_S` after the signal, the daemon is continued
   and stops too;
4. `GRACE_S` after the signal, SIGTERM to whatever is left but the run workers; at `KILL_S`,
   SIGKILL to everything left.

Each run that ended says `interrupted` in its evidence and in Dagster, as a CLI run does; a run
queued while stopping is canceled (it would start, unasked, with the next `make ui`).

The tree is every process of the child's session or group and every descendant of it, recorded
before each step by walking /proc (by pid and start time, so a reused pid is never signalled).
The embedded PostgreSQL server is not in it: it detaches, and the last process using it stops it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

GRACE_S = 4.0  # from the signal: dagster dev's own shutdown, then SIGTERM (runs spared)
KILL_S = 7.0  # from the signal: SIGKILL to what is still left, runs included
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

    from restore_assets.recovery import recorded_process

    unfinished = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
    found = {}
    for record in instance.get_run_records(RunsFilter(statuses=unfinished)):
        host, _, rest = (recorded_process(record.dagster_run) or "").partition(":")
        pid, _, start = rest.partition(":")
        proc = members.get(int(pid)) if pid.isdigit() else None
        if host == socket.gethostname() and proc is not None and proc.start == start:
            found[record.dagster_run.run_id] = proc
    return found


def say(message: str) -> None:
    print(f"restore-assets ui: {message}", file=sys.stderr, flush=True)


def supervise(command: list[str], instance, settings) -> int:
    """Run `command` (dagster dev) in its own session until it exits (its exit code) or a stop
    signal comes: then stop it as the module says, the runs it stopped recorded as interrupted,
    and return 128 + the signal's number."""
    received: list[int] = []
    previous = {s: signal.signal(s, lambda n, _: received.append(n)) for s in STOP_SIGNALS}
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        while child.poll() is None and not received:
            time.sleep(0.2)
        if not received:  # dagster dev ended by itself: nothing of it may stay behind either
            Stop(child, instance, settings, 0).finish(time.monotonic() - GRACE_S)
            return child.returncode
        Stop(child, instance, settings, received[0]).run()
        return 128 + received[0]
    finally:
        for signo, handler in previous.items():
            signal.signal(signo, handler)


class Stop:
    """One stop of dagster dev's tree (see the module)."""

    def __init__(self, child: subprocess.Popen, instance, settings, signo: int):
        self.child, self.instance, self.settings, self.signo = child, instance, settings, signo
        self.began, self.wall = time.monotonic(), dt.datetime.now(dt.UTC)
        self.seen = tree(child.pid)
        self.told: dict[str, Proc] = {}  # run id → its process, told to stop
        self.interrupted: set[int] = set()  # pids that got SIGINT
        self.recorded: set[str] = set()

    def run(self) -> None:
        name = signal.Signals(self.signo).name
        # Paused: no sensor asks for the run again because it failed, no queued run starts.
        daemons = [p for p in self.seen.values() if "dagster._daemon" in _cmdline(p.pid)]
        send(daemons, signal.SIGSTOP)
        self.tell_runs()
        say(f"{_since(self.began)} {name}: stopping dagster dev (webserver, daemon, code server)")
        spared = self.spared() | {p.pid for p in daemons}
        others = [p for p in self.seen.values() if p.pid not in spared]
        send(others, signal.SIGINT)  # as a terminal's Ctrl-C, runs and the daemon aside
        self.interrupted |= {p.pid for p in others}
        while alive(self.told.values()) and time.monotonic() - self.began < GRACE_S:
            time.sleep(_POLL_S * 2)
            self.seen.update(tree(self.child.pid))
            self.tell_runs()
            self.record()
        send(daemons, signal.SIGINT)
        send(daemons, signal.SIGCONT)
        self.finish(self.began)
        if self.told:
            from restore_assets.recovery import free_dead_runs

            free_dead_runs(self.instance, say)
        cancel_queued_since(self.instance, self.wall)
        say(f"{_since(self.began)} stopped")

    def tell_runs(self) -> None:
        """SIGTERM to each run worker of the tree not told yet (nor interrupted already)."""
        for run_id, proc in run_workers(self.instance, tree(self.child.pid)).items():
            if run_id not in self.told:
                self.told[run_id] = proc
                if proc.pid not in self.interrupted:
                    say(f"run {run_id[:8]} stops first (SIGTERM to its process {proc.pid})")
                    send([proc], signal.SIGTERM)

    def spared(self) -> set[int]:
        """The run workers told to stop and every process under them (psql, pg_ctl, log tails):
        they stop by themselves, a second signal could cut their clean-up short."""
        procs = processes()
        spared = {p.pid for p in alive(self.told.values())}
        grew = True
        while grew:
            under = {p.pid for p in procs.values() if p.ppid in spared} - spared
            spared |= under
            grew = bool(under)
        return spared

    def record(self) -> None:
        """The runs that ended since the last look: `interrupted` in evidence and Dagster."""
        ended = [r for r, p in self.told.items() if r not in self.recorded and not alive([p])]
        for run_id in ended:
            say(f"{_since(self.began)} run {run_id[:8]}: its process has ended")
        record_interrupted(self.instance, self.settings, ended, self.signo)
        self.recorded.update(ended)

    def finish(self, since: float) -> None:
        """Wait for the tree to end: SIGTERM at `GRACE_S` after `since` (run workers spared),
        SIGKILL at `KILL_S`; then the runs not recorded yet."""
        escalations = [(GRACE_S, signal.SIGTERM), (KILL_S, signal.SIGKILL), (KILL_S + 1.0, None)]
        while True:
            self.child.poll()
            self.seen.update(tree(self.child.pid))
            self.record()
            left = alive(self.seen.values())
            if not left:
                break
            if time.monotonic() - since >= escalations[0][0]:
                _, signo = escalations.pop(0)
                if signo is None:
                    say(f"{_since(self.began)} still running: {sorted(p.pid for p in left)}")
                    break
                if signo == signal.SIGTERM:
                    left = [p for p in left if p.pid not in self.spared()]
                who = ", ".join(f"{p.comm}[{p.pid}]" for p in left)
                say(f"{_since(self.began)} {signal.Signals(signo).name} to {who}")
                send(left, signo)
                send(left, signal.SIGCONT)  # a paused daemon, too
            time.sleep(_POLL_S)
        self.child.wait()
        self.record()


def record_interrupted(instance, settings, run_ids: list[str], signo: int) -> None:
    """Each run told to stop says `interrupted` in its evidence and in Dagster, as a CLI run
    stopped by the same signal does; one that did not end by itself is marked failed."""
    from restore_assets.assets.stops import interrupt_reason, record_interrupt
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


def cancel_queued_since(instance, since: dt.datetime) -> None:
    """A run queued after the signal (a tick that was under way) would start with the next
    `make ui`, unasked: it is canceled, saying why."""
    from dagster import DagsterRunStatus, RunsFilter

    queued = RunsFilter(statuses=[DagsterRunStatus.QUEUED], created_after=since)
    for run in instance.get_runs(filters=queued):
        instance.report_run_canceled(run, "queued while `restore-assets ui` was stopping")
        say(f"run {run.run_id[:8]} ({run.job_name}), queued while stopping: canceled")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _since(began: float) -> str:
    return f"[+{time.monotonic() - began:.1f}s]"
