"""Running baseline files through `psql`, safely.

Baseline files are pg_dump output: psql scripts, not plain SQL. psql would obey any meta-command in
them, so `\\! rm -rf ~` planted above the `\\restrict` line would run on this host. Before psql sees
a file we scan it and allow only what pg_dump itself emits.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from restore_assets.errors import PsqlError, UnsafeScriptError
from restore_assets.pg.lexer import PSQL, Lexer, MetaCommand, Span, lex

ALLOWED_META = ("restrict", "unrestrict", "connect", "c")
_DBNAME_ARG = re.compile(r"dbname\s*=\s*'?([^'\s\"]+)")
_CREATE_SCHEMA = re.compile(r'^CREATE SCHEMA (?:IF NOT EXISTS )?("(?:[^"]|"")+"|[^\s;]+)\s*;')
_CREATE_EXTENSION = re.compile(r'^CREATE EXTENSION (?:IF NOT EXISTS )?("(?:[^"]|"")+"|[^\s;]+)')
_PSQL_ERROR = re.compile(
    r"^psql:(?P<file>.+?):(?P<line>\d+): (?P<level>ERROR|FATAL):\s+(?P<msg>.*)"
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


def check_script(path: Path, relpath: str, target_dbname: str) -> ScriptScan:
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
            elif not _allowed(event, target_dbname):
                raise UnsafeScriptError(relpath, event.line, event.text)
            else:
                scan.meta_commands += 1

    with path.open("rb") as handle:
        for raw in handle:
            line = raw.decode("utf-8", errors="replace")
            # pg_dump writes each DDL statement at line start; data and strings must not count.
            if line.startswith("CREATE ") and lexer.at_statement_start:
                if m := _CREATE_SCHEMA.match(line):
                    scan.schemas.append(_unquote(m.group(1)))
                elif m := _CREATE_EXTENSION.match(line):
                    scan.extensions.append(_unquote(m.group(1)))
            check(lexer.feed(line))
        check(lexer.finish())
    return scan


_INHERITED_COPY = "a statement without identifiers right after a COPY"
_INHERITED_WHY = (
    "psql 18.6+ reads the lines after it as COPY data, older psql runs them, and pg_dump never "
    "writes it"
)


def _allowed(meta: MetaCommand, target_dbname: str) -> bool:
    if meta.name not in ALLOWED_META or "`" in meta.argument:
        return False  # psql runs a backquoted argument as a shell command
    return meta.name not in ("connect", "c") or _connect_target(meta.argument) == target_dbname


def _connect_target(argument: str) -> str | None:
    m = _DBNAME_ARG.search(argument)
    if m:
        return m.group(1)
    words = [w for w in argument.split() if not w.startswith("-")]
    return words[0].strip("\"'") if words else None


def run_psql(
    psql: str,
    files: Sequence[str | Path],
    *,
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    redact: Callable[[str], str],
    progress: Callable[[str], None] | None = None,
    single_transaction: bool = True,
    extra_args: Sequence[str] = (),
) -> int:
    """Run psql on `files` (paths relative to `cwd` so its errors name them that way).

    Output goes line by line, redacted, to `log_path`; on failure raises `PsqlError` naming the
    file and line psql reported. Returns the number of output lines.
    """
    cmd = [psql, "-X", "-v", "ON_ERROR_STOP=1", *extra_args]
    if single_transaction:
        cmd.append("--single-transaction")
    for name in files:
        cmd += ["-f", str(name)]
    started = last_report = time.monotonic()
    first_error: re.Match[str] | None = None
    lines = 0
    with log_path.open("w", encoding="utf-8") as log:
        log.write(f"$ {' '.join(redact(c) for c in cmd)}\n")
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        assert proc.stdout is not None
        for out in proc.stdout:
            out = redact(out)
            log.write(out)
            lines += 1
            if first_error is None:
                first_error = _PSQL_ERROR.match(out)
            now = time.monotonic()
            if progress and now - last_report >= 5:
                progress(f"psql running for {now - started:.0f}s, {lines} output lines")
                last_report = now
        code = proc.wait()
        log.write(f"# psql exit code {code} after {time.monotonic() - started:.2f}s\n")
    if code != 0:
        if first_error:
            relpath, line = first_error.group("file"), int(first_error.group("line"))
            raise PsqlError(
                f"{relpath}:{line}: {first_error.group('level')}: {first_error.group('msg')}"
                " — the transaction was rolled back; the target is as it was",
                relpath,
                line,
            )
        tail = log_path.read_text(encoding="utf-8").splitlines()[-5:]
        raise PsqlError(f"psql exited with code {code}: " + " | ".join(tail))
    return lines
