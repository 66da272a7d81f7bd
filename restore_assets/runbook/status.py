"""`restore-assets status`: a read-only look at the Secrets files, the targets, Flyway and the
last run — nothing is started, nothing written."""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from pathlib import Path

import psycopg

from restore_assets.errors import RestoreError
from restore_assets.files import Folder, NotSafe, below
from restore_assets.flyway.version import Version
from restore_assets.pg.database import Database
from restore_assets.redaction import first_line
from restore_assets.runbook.baseline_files import SIDE_FILES
from restore_assets.runbook.evidence import RUN_MARKER, evidence_root
from restore_assets.runbook.flyway_adapter import load_flyway_config, native_engine
from restore_assets.runbook.intake import SecretsStore
from restore_assets.settings import Settings


def status_lines(settings: Settings) -> list[str]:
    store = SecretsStore(settings.paths)
    lines = [f"Secrets root: {settings.paths.secrets_dir}"]
    for side, relpaths in SIDE_FILES.items():
        for relpath in relpaths:
            info = store.inspect(relpath)
            sha = info.sha256[:16] + "…" if info.sha256 else "-"
            lines.append(
                f"  [{side}] {relpath}: {info.status}  mode={info.mode or '-'}  sha256={sha}"
            )
    lines.append("Targets:")
    reachable = {}
    for side in SIDE_FILES:
        db = Database(getattr(settings, side), settings.pg)
        reachable[side], text = reachability(db)
        lines.append(f"  {db.describe()}: {text}")
    lines.append(f"Flyway: {flyway_summary(settings, reachable['modernized'])}")
    last, report = last_gate_report(settings)
    lines.append(f"Last run: {last or 'none'}")
    if report is not None:
        gates = ", ".join(
            f"{g['id']} {'passed' if g['passed'] else 'FAILED'}" for g in report["gates"]
        )
        lines.append(f"Last gate result: {report['status']} ({gates})")
    return lines


def targets_table(named: dict[str, Settings]) -> list[str]:
    """`status` with RESTORE_TARGETS: one row per named target (read-only, like status)."""
    rows = [("target", "Secrets files", "legacy", "modernized", "last gates")]
    for name, settings in named.items():
        files = SecretsStore(settings.paths).inspect_all()
        usable = f"{sum(f.usable for f in files)}/{len(files)} usable"
        sides = [
            f"{t.describe()}: {reachability(t)[1]}"
            for t in (Database(getattr(settings, side), settings.pg) for side in SIDE_FILES)
        ]
        rows.append((name, usable, *sides, _last_gates(settings)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return [line.rstrip() for line in lines]


def _last_gates(settings: Settings) -> str:
    last, report = last_gate_report(settings)
    if last is None or report is None:
        return "no run yet"
    return f"{report['status']} ({last.name})"


def reachability(db: Database) -> tuple[bool, str]:
    if db.embedded:
        # Read-only: report the embedded server without starting it.
        if (db.pg.state_dir / "pgdata" / "postmaster.pid").exists():
            return True, "embedded, running"
        return False, "embedded, starts on demand"
    try:
        version = db.server_version_num()
    except RestoreError as exc:
        return False, f"unreachable ({first_line(exc)})"
    return True, f"reachable, PostgreSQL {version // 10000}.{version % 10000}"


def flyway_summary(settings: Settings, reachable: bool) -> str:
    """Flyway info in one line, without starting anything."""
    if not reachable:
        return "not read (Modernized target not reachable without starting it)"
    db = Database(settings.modernized, settings.pg)
    try:
        rows = native_engine(load_flyway_config(settings.flyway, db), db, print).info()
    except (RestoreError, psycopg.Error) as exc:  # e.g. no privilege on the history table
        return f"unavailable ({first_line(exc)})"
    states = Counter(r.state for r in rows)
    # Flyway's info lists applied rows in rank order, so the latest version is the highest.
    done = [r.version for r in rows if r.version and r.state in ("Success", "Baseline")]
    latest = max(done, key=Version.parse, default="-")
    return f"latest {latest}; " + ", ".join(f"{n} {state.lower()}" for state, n in states.items())


def last_evidence(settings: Settings) -> Path | None:
    return last_gate_report(settings)[0]


def last_gate_report(settings: Settings) -> tuple[Path | None, dict | None]:
    """The newest run folder (one holding `.run_id`) and its `gate_report.json`, if any: read
    by descriptor from the artifacts root, never through a link, and only in the project's own
    folders (as `EvidenceStore` writes them); nothing is created or changed."""
    root = evidence_root(settings)
    rel = below(root, settings.paths.artifacts_dir)
    if rel is None:
        return None, None
    try:
        with Folder.root(settings.paths.artifacts_dir) as artifacts:
            held = artifacts.walk(rel)
    except (OSError, NotSafe):  # no evidence yet, or a link on the way: nothing to show
        return None, None
    with held:
        if not _own(held):
            return None, None
        for name in sorted(os.listdir(held.fd), reverse=True):
            try:
                with held.sub(name) as run:
                    if not _own(run) or not _is_file(run, RUN_MARKER):
                        continue
                    if not _is_file(run, "gate_report.json"):
                        return root / name, None
                    with run.open_read("gate_report.json") as handle:
                        return root / name, json.loads(handle.read().decode("utf-8"))
            except (OSError, ValueError):  # a link, a file, gone meanwhile, unreadable JSON
                continue
    return None, None


def _own(folder: Folder) -> bool:
    """Written by this user (or root) and by no one else: `status` changes no mode, it skips."""
    st = os.fstat(folder.fd)
    return st.st_uid in (os.geteuid(), 0) and not st.st_mode & 0o022


def _is_file(folder: Folder, name: str) -> bool:
    st = folder.lstat(name)
    return st is not None and stat.S_ISREG(st.st_mode)
