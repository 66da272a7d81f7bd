"""Runbook §1: the baseline files — which the runbook expects per side, what each one is, and
what is known of one file (presence, mode, size, sha256, the pg_dump version that wrote it)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from restore_assets.settings import LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE, MODERN_SCHEMA_FILE

SIDE_FILES = {
    "legacy": (LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE),
    "modernized": (MODERN_SCHEMA_FILE,),
}
FILE_ROLES = {
    LEGACY_SCHEMA_FILE: "Legacy schema (pg_dump --schema-only)",
    LEGACY_SEED_FILE: "Legacy seed (pg_dump --data-only)",
    MODERN_SCHEMA_FILE: "Modernized schema (pg_dump --schema-only)",
}
_HEADER_LINES = 40
_DUMPED_FROM = re.compile(r"^-- Dumped from database version (\S+)")
_DUMPED_BY = re.compile(r"^-- Dumped by pg_dump version (\S+)")


@dataclass
class SecretFile:
    """What we know about one baseline file; `problems` empty means usable."""

    relpath: str
    path: Path
    present: bool = False
    size: int = 0
    mode: str = ""
    sha256: str = ""
    dumped_from: str | None = None
    dumped_by: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.present and not self.problems

    @property
    def status(self) -> str:
        return "ok" if self.usable else "; ".join(self.problems)

    @property
    def role(self) -> str:
        return FILE_ROLES[self.relpath]

    def shasum_line(self) -> str:
        """The line `shasum -a 256 <relpath>` prints when run from the Secrets root."""
        return f"{self.sha256}  {self.relpath}"

    def as_evidence(self) -> dict[str, object]:
        return {
            "path": self.relpath,
            "sha256": self.sha256,
            "size": self.size,
            "mode": self.mode,
            "dumped_from": self.dumped_from,
            "dumped_by": self.dumped_by,
        }


def read_dump_header(path: Path) -> tuple[str | None, str | None]:
    """`Dumped from database version` and `Dumped by pg_dump version` from a dump's first lines."""
    dumped_from = dumped_by = None
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for _, line in zip(range(_HEADER_LINES), handle, strict=False):
            if m := _DUMPED_FROM.match(line):
                dumped_from = m.group(1)
            elif m := _DUMPED_BY.match(line):
                dumped_by = m.group(1)
    return dumped_from, dumped_by
