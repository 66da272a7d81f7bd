"""Runbook §3.1-3.3 / §4.1: the all-or-nothing restore of one side from its baseline files.

Order is the safety story: scan (no meta-command psql would run on this host; done in intake's
read) → preflight → consent (a non-empty external target needs --allow-reset) → backup (pg_dump
into the Secrets store; skipped only for an embedded target last restored from these very files)
→ one psql transaction doing reset + schema + seed. If psql fails the transaction rolls
back and the target is exactly as it was.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from psycopg import sql

from restore_assets.errors import PreflightFailed, ResetRefused
from restore_assets.files import Folder, Identity, NotSafe
from restore_assets.named_targets import refuse_a_database_of_another_target
from restore_assets.pg.clients import client_binary, require_restricted_mode
from restore_assets.pg.database import Database
from restore_assets.pg.psql import check_script
from restore_assets.pg.session import ScriptFile, run_psql
from restore_assets.runbook.baseline_files import SecretFile
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
    phases: dict[str, float] = field(default_factory=dict)  # seconds: scan, preflight, backup, psql
    backup_skipped: str = "not needed (target was empty)"  # why there is no backup

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
    can plant no link there nor rename the backup the evidence names."""
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

    def writer(out: BinaryIO) -> None:
        done = subprocess.run(
            [pg_dump, *options], env=db.client_env(), stdout=out, stderr=subprocess.PIPE
        )
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip()
            raise PreflightFailed(
                f"{purpose} of the {db.describe()} failed"
                + (", so nothing was dropped" if purpose == "backup" else "")
                + f": {message}"
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
    if superuser:
        log(f"note: the {db.describe()} role is a superuser (written in the evidence)")
    psql_log = evidence.checked_path(PSQL_LOGS[side])  # opened by psql's log writer
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
        forget(settings.paths.state_dir, db)  # the target is about to change
        env = db.client_env()
        env["PGAPPNAME"] = psql_application = f"{env['PGAPPNAME']}:psql"  # see `remember`
        log(f"psql: reset {', '.join(reset_schemas)} + {len(files)} file(s), one transaction")
        lines, fed = run_psql(
            psql,
            [ScriptFile(f.relpath, f.path, f.sha256, f.identity) for f in files],
            prelude=reset_script(reset_schemas, recreate_public="public" not in schemas),
            env=env,
            tmp_root=_tmp_root(settings),
            log_path=psql_log,
            redact=evidence.redact,  # psql_log is streamed, line by line, past the store
            progress=log,
        )
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
        ran_sha256=fed,
        superuser=superuser,
        seconds=round(time.monotonic() - started, 3),
        content_before=content,
        phases=phases.seconds,
        backup_skipped=skipped,
    )


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
    root = settings.paths.state_dir / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return root
