"""Runbook §1: the baseline files — which the runbook expects per side, what each one is, and
what is known of one file (presence, mode, size, sha256, the pg_dump version that wrote it)."""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from restore_assets.files import Folder, Identity
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
# pg_dump's `COPY <schema>.<table> (…) FROM stdin;`: the table as written (the server resolves it)
_IDENT = rb'(?:"(?:[^"]|"")+"|[^\s."(]+)'
_COPY = re.compile(rb"^COPY (" + _IDENT + rb"(?:\." + _IDENT + rb")?) ")


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
    identity: Identity | None = None  # the file intake opened: a restore feeds only that one
    copy_rows: dict[str, int] = field(default_factory=dict)  # rows per COPY table, as read
    copy_lines: list = field(default_factory=list)  # [first, last line, table] per COPY block

    def copy_block_at(self, line: int) -> str | None:
        """The table whose COPY block holds `line` (a line psql named in an error), if any."""
        for first, last, table in self.copy_lines:
            if first <= line <= (last or line):
                return table
        return None

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
    copy_rows: dict[str, int]  # rows of each COPY block, by the table as the dump names it
    copy_lines: list  # [first line, last line (`\\.`; None: cut off), table] of each COPY block

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


def read_dump(source: Path | BinaryIO, expect: Identity | None = None) -> DumpFacts:
    """sha256, pg_dump's own markers and the psql scan in one streamed pass (dumps are
    gigabytes: each extra read of one is seconds), in bounded memory for COPY rows of any
    length (`DumpReader.feed`). Of an open file from its start (intake's: the very descriptor
    it vetted, reached from the Secrets root), or of a file an operator names by path (its
    folder opened as given; the `expect`ed file, when given)."""
    reader = DumpReader()
    if isinstance(source, Path):
        with Folder.root(source.parent) as folder:
            opened = folder.open_read(source.name, expect)
    else:
        opened = contextlib.nullcontext(source)
        source.seek(0)
    with opened as handle:
        while chunk := handle.read(_CHUNK):
            reader.digest.update(chunk)
            reader.feed(chunk)
    return reader.facts()


_CHUNK = 1 << 20
# The longest line held whole (a statement, a `--` or `\\.` line in COPY data): pg_dump's are
# kilobytes; a longer one is refused, not held (intake would hold several times it in memory
# on every status, plan, run and sensor tick).
LONGEST_LINE = 16 << 20
_LONG_LINE = f"a line of more than {LONGEST_LINE >> 20} MiB outside COPY rows"
_LONG_LINE_WHY = (
    "pg_dump writes statements as lines of a few kilobytes; such a line is not read whole "
    "(intake's memory stays bounded)"
)


class DumpReader:
    """`read_dump`'s state. `line` takes one line (with its `\\n`); `feed_block` takes whole
    lines at once and counts the rows of a COPY block in bulk, which gives the same facts: a
    row can only matter to them if it starts with `--` (those are looked at one by one) or
    by coming after pg_dump's footer."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.scanner = ScriptScanner()
        self.number = 0  # lines read
        self.dumped_from: str | None = None
        self.dumped_by: str | None = None
        self.first = b""  # the first line that is more than "--": pg_dump's title
        self.complete = False
        self.data_entries = self.table_entries = 0
        self._pending: list[bytes] = []  # the start of a line not yet ended
        self._pending_size = 0
        self._row: codecs.IncrementalDecoder | None = None  # in a COPY row counted as it comes
        self._row_plain = False  # that row holds more than blanks
        self._skipping = False  # in a line over LONGEST_LINE, refused: skipped to its end
        self.copy_rows: dict[str, int] = {}  # rows per COPY block's table, summed
        self._copying = ""  # the table of the COPY block being read
        self.copy_lines: list[list] = []  # [first line, last line, table] of each COPY block

    def feed(self, chunk: bytes) -> None:
        """Bytes as read, cut anywhere: whole lines go to `feed_block`, the start of a line
        waits for its end — unless, past _CHUNK bytes, it is a COPY row that cannot be `\\.` or
        a `--` marker: such a row is counted as its bytes come (a 300 MiB value cost 1.9 GB).
        Any other line (a statement: the lexer takes whole lines) is held up to LONGEST_LINE
        bytes; a longer one is refused and skipped, never held whole."""
        if self._row is not None or self._skipping:
            ended = chunk.find(b"\n") + 1
            if self._row is not None:
                self._row_part(chunk[: ended or len(chunk)], ended=bool(ended))
            elif ended:
                self.number, self._skipping = self.number + 1, False
            if not ended:
                return
            chunk = chunk[ended:]
        cut = chunk.rfind(b"\n") + 1
        if cut:
            self.feed_block(b"".join([*self._pending, chunk[:cut]]))
            self._pending, self._pending_size, chunk = [], 0, chunk[cut:]
        if not chunk:
            return
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        start = b"".join(self._pending[:2])[:2]
        if (
            self._pending_size >= _CHUNK
            and self.scanner.in_copy_data  # among the first lines too: a row is no header line
            and not b"\\.".startswith(start)  # `\\N` (a NULL) starts a row, `\\.` ends them
            and not b"--".startswith(start)  # "--", or "-" and unknown yet
        ):
            self._row, self._row_plain = codecs.getincrementaldecoder("utf-8")("replace"), False
            part, self._pending, self._pending_size = b"".join(self._pending), [], 0
            self._row_part(part, ended=False)
        elif self._pending_size > LONGEST_LINE:
            self.scanner.refuse(self.number + 1, _LONG_LINE, _LONG_LINE_WHY)
            self._pending, self._pending_size, self._skipping = [], 0, True

    def _row_part(self, part: bytes, ended: bool) -> None:
        """The next bytes of the COPY row being counted (the last ones end with its newline)."""
        assert self._row is not None
        chars = len(self._row.decode(part, final=ended))
        self._row_plain = self._row_plain or bool(part.strip())
        self.scanner.skip_data(int(ended), chars)
        if ended:
            self.number += 1
            self._count(1)
            self.complete = self.complete and not self._row_plain  # a row after the footer
            self._row = None

    def feed_block(self, block: bytes) -> None:
        pos, size = 0, len(block)
        while pos < size:
            if self.scanner.in_copy_data and self.number >= _HEADER_LINES:
                end = _rows_end(block, pos)
                if end > pos:
                    self._rows(block, pos, end)
                    pos = end
                    continue
            newline = block.find(b"\n", pos)
            end = size if newline < 0 else newline + 1
            self.line(block[pos:end])
            pos = end

    def line(self, line: bytes) -> None:
        copying = self.scanner.in_copy_data
        self.scanner.feed(line)
        if copying and self.scanner.in_copy_data:
            self._count(1)  # a row (the `\\.` that ends the block ends copy data)
        elif copying and self.copy_lines:
            self.copy_lines[-1][1] = self.number + 1  # the block's last line
        elif not copying and self.scanner.in_copy_data:
            m = _COPY.match(line)  # the scanner reads a COPY … FROM stdin: its rows follow
            self._copying = m.group(1).decode("utf-8", "replace") if m else "(unnamed)"
            self._count(0)
            self.copy_lines.append([self.number + 1, None, self._copying])  # lines count from 1
        if self.number < _HEADER_LINES:
            if not self.first and line.strip() not in (b"", b"--"):
                self.first = line.strip()
            text = line.decode("utf-8", "replace")
            if m := _DUMPED_FROM.match(text):
                self.dumped_from = m.group(1)
            elif m := _DUMPED_BY.match(text):
                self.dumped_by = m.group(1)
        self.number += 1
        self._marker(line)

    def _marker(self, line: bytes) -> None:
        if line.startswith(b"--"):
            if line.startswith(_DATA_ENTRY):
                self.data_entries += 1
            elif line.startswith(b"-- Name: ") and _TABLE_ENTRY in line:
                self.table_entries += 1
            self.complete = self.complete or line.rstrip() == _DUMP_COMPLETE
        elif line.strip() and not line.startswith(b"\\unrestrict "):
            self.complete = False  # something after the footer: not where pg_dump ends

    def _rows(self, block: bytes, start: int, end: int) -> None:
        """Lines `start:end` of `block`, all COPY rows, none starting with `\\.`."""
        lines = block.count(b"\n", start, end) + (block[end - 1 : end] != b"\n")
        # Lines end at "\n", so decoding them together gives each line's characters.
        self.scanner.skip_data(lines, len(block[start:end].decode("utf-8", "replace")))
        self.number += lines
        self._count(lines)
        footer = -1
        at = start if block.startswith(b"--", start) else _next(block.find(b"\n--", start, end))
        while at >= 0:
            line = block[at : _line_end(block, at, end)]
            self._marker(line)
            footer = at if line.rstrip() == _DUMP_COMPLETE else footer
            at = _next(block.find(b"\n--", at, end))
        if _last_plain_row(block, start, end) > footer:
            self.complete = False  # a row after the footer: not where pg_dump ends

    def _count(self, rows: int) -> None:
        self.copy_rows[self._copying] = self.copy_rows.get(self._copying, 0) + rows

    def facts(self) -> DumpFacts:
        if self._row is not None:  # the last line, not ended by a newline
            self._row_part(b"", ended=True)
        elif self._pending:
            self.feed_block(b"".join(self._pending))
        scan = self.scanner.finish()
        return DumpFacts(
            self.digest.hexdigest(),
            self.dumped_from,
            self.dumped_by,
            self.first == _DUMP_START,
            self.complete,
            self.data_entries,
            self.table_entries,
            scan.meta_commands,
            scan.schemas,
            scan.extensions,
            scan.refused,
            self.copy_rows,
            self.copy_lines,
        )


def _rows_end(block: bytes, pos: int) -> int:
    """Where the COPY rows from `pos` end: at the next line starting with `\\.` (psql ends the
    data only at `\\.` alone, looked at line by line), else at the end of the block."""
    if block.startswith(b"\\.", pos):
        return pos
    found = block.find(b"\n\\.", pos)
    return len(block) if found < 0 else found + 1


def _next(newline: int) -> int:
    """The start of the line after the `\\n` at `newline`; -1 if none was found."""
    return newline + 1 if newline >= 0 else -1


def _line_end(block: bytes, at: int, end: int) -> int:
    newline = block.find(b"\n", at, end)
    return end if newline < 0 else newline + 1


def _last_plain_row(block: bytes, start: int, end: int) -> int:
    """Where the last line of `start:end` that is not blank, `--` or `\\unrestrict` starts
    (usually the very last line); -1 if there is none."""
    line_end = end
    while line_end > start:
        line_start = max(block.rfind(b"\n", start, line_end - 1) + 1, start)
        row = block[line_start:line_end]
        if row.strip() and not row.startswith((b"--", b"\\unrestrict ")):
            return line_start
        line_end = line_start
    return -1
