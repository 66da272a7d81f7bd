"""Runbook §0, unattended: watch the Secrets store and decide when a side can be restored.

A side is ready when all its files are present, unchanged since the previous look (size and
mtime: a file still being copied is not ready), and pass intake's checks. Its content key is the
files' sha256 (cached, so a look at unchanged multi-GB files reads nothing); a key already
requested is never requested again. Both sides ready with new content → the whole chain (both
restores, the sync, the gates); one side → that side. Pure: the Dagster sensor only translates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from restore_assets.runbook.baseline_files import SIDE_FILES
from restore_assets.runbook.intake import SecretsStore
from restore_assets.settings import SIDES


@dataclass
class WatchState:
    """What the previous look saw (the sensor's cursor)."""

    seen: dict[str, list[int]] = field(default_factory=dict)  # relpath -> [size, mtime_ns]
    requested: dict[str, str] = field(default_factory=dict)  # side -> content key
    status: str = ""  # the last "why nothing was requested", to log only its changes
    inbox: dict[str, list[int]] = field(default_factory=dict)  # ZIP name -> [size, mtime_ns]

    def as_json(self) -> dict[str, object]:
        return {
            "seen": self.seen,
            "requested": self.requested,
            "status": self.status,
            "inbox": self.inbox,
        }

    @classmethod
    def from_json(cls, data: dict[str, object] | None) -> WatchState:
        data = data or {}
        return cls(
            dict(data.get("seen", {})),
            dict(data.get("requested", {})),
            data.get("status", ""),
            dict(data.get("inbox", {})),
        )


@dataclass
class Look:
    """One look at the store: what to restore (sides, with their keys) or why nothing."""

    restore: dict[str, str]  # side -> content key, new since the last request
    reasons: list[str]
    state: WatchState

    @property
    def status(self) -> str:
        return "; ".join(self.reasons)


def look(store: SecretsStore, previous: WatchState) -> Look:
    state = WatchState(requested=dict(previous.requested), status=previous.status)
    reasons: list[str] = []
    ready: dict[str, str] = {}
    for side in SIDES:
        waiting = []
        for relpath in SIDE_FILES[side]:
            try:
                st = os.stat(store.root / relpath)
            except OSError:
                waiting.append(f"{relpath} missing")
                continue
            state.seen[relpath] = [st.st_size, st.st_mtime_ns]
            if previous.seen.get(relpath) != state.seen[relpath]:
                waiting.append(f"{relpath} still changing or new ({st.st_size} bytes); next look")
        if waiting:
            reasons.append(f"{side}: " + ", ".join(waiting))
            continue
        files = store.inspect_side(side)
        refused = [f"{f.relpath} refused ({f.status})" for f in files if not f.usable]
        if refused:
            reasons.append(f"{side}: " + ", ".join(refused))
            continue
        key = "-".join(f.sha256[:16] for f in files)
        if state.requested.get(side) == key:
            reasons.append(f"{side}: up to date (content {key} already requested)")
        else:
            ready[side] = key
    for side, key in ready.items():
        state.requested[side] = key
    return Look(ready, reasons, state)
