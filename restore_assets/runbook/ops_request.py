"""Runbook §0: the request to Ops/DBA when baseline files are missing or unusable."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from restore_assets.runbook.baseline_files import SecretFile
from restore_assets.settings import Settings


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
