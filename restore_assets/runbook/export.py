"""Runbook §5: `pg_dump --schema-only --no-owner` of a restored target back into the Secrets store.

A fixed `--restrict-key` (where pg_dump has it) makes identical schemas give identical sha256.
Written under `exports/<UTC>/` beside the baseline, never over it, mode 600. The embedded (demo)
server is never dumped into the Secrets store unless the file is named explicitly.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass
from pathlib import Path

from restore_assets.errors import PreflightFailed
from restore_assets.files import Folder, NotSafe
from restore_assets.pg.clients import client_binary
from restore_assets.pg.database import Database
from restore_assets.runbook.baseline_files import SIDE_FILES
from restore_assets.runbook.preflight import inside_secrets
from restore_assets.runbook.restore import dump_to
from restore_assets.settings import Settings

EXPORT_RESTRICT_KEY = "RestoreAssetsBaseline"


@dataclass(frozen=True)
class Export:
    target: str
    path: Path
    sha256: str
    size: int


def pg_dump_supports_restrict_key(pg_dump: str) -> bool:
    done = subprocess.run([pg_dump, "--help"], capture_output=True, text=True)
    return "--restrict-key" in done.stdout


def export_baseline(
    db: Database,
    settings: Settings,
    output: Path | None = None,
    now: dt.datetime | None = None,
) -> Export:
    now = now or dt.datetime.now(dt.UTC)
    relpath = Path(SIDE_FILES[db.side][0])
    if output is None and db.embedded:
        raise PreflightFailed(
            f"the {db.describe()} is the embedded (demo) server, not a real target; its dump "
            "does not belong in the Secrets store. Point POSTGRES_*/MODERNIZED_POSTGRES_* at the "
            "real server, or name the file with --output if you mean it."
        )
    if output is None:
        base = settings.paths.secrets_dir / relpath.parent
        output = base / "exports" / now.strftime("%Y%m%dT%H%M%SZ") / relpath.name
    relpath = inside_secrets(output, settings.paths.secrets_dir)
    options = ["--schema-only", "--no-owner"]
    if pg_dump_supports_restrict_key(client_binary("pg_dump", settings.tools.pg_dump)):
        options.append(f"--restrict-key={EXPORT_RESTRICT_KEY}")
    try:
        with (
            Folder.root(settings.paths.secrets_dir) as root,
            root.private_at(relpath.parent) as folder,
        ):
            written = dump_to(db, settings, options, folder, relpath.name, "pg_dump", True)
            sha, placed = folder.sha256(relpath.name, expect=written)
    except NotSafe as exc:
        raise PreflightFailed(f"not written: {exc}") from None
    return Export(db.describe(), settings.paths.secrets_dir / relpath, sha, placed.size)
