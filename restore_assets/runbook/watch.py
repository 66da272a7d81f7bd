"""Runbook §0, unattended: watch the Secrets store and decide when a side can be restored.

A side is ready when all its files are present, unchanged since the previous look (size and
mtime: a file still being copied is not ready), and pass intake's checks. Its content key is the
files' sha256 (cached, so a look at unchanged multi-GB files reads nothing). Whether that content
still needs restoring is decided from the target's last restore (`LastRestore`, read by the
sensor from the runs recorded in the Dagster instance, whoever launched them): "up to date" only
when the target holds a successful restore of exactly this content. Both sides to restore → the
whole chain (both restores, the sync, the gates); one side → that side. Pure: the Dagster sensor
only translates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from restore_assets.files import NotSafe, lstat_below
from restore_assets.runbook.baseline_files import SIDE_FILES
from restore_assets.runbook.intake import SecretsStore
from restore_assets.settings import SIDES


@dataclass
class WatchState:
    """What the previous look saw (the sensor's cursor). What was restored is not kept here:
    the instance's runs say it, so a fresh cursor never re-restores what was just restored."""

    seen: dict[str, list[int]] = field(default_factory=dict)  # relpath -> [size, mtime_ns]
    status: str = ""  # the last "why nothing was requested", to log only its changes
    inbox: dict[str, list[int]] = field(default_factory=dict)  # ZIP name -> [size, mtime_ns]
    missing_since: str = ""  # ISO time the Secrets were first seen missing or refused, or ""
    observed: dict[str, str] = field(default_factory=dict)  # relpath -> status last observed

    def as_json(self) -> dict[str, object]:
        return {
            "seen": self.seen,
            "status": self.status,
            "inbox": self.inbox,
            "missing_since": self.missing_since,
            "observed": self.observed,
        }

    @classmethod
    def from_json(cls, data: dict[str, object] | None) -> WatchState:
        data = data or {}
        return cls(
            dict(data.get("seen", {})),
            data.get("status", ""),
            dict(data.get("inbox", {})),
            str(data.get("missing_since", "")),
            dict(data.get("observed", {})),
        )


def content_key(sha256s: Iterable[str]) -> str:
    """A side's content: its files' sha256 (in SIDE_FILES order), shortened (what a run key,
    a run tag and a skip reason show)."""
    return "-".join(sha[:16] for sha in sha256s)


@dataclass(frozen=True)
class LastRestore:
    """The latest run that restored (or is restoring) a side of a target."""

    run_id: str
    content: str | None  # its content key (None: not known yet, e.g. a queued UI run)
    # "running"; "passed"; "failed" (a step or check failed); "stopped" (interrupted, canceled
    # by a person, or over its maximum runtime); "crashed" (its process died: no step failed,
    # none was stopped)
    state: str
    crashes: int = 0  # the latest runs of this very content whose process died, in a row


@dataclass(frozen=True)
class Crash:
    """A restore whose process died (SIGKILL, OOM, reboot: no step failed, nobody stopped it)
    and what the sensor does about it — what Ops are told (issue 21: the "crashed" event)."""

    run_id: str
    target: str
    side: str
    content: str
    attempt: int  # this content's runs that died one after another, this one included
    max_retries: int  # RESTORE_CRASH_RETRIES

    @property
    def retried(self) -> bool:
        """Requested again (retry `attempt` of `max_retries`), or left failed for good."""
        return self.attempt <= self.max_retries

    def describe(self) -> str:
        run = f"run {self.run_id[:8]} ({self.target}, {self.side}, content {self.content})"
        if self.retried:
            return f"{run}: its process died; retry {self.attempt} of {self.max_retries}"
        return (
            f"{run}: its process died, {self.attempt} time(s) in a row for this content; not "
            f"retried any more (RESTORE_CRASH_RETRIES={self.max_retries}): see that run's log "
            "and the machine's (OOM killer, reboot), then `restore-assets run`"
        )


def crash_of(target: str, side: str, key: str, last: LastRestore | None, max_retries: int):
    """The crash a restore of `key` would follow, or None: only when `side`'s last restore was
    of this very content and its process died (new content is a new restore, not a retry)."""
    if last is None or last.state != "crashed" or last.content != key:
        return None
    return Crash(last.run_id, target, side, key, last.crashes, max_retries)


def why_not_restore(
    side: str, key: str, last: LastRestore | None, crash: Crash | None = None
) -> str | None:
    """None when `key` must be restored; else why not, in words for the skip reason. `crash`
    is `crash_of` for this side (a died run is restored again only while it is retried)."""
    if last is not None and last.state == "running":  # whatever it restores: one at a time
        return f"{side}: a restore is under way (run {last.run_id[:8]}); next look"
    if last is None or last.content != key:
        return None
    run = last.run_id[:8]
    if last.state == "passed":
        return f"{side}: up to date (content {key} restored by run {run})"
    if last.state == "failed":
        return (
            f"{side}: content {key} failed in run {run} and is not retried by itself: see that "
            "run's evidence; once the cause is fixed (files, target or configuration), deliver "
            "the files again or `restore-assets run`"
        )
    if last.state == "stopped":
        return (
            f"{side}: content {key}: run {run} was stopped (interrupted, canceled or over "
            "RESTORE_MAX_RUNTIME_SECONDS) and is not restarted by itself: `restore-assets run`, "
            "or launch it again"
        )
    if crash is not None and not crash.retried:
        return f"{side}: {crash.describe()}"
    return None  # its process died: requested again


# A tick reads (hashes, checks header and footer, scans) at most this much of newly settled
# files; a larger delivery is read by the intake run, outside the tick. The scan, not the hash,
# sets the size: about 2 MiB/s of schema DDL on a busy machine (64 MiB of DDL took 30 s), so
# 2 MiB keeps a tick around a second at worst. Demo and schema-only dumps fit; seeds go to intake.
TICK_READ_BYTES = 2 << 20


@dataclass
class Look:
    """One look at the store: which sides are settled and usable (with their content keys),
    which are settled but not read yet (left to the intake run), and why the others wait."""

    settled: dict[str, str]  # side -> content key
    reasons: list[str]
    state: WatchState
    unread: dict[str, int] = field(default_factory=dict)  # side -> bytes the intake run reads
    # relpath -> (status, sha256 or ""): "missing", "changed", "unread", "ok" or why refused
    files: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def problems(self) -> dict[str, str]:
        """The files Ops must deliver again: missing or refused (relpath -> why)."""
        return {
            rel: status
            for rel, (status, _) in self.files.items()
            if status not in ("changed", "unread", "ok")
        }


def look(store: SecretsStore, previous: WatchState) -> Look:
    state = WatchState(status=previous.status)
    reasons: list[str] = []
    settled: dict[str, str] = {}
    unread: dict[str, int] = {}
    found: dict[str, tuple[str, str]] = {}
    for side in SIDES:
        waiting = []
        for relpath in SIDE_FILES[side]:
            try:  # the entry itself, reached without a link: never what a link aims at
                st = lstat_below(store.root, relpath)
            except NotSafe:
                st, why = None, "refused (a link on the way)"
            else:
                why = "missing"
            if st is None:
                waiting.append(f"{relpath} {why}")
                found[relpath] = (why, "")
                continue
            state.seen[relpath] = [st.st_size, st.st_mtime_ns]
            found[relpath] = ("unread", "")  # present; read below once its side settles
            if previous.seen.get(relpath) != state.seen[relpath]:
                waiting.append(f"{relpath} still changing or new ({st.st_size} bytes); next look")
                found[relpath] = ("changed", "")
        if waiting:
            reasons.append(f"{side}: " + ", ".join(waiting))
            continue
        to_read = store.unread_bytes(store.side_reads(side))
        if to_read > TICK_READ_BYTES:
            unread[side] = to_read
            reasons.append(f"{side}: settled; the intake run reads and hashes {to_read} bytes")
            continue
        files = store.inspect_side(side)
        found |= {f.relpath: (f.status, f.sha256) for f in files}
        refused = [f"{f.relpath} refused ({f.status})" for f in files if not f.usable]
        if refused:
            reasons.append(f"{side}: " + ", ".join(refused))
            continue
        settled[side] = content_key(f.sha256 for f in files)
    return Look(settled, reasons, state, unread, found)


def missing_since(
    problems: dict[str, str], previous: str, now: dt.datetime
) -> tuple[str, str | None]:
    """Since when the Secrets have been missing or refused (ISO time, "" when they are not),
    and the line the sensor's status starts with (runbook: "Secrets 未取得")."""
    if not problems:
        return "", None
    since = previous or now.isoformat(timespec="seconds")
    word = "missing" if "missing" in problems.values() else "unusable"
    when = dt.datetime.fromisoformat(since)
    return since, f"Secrets {word} since {when:%Y-%m-%d %H:%M} UTC (Secrets 未取得)"
