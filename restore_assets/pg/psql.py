"""An early, friendly look at a baseline file before psql runs it.

Baseline files are pg_dump output: psql scripts, not plain SQL. What keeps a planted `\\!` from
running is psql's own restricted mode (`pg/session.py`); this scan only stops such a file sooner,
naming file and line, and notes the schemas and extensions the dump creates for preflight.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from restore_assets.errors import UnsafeScriptError
from restore_assets.flyway.lexer import PSQL, Lexer, MetaCommand, Span, lex

ALLOWED_META = ("restrict", "unrestrict")  # pg_dump's own; never \connect
_CREATE_SCHEMA = re.compile(r'^CREATE SCHEMA (?:IF NOT EXISTS )?("(?:[^"]|"")+"|[^\s;]+)\s*;')
_CREATE_EXTENSION = re.compile(r'^CREATE EXTENSION (?:IF NOT EXISTS )?("(?:[^"]|"")+"|[^\s;]+)')
# psql's --single-transaction is undone by a file's own transaction control: after a COMMIT
# (or ROLLBACK) every later statement commits on its own, and a failure no longer rolls back.
_TRANSACTION_CONTROL = re.compile(
    r"^\s*(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK|ABORT|PREPARE\s+TRANSACTION)\b(?!\s+ATOMIC)",
    re.IGNORECASE,
)
_TRANSACTION_WHY = (
    "pg_dump never writes it, and it would end the restore's single transaction early, so a "
    "later failure could no longer roll the target back"
)


def iter_meta_commands(lines: Iterable[str]) -> Iterator[MetaCommand]:
    """Yield every psql meta-command psql would see, skipping quoted text, comments and COPY data
    (`lines` split at `\\n` only, as psql reads them; see `restore_assets.flyway.lexer`)."""
    for event in lex(lines, PSQL):
        if isinstance(event, MetaCommand):
            yield event


@dataclass
class ScriptScan:
    """What one streaming pass over a dump found: allowed meta-commands, schemas, extensions,
    and the first thing refused ([line, what, why]; empty: nothing)."""

    meta_commands: int = 0
    schemas: list[str] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)
    refused: list = field(default_factory=list)

    def raise_if_refused(self, relpath: str) -> None:
        if self.refused:
            raise UnsafeScriptError(relpath, *self.refused)


def _unquote(identifier: str) -> str:
    if identifier.startswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier.lower()


class ScriptScanner:
    """The scan, fed one raw line at a time, so that intake's single read of a dump (for its
    sha256) runs it too and no second pass is needed.

    Lines are bytes split at `\\n` only, the way psql reads the file, so line numbers and what
    counts as one line are psql's. The first refusal ends the scan.
    """

    def __init__(self) -> None:
        self.scan = ScriptScan()
        self._lexer = Lexer(PSQL)

    def feed(self, raw: bytes) -> None:
        if self.scan.refused:
            return
        line = raw.decode("utf-8", errors="replace")
        lexer = self._lexer
        # pg_dump writes each DDL statement at line start; data and strings must not count.
        if lexer.at_statement_start:
            if m := _CREATE_SCHEMA.match(line):
                self.scan.schemas.append(_unquote(m.group(1)))
            elif m := _CREATE_EXTENSION.match(line):
                self.scan.extensions.append(_unquote(m.group(1)))
            elif m := _TRANSACTION_CONTROL.match(line):
                what = f"transaction control `{m.group(1).upper()}`"
                self.scan.refused = [lexer.line + 1, what, _TRANSACTION_WHY]
                return
        self._check(lexer.feed(line))

    def refuse(self, line: int, what: str, why: str) -> None:
        """Refuse the file at `line` for a reason found outside the lexer (the first one stays)."""
        if not self.scan.refused:
            self.scan.refused = [line, what, why]

    @property
    def in_copy_data(self) -> bool:
        return self._lexer.in_copy_data and not self.scan.refused

    def skip_data(self, lines: int, chars: int) -> None:
        """`lines` lines of COPY data (`chars` characters), none starting with `\\.`: the same
        as feeding each, at the cost of one count (seed rows are gigabytes)."""
        if not self.scan.refused:
            self._lexer.skip_data(lines, chars)

    def finish(self) -> ScriptScan:
        if not self.scan.refused:
            self._check(self._lexer.finish())
        return self.scan

    def _check(self, events: list[MetaCommand | Span]) -> None:
        for event in events:
            if isinstance(event, Span):
                if event.copy_inherited:
                    self.scan.refused = [event.line, _INHERITED_COPY, _INHERITED_WHY]
                    return
            elif not _allowed(event):
                self.scan.refused = [event.line, event.text, None]
                return
            else:
                self.scan.meta_commands += 1


def check_script(path: Path, relpath: str) -> ScriptScan:
    """Refuse any meta-command except pg_dump's own; note the schemas and extensions created."""
    scanner = ScriptScanner()
    with path.open("rb") as handle:
        for raw in handle:
            scanner.feed(raw)
            if scanner.scan.refused:
                break
    scan = scanner.finish()
    scan.raise_if_refused(relpath)
    return scan


_INHERITED_COPY = "a statement without identifiers right after a COPY"
_INHERITED_WHY = (
    "psql 18.6+ reads the lines after it as COPY data, older psql runs them, and pg_dump never "
    "writes it"
)


def _allowed(meta: MetaCommand) -> bool:
    # psql runs a backquoted argument as a shell command, even in an allowed command
    return meta.name in ALLOWED_META and "`" not in meta.argument
