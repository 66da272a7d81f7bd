"""Runbook §7: the evidence folder `$RESTORE_ARTIFACTS_DIR/parity-manual/db-restore/<UTC>/`.

Every write goes through `redact` (the run's `Settings.redactor`): this is the evidence's
redaction boundary, so a password can never land in a file an auditor reads.
Medical rows are kept out by construction: callers only ever write counts, names and hashes.
`README.md` is re-rendered from the steps recorded so far, so a run that stops half-way still
leaves a readable folder.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from restore_assets.errors import EvidenceError
from restore_assets.files import write_private
from restore_assets.named_targets import labelled
from restore_assets.settings import Settings

EVIDENCE_SUBDIR = Path("parity-manual") / "db-restore"
RUN_MARKER = ".run_id"
STEPS_FILE = ".steps.json"


def evidence_root(settings: Settings) -> Path:
    """Where a target's run folders and `baseline_search.log` go: `db-restore/` for the
    environment's target, as always; `db-restore/<target>/` for each target of targets.yaml."""
    root = settings.paths.artifacts_dir / EVIDENCE_SUBDIR
    return root / settings.target_name if labelled(settings) else root


def folder_name(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


class EvidenceStore:
    """One run's evidence folder."""

    def __init__(self, folder: Path, redact: Callable[[str], str], artifacts_dir: Path):
        self.folder = folder
        self._redact = redact
        self.artifacts_dir = artifacts_dir

    @classmethod
    def for_run(
        cls,
        settings: Settings,
        run_id: str,
        started: dt.datetime,
        redact: Callable[[str], str],
    ) -> EvidenceStore:
        """The run's folder under its target's `evidence_root`, created once; a second run in
        the same second gets a suffix."""
        artifacts_dir = settings.paths.artifacts_dir
        base = evidence_root(settings)
        base.mkdir(parents=True, exist_ok=True)
        name = folder_name(started)
        for attempt in range(1, 100):
            folder = base / (name if attempt == 1 else f"{name}-{attempt}")
            marker = folder / RUN_MARKER
            try:
                folder.mkdir(mode=0o700)  # hashes, hostnames, counts: for the auditor only
            except FileExistsError:
                if marker.exists() and marker.read_text().strip() == run_id:
                    return cls(folder, redact, artifacts_dir)
                continue
            write_private(marker, lambda out: out.write(f"{run_id}\n".encode()))
            return cls(folder, redact, artifacts_dir)
        raise EvidenceError(f"could not create an evidence folder under {base}")

    @property
    def label(self) -> str:
        """The folder as the runbook writes it (`artifacts/parity-manual/db-restore/<UTC>`):
        relative to the working directory (the repository checkout), so paste-ready lines stay
        true on another machine; absolute only when the artifacts live elsewhere."""
        try:
            return self.folder.resolve().relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            return str(self.folder)

    def redact(self, text: str) -> str:
        """The run's redactor: the evidence's, and that of what the shells hand Dagster."""
        return self._redact(text)

    def path(self, name: str) -> Path:
        return self.folder / name

    def write(self, name: str, text: str) -> Path:
        """Write `name` (redacted), mode 0600, atomically."""
        target = self.path(name)
        data = self._redact(text).encode("utf-8")
        write_private(target, lambda out: out.write(data))
        return target

    def append(self, name: str, text: str) -> Path:
        """Add to a file (a later step re-checking what an earlier one did keeps both)."""
        existing = self.path(name).read_text(encoding="utf-8") if self.path(name).exists() else ""
        return self.write(name, existing + text)

    @contextmanager
    def steps_locked(self) -> Iterator[dict[str, dict[str, str]]]:
        """The steps recorded so far (in the order first recorded), to change while no other
        process of the run can (sides may run in parallel processes, hence the file lock);
        written back, and README.md re-rendered, on the way out."""
        fd = os.open(self.path(STEPS_FILE), os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            text = handle.read()
            steps = json.loads(text) if text.strip() else {}
            yield steps
            handle.seek(0)
            handle.truncate()
            handle.write(self._redact(json.dumps(steps, indent=2, ensure_ascii=False)))
            self.write("README.md", render_readme(self.folder, steps))

    def record_step(self, step: str, status: str, summary: Mapping[str, object]) -> None:
        """Add one step's outcome and re-render README.md."""
        with self.steps_locked() as steps:
            steps[step] = {"status": status, **{k: plain(v) for k, v in summary.items()}}


def plain(value: object) -> str:
    """A value as a person writes it: `last_value=200, is_called=false`, never a Python repr."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return ", ".join(plain(v) for v in value)
    return str(value)


def render_readme(folder: Path, steps: Mapping[str, Mapping[str, str]]) -> str:
    lines = [
        f"# DB restore evidence — {folder.name}",
        "",
        "Written by restore_assets (runbook: OpenDolphin DB baseline restore). No passwords and no",
        "seed rows are recorded here: only file hashes, counts, versions and psql/flyway output.",
        "",
        "| step | status | summary |",
        "| --- | --- | --- |",
    ]
    for step, summary in steps.items():
        detail = "; ".join(f"{k}: {v}" for k, v in summary.items() if k != "status")
        lines.append(f"| {step} | {summary.get('status', '')} | {detail.replace('|', '/')} |")
    files = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    lines += ["", "## Files", ""] + [f"- [{name}]({name})" for name in files]
    return "\n".join(lines) + "\n"
