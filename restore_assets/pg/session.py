"""One psql session that restores Secrets files — psql's own restricted mode is the guard.

- The session opens with `\\restrict <random key>`: from there on psql itself refuses every
  meta-command (`\\!`, backquotes in arguments, `\\connect`, `\\i`, `\\o |…`) but `\\unrestrict`
  with that key, which no file can know. No second lexer has to agree with psql.
- pg_dump's own `\\restrict`/`\\unrestrict` lines become empty lines on the way in, so psql's line
  numbers stay true; nothing else is rewritten.
- psql reads each file through a FIFO named like the file's Secrets-relative path (so its
  `file:line` errors name it), fed from one open descriptor while the same bytes are hashed.
  The FIFO is closed only once the hash equals the one intake recorded: if the file changed,
  psql is stopped before it reaches the end of the last file, where `--single-transaction`
  would commit — the target stays exactly as it was.
- psql can commit only after one more FIFO, opened by the feeder once every file was fed whole
  and matched: if this process dies mid-file (SIGKILL, OOM), psql reads a cut-off file as its
  end, then waits on that FIFO for a writer that never comes, and the kernel kills it
  (`PR_SET_PDEATHSIG`); the server rolls back.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import re
import secrets
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TextIO

from restore_assets.errors import PsqlError
from restore_assets.files import Identity, NotSafe, open_below
from restore_assets.redaction import sqlstate_message

_PSQL_ERROR = re.compile(
    r"^psql:(?P<file>.+?):(?P<line>\d+): (?P<level>ERROR|FATAL|error):\s+(?P<msg>.*)"
)
_DUMP_RESTRICT = re.compile(rb"^\\restrict (\S+)\r?\n?$")
RESTRICT_FILE = "restrict-session.sql"
PRELUDE = "prelude.sql"  # the project's own SQL before the files: the reset
VERIFIED_FILE = "all-files-verified.sql"  # a FIFO: written only after every hash matched
_CHECK_CLIENT = "-c client_connection_check_interval=1000"


@dataclass(frozen=True)
class ScriptFile:
    """A Secrets file to run: the name psql should report, where it is, what intake hashed and,
    when known, which file intake opened (device, inode, size)."""

    relpath: str
    path: Path
    sha256: str
    identity: Identity | None = None

    def open(self) -> BinaryIO:
        """The file opened as intake opened it: from the root `path` is `relpath` below, every
        folder on the way by descriptor, no link followed (`files.open_below`); refused unless
        it is the very file intake vetted. Never blocks: a FIFO swapped in is refused, not opened
        for a writer that never comes, with every table locked."""
        rel = PurePosixPath(self.relpath)
        if not rel.parts or self.path.parts[-len(rel.parts) :] != rel.parts:
            raise NotSafe(self.path, f"not {self.relpath} below a Secrets root; refused")
        root = Path(*self.path.parts[: -len(rel.parts)])
        return open_below(root, rel, expect=self.identity)


@dataclass(frozen=True)
class OwnScript:
    """SQL of the project's own (e.g. the fast load's), run between the Secrets files under the
    name `name` (what psql's errors report)."""

    name: str
    text: str


class _Feeder(threading.Thread):
    """Streams each file into its FIFO in psql's order; stops psql if a file is not the one
    intake vetted. `failure` says why it stopped, `sha256` what was fed."""

    def __init__(
        self,
        files: Sequence[ScriptFile],
        fifos: Sequence[Path],
        verified: Path,
        psql: subprocess.Popen,
    ):
        super().__init__(daemon=True)
        self.files, self.fifos, self.verified, self.psql = files, fifos, verified, psql
        self.failure: str | None = None
        self.sha256: dict[str, str] = {}

    def run(self) -> None:
        try:
            for file, fifo in zip(self.files, self.fifos, strict=True):
                out = self._open_for_psql(fifo)
                if out is None:
                    return  # psql ended before it got here (an error earlier): nothing to feed
                with out:
                    digest = self._stream(file, out)
                    self.sha256[file.relpath] = digest
                    if digest != file.sha256:
                        self.failure = (
                            f"{file.relpath} changed after it was vetted (sha256 {digest[:16]}… "
                            f"instead of {file.sha256[:16]}…); psql was stopped before commit"
                        )
                        self.psql.kill()  # before the FIFO closes: psql never reaches COMMIT
                        return
            out = self._open_for_psql(self.verified)
            if out is not None:
                with out:
                    out.write(b"-- every file was fed whole and matched its vetted sha256\n")
        except BrokenPipeError:
            return  # psql stopped reading (it failed on an earlier line); its error says why
        except OSError as exc:
            self.failure = f"cannot read a Secrets file: {exc.strerror} ({exc.filename})"
            self.psql.kill()  # before any FIFO closes: psql never reaches COMMIT

    def _open_for_psql(self, fifo: Path):
        """Open the FIFO for writing once psql opens it for reading (None if psql has ended)."""
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                if self.psql.poll() is not None:
                    return None
                time.sleep(0.01)
                continue
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
            return os.fdopen(fd, "wb", buffering=1 << 20)

    @staticmethod
    def _stream(file: ScriptFile, out) -> str:
        digest = hashlib.sha256()
        with file.open() as handle:
            dump_key: bytes | None = None
            in_header = True
            for line in handle:
                digest.update(line)
                if in_header:
                    if m := _DUMP_RESTRICT.match(line):
                        dump_key, in_header = m.group(1), False
                        line = b"\n"
                    elif line.strip() and not line.startswith(b"--"):
                        in_header = False  # pg_dump's \restrict comes before any statement
                elif dump_key is not None and line.rstrip(b"\r\n") == b"\\unrestrict " + dump_key:
                    line = b"\n"
                out.write(line)
        return digest.hexdigest()


def run_psql(
    psql: str,
    files: Sequence[ScriptFile | OwnScript],
    *,
    prelude: str,
    env: dict[str, str],
    tmp_root: Path,
    log: TextIO,
    redact: Callable[[str], str],
    progress: Callable[[str], None] | None = None,
    output: Callable[[str], None] | None = None,
) -> tuple[int, dict[str, str]]:
    """Run `prelude` (our own SQL, e.g. the reset) then `files` (Secrets files, and SQL of our
    own between them), in one restricted psql session and one transaction. Output goes line by
    line, redacted, to `log` (opened by the caller, by descriptor in the evidence folder:
    `EvidenceStore.log`) and to `output`; a failure raises `PsqlError` naming the file and line
    psql reported. Returns the number of output lines and the sha256 of what psql was fed, per
    Secrets file."""
    key = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="psql-", dir=tmp_root) as tmp_name:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o700)
        (tmp / RESTRICT_FILE).write_text(f"\\restrict {key}\n", encoding="utf-8")
        (tmp / PRELUDE).write_text(prelude, encoding="utf-8")
        fifos = []
        for own in files:
            if isinstance(own, OwnScript):
                (tmp / own.name).write_text(own.text, encoding="utf-8")
        secret_files = [f for f in files if isinstance(f, ScriptFile)]
        for file in secret_files:
            fifo = tmp / file.relpath
            fifo.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.mkfifo(fifo, 0o600)
            fifos.append(fifo)
        # VERBOSITY=sqlstate: a server error or notice prints as `psql:<file>:<line>: ERROR:
        # 22P02`, nothing else — PostgreSQL's own text can quote a seed value (`invalid input
        # syntax for type bigint: "…"`, a CONTEXT or DETAIL line), which is medical data. Set
        # before any file runs; after `\restrict` no file can `\set` it back.
        cmd = [psql, "-X", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=sqlstate"]
        cmd.append("--single-transaction")
        os.mkfifo(tmp / VERIFIED_FILE, 0o600)
        names = [f.name if isinstance(f, OwnScript) else f.relpath for f in files]
        for name in (RESTRICT_FILE, PRELUDE, *names, VERIFIED_FILE):
            cmd += ["-f", name]
        # If psql itself is killed mid-statement, the server notices within a second (not when
        # the statement ends) and rolls back, releasing the target's locks.
        env = {**env, "PGOPTIONS": f"{env.get('PGOPTIONS', '')} {_CHECK_CLIENT}".strip()}
        return _run(cmd, tmp, secret_files, fifos, env, log, redact, progress, output)


def _server_message(printed: str) -> str:
    """A server error as psql printed it under VERBOSITY=sqlstate (the bare code), said by its
    condition name: `invalid text representation (22P02)`. Nothing else of the line is read."""
    try:
        return sqlstate_message(printed.strip())
    except ValueError:  # a server error always has a SQLSTATE; never show text in its place
        return "an error without a SQLSTATE (see the psql log)"


def _die_with_parent() -> None:
    """In psql's process, before exec: the kernel SIGKILLs it when this process dies."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT first: psql then cancels the running statement on the server itself, so the
    transaction rolls back at once instead of when a long statement ends; then SIGKILL."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _run(cmd, cwd, files, fifos, env, log, redact, progress, output) -> tuple[int, dict[str, str]]:
    started = last_report = time.monotonic()
    first_error: re.Match[str] | None = None
    lines = 0
    tail: deque[str] = deque(maxlen=5)  # said when psql fails without a file:line error
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
        preexec_fn=_die_with_parent,
    )
    feeder = _Feeder(files, fifos, cwd / VERIFIED_FILE, proc)
    feeder.start()
    try:
        assert proc.stdout is not None
        for out in proc.stdout:
            out = redact(out)
            log.write(out)
            tail.append(out.rstrip("\n"))
            lines += 1
            if output:
                output(out)
            if first_error is None:
                first_error = _PSQL_ERROR.match(out)
            now = time.monotonic()
            if progress and now - last_report >= 5:
                progress(f"psql running for {now - started:.0f}s, {lines} output lines")
                last_report = now
        code = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: psql must not go on (and commit) alone
            _stop(proc)
        feeder.join(timeout=10)
    log.write(f"# psql exit code {code} after {time.monotonic() - started:.2f}s\n")
    if feeder.failure:
        raise PsqlError(
            feeder.failure + "; the transaction was rolled back, the target is as it was"
        )
    if code != 0:
        if first_error:
            relpath, line = first_error.group("file"), int(first_error.group("line"))
            level, message = first_error.group("level").upper(), first_error.group("msg")
            sqlstate = None
            if first_error.group("level") != "error":  # the server's (psql's own: `error:`)
                sqlstate = message.strip()
                message = _server_message(message)
            raise PsqlError(
                f"{relpath}:{line}: {level}: {message}"
                " — the transaction was rolled back; the target is as it was",
                relpath,
                line,
                sqlstate,
            )
        raise PsqlError(f"psql exited with code {code}: " + " | ".join(tail))
    return lines, feeder.sha256
