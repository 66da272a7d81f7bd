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
from restore_assets.pg.lexer import PSQL, Lexer, MetaCommand, Span, lex

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
    (`lines` split at `\\n` only, as psql reads them; see `restore_assets.pg.lexer`)."""
    for event in lex(lines, PSQL):
        if isinstance(event, MetaCommand):
            yield event


@dataclass
class ScriptScan:
    """What one streaming pass over a dump found: allowed meta-commands, schemas, extensions."""

    meta_commands: int = 0
    schemas: list[str] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)


def _unquote(identifier: str) -> str:
    if identifier.startswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier.lower()


def check_script(path: Path, relpath: str) -> ScriptScan:
    """Refuse any meta-command except pg_dump's own; note the schemas and extensions created.

    Read as bytes and split at `\\n` only, the way psql reads the file, so line numbers and
    what counts as one line are psql's.
    """
    scan = ScriptScan()
    lexer = Lexer(PSQL)

    def check(events: list[MetaCommand | Span]) -> None:
        for event in events:
            if isinstance(event, Span):
                if event.copy_inherited:
                    raise UnsafeScriptError(relpath, event.line, _INHERITED_COPY, _INHERITED_WHY)
            elif not _allowed(event):
                raise UnsafeScriptError(relpath, event.line, event.text)
            else:
                scan.meta_commands += 1

    with path.open("rb") as handle:
        for raw in handle:
            line = raw.decode("utf-8", errors="replace")
            # pg_dump writes each DDL statement at line start; data and strings must not count.
            if lexer.at_statement_start:
                if m := _CREATE_SCHEMA.match(line):
                    scan.schemas.append(_unquote(m.group(1)))
                elif m := _CREATE_EXTENSION.match(line):
                    scan.extensions.append(_unquote(m.group(1)))
                elif m := _TRANSACTION_CONTROL.match(line):
                    what = f"transaction control `{m.group(1).upper()}`"
                    raise UnsafeScriptError(relpath, lexer.line + 1, what, _TRANSACTION_WHY)
            check(lexer.feed(line))
        check(lexer.finish())
    return scan


_INHERITED_COPY = "a statement without identifiers right after a COPY"
_INHERITED_WHY = (
    "psql 18.6+ reads the lines after it as COPY data, older psql runs them, and pg_dump never "
    "writes it"
)


def _allowed(meta: MetaCommand) -> bool:
    # psql runs a backquoted argument as a shell command, even in an allowed command
    return meta.name in ALLOWED_META and "`" not in meta.argument
