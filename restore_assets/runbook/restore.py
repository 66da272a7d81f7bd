"""Runbook §3.1-3.3 / §4.1: the all-or-nothing restore of one side from its baseline files.

Order is the safety story: scan (no meta-command psql would run on this host; done in intake's
read) → preflight → consent (a non-empty external target needs --allow-reset) → backup (pg_dump
into the Secrets store; skipped only for an embedded target last restored from these very files)
→ one psql transaction doing reset + schema + seed. If psql fails the transaction rolls
back and the target is exactly as it was. The seed loads into bare tables, every index and key
built after it and proven the same (`pg/fastload.py`), unless RESTORE_LOAD=plain or that cannot
reproduce the schema: then the runbook's own order (`load_files`).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO

from psycopg import sql

from restore_assets.errors import PreflightFailed, PsqlError, ResetRefused
from restore_assets.files import Folder, Identity, NotSafe, private_folder
from restore_assets.named_targets import refuse_a_database_of_another_target
from restore_assets.pg.clients import client_binary, require_restricted_mode
from restore_assets.pg.database import Database
from restore_assets.pg.fastload import FastLoad, LoadPath
from restore_assets.pg.psql import check_script
from restore_assets.pg.session import PRELUDE, ScriptFile, run_psql
from restore_assets.pg.sessions import Ended, terminate_others
from restore_assets.runbook.baseline_files import SLOT_KINDS, SecretFile
from restore_assets.runbook.evidence import EvidenceStore
from restore_assets.runbook.last_restore import forget, remember, restored_from_these
from restore_assets.runbook.preflight import preflight, restore_lock
from restore_assets.settings import Settings

PSQL_LOGS = {"legacy": "legacy_psql.log", "modernized": "modern_psql.log"}


@dataclass(frozen=True)
class Backup:
    """A `pg_dump` of a target taken before it was dropped (path relative to the Secrets root)."""

    path: str
    sha256: str
    size: int

    def describe(self) -> str:
        return f"{self.path} (sha256 {self.sha256})"


@dataclass
class RestoreResult:
    side: str
    target: str
    server_version: str
    files: list[SecretFile]
    reset_schemas: list[str]
    backup: Backup | None
    psql_log: Path
    psql_output_lines: int
    seconds: float
    content_before: dict[str, int] = field(default_factory=dict)
    ran_sha256: dict[str, str] = field(default_factory=dict)  # of the bytes psql was fed
    superuser: bool = False  # the target role is a superuser (allowed; noted in the evidence)
    transport: str = ""  # sslmode and whether SSL is in use (`Database.transport`)
    phases: dict[str, float] = field(default_factory=dict)  # seconds: scan, preflight, backup, psql
    backup_skipped: str = "not needed (target was empty)"  # why there is no backup
    # --terminate-sessions: the sessions ended before the reset, and those that could not be
    # (None: the option was off)
    sessions_ended: list[str] | None = None
    sessions_not_ended: list[str] = field(default_factory=list)
    load: LoadPath | None = None  # which load ran (fast or the runbook's order), and why

    @property
    def backup_summary(self) -> str:
        return self.backup.describe() if self.backup else self.backup_skipped


def describe_content(content: dict[str, int]) -> str:
    return ", ".join(f"{count} object(s) in {schema}" for schema, count in content.items())


def reset_set(db: Database) -> list[str]:
    """The schemas the restore drops. What the server lists, never names read from a file:
    every user schema goes (that is "restore this database to the baseline"), public is
    recreated."""
    return list(dict.fromkeys(["public", *db.user_schemas()]))


def require_consent(db: Database, settings: Settings, content: dict[str, int]) -> None:
    """A non-empty external target is dropped only with consent (an embedded one is ours)."""
    if content and not db.embedded and not settings.allow_reset:
        raise ResetRefused(
            f"the {db.describe()} is not empty ({describe_content(content)}); "
            "restoring drops it. Re-run with --allow-reset (or RESTORE_ALLOW_RESET=true) "
            "to consent; a backup is taken first."
        )


def backup_database(db: Database, settings: Settings, now: dt.datetime | None = None) -> Backup:
    """`pg_dump` the whole target into `<Secrets>/backups/<UTC>/`, mode 600, before dropping it.
    Both folders are the project's own (created 0700, checked by descriptor): a Secrets writer
    can plant no link there. One who may write the Secrets root itself can still rename
    `backups/` (docs/security.md): the sha256 in the evidence tells; a sticky root closes it."""
    now = now or dt.datetime.now(dt.UTC)
    relfolder = f"backups/{now.strftime('%Y%m%dT%H%M%SZ')}"
    name = f"{db.side}-{db.settings.dbname}"
    try:
        with (
            Folder.root(settings.paths.secrets_dir) as root,
            root.walk(relfolder, create=True, private=True) as folder,
        ):
            filename, attempt = f"{name}.dump", 1
            while folder.lstat(filename) is not None:  # two restores in one second: never
                attempt += 1  # overwrite an earlier backup
                filename = f"{name}-{attempt}.dump"
            options = ["--format=custom", "--no-owner"]
            written = dump_to(db, settings, options, folder, filename, "backup")
            sha, placed = folder.sha256(filename, expect=written)
    except NotSafe as exc:
        raise PreflightFailed(
            f"backup of the {db.describe()} not written, so nothing was dropped: {exc}"
        ) from None
    return Backup(f"{relfolder}/{filename}", sha, placed.size)


def dump_to(
    db: Database,
    settings: Settings,
    options: list[str],
    folder: Folder,
    name: str,
    purpose: str,
    replace: bool = False,
) -> Identity:
    """Run pg_dump with `options` into `name` in the private `folder` (mode 0600 from the
    start: it may hold medical data; over an existing file only with `replace`); a failure
    names the target and leaves no file behind."""
    pg_dump = client_binary("pg_dump", settings.tools.pg_dump)

    # pg_dump sets its own lock_timeout to 0 (PGOPTIONS cannot bound it): its table locks wait
    # at most RESTORE_WAIT_SECONDS behind an application's, as every other statement of ours.
    bounded = [f"--lock-wait-timeout={db.lock_timeout_ms}", *options]

    def writer(out: BinaryIO) -> None:
        done = subprocess.run(
            [pg_dump, *bounded], env=db.client_env(), stdout=out, stderr=subprocess.PIPE
        )
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip()
            raise PreflightFailed(
                f"{purpose} of the {db.describe()} failed"
                + (", so nothing was dropped" if purpose == "backup" else "")
                + f": {message} (sessions holding locks there now: {db.lock_holders_now()})"
            )

    return folder.write(name, writer, replace=replace)


def reset_script(schemas: Iterable[str], recreate_public: bool) -> str:
    """DROP every schema the baseline creates (and public), so a second restore starts clean."""
    statements = [
        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE;").format(sql.Identifier(name)).as_string(None)
        for name in dict.fromkeys(["public", *schemas])
    ]
    if recreate_public:
        statements.append("CREATE SCHEMA public;")
    return "\n".join(["-- written by restore_assets: reset before the baseline", *statements, ""])


def restore_side(
    *,
    db: Database,
    settings: Settings,
    files: list[SecretFile],
    evidence: EvidenceStore,
    log: Callable[[str], None] = print,
) -> RestoreResult:
    """Scan, preflight, consent, backup, then reset + every file in one psql transaction."""
    started = time.monotonic()
    phases = Phases()
    side = db.side
    schemas: list[str] = []
    extensions: list[str] = []
    for f in files:
        # Intake's pass scanned the bytes it hashed (the feeder checks psql gets those bytes).
        scan = f.scan if f.scan is not None else check_script(f.path, f.relpath)
        scan.raise_if_refused(f.relpath)
        log(f"{f.relpath}: scanned, {scan.meta_commands} pg_dump meta-command(s), nothing else")
        schemas += scan.schemas
        extensions += scan.extensions
    phases.lap("scan")
    psql = client_binary("psql", settings.tools.psql)
    require_restricted_mode(psql)
    version_num = preflight(db, files, extensions)
    refuse_a_database_of_another_target(db, settings)
    superuser = db.role_is_superuser()
    transport = f"{db.transport()}; psql: {db.client_transport(psql)}"
    log(f"connection to the {db.describe()}: {transport}")
    if superuser:
        log(f"note: the {db.describe()} role is a superuser (written in the evidence)")
    psql_log = evidence.path(PSQL_LOGS[side])
    phases.lap("preflight")

    with restore_lock(db, log=log):
        reset_schemas = reset_set(db)
        content = db.user_schemas_content()
        backup, skipped = None, "not needed (target was empty)"
        phases.lap("lock and inventory")
        if content:
            require_consent(db, settings, content)
            if restored_from_these(settings.paths.state_dir, db, files):
                skipped = (
                    "skipped: this embedded target was last restored from these very files ("
                    + ", ".join(f"{f.relpath} sha256 {f.sha256[:16]}…" for f in files)
                    + "); what changed in it since (Flyway, the sync, by hand) is not kept"
                )
                log(f"backup {skipped}")
            else:
                log(f"{db.describe()} holds {describe_content(content)}: backing it up first")
                backup = backup_database(db, settings)
                log(f"backup: {backup.describe()}")
        phases.lap("backup")
        ended = end_other_sessions(db, log) if settings.terminate_sessions else None
        forget(settings.paths.state_dir, db)  # the target is about to change
        env = db.client_env()
        env["PGAPPNAME"] = psql_application = f"{env['PGAPPNAME']}:psql"  # see `remember`
        log(f"psql: reset {', '.join(reset_schemas)} + {len(files)} file(s), one transaction")
        session = partial(
            run_psql,
            psql,
            prelude=reset_script(reset_schemas, recreate_public="public" not in schemas),
            tmp_root=_tmp_root(settings),
            redact=evidence.redact,  # the log is streamed, line by line, past the store
            progress=log,
        )
        try:
            lines, fed, load = load_files(session, files, env, evidence, side, settings, log)
        except PsqlError as exc:
            if exc.sqlstate == LOCK_NOT_AVAILABLE:
                where = exc.relpath if exc.relpath != PRELUDE else "the reset (DROP SCHEMA)"
                raise db.blocked(f"the restore, at {where}") from None
            raise
        phases.lap("psql")
        # committed: just these files
        remember(settings.paths.state_dir, db, files, psql_application)
    return RestoreResult(
        side=side,
        target=db.describe(),
        server_version=f"{version_num // 10000}.{version_num % 10000}",
        files=files,
        reset_schemas=reset_schemas,
        backup=backup,
        psql_log=psql_log,
        psql_output_lines=lines,
        load=load,
        ran_sha256=fed,
        superuser=superuser,
        transport=transport,
        seconds=round(time.monotonic() - started, 3),
        content_before=content,
        phases=phases.seconds,
        backup_skipped=skipped,
        sessions_ended=[s.describe() for s in ended.ended] if ended else None,
        sessions_not_ended=[f"{s.describe()}: {why}" for s, why in ended.refused] if ended else [],
    )


LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout reached


def end_other_sessions(db: Database, log: Callable[[str], None]) -> Ended:
    """--terminate-sessions: end the other sessions on the target just before the reset (an
    application's open transaction would hold the DROP); each is named in the log and the
    evidence. One that cannot be ended is only named: the bounded lock wait still holds."""
    with db.connect(autocommit=True) as conn:
        ended = terminate_others(conn, db.lock_timeout_ms)
    for session in ended.ended:
        log(f"--terminate-sessions: ended {session.describe()}")
    for session, why in ended.refused:
        log(f"--terminate-sessions: could not end {session.describe()}: {why}")
    return ended


LOADS = {
    "fast": "fast: the seed into bare tables, then every index and key built once and proven the "
    "same as the schema's (the runbook's order when the schema holds what the fast load does "
    "not handle, or it cannot prove it)",
    "plain": "plain: the runbook's order (RESTORE_LOAD=plain)",
}


def planned_load(settings: Settings, relpaths: Iterable[str]) -> str:
    """Which load a restore of these files would run (`plan`), decided as `load_files` does."""
    if not any(SLOT_KINDS[r] == "data" for r in relpaths):
        return "plain: no seed to load"
    return LOADS[settings.load.mode]


def load_files(
    session: Callable[..., tuple[int, dict[str, str]]],
    files: list[SecretFile],
    env: dict[str, str],
    evidence: EvidenceStore,
    side: str,
    settings: Settings,
    log: Callable[[str], None],
) -> tuple[int, dict[str, str], LoadPath]:
    """Run the files in one psql `session` (reset + files, one transaction) logged to the side's
    psql log; a failure in a seed's COPY block names its table (`_in_copy_block`). See
    `_load`."""
    try:
        return _load(session, files, env, evidence, side, settings, log)
    except PsqlError as exc:
        raise _in_copy_block(exc, files) from None


def _in_copy_block(exc: PsqlError, files: list[SecretFile]) -> PsqlError:
    """`exc` naming the table whose COPY block psql's `file:line` falls in (from intake's read of
    the file: the line of each COPY statement), when it does."""
    file = next((f for f in files if f.relpath == exc.relpath), None)
    table = file.copy_block_at(exc.line) if file and exc.line else None
    if table is None:
        return exc
    where = f"{exc.relpath}:{exc.line}:"
    said = str(exc).replace(where, f"{exc.relpath}:{exc.line} (a row of {table}):", 1)
    return PsqlError(said, exc.relpath, exc.line, exc.sqlstate)


def _load(
    session: Callable[..., tuple[int, dict[str, str]]],
    files: list[SecretFile],
    env: dict[str, str],
    evidence: EvidenceStore,
    side: str,
    settings: Settings,
    log: Callable[[str], None],
) -> tuple[int, dict[str, str], LoadPath]:
    """Run the files in one psql `session` (reset + files, one transaction) logged to the side's
    psql log (by descriptor in the run folder, `EvidenceStore.log`): with RESTORE_LOAD=fast and
    a seed among them, the fast load around the seed; if its own SQL stops psql (the schema not
    reproduced, a key the seed's rows break), the whole transaction rolled back and the
    runbook's order runs, the same files in one transaction: never worse than psql. The
    rolled-back session's log is kept beside (`…_fast_rolled_back`)."""
    name = PSQL_LOGS[side]

    def attempt(scripts: list, env: dict[str, str], **more) -> tuple[int, dict[str, str]]:
        with evidence.log(name) as psql_log:
            return session(scripts, env=env, log=psql_log, **more)

    scripts = [ScriptFile(f.relpath, f.path, f.sha256, f.identity) for f in files]
    seeds = [i for i, f in enumerate(files) if SLOT_KINDS[f.relpath] == "data"]
    if planned_load(settings, [f.relpath for f in files]).startswith("plain"):
        why = "RESTORE_LOAD=plain" if seeds else "no seed to load"
        return *attempt(scripts, env), LoadPath("plain", why)
    fast = FastLoad()
    around = [
        *scripts[: seeds[0]],
        fast.defer_script(),
        *scripts[seeds[0] : seeds[-1] + 1],
        fast.rebuild_script(),
        *scripts[seeds[-1] + 1 :],
    ]
    fast_env = {**env, "PGOPTIONS": f"{env.get('PGOPTIONS', '')} {settings.load.server_options()}"}
    try:
        lines, fed = attempt(around, fast_env, output=fast.watch)
        return lines, fed, fast.outcome()
    except PsqlError as exc:
        if exc.sqlstate == LOCK_NOT_AVAILABLE:
            raise  # an application's lock: the runbook's order would wait for it again
        why = fast.own_failure(exc)
        if why is None and not (fast.deferred or "").startswith("fast"):
            raise  # nothing was deferred: the runbook's order would stop the same way
        # A Secrets file's failure may need what was deferred (an `INSERT … ON CONFLICT` wants
        # its unique index): the runbook's order decides.
        why = why or (
            f"{exc.relpath}:{exc.line} failed with the indexes and keys deferred "
            f"(SQLSTATE {exc.sqlstate or 'unknown'})"
        )
    log(f"the fast load was rolled back ({why}); loading in the runbook's order")
    with evidence.opened() as run:  # kept beside, renamed inside the folder as held
        run.rename(name, name.replace(".log", "_fast_rolled_back.log"))
    try:
        lines, fed = attempt(scripts, env)
    except PsqlError as exc:
        raise PsqlError(
            f"{exc} (the fast load stopped first: {why})", exc.relpath, exc.line, exc.sqlstate
        ) from None
    return lines, fed, LoadPath("plain", f"the fast load was rolled back: {why}")


class Phases:
    """Seconds spent in each phase of a restore, for the evidence (and `make bench`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._since = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._since, 3)
        self._since = now


def _tmp_root(settings: Settings) -> Path:
    """`<state>/tmp`, where psql's FIFOs are made: created 0700, or refused unless it (and the
    state folder) is this user's own and no one else can write it (`files.private_folder`)."""
    root = settings.paths.state_dir / "tmp"
    with private_folder(settings.paths.state_dir), private_folder(root):
        return root
