"""Runbook §1: the baseline files — which the runbook expects per side, what each one is, and
what is known of one file (presence, mode, size, sha256, the pg_dump version that wrote it)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from restore_assets.pg.psql import ScriptScan, ScriptScanner
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
    scan: ScriptScan | None = None  # the psql scan of the bytes that gave `sha256`

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


# What a slot must hold: pg_dump --schema-only output, or --data-only output.
SLOT_KINDS = {LEGACY_SCHEMA_FILE: "schema", LEGACY_SEED_FILE: "data", MODERN_SCHEMA_FILE: "schema"}
_DUMP_START = b"-- PostgreSQL database dump"
_DUMP_COMPLETE = b"-- PostgreSQL database dump complete"
_DATA_ENTRY = b"-- Data for Name: "
_TABLE_ENTRY = b"; Type: TABLE; Schema: "


@dataclass(frozen=True)
class DumpFacts:
    """What one streamed pass over a dump learns: its sha256, what pg_dump wrote into it, and
    the psql scan (`pg/psql.py`) of the same bytes, so a restore need not read the file again."""

    sha256: str
    dumped_from: str | None
    dumped_by: str | None
    starts_as_dump: bool  # pg_dump's "-- PostgreSQL database dump" header
    complete: bool  # pg_dump's "dump complete" footer, nothing but comments/\unrestrict after it
    data_entries: int  # "-- Data for Name: …" (table data)
    table_entries: int  # "-- Name: …; Type: TABLE; …" (table definitions)
    meta_commands: int
    schemas: list[str]
    extensions: list[str]
    refused: list  # the scan's first refusal, [line, what, why]; empty: none

    @property
    def scan(self) -> ScriptScan:
        return ScriptScan(self.meta_commands, self.schemas, self.extensions, self.refused)

    def problems(self, relpath: str) -> list[str]:
        """Why this file cannot be the one its slot expects (empty: it can)."""
        if not self.starts_as_dump or self.dumped_by is None:
            return ["not a pg_dump plain-format file (its header is missing or malformed)"]
        problems = []
        if not self.complete:
            problems.append("truncated: pg_dump's 'dump complete' footer is missing")
        kind = SLOT_KINDS[relpath]
        if kind == "schema" and self.data_entries:
            problems.append(
                f"holds table data ({self.data_entries} data entries): a data dump in the "
                "schema slot"
            )
        if kind == "data" and (self.table_entries or not self.data_entries):
            problems.append(
                "holds table definitions, not table data: a schema dump in the seed slot"
                if self.table_entries
                else "holds no table data (pg_dump --data-only expected)"
            )
        return problems


def read_dump(path: Path) -> DumpFacts:
    """sha256, pg_dump's own markers and the psql scan in one streamed pass (dumps are
    gigabytes: each extra read of one is seconds)."""
    digest = hashlib.sha256()
    scanner = ScriptScanner()
    dumped_from = dumped_by = None
    first = b""  # the first line that is more than "--": pg_dump's title
    complete = False
    data_entries = table_entries = 0
    with path.open("rb") as handle:
        for number, line in enumerate(handle):
            digest.update(line)
            scanner.feed(line)
            if number < _HEADER_LINES:
                if not first and line.strip() not in (b"", b"--"):
                    first = line.strip()
                text = line.decode("utf-8", "replace")
                if m := _DUMPED_FROM.match(text):
                    dumped_from = m.group(1)
                elif m := _DUMPED_BY.match(text):
                    dumped_by = m.group(1)
            if line.startswith(b"--"):
                if line.startswith(_DATA_ENTRY):
                    data_entries += 1
                elif line.startswith(b"-- Name: ") and _TABLE_ENTRY in line:
                    table_entries += 1
                complete = complete or line.rstrip() == _DUMP_COMPLETE
            elif line.strip() and not line.startswith(b"\\unrestrict "):
                complete = False  # something after the footer: not where pg_dump ends
    scan = scanner.finish()
    return DumpFacts(
        digest.hexdigest(),
        dumped_from,
        dumped_by,
        first == _DUMP_START,
        complete,
        data_entries,
        table_entries,
        scan.meta_commands,
        scan.schemas,
        scan.extensions,
        scan.refused,
    )
