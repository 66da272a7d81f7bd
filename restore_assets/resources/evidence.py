"""The evidence folder: `$RESTORE_ARTIFACTS_DIR/parity-manual/db-restore/<YYYYMMDDTHHMMSSZ>/`.

Every write goes through `redact`, so a password can never land in a file an auditor reads.
Medical rows are kept out by construction: callers only ever write counts and names.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

EVIDENCE_SUBDIR = Path("parity-manual") / "db-restore"
RUN_MARKER = ".run_id"


def folder_name(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


class EvidenceStore:
    """One run's evidence folder."""

    def __init__(self, folder: Path, redact: Callable[[str], str]):
        self.folder = folder
        self._redact = redact

    @classmethod
    def for_run(
        cls, artifacts_dir: Path, run_id: str, started: dt.datetime, redact: Callable[[str], str]
    ) -> EvidenceStore:
        """The run's folder, created once; a second run in the same second gets a suffix."""
        base = artifacts_dir / EVIDENCE_SUBDIR
        base.mkdir(parents=True, exist_ok=True)
        name = folder_name(started)
        for attempt in range(1, 100):
            folder = base / (name if attempt == 1 else f"{name}-{attempt}")
            marker = folder / RUN_MARKER
            try:
                folder.mkdir()
            except FileExistsError:
                if marker.exists() and marker.read_text().strip() == run_id:
                    return cls(folder, redact)
                continue
            marker.write_text(run_id + "\n")
            return cls(folder, redact)
        raise RuntimeError(f"could not create an evidence folder under {base}")

    def path(self, name: str) -> Path:
        return self.folder / name

    def write(self, name: str, text: str) -> Path:
        target = self.path(name)
        tmp = target.with_name(f".{name}.{os.getpid()}.tmp")
        tmp.write_text(self._redact(text), encoding="utf-8")
        tmp.replace(target)
        return target
