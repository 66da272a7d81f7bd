"""The all-or-nothing restore of one side from its baseline files (runbook §3.1-2, §4.1-2).

Order matters and is the safety story: intake (nothing touched if a file is missing or unsafe) →
preflight (reachable, server not older than the dump, extensions available) → consent (a non-empty
external target needs --allow-reset) → backup (pg_dump into the Secrets store) → one psql
transaction doing reset + schema + seed. If psql fails the transaction rolls back and the target
is exactly as it was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from restore_assets.errors import PreflightFailed, ResetRefused, SecretsBlocked
from restore_assets.resources.evidence import EvidenceStore
from restore_assets.resources.postgres import (
    PostgresTarget,
    client_binary,
    major_version,
    parse_major,
)
from restore_assets.resources.psql_runner import check_script, run_psql
from restore_assets.resources.secrets_store import (
    SecretFile,
    SecretsStore,
    ops_request,
    write_private,
)
from restore_assets.settings import Settings

# One restore per target at a time; the key is ours, Flyway's differs (flyway-compat.md).
RESTORE_LOCK_KEY = 0x52657374_6F7265  # "Restore"


@dataclass
class RestoreReport:
    side: str
    target: str
    server_version: str
    files: list[SecretFile]
    reset_schemas: list[str]
    backup: dict[str, str] | None
    psql_log: Path
    psql_output_lines: int
    seconds: float
    content_before: dict[str, int] = field(default_factory=dict)


def intake(
    settings: Settings, sides: Iterable[str], evidence: EvidenceStore
) -> dict[str, list[SecretFile]]:
    """Runbook §0: find and vet the files; record hashes; stop with an Ops request if unusable."""
    store = SecretsStore(settings)
    sides = list(sides)
    found = {side: store.inspect_side(side) for side in sides}
    files = [f for side in sides for f in found[side]]
    lines = [f"# Secrets root: {settings.secrets_dir}", f"# sides: {', '.join(sides)}"]
    for f in files:
        status = "ok" if f.usable else "; ".join(f.problems)
        lines.append(f"{f.relpath}: {status}" + (f" (mode {f.mode})" if f.mode else ""))
    blocked = [f for f in files if not f.usable]
    if blocked:
        lines += ["", "BLOCKED: no reset, no psql, no flyway until Ops delivers.", ""]
        lines.append(ops_request(settings, sides, files, evidence.folder))
    evidence.write("baseline_search.log", "\n".join(lines) + "\n")
    hashed = [f.shasum_line() for f in files if f.sha256]
    if hashed:
        evidence.write("investigation.log", "\n".join(hashed) + "\n")
    if blocked:
        names = ", ".join(f"{f.relpath} ({'; '.join(f.problems)})" for f in blocked)
        raise SecretsBlocked(
            f"Secrets not usable: {names}. Nothing was touched; the request to Ops is in "
            f"{evidence.path('baseline_search.log')}"
        )
    return found


def preflight(target: PostgresTarget, files: list[SecretFile], extensions: list[str]) -> int:
    """Server reachable, not older than the dump's pg_dump, extensions available."""
    try:
        version_num = target.server_version_num()
    except Exception as exc:  # noqa: BLE001 - any connection failure stops here, redacted
        raise PreflightFailed(target.redact(str(exc))) from None
    server_major = major_version(version_num)
    for f in files:
        dump_major = parse_major(f.dumped_by or "")
        if dump_major is not None and dump_major > server_major:
            raise PreflightFailed(
                f"{f.relpath} was written by pg_dump {f.dumped_by}, newer than the "
                f"{target.describe()} server (PostgreSQL {server_major}); its output "
                f"(e.g. `SET transaction_timeout`) may not load. Use a server >= {dump_major} or "
                "ask Ops for a dump made with a matching pg_dump."
            )
    if extensions:
        with target.connect(autocommit=True) as conn:
            available = {
                r[0] for r in conn.execute("SELECT name FROM pg_available_extensions").fetchall()
            }
        missing = sorted(set(extensions) - available)
        if missing:
            raise PreflightFailed(
                f"the baseline needs extension(s) {', '.join(missing)}, which the "
                f"{target.describe()} server does not have; install them on the server first"
            )
    return version_num


@contextmanager
def restore_lock(target: PostgresTarget, wait_seconds: float = 600):
    """Hold a session advisory lock on the target so two restores never overlap."""
    with target.connect(autocommit=True) as conn:
        deadline = time.monotonic() + wait_seconds
        while not conn.execute("SELECT pg_try_advisory_lock(%s)", (RESTORE_LOCK_KEY,)).fetchone()[
            0
        ]:
            if time.monotonic() > deadline:
                raise PreflightFailed(
                    f"another restore holds the lock on the {target.describe()}; try again later"
                )
            time.sleep(1)
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (RESTORE_LOCK_KEY,))


def inside_secrets(path: Path, settings: Settings) -> Path:
    """Dumps (they may hold medical data) are only ever written inside the Secrets root."""
    resolved = path.expanduser().resolve()
    root = settings.secrets_dir.expanduser().resolve()
    if resolved != root and root not in resolved.parents:
        raise PreflightFailed(
            f"refusing to write a dump to {resolved}: dumps stay inside the Secrets root {root}"
        )
    return resolved


def backup_target(
    target: PostgresTarget, settings: Settings, now: dt.datetime | None = None
) -> dict[str, str]:
    """`pg_dump` the whole target into `<Secrets>/backups/<UTC>/`, mode 600, before dropping it."""
    now = now or dt.datetime.now(dt.UTC)
    folder = settings.secrets_dir / "backups" / now.strftime("%Y%m%dT%H%M%SZ")
    path = inside_secrets(folder / f"{target.side}-{target.target.dbname}.dump", settings)
    attempt = 1
    while path.exists():  # two restores in one second: never overwrite an earlier backup
        attempt += 1
        path = folder / f"{target.side}-{target.target.dbname}-{attempt}.dump"
    pg_dump = client_binary("pg_dump", settings.pg_dump_bin)

    # Written 0600 from the start: it holds medical data and must never be readable by others.
    def writer(out) -> None:
        result = subprocess.run(
            [pg_dump, "--format=custom", "--no-owner"],
            env=target.client_env(),
            stdout=out,
            stderr=subprocess.PIPE,
        )
        if result.returncode != 0:
            message = target.redact(result.stderr.decode("utf-8", "replace").strip())
            raise PreflightFailed(
                f"backup of the non-empty {target.describe()} failed, so nothing was dropped: "
                f"{message}"
            )

    write_private(path, writer)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return {
        "path": str(path.relative_to(settings.secrets_dir)),
        "sha256": digest.hexdigest(),
        "size": str(path.stat().st_size),
        "mode": "0600",
    }


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
    side: str,
    target: PostgresTarget,
    settings: Settings,
    files: list[SecretFile],
    evidence: EvidenceStore,
    log_name: str,
    extra_reset_schemas: Iterable[str] = (),
    log: Callable[[str], None] = print,
) -> RestoreReport:
    """Preflight, consent, backup, then reset + every file in one psql transaction."""
    started = time.monotonic()
    schemas: list[str] = []
    extensions: list[str] = []
    for f in files:
        scan = check_script(f.path, f.relpath, target.target.dbname)
        log(f"{f.relpath}: scanned, {scan.meta_commands} pg_dump meta-command(s), nothing else")
        schemas += scan.schemas
        extensions += scan.extensions
    version_num = preflight(target, files, extensions)
    reset_schemas = list(dict.fromkeys(["public", *extra_reset_schemas, *schemas]))

    with restore_lock(target):
        content = target.user_schemas_content()
        backup = None
        if content:
            if not target.embedded and not settings.allow_reset:
                raise ResetRefused(
                    f"the {target.describe()} is not empty ({_describe_content(content)}); "
                    "restoring drops it. Re-run with --allow-reset (or RESTORE_ALLOW_RESET=true) "
                    "to consent; a backup is taken first."
                )
            log(f"{target.describe()} holds {_describe_content(content)}: backing it up first")
            backup = backup_target(target, settings)
            log(f"backup: {backup['path']} sha256 {backup['sha256']}")
        with tempfile.TemporaryDirectory(prefix="restore-", dir=_tmp_root(settings)) as tmp:
            reset_file = Path(tmp) / f"reset-{side}.sql"
            reset_file.write_text(
                reset_script(reset_schemas, recreate_public="public" not in schemas)
            )
            log(f"psql: reset {', '.join(reset_schemas)} + {len(files)} file(s), one transaction")
            lines = run_psql(
                client_binary("psql", settings.psql_bin),
                [reset_file, *(f.relpath for f in files)],
                cwd=settings.secrets_dir,
                env=target.client_env(),
                log_path=evidence.path(log_name),
                redact=target.redact,
                progress=log,
            )
    return RestoreReport(
        side=side,
        target=target.describe(),
        server_version=f"{version_num // 10000}.{version_num % 10000}",
        files=files,
        reset_schemas=reset_schemas,
        backup=backup,
        psql_log=evidence.path(log_name),
        psql_output_lines=lines,
        seconds=round(time.monotonic() - started, 3),
        content_before=content,
    )


def _describe_content(content: dict[str, int]) -> str:
    return ", ".join(f"{count} object(s) in {schema}" for schema, count in content.items())


def _tmp_root(settings: Settings) -> Path:
    root = settings.state_dir / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return root


EXPORT_RESTRICT_KEY = "RestoreAssetsBaseline"


def pg_dump_supports_restrict_key(pg_dump: str) -> bool:
    done = subprocess.run([pg_dump, "--help"], capture_output=True, text=True)
    return "--restrict-key" in done.stdout


def export_baseline(
    target: PostgresTarget,
    settings: Settings,
    relpath: str,
    output: Path | None = None,
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """Runbook §5: `pg_dump --schema-only --no-owner` back into the Secrets store, mode 600.

    A fixed `--restrict-key` (where pg_dump has it) makes identical schemas give identical
    sha256. Written under `exports/<UTC>/` beside the baseline, never over it.
    """
    now = now or dt.datetime.now(dt.UTC)
    if output is None:
        base = settings.secrets_dir / Path(relpath).parent
        output = base / "exports" / now.strftime("%Y%m%dT%H%M%SZ") / Path(relpath).name
    path = inside_secrets(output, settings)
    pg_dump = client_binary("pg_dump", settings.pg_dump_bin)
    args = [pg_dump, "--schema-only", "--no-owner"]
    if pg_dump_supports_restrict_key(pg_dump):
        args.append(f"--restrict-key={EXPORT_RESTRICT_KEY}")

    def writer(out) -> None:
        done = subprocess.run(args, env=target.client_env(), stdout=out, stderr=subprocess.PIPE)
        if done.returncode != 0:
            message = target.redact(done.stderr.decode("utf-8", "replace").strip())
            raise PreflightFailed(f"pg_dump of the {target.describe()} failed: {message}")

    write_private(path, writer)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"path": str(path), "sha256": digest, "size": str(path.stat().st_size)}
