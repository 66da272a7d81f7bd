"""Runbook §0: the request to Ops/DBA when baseline files are missing or unusable."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from restore_assets.files import Folder, private_folder
from restore_assets.runbook.baseline_files import SecretFile
from restore_assets.settings import Settings

REQUESTS_FILE = "ops_requests.json"  # target -> {"requested_at", "tracking_id"}
# A ticket's or a Slack thread's ID: one short line, no markup (it goes into Markdown and mail).
_TRACKING_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/#-]{0,63}")
NOT_RECEIVED = "Secrets 未取得 / Secrets not received"


def ops_request(
    settings: Settings,
    sides: Iterable[str],
    files: list[SecretFile],
    evidence_label: str | None,
    now: dt.datetime | None = None,
) -> str:
    """Target, files, purpose, deadline and where the evidence goes — the fields §0 asks for."""
    now = now or dt.datetime.now(dt.UTC)
    deadline = (now + dt.timedelta(days=2)).strftime("%Y-%m-%d")
    wanted = [f for f in files if not f.usable]
    targets = {"legacy": settings.legacy, "modernized": settings.modernized}
    lines = [
        "To: Ops / DBA",
        "Subject: OpenDolphin DB baseline files needed for Gate #40 (DB restore)",
        "",
        "Target: "
        + ", ".join(f"{side.capitalize()} ({targets[side].describe()})" for side in sides),
        "Files needed (encrypted ZIP, unpack into the Secrets store, then `chmod 600`):",
    ]
    for f in wanted or files:
        reason = "; ".join(f.problems) or "present"
        lines.append(f"  - {settings.paths.secrets_dir / f.relpath}  [{f.role}] ({reason})")
    lines += [
        "Purpose: Gate #40 — restore the Legacy/Modernized databases so JMS/CLAIM/TRACE "
        "verification can resume.",
        f"Deadline: {deadline} (UTC)",
        f"Evidence: {evidence_label or settings.paths.artifacts_dir / 'parity-manual/db-restore'}",
    ]
    return "\n".join(lines) + "\n"


def ops_folder(settings: Settings) -> Folder:
    """`<state dir>/ops/`: what was asked of and told to Ops (private, files.py's rule)."""
    return private_folder(settings.paths.state_dir / "ops", settings.paths.state_dir)


@dataclass(frozen=True)
class RecordedRequest:
    """Runbook §0.3: when the request went to Ops, and the ID they track it under."""

    requested_at: dt.datetime
    tracking_id: str

    def line(self) -> str:
        return f"requested {self.requested_at:%Y-%m-%d %H:%M} UTC, tracking ID {self.tracking_id}"


def record_request(
    settings: Settings, tracking_id: str, now: dt.datetime | None = None
) -> RecordedRequest:
    """Keep the request's time and Ops' tracking ID for this target (the last one counts)."""
    if not _TRACKING_ID.fullmatch(tracking_id):
        raise ValueError(
            f"tracking ID {tracking_id!r} refused: use up to 64 letters, digits and . _ : / # - "
            "(the ID of Ops' ticket or Slack thread)"
        )
    request = RecordedRequest(now or dt.datetime.now(dt.UTC), tracking_id)
    with ops_folder(settings) as folder:
        known = _read_requests(folder)
        known[settings.target_name] = {
            "requested_at": request.requested_at.isoformat(timespec="seconds"),
            "tracking_id": tracking_id,
        }
        data = json.dumps(known, indent=1, sort_keys=True).encode()
        folder.write(REQUESTS_FILE, lambda out: out.write(data))
    return request


def recorded_request(settings: Settings) -> RecordedRequest | None:
    """The request recorded for this target, or None (none, or unreadable: then it says so
    nowhere rather than something untrue)."""
    if not os.path.lexists(settings.paths.state_dir / "ops" / REQUESTS_FILE):
        return None  # never recorded: reading must not create the folder
    try:
        with ops_folder(settings) as folder:
            entry = _read_requests(folder).get(settings.target_name)
        if not entry:
            return None
        tracking_id = str(entry["tracking_id"])
        if not _TRACKING_ID.fullmatch(tracking_id):
            return None
        return RecordedRequest(dt.datetime.fromisoformat(entry["requested_at"]), tracking_id)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def not_received_line(settings: Settings) -> str:
    """What a blocked run's progress snippet says of the Secrets (runbook §0.3)."""
    request = recorded_request(settings)
    if request is None:
        return (
            f"{NOT_RECEIVED} — no request recorded yet "
            "(`restore-assets ops-request --tracking-id ID` once Ops has it)"
        )
    return f"{NOT_RECEIVED} — {request.line()}"


def _read_requests(folder: Folder) -> dict:
    try:
        with folder.open_read(REQUESTS_FILE) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}
