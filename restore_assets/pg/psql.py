"""Running baseline files through `psql`, safely.

Baseline files are pg_dump output: psql scripts, not plain SQL. psql would obey any meta-command in
them, so `\\! rm -rf ~` planted above the `\\restrict` line would run on this host. Before psql sees
a file we scan it and allow only what pg_dump itself emits.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from restore_assets.errors import PsqlError, UnsafeScriptError

ALLOWED_META = ("restrict", "unrestrict", "connect", "c")
_COPY_FROM_STDIN = re.compile(r"^\s*COPY\s.+\sFROM\s+stdin\b.*;\s*$", re.IGNORECASE)
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")
_META = re.compile(r"\\([A-Za-z]+|[^A-Za-z\s]?)(.*)")
_DBNAME_ARG = re.compile(r"dbname\s*=\s*'?([^'\s\"]+)")
_CREATE_SCHEMA = re.compile(r'^CREATE SCHEMA (?:IF NOT EXISTS )?("(?:[^"]|"")+"|[^\s;]+)\s*;')
_CREATE_EXTENSION = re.compile(r'^CREATE EXTENSION (?:IF NOT EXISTS )?("(?:[^"]|"")+"|[^\s;]+)')
_PSQL_ERROR = re.compile(
    r"^psql:(?P<file>.+?):(?P<line>\d+): (?P<level>ERROR|FATAL):\s+(?P<msg>.*)"
)


@dataclass(frozen=True)
class MetaCommand:
    line: int
    name: str
    argument: str

    @property
    def text(self) -> str:
        return f"\\{self.name} {self.argument}".strip()


def iter_meta_commands(lines: Iterator[str]) -> Iterator[MetaCommand]:
    """Yield every psql meta-command psql would see, skipping quoted text, comments and COPY data.

    Tracks the lexer state across lines the way psql's own scanner does: single-quoted and
    E'' strings, double-quoted identifiers, dollar quotes, nested block comments.
    """
    state: str | None = None  # None, "'", "e'", '"', "$", "/*"
    dollar_tag = ""
    comment_depth = 0
    in_copy = False
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if in_copy:
            if line == "\\.":
                in_copy = False
            continue
        if state is None and _COPY_FROM_STDIN.match(line):
            in_copy = True
            continue
        i, n = 0, len(line)
        while i < n:
            ch = line[i]
            if state is None:
                prev = line[i - 1] if i else " "
                if ch == "\\":
                    m = _META.match(line, i)
                    name, rest = m.group(1), m.group(2)
                    # A meta-command runs to the end of the line or to a `\\` separator.
                    argument = rest.split("\\\\", 1)[0].strip()
                    yield MetaCommand(number, name, argument)
                    break
                if ch == "-" and line.startswith("--", i):
                    break
                if ch == "/" and line.startswith("/*", i):
                    state, comment_depth = "/*", 1
                    i += 2
                    continue
                if ch == "'":
                    state = "e'" if prev in "eE" and not _ident_char(line, i - 2) else "'"
                elif ch == '"':
                    state = '"'
                elif ch == "$" and not _ident_char(line, i - 1):
                    m = _DOLLAR_TAG.match(line, i)
                    if m:
                        state, dollar_tag = "$", m.group(0)
                        i = m.end()
                        continue
                i += 1
            elif state == "'":
                if ch == "'":
                    state = None  # `''` re-enters on the next quote
                i += 1
            elif state == "e'":
                if ch == "\\":
                    i += 2
                    continue
                if ch == "'":
                    state = None
                i += 1
            elif state == '"':
                if ch == '"':
                    state = None
                i += 1
            elif state == "$":
                end = line.find(dollar_tag, i)
                if end < 0:
                    break
                state, i = None, end + len(dollar_tag)
            else:  # block comment; PostgreSQL's nest
                if line.startswith("/*", i):
                    comment_depth += 1
                    i += 2
                elif line.startswith("*/", i):
                    comment_depth -= 1
                    i += 2
                    if comment_depth == 0:
                        state = None
                else:
                    i += 1


def _ident_char(line: str, index: int) -> bool:
    return index >= 0 and (line[index].isalnum() or line[index] in "_$")


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
    """Refuse any meta-command except pg_dump's own; note the schemas and extensions created."""
    scan = ScriptScan()

    def lines(handle) -> Iterator[str]:
        for line in handle:
            if line.startswith("CREATE "):  # pg_dump writes each DDL statement at line start
                if m := _CREATE_SCHEMA.match(line):
                    scan.schemas.append(_unquote(m.group(1)))
                elif m := _CREATE_EXTENSION.match(line):
                    scan.extensions.append(_unquote(m.group(1)))
            yield line

    with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
        for meta in iter_meta_commands(lines(handle)):
            if meta.name not in ALLOWED_META:
                raise UnsafeScriptError(relpath, meta.line, meta.text)
            if meta.name in ("connect", "c") and _connect_target(meta.argument) != target_dbname:
                raise UnsafeScriptError(relpath, meta.line, meta.text)
            scan.meta_commands += 1
    return scan


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
