"""What an embedded target was last restored from, so that restoring it again from the very same
files can skip the pre-reset backup (`pg_dump` of a multi-GB database costs as much as the restore).

Embedded targets only: an external server is always backed up (it may hold data that no file in
the Secrets store can give back). The backup is skipped only when the target is provably what
those files gave: the same database (by OID: one dropped and created again never matches), the
same objects per schema, and no row inserted, updated or deleted since (the server's own
counters). Anything written since, by Flyway, the sync or by hand, means a backup; so does any
session of another application still connected (its latest counts may not have reached the
server yet). The record is removed before each restore and written only after psql committed, so
a failed or interrupted restore leaves no record that could vouch for the target.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from restore_assets.errors import RestoreError
from restore_assets.files import private_folder, read_private, write_private
from restore_assets.pg.database import Database
from restore_assets.runbook.baseline_files import SecretFile


def _record(state_dir: Path, db: Database) -> Path:
    return state_dir / "last-restore" / f"{db.side}.json"


def _facts(db: Database, files: list[SecretFile]) -> dict[str, object]:
    return {
        "database_oid": db.database_oid(),
        "sha256": {f.relpath: f.sha256 for f in files},
        "objects": db.user_schemas_content(),
        "rows_written": db.rows_written(),
    }


def restored_from_these(state_dir: Path, db: Database, files: list[SecretFile]) -> bool:
    """True when the embedded target holds exactly what these very files gave it, unchanged."""
    if not db.embedded:
        return False
    try:
        recorded = json.loads(read_private(_record(state_dir, db)))  # never through a link
    except (OSError, ValueError):
        return False
    if db.foreign_sessions():
        return False
    facts = _facts(db, files)
    return facts["rows_written"] is not None and recorded == facts


def forget(state_dir: Path, db: Database) -> None:
    """Before the target changes: no record may outlive the content it describes."""
    record = _record(state_dir, db)
    try:
        with private_folder(record.parent, create=False) as folder:
            folder.unlink(record.name, None)
    except FileNotFoundError:
        pass  # no record folder: nothing to forget


def remember(state_dir: Path, db: Database, files: list[SecretFile], psql_application: str) -> None:
    """After psql (connected as `psql_application`) committed these files into the embedded
    target. Recording too few rows written only costs a backup next time."""
    if not db.embedded:
        return
    path = _record(state_dir, db)
    try:
        if not db.wait_until_gone(psql_application):  # its rows are counted as it ends
            return
        data = json.dumps(_facts(db, files)).encode()
        write_private(path, lambda out: out.write(data), root=state_dir)
    except (OSError, RestoreError, psycopg.Error):
        pass  # the target did commit: without a record the next restore only backs it up
